#!/usr/bin/env bash
# Every test, from a fresh machine: installs what is missing, starts a clean local stack, then
# runs static checks, pgTAP (under today's and the legacy default grants), the scheduled path end
# to end (pg_cron, pg_net stand-in, gateway, emulator), the database linter,
# the Deno tests and the reduced reliability matrix.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH"
# STACK_PORT runs the whole suite against another cluster (e.g. beside a dev stack in use).
export STACK_PORT=${STACK_PORT:-54322}
# Results must not depend on zones: the test cluster's default zone is New York (a project may
# set its database's default) and the Deno processes run in Los Angeles time.
export STACK_TIMEZONE=${STACK_TIMEZONE:-America/New_York}
export TZ=${TZ:-America/Los_Angeles}
export SUPABASE_DB_URL="postgresql://postgres@127.0.0.1:$STACK_PORT/postgres?sslmode=disable"
legacy_port=$((STACK_PORT + 10))
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

bash dev/setup.sh

step "static checks: deno fmt, lint, check"
deno fmt --check
deno lint
mapfile -t entry_points < <(ls supabase/functions/*/index.ts dev/*/main.ts cli/main.ts bench/*.ts 2>/dev/null || true)
deno check "${entry_points[@]}" dev/tests/*.ts dev/supabase-compat/net_worker.ts

step "local stack (fresh cluster, today's grants)"
bash dev/stack.sh reset

step "pgTAP, today's default privileges"
bash dev/pgtap.sh

# It needs the fresh stack to itself and waits for pg_cron's next minute, so it runs now, in the
# background while the next two steps use the other cluster and only read this one.
step "the scheduled path (pg_cron -> pg_net -> publish-invoices -> Stripe), in the background"
sched_log=$(mktemp)
deno test --allow-all dev/tests/scheduled_path_e2e.ts >"$sched_log" 2>&1 &
sched_pid=$!
trap 'kill "$sched_pid" 2>/dev/null || true' EXIT

step "pgTAP, legacy default privileges (projects before 2026-10-30)"
STACK_PORT=$legacy_port STACK_DIR=/tmp/billing-stack-$legacy_port SUPABASE_GRANTS=legacy STACK_TIMEZONE=UTC bash dev/stack.sh reset
trap 'kill "$sched_pid" 2>/dev/null || true; STACK_PORT=$legacy_port STACK_DIR=/tmp/billing-stack-$legacy_port bash dev/stack.sh stop' EXIT
STACK_PORT=$legacy_port bash dev/pgtap.sh
legacy_worker=$(cat /tmp/billing-stack-$legacy_port/net-worker.pid)
STACK_PORT=$legacy_port STACK_DIR=/tmp/billing-stack-$legacy_port bash dev/stack.sh stop
# stop ends the pg_net stand-in's worker it started, by its PID.
if kill -0 "$legacy_worker" 2>/dev/null; then
  echo "dev/stack.sh stop left the pg_net stand-in worker (pid $legacy_worker) running" >&2
  exit 1
fi
trap 'kill "$sched_pid" 2>/dev/null || true' EXIT

step "supabase db lint (plpgsql_check) on public and internal"
supabase db lint --db-url "$(bash dev/stack.sh url)" --schema public,internal --level warning \
  --fail-on warning

step "the scheduled path: waiting for its result"
if wait "$sched_pid"; then cat "$sched_log"; else cat "$sched_log"; exit 1; fi
trap - EXIT
rm -f "$sched_log"

step "Deno tests"
deno test --allow-all --parallel

step "the demo (the README's first command), end to end"
node_modules/.bin/deno run --allow-all dev/demo.ts >/dev/null

if [ -f bench/reliability.ts ]; then
  step "reliability matrix (reduced)"
  deno run --allow-all bench/reliability.ts --reduced
fi
