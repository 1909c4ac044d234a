-- Both invoices_ext views read a usage bill's month in UTC: billed_month is midnight UTC, and
-- `date_trunc('month', billed_month)::date` named the previous month in any session whose zone is
-- west of UTC (a project may set its database's default zone), so the dashboard, finalize and
-- drift looked for October's bills under September.
--
-- public.invoices_ext also stops showing an invoice that is on another customer than the
-- tenant's stored one (a bill moved to another tenant, not yet republished): its ID, status,
-- amount and links belonged to the first tenant's customer. Publishing replaces such a draft
-- with one on the tenant's customer, which then shows.

-- The caller's administered tenants with their stored customers, in one call (the same lookup
-- as internal.caller_admin_tenants): the view checks an invoice's customer without probing
-- tenants once more per tenant.
create type internal.visible_tenant as (tenant text, customer_id text);
grant usage on type internal.visible_tenant to authenticated, service_role;

create function internal.caller_admin_tenant_rows()
returns internal.visible_tenant[]
language sql stable security definer
set search_path = ''
as $$
  select coalesce(pg_catalog.array_agg(distinct (t.tenant::text, t.stripe_customer_id)::
      internal.visible_tenant), '{}')
  from public.user_grants g
  join public.tenants t
    on (t.tenant::text collate "C") >= (g.object_role::text collate "C")
   and (t.tenant::text collate "C")
     < (pg_catalog.left(g.object_role::text, -1) || '0' collate "C")
   and t.tenant::text operator(pg_catalog.^@) g.object_role::text
  where g.user_id = (select auth.uid())
    and g.capability operator(pg_catalog.>=) 'admin'::public.grant_capability
$$;
comment on function internal.caller_admin_tenant_rows() is
  'Tenants the signed-in user administers, each with its stored Stripe customer.';
revoke all on function internal.caller_admin_tenant_rows() from public, anon, authenticated;
grant execute on function internal.caller_admin_tenant_rows() to authenticated, service_role;

create or replace view internal.invoices_ext as
select
  date_trunc('month', h.billed_month at time zone 'UTC')::date as date_start,
  (date_trunc('month', h.billed_month at time zone 'UTC') + interval '1 month'
    - interval '1 day')::date as date_end,
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
from internal.billing_historicals h
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
from internal.manual_bills m
left join internal.stripe_invoice_state s on s.stripe_invoice_id = m.stripe_invoice_id;

create or replace view public.invoices_ext with (security_barrier = true) as
select authorized.*
from (
  select
    date_trunc('month', h.billed_month at time zone 'UTC')::date as date_start,
    (date_trunc('month', h.billed_month at time zone 'UTC') + interval '1 month'
      - interval '1 day')::date as date_end,
    h.tenant::text as billed_prefix,
    coalesce(nullif(h.report -> 'line_items', 'null'), '[]'::jsonb) as line_items,
    coalesce(nullif(h.report -> 'subtotal', 'null'), '0')::integer as subtotal,
    h.report as extra,
    'final'::text as invoice_type,
    case when own.ok then h.stripe_invoice_id end as stripe_invoice_id,
    case when not own.ok then null when s.deleted then 'deleted' else s.status end
      as invoice_status,
    case when own.ok then s.amount_due end as amount_due,
    case when own.ok then s.hosted_invoice_url end as hosted_invoice_url,
    case when own.ok then s.invoice_pdf end as invoice_pdf,
    case when own.ok then s.synced_at end as invoice_synced_at,
    'final:' || h.id as bill_id
  from unnest(case when (select internal.caller_bypasses_rls())
      then array(select (t.tenant::text, t.stripe_customer_id)::internal.visible_tenant
        from public.tenants t)
      else (select internal.caller_admin_tenant_rows()) end) visible
  join internal.billing_historicals h on h.tenant::text = visible.tenant
  left join internal.stripe_invoice_state s on s.stripe_invoice_id = h.stripe_invoice_id
  cross join lateral (select s.customer_id is null
    or s.customer_id is not distinct from visible.customer_id as ok) own
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
    case when own.ok then m.stripe_invoice_id end as stripe_invoice_id,
    case when not own.ok then null when s.deleted then 'deleted' else s.status end
      as invoice_status,
    case when own.ok then s.amount_due end as amount_due,
    case when own.ok then s.hosted_invoice_url end as hosted_invoice_url,
    case when own.ok then s.invoice_pdf end as invoice_pdf,
    case when own.ok then s.synced_at end as invoice_synced_at,
    'manual:' || m.id as bill_id
  from unnest(case when (select internal.caller_bypasses_rls())
      then array(select (t.tenant::text, t.stripe_customer_id)::internal.visible_tenant
        from public.tenants t)
      else (select internal.caller_admin_tenant_rows()) end) visible
  join internal.manual_bills m on m.tenant::text = visible.tenant
  left join internal.stripe_invoice_state s on s.stripe_invoice_id = m.stripe_invoice_id
  cross join lateral (select s.customer_id is null
    or s.customer_id is not distinct from visible.customer_id as ok) own
) authorized;
comment on view public.invoices_ext is
  'Invoices of the tenants the signed-in user administers (all of them for roles that bypass '
  'RLS), months in UTC; an invoice on another customer than the tenant''s is not shown. A '
  'security barrier: the caller''s own predicates never see other tenants'' rows.';

revoke all on public.invoices_ext from public, anon, authenticated;
grant select on public.invoices_ext to authenticated, service_role;

-- One lookup of the caller's tenants, shared by the tenants policy and the view.
create or replace function internal.caller_admin_tenants()
returns text[]
language sql stable security definer
set search_path = ''
as $$
  select coalesce(pg_catalog.array_agg(v.tenant), '{}')
  from pg_catalog.unnest(internal.caller_admin_tenant_rows()) v
$$;
