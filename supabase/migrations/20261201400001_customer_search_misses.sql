-- Tenants whose customer Search found nothing: the dashboard's read path (payment methods of a
-- tenant that has no customer, e.g. every free-tier tenant) answers "none" from here instead of
-- a Search per page load. Storing a customer ID supersedes the row (stored IDs win).

create table internal.stripe_customer_search_misses (
  tenant text primary key,
  searched_at timestamptz not null default now(),
  actor text not null
);
comment on table internal.stripe_customer_search_misses is
  'Tenants a customer Search found no Stripe customer for (read-path cache; stored IDs win).';

-- Records a miss for a tenant that exists and still has no stored customer.
create function internal.record_customer_search_miss(p_tenant text, p_actor text) returns void
language sql security definer
set search_path = ''
as $$
  insert into internal.stripe_customer_search_misses (tenant, actor)
  select t.tenant::text, coalesce(p_actor, 'unknown')
  from public.tenants t
  where t.tenant::text = p_tenant and t.stripe_customer_id is null
  on conflict (tenant) do update set searched_at = now(), actor = excluded.actor
$$;
comment on function internal.record_customer_search_miss(text, text) is
  'Remembers that a customer Search found nothing for the tenant.';

-- Whether a miss is recorded for a tenant that still has no stored customer.
create function internal.customer_search_missed(p_tenant text) returns boolean
language sql stable security definer
set search_path = ''
as $$
  select exists (
    select 1 from internal.stripe_customer_search_misses m
    join public.tenants t on t.tenant::text = m.tenant
    where m.tenant = p_tenant and t.stripe_customer_id is null)
$$;
comment on function internal.customer_search_missed(text) is
  'True when a customer Search found nothing for the tenant and no customer is stored since.';

revoke all on internal.stripe_customer_search_misses from public, anon, authenticated, service_role;
grant select on internal.stripe_customer_search_misses to service_role;
revoke all on function internal.record_customer_search_miss(text, text),
  internal.customer_search_missed(text)
  from public, anon, authenticated, service_role;
grant execute on function internal.record_customer_search_miss(text, text),
  internal.customer_search_missed(text)
  to service_role;
