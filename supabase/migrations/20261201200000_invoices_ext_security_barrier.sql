-- public.invoices_ext becomes a security barrier that finds the caller's rows by index.
--
-- Before: the caller's own predicates could run on every tenant's rows before the tenant check
-- (an error or a division by zero then told them about other tenants' bills), and the check
-- itself (`bypass or exists (auth_roles(...))` per tenant, joined on `tenant::text`) could not
-- be estimated or indexed, so an unfiltered read scanned every bill.
--
-- After: security_barrier keeps every non-leakproof caller predicate above the view's own
-- filter. The caller's administered tenants are computed once, up front, as an array (an
-- initplan), and each bill table is probed by its tenant index with `tenant = any (...)`.
-- Roles that bypass RLS (service_role, postgres) still see every bill of a known tenant; which
-- branch applies is a one-time filter, so each read runs only one of them.

-- Prefix lookups of tenants by a grant's prefix use a byte-ordered range on this index.
create index if not exists tenants_tenant_c on public.tenants (tenant collate "C");

-- The tenants the caller holds admin on (prefix semantics of public.auth_roles). Security
-- definer so that it reads grants and tenants whatever the caller may select; it only ever
-- reads auth.uid()'s grants.
create function internal.caller_admin_tenants()
returns text[]
language sql stable security definer
set search_path = ''
as $$
  select coalesce(pg_catalog.array_agg(distinct t.tenant::text), '{}')
  from public.user_grants g
  join public.tenants t
    -- A prefix ends in '/', and '0' is the next byte: every name starting with the prefix sorts
    -- in [prefix, prefix minus '/' plus '0') in byte order, so this range is exact and indexed.
    on (t.tenant::text collate "C") >= (g.object_role::text collate "C")
   and (t.tenant::text collate "C")
     < (pg_catalog.left(g.object_role::text, -1) || '0' collate "C")
   and t.tenant::text operator(pg_catalog.^@) g.object_role::text
  where g.user_id = (select auth.uid())
    and g.capability operator(pg_catalog.>=) 'admin'::public.grant_capability
$$;
comment on function internal.caller_admin_tenants() is
  'Tenants the signed-in user administers (a grant''s prefix covers every tenant under it).';
revoke all on function internal.caller_admin_tenants() from public, anon, authenticated;
grant execute on function internal.caller_admin_tenants() to authenticated, service_role;

-- Whether the current role bypasses RLS (service_role, postgres): it then sees every bill.
create function internal.caller_bypasses_rls()
returns boolean
language sql stable
set search_path = ''
as $$
  select exists (
    select 1 from pg_catalog.pg_roles r where r.rolname = current_role and r.rolbypassrls
  )
$$;
comment on function internal.caller_bypasses_rls() is
  'True when the current role has BYPASSRLS; such roles read every tenant''s invoices.';
revoke all on function internal.caller_bypasses_rls() from public, anon, authenticated;
grant execute on function internal.caller_bypasses_rls() to authenticated, service_role;

-- The union sits in a subquery on purpose: Postgres flattens a view that is itself a UNION ALL
-- into its legs, and the barrier would be lost with it.
create or replace view public.invoices_ext with (security_barrier = true) as
select authorized.*
from (
  select i.*
  from internal.invoices_ext i
  where (select internal.caller_bypasses_rls())
    and exists (select 1 from public.tenants t where t.tenant::text = i.billed_prefix)
  union all
  select i.*
  from internal.invoices_ext i
  where not (select internal.caller_bypasses_rls())
    and i.billed_prefix = any ((select internal.caller_admin_tenants())::text[])
) authorized;
comment on view public.invoices_ext is
  'Invoices of the tenants the signed-in user administers (all of them for roles that bypass '
  'RLS). A security barrier: the caller''s own predicates never see other tenants'' rows.';

-- Explicit grants, right under both default-privilege modes (create or replace keeps them, but
-- say so here rather than rely on it).
revoke all on public.invoices_ext from public, anon, authenticated;
grant select on public.invoices_ext to authenticated, service_role;
