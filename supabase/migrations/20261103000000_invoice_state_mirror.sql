-- A mirror of each stored invoice's Stripe state (status, amount due, links), kept fresh by
-- webhooks and by whatever publishing learns, so the dashboard lists invoices from Postgres
-- without a Stripe call per row.

create table internal.stripe_invoice_state (
  stripe_invoice_id text primary key check (stripe_invoice_id ~ '^in_[A-Za-z0-9]+$'),
  customer_id text,
  status text check (status in ('draft', 'open', 'paid', 'uncollectible', 'void')),
  deleted boolean not null default false,
  amount_due bigint,
  total bigint,
  currency text,
  hosted_invoice_url text,
  invoice_pdf text,
  -- When Stripe's state was observed (event.created, or the time of a retrieve).
  source_time timestamptz not null,
  source text not null,
  synced_at timestamptz not null default now()
);
comment on table internal.stripe_invoice_state is
  'Latest known Stripe state of each invoice; an older observation never overwrites a newer one.';
create index stripe_invoice_state_customer on internal.stripe_invoice_state (customer_id);

-- Lifecycle rank, so two observations in the same second resolve to the later state.
create function internal.invoice_state_rank(p_status text, p_deleted boolean)
returns integer
language sql immutable
set search_path = ''
as $$
  select case
    when p_deleted then 5
    when p_status = 'draft' then 1
    when p_status = 'open' then 2
    when p_status = 'uncollectible' then 3
    when p_status in ('paid', 'void') then 4
    else 0
  end
$$;

-- Records what Stripe said about an invoice at p_observed_at. Returns false when newer state is
-- already stored (nothing written).
create function internal.record_invoice_state(
  p_invoice jsonb,
  p_observed_at timestamptz,
  p_source text
) returns boolean
language plpgsql security definer
set search_path = ''
as $$
declare
  v_id text := p_invoice ->> 'id';
  v_deleted boolean := coalesce((p_invoice ->> 'deleted')::boolean, false);
  v_status text := case when v_deleted then null else p_invoice ->> 'status' end;
  v_customer text := case jsonb_typeof(p_invoice -> 'customer')
    when 'object' then p_invoice -> 'customer' ->> 'id'
    else p_invoice ->> 'customer' end;
  written boolean;
begin
  if v_id is null or v_id !~ '^in_[A-Za-z0-9]+$' then
    raise exception 'invoice.id must look like in_..., got %', coalesce(v_id, 'NULL')
      using errcode = 'invalid_parameter_value', column = 'id';
  end if;
  if p_observed_at is null then
    raise exception 'observed_at is required'
      using errcode = 'invalid_parameter_value', column = 'observed_at';
  end if;
  insert into internal.stripe_invoice_state as s (stripe_invoice_id, customer_id, status, deleted,
    amount_due, total, currency, hosted_invoice_url, invoice_pdf, source_time, source, synced_at)
  values (v_id, v_customer, v_status, v_deleted,
    (p_invoice ->> 'amount_due')::bigint, (p_invoice ->> 'total')::bigint,
    p_invoice ->> 'currency', p_invoice ->> 'hosted_invoice_url', p_invoice ->> 'invoice_pdf',
    p_observed_at, p_source, now())
  on conflict (stripe_invoice_id) do update set
    customer_id = coalesce(excluded.customer_id, s.customer_id),
    status = case when excluded.deleted then s.status else excluded.status end,
    deleted = excluded.deleted,
    -- A deletion carries no amounts or links; keep the last known ones.
    amount_due = case when excluded.deleted then s.amount_due else excluded.amount_due end,
    total = case when excluded.deleted then s.total else excluded.total end,
    currency = coalesce(excluded.currency, s.currency),
    hosted_invoice_url = case when excluded.deleted then s.hosted_invoice_url
      else excluded.hosted_invoice_url end,
    invoice_pdf = case when excluded.deleted then s.invoice_pdf else excluded.invoice_pdf end,
    source_time = excluded.source_time,
    source = excluded.source,
    synced_at = now()
  where s.source_time < excluded.source_time
     or (s.source_time = excluded.source_time
         and internal.invoice_state_rank(s.status, s.deleted)
           <= internal.invoice_state_rank(excluded.status, excluded.deleted))
  returning true into written;
  return coalesce(written, false);
end;
$$;
comment on function internal.record_invoice_state(jsonb, timestamptz, text) is
  'Order-safe upsert of an invoice''s Stripe state (from a webhook event or a retrieve).';

-- Tenants whose customer was deleted in Stripe: publishing warns instead of creating invoices.
create table internal.stripe_deleted_customers (
  customer_id text primary key check (customer_id ~ '^cus_[A-Za-z0-9]+$'),
  deleted_at timestamptz not null,
  recorded_at timestamptz not null default now()
);
comment on table internal.stripe_deleted_customers is
  'Stripe customers known to be deleted (customer.deleted events or a retrieve).';

create function internal.record_customer_deleted(p_customer_id text, p_observed_at timestamptz)
returns boolean
language plpgsql security definer
set search_path = ''
as $$
begin
  if p_customer_id is null or p_customer_id !~ '^cus_[A-Za-z0-9]+$' then
    raise exception 'customer_id must look like cus_..., got %', coalesce(p_customer_id, 'NULL')
      using errcode = 'invalid_parameter_value', column = 'customer_id';
  end if;
  insert into internal.stripe_deleted_customers (customer_id, deleted_at)
  values (p_customer_id, p_observed_at)
  on conflict (customer_id) do nothing;
  return found;
end;
$$;
comment on function internal.record_customer_deleted(text, timestamptz) is
  'Remembers that a Stripe customer was deleted.';

-- invoices_ext appends the mirrored state after stripe_invoice_id, then the bill's identity.
create or replace view internal.invoices_ext as
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

create or replace view public.invoices_ext as
with has_bypassrls as (
  select exists (
    select 1 from pg_catalog.pg_roles where rolname = current_role and rolbypassrls
  ) as bypass
),
authorized_tenants as (
  select t.tenant::text as tenant
  from public.tenants t, has_bypassrls
  where has_bypassrls.bypass
     or exists (select 1 from public.auth_roles('admin') r where t.tenant ^@ r.role_prefix)
)
select i.*
from internal.invoices_ext i
join authorized_tenants a on a.tenant = i.billed_prefix;

revoke all on internal.stripe_invoice_state, internal.stripe_deleted_customers
  from public, anon, authenticated;
grant select on internal.stripe_invoice_state, internal.stripe_deleted_customers to service_role;
revoke all on function internal.invoice_state_rank(text, boolean),
  internal.record_invoice_state(jsonb, timestamptz, text),
  internal.record_customer_deleted(text, timestamptz)
  from public, anon, authenticated;
grant execute on function internal.record_invoice_state(jsonb, timestamptz, text),
  internal.record_customer_deleted(text, timestamptz) to service_role;
