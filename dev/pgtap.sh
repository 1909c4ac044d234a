#!/usr/bin/env bash
# Runs the pgTAP suite (supabase/tests) with pg_prove as the postgres role, like `supabase test db`.
set -euo pipefail
cd "$(dirname "$0")/.."
port=${STACK_PORT:-54322}
PGOPTIONS="-c client_min_messages=warning" exec pg_prove --ext .sql -h 127.0.0.1 -p "$port" \
  -U postgres -d postgres "$@" supabase/tests/*.test.sql
