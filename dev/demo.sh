#!/usr/bin/env bash
# The main job on the local stack: start it, load the demo data, and show the invoices view the
# way a signed-in tenant admin sees it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash dev/setup.sh
bash dev/stack.sh start
bash dev/stack.sh seed
url=$(bash dev/stack.sh url)
echo
echo "Invoices as alice@acme.example (admin of acmeCo/) sees them through public.invoices_ext:"
psql -X -q "$url" <<'SQL'
begin;
select set_config('role', 'authenticated', true),
       set_config('request.jwt.claims', '{"sub":"a11ce000-0000-4000-8000-000000000001","role":"authenticated"}', true) \g /dev/null
select billed_prefix, invoice_type, date_start, date_end, to_char(subtotal / 100.0, 'FM$999,999,990.00') as amount,
       coalesce(stripe_invoice_id, '(not published)') as stripe_invoice_id
from public.invoices_ext order by date_start, invoice_type;
rollback;
SQL
