#!/usr/bin/env bash
# The main job on the local stack, end to end (see dev/demo.ts): installs what is missing, then
# adopts a brownfield Stripe, publishes a month, edits a bill, finalizes, lets pg_cron publish the
# next month through pg_net (the local stand-in), and shows the invoices
# a tenant admin sees.
set -euo pipefail
cd "$(dirname "$0")/.."
bash dev/setup.sh
exec node_modules/.bin/deno run --allow-all dev/demo.ts
