-- public.invoices_ext joins each bill table to the caller's visible tenants directly.
--
-- The previous shape (an RLS-bypass branch and a caller branch, gated by one-time filters) read
-- the right rows by index, but the planner still costed the bypass branch as a scan of every
-- bill (~600,000 at 2.4 M bills). That total is above jit_above_cost, so every signed-in read
-- paid ~700 ms of JIT compilation for a branch that never runs.
--
-- Now one list of visible tenants drives both legs: every known tenant for roles that bypass RLS,
-- the tenants the caller administers otherwise. The list is an array parameter, so the planner
-- assumes a handful of tenants and probes each bill table by its tenant index; a caller's own
-- tenant filter (leakproof equality) is pushed down to the list and the index alike. The columns
-- repeat internal.invoices_ext's (pgTAP 230 checks that the two agree row for row).
create or replace view public.invoices_ext with (security_barrier = true) as
select authorized.*
from (
  select
    date_trunc('month', h.billed_month)::date as date_start,
    (date_trunc('month', h.billed_month) + interval '1 month' - interval '1 day')::date as date_end,
    h.tenant::text as billed_prefix,
    coalesce(nullif(h.report -> 'line_items', 'null'), '[]'::jsonb) as line_items,
    coalesce(nullif(h.report -> 'subtotal', 'null'), '0')::integer as subtotal,
    h.report as extra,
    'final'::text as invoice_type,
    h.stripe_invoice_id,
    case when s.deleted then 'deleted' else s.status end as invoice_status,
    s.amount_due,
    s.hosted_invoice_url,
    s.invoice_pdf,
    s.synced_at as invoice_synced_at,
    'final:' || h.id as bill_id
  from unnest(case when (select internal.caller_bypasses_rls())
      then array(select t.tenant::text from public.tenants t)
      else (select internal.caller_admin_tenants()) end) visible(tenant)
  join internal.billing_historicals h on h.tenant::text = visible.tenant
  left join internal.stripe_invoice_state s on s.stripe_invoice_id = h.stripe_invoice_id
  union all
  select
    m.date_start,
    m.date_end,
    m.tenant::text as billed_prefix,
    jsonb_build_array(jsonb_build_object(
      'description', m.description, 'count', 1, 'rate', m.usd_cents, 'subtotal', m.usd_cents
    )) as line_items,
    m.usd_cents as subtotal,
    'null'::jsonb as extra,
    'manual'::text as invoice_type,
    m.stripe_invoice_id,
    case when s.deleted then 'deleted' else s.status end as invoice_status,
    s.amount_due,
    s.hosted_invoice_url,
    s.invoice_pdf,
    s.synced_at as invoice_synced_at,
    'manual:' || m.id as bill_id
  from unnest(case when (select internal.caller_bypasses_rls())
      then array(select t.tenant::text from public.tenants t)
      else (select internal.caller_admin_tenants()) end) visible(tenant)
  join internal.manual_bills m on m.tenant::text = visible.tenant
  left join internal.stripe_invoice_state s on s.stripe_invoice_id = m.stripe_invoice_id
) authorized;
comment on view public.invoices_ext is
  'Invoices of the tenants the signed-in user administers (all of them for roles that bypass '
  'RLS). A security barrier: the caller''s own predicates never see other tenants'' rows.';

revoke all on public.invoices_ext from public, anon, authenticated;
grant select on public.invoices_ext to authenticated, service_role;
