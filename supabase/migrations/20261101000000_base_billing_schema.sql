-- Base billing schema, shaped like the system being replaced: tenants, the grant model that
-- authorization reads through auth.uid(), usage and manual bills, and the invoices views.
-- Nothing here knows Stripe IDs; the next migration adds them.

create schema if not exists internal;
comment on schema internal is 'Private billing tables: not exposed through the Data API.';
revoke all on schema internal from public;

-- A tenant is one catalog path segment ending in a slash, e.g. "acmeCo/".
create domain public.catalog_tenant as text
  constraint catalog_tenant_format check (value ~ '^[[:alnum:]_.-]+/$');
-- A grant's object is a catalog prefix (one or more segments ending in a slash).
create domain public.catalog_prefix as text
  constraint catalog_prefix_format check (value ~ '^([[:alnum:]_.-]+/)+$');

create type public.payment_provider_type as enum ('stripe', 'external');
-- Ordered, so "at least admin" is a comparison.
create type public.grant_capability as enum ('read', 'write', 'admin');

-- One row per billed tenant.
create table public.tenants (
  id uuid primary key default extensions.gen_random_uuid(),
  tenant public.catalog_tenant not null unique,
  detail text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  tasks_quota integer not null default 10,
  collections_quota integer not null default 500,
  data_tiers integer[] not null default '{50}',
  usage_tiers integer[] not null default '{14,4464,7}',
  recurring_usd_cents integer not null default 0,
  trial_start date,
  payment_provider public.payment_provider_type not null default 'stripe',
  billing_email text,
  billing_name text,
  billing_address jsonb,
  hide_preview boolean not null default false,
  constraint data_tiers_is_odd check (array_length(data_tiers, 1) % 2 = 1),
  constraint usage_tiers_is_odd check (array_length(usage_tiers, 1) % 2 = 1)
);
comment on table public.tenants is
  'Billed tenants. trial_start NULL means the free tier; billing_* feed the Stripe customer.';

-- Which users may act on which catalog prefixes, and how far.
create table public.user_grants (
  id uuid primary key default extensions.gen_random_uuid(),
  user_id uuid not null references auth.users (id) on delete cascade,
  object_role public.catalog_prefix not null,
  capability public.grant_capability not null,
  detail text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (user_id, object_role)
);
comment on table public.user_grants is
  'A user''s capability on every catalog name under object_role.';
create index user_grants_object_role on public.user_grants (object_role collate "C");

-- The caller's grants of at least min_capability. Security definer so that policies and views
-- can read user_grants whatever the caller may select; it only ever returns auth.uid()'s rows.
create function public.auth_roles(min_capability public.grant_capability default 'read')
returns table (role_prefix public.catalog_prefix, capability public.grant_capability)
language sql stable security definer
set search_path = ''
as $$
  select g.object_role, g.capability
  from public.user_grants g
  where g.user_id = (select auth.uid())
    and g.capability >= min_capability
$$;
comment on function public.auth_roles(public.grant_capability) is
  'Catalog prefixes the signed-in user holds at least min_capability on.';
revoke all on function public.auth_roles(public.grant_capability) from public, anon;
grant execute on function public.auth_roles(public.grant_capability)
  to authenticated, service_role;

alter table public.tenants enable row level security;
create policy "Users must be authorized to their catalog tenant"
  on public.tenants for select to authenticated
  using (exists (
    select 1 from public.auth_roles('admin') r where tenant ^@ r.role_prefix
  ));

alter table public.user_grants enable row level security;
create policy "Users see their own grants"
  on public.user_grants for select to authenticated
  using (user_id = (select auth.uid()));

-- Explicit grants: right whether or not the project still has blanket default privileges.
revoke all on public.tenants from anon, authenticated;
revoke all on public.user_grants from anon, authenticated;
grant select on public.tenants to authenticated;
grant select on public.user_grants to authenticated;
grant all on public.tenants to service_role;
grant all on public.user_grants to service_role;

-- Manually entered bills over an arbitrary date range (contracts, one-offs); may span months.
create table internal.manual_bills (
  tenant public.catalog_tenant not null,
  usd_cents integer not null,
  description text not null,
  date_start date not null,
  date_end date not null,
  primary key (tenant, date_start, date_end),
  constraint dates_make_sense check (date_start < date_end)
);
comment on table internal.manual_bills is
  'Manually entered bills that span an arbitrary date range.';

-- Monthly usage statements, frozen at month end.
create table internal.billing_historicals (
  tenant public.catalog_tenant not null,
  billed_month timestamptz not null,
  report jsonb not null,
  constraint billing_historicals_tenant_billed_month_key unique (tenant, billed_month),
  constraint billed_month_is_month check (date_trunc('month', billed_month) = billed_month)
);
comment on table internal.billing_historicals is
  'Historical billing statements frozen at month end (report: line_items, subtotal, credits).';
create index billing_historicals_tenant_starts_with
  on internal.billing_historicals (tenant collate "C");

-- Every tenant invoice without authorization. Preview rows (live usage of the open month) need
-- usage statistics this project does not model, so only final and manual rows exist here.
create view internal.invoices_ext as
select
  date_trunc('month', h.billed_month)::date as date_start,
  (date_trunc('month', h.billed_month) + interval '1 month' - interval '1 day')::date as date_end,
  h.tenant::text as billed_prefix,
  coalesce(nullif(h.report -> 'line_items', 'null'), '[]'::jsonb) as line_items,
  coalesce(nullif(h.report -> 'subtotal', 'null'), '0')::integer as subtotal,
  h.report as extra,
  'final'::text as invoice_type
from internal.billing_historicals h
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
  'manual'::text as invoice_type
from internal.manual_bills m;
comment on view internal.invoices_ext is
  'Tenant invoices (final + manual) sans authorization. Use public.invoices_ext for the '
  'authorization-checked view.';

-- The same rows, limited to tenants the caller administers (or all, for roles that bypass RLS).
create view public.invoices_ext as
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
comment on view public.invoices_ext is
  'Invoices of the tenants the signed-in user administers.';

revoke all on internal.manual_bills, internal.billing_historicals, internal.invoices_ext
  from public, anon, authenticated;
revoke all on public.invoices_ext from anon, authenticated;
grant usage on schema internal to service_role;
grant all on internal.manual_bills, internal.billing_historicals to service_role;
grant select on internal.invoices_ext to service_role;
grant select on public.invoices_ext to authenticated, service_role;
