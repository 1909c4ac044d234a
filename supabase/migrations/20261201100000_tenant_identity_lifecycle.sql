-- Tenant identity lifecycle: a tenant's customer can be released or replaced (audited, with a
-- reason), a released customer is never linked again, a tenant that holds a customer cannot be
-- deleted, TRUNCATE cannot drop stored IDs, audit rows cannot be forged from a session, and a
-- lost race between two links is a recorded `duplicate` like any other.

alter table internal.stripe_id_audit drop constraint stripe_id_audit_action_check;
alter table internal.stripe_id_audit add constraint stripe_id_audit_action_check
  check (action in ('link', 'conflict', 'duplicate', 'release', 'replace', 'direct_update',
    'tenant_change'));

-- Customers a tenant gave up. Adoption skips them and the link functions refuse them, so a new
-- tenant of the same name never inherits the old tenant's customer (and its cards).
create table internal.released_customers (
  stripe_customer_id text primary key check (stripe_customer_id ~ '^cus_[A-Za-z0-9]+$'),
  tenant text not null,
  released_at timestamptz not null default now(),
  actor text not null,
  reason text not null
);
comment on table internal.released_customers is
  'Stripe customers released from a tenant: never linked to any tenant again.';
create index released_customers_tenant on internal.released_customers (tenant);

-- Trusted audit context: who and why, for the one ID write an ID function is about to make.
-- Only the owner can write it (a session-level setting could be set by anyone), and the ID
-- functions remove their row right after their write, so a later direct UPDATE in the same
-- transaction is audited as direct_update.
create table internal.id_audit_context (
  xact_id xid8 primary key,
  action text not null,
  actor text not null,
  reason text,
  run_id uuid
);
comment on table internal.id_audit_context is
  'Set and cleared by the ID functions around their own write; read by the audit trigger.';

create or replace function internal.set_audit_context(p_action text, p_actor text,
  p_reason text, p_run_id uuid)
returns void
language plpgsql
set search_path = ''
as $$
begin
  delete from internal.id_audit_context where xact_id = pg_catalog.pg_current_xact_id();
  if p_action is not null then
    insert into internal.id_audit_context (xact_id, action, actor, reason, run_id)
    values (pg_catalog.pg_current_xact_id(), p_action, p_actor, p_reason, p_run_id);
  end if;
end;
$$;

-- Security definer so that no API role needs execute on the audit writer; current_setting('role')
-- still names the role the session acts as (SET ROLE), which is whom a direct UPDATE is blamed on.
create or replace function internal.audit_stripe_id_change() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  ctx internal.id_audit_context;
  claims jsonb := nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb;
  acting_role text := coalesce(nullif(pg_catalog.current_setting('role'), 'none'),
    session_user::text);
  old_id text;
  new_id text;
  kind text;
  key text;
begin
  if tg_table_name = 'tenants' then
    kind := 'tenant';
    key := new.tenant;
    new_id := new.stripe_customer_id;
    old_id := case when tg_op = 'UPDATE' then old.stripe_customer_id end;
  else
    kind := case when tg_table_name = 'manual_bills' then 'manual' else 'final' end;
    key := new.id::text;
    new_id := new.stripe_invoice_id;
    old_id := case when tg_op = 'UPDATE' then old.stripe_invoice_id end;
  end if;
  if old_id is not distinct from new_id then
    return null;
  end if;
  select * into ctx from internal.id_audit_context c
  where c.xact_id = pg_catalog.pg_current_xact_id();
  perform internal.insert_id_audit(
    kind, key,
    coalesce(ctx.action, 'direct_update'),
    old_id, new_id,
    coalesce(ctx.actor, pg_catalog.format('role %s (login %s, user %s)', acting_role,
      session_user, coalesce(claims ->> 'sub', '-'))),
    ctx.reason,
    ctx.run_id
  );
  return null;
end;
$$;

-- The bill tenant-change audit runs as its owner too, now that API roles may not call the audit
-- writer; it blames the role the session acts as.
create or replace function internal.audit_bill_tenant_change() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  claims jsonb := nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb;
  acting_role text := coalesce(nullif(pg_catalog.current_setting('role'), 'none'),
    session_user::text);
begin
  if old.tenant is not distinct from new.tenant or new.stripe_invoice_id is null then
    return null;
  end if;
  perform internal.insert_id_audit(
    case when tg_table_name = 'manual_bills' then 'manual' else 'final' end,
    new.id::text, 'tenant_change', new.stripe_invoice_id, new.stripe_invoice_id,
    pg_catalog.format('role %s (login %s, user %s)', acting_role, session_user,
      coalesce(claims ->> 'sub', '-')),
    pg_catalog.format('tenant %s -> %s', old.tenant, new.tenant), null);
  return null;
end;
$$;

-- Links a tenant to its Stripe customer, compare-and-set; a released customer is refused, and
-- a concurrent link of the same customer that commits first makes this one a `duplicate`.
create or replace function internal.link_tenant_customer(
  p_tenant text,
  p_customer_id text,
  p_actor text,
  p_reason text default null,
  p_run_id uuid default null
) returns internal.link_outcome
language plpgsql security definer
set search_path = ''
as $$
declare
  current_id text;
  holder text;
  released internal.released_customers;
begin
  if p_customer_id is null or p_customer_id !~ '^cus_[A-Za-z0-9]+$' then
    raise exception 'customer_id must look like cus_..., got %', coalesce(p_customer_id, 'NULL')
      using errcode = 'invalid_parameter_value', column = 'customer_id';
  end if;
  if coalesce(p_actor, '') = '' then
    raise exception 'actor is required' using errcode = 'invalid_parameter_value', column = 'actor';
  end if;
  select t.stripe_customer_id into current_id from public.tenants t
  where t.tenant = p_tenant for update;
  if not found then
    raise exception 'tenant % does not exist', p_tenant
      using errcode = 'no_data_found', column = 'tenant';
  end if;
  if current_id = p_customer_id then
    return ('unchanged', current_id, null)::internal.link_outcome;
  end if;
  if current_id is not null then
    perform internal.insert_id_audit('tenant', p_tenant, 'conflict', current_id, p_customer_id,
      p_actor, p_reason, p_run_id);
    return ('conflict', current_id,
      pg_catalog.format('tenant %s already has customer %s', p_tenant, current_id)
    )::internal.link_outcome;
  end if;
  select * into released from internal.released_customers r
  where r.stripe_customer_id = p_customer_id;
  if found then
    perform internal.insert_id_audit('tenant', p_tenant, 'duplicate', null, p_customer_id,
      p_actor, p_reason, p_run_id);
    return ('duplicate', null, pg_catalog.format('customer %s was released from tenant %s (%s)',
      p_customer_id, released.tenant, released.reason))::internal.link_outcome;
  end if;
  select t.tenant into holder from public.tenants t where t.stripe_customer_id = p_customer_id;
  if found then
    perform internal.insert_id_audit('tenant', p_tenant, 'duplicate', null, p_customer_id,
      p_actor, p_reason, p_run_id);
    return ('duplicate', null,
      pg_catalog.format('customer %s belongs to tenant %s', p_customer_id, holder)
    )::internal.link_outcome;
  end if;
  begin
    perform internal.set_audit_context('link', p_actor, p_reason, p_run_id);
    update public.tenants set stripe_customer_id = p_customer_id, updated_at = now()
    where tenant = p_tenant;
    perform internal.set_audit_context(null, null, null, null);
  exception when unique_violation then
    perform internal.insert_id_audit('tenant', p_tenant, 'duplicate', null, p_customer_id,
      p_actor, p_reason, p_run_id);
    return ('duplicate', null, pg_catalog.format(
      'customer %s was linked to another tenant concurrently', p_customer_id)
    )::internal.link_outcome;
  end;
  return ('linked', p_customer_id, null)::internal.link_outcome;
end;
$$;

-- Links a bill to its Stripe invoice, compare-and-set (a lost race is a `duplicate`).
create or replace function internal.link_bill_invoice(
  p_bill_kind text,
  p_bill_id bigint,
  p_invoice_id text,
  p_actor text,
  p_reason text default null,
  p_run_id uuid default null
) returns internal.link_outcome
language plpgsql security definer
set search_path = ''
as $$
declare
  current_id text;
  holder record;
begin
  if p_invoice_id is null or p_invoice_id !~ '^in_[A-Za-z0-9]+$' then
    raise exception 'invoice_id must look like in_..., got %', coalesce(p_invoice_id, 'NULL')
      using errcode = 'invalid_parameter_value', column = 'invoice_id';
  end if;
  if coalesce(p_actor, '') = '' then
    raise exception 'actor is required' using errcode = 'invalid_parameter_value', column = 'actor';
  end if;
  current_id := internal.lock_bill(p_bill_kind, p_bill_id);
  if current_id = p_invoice_id then
    return ('unchanged', current_id, null)::internal.link_outcome;
  end if;
  if current_id is not null then
    perform internal.insert_id_audit(p_bill_kind, p_bill_id::text, 'conflict', current_id,
      p_invoice_id, p_actor, p_reason, p_run_id);
    return ('conflict', current_id,
      pg_catalog.format('bill %s:%s already has invoice %s', p_bill_kind, p_bill_id, current_id)
    )::internal.link_outcome;
  end if;
  select l.bill_kind, l.bill_id into holder
  from internal.bill_invoice_links l where l.stripe_invoice_id = p_invoice_id;
  if found then
    perform internal.insert_id_audit(p_bill_kind, p_bill_id::text, 'duplicate', null,
      p_invoice_id, p_actor, p_reason, p_run_id);
    return ('duplicate', null, pg_catalog.format('invoice %s belongs to bill %s:%s', p_invoice_id,
      holder.bill_kind, holder.bill_id))::internal.link_outcome;
  end if;
  begin
    perform internal.set_audit_context('link', p_actor, p_reason, p_run_id);
    perform internal.write_bill_invoice(p_bill_kind, p_bill_id, p_invoice_id);
    perform internal.set_audit_context(null, null, null, null);
  exception when unique_violation then
    perform internal.insert_id_audit(p_bill_kind, p_bill_id::text, 'duplicate', null,
      p_invoice_id, p_actor, p_reason, p_run_id);
    return ('duplicate', null, pg_catalog.format(
      'invoice %s was linked to another bill concurrently', p_invoice_id))::internal.link_outcome;
  end;
  return ('linked', p_invoice_id, null)::internal.link_outcome;
end;
$$;

-- Forgets a tenant's customer (deleted in Stripe, or the wrong one) so that a new one can be
-- linked or created. Only when the caller names the customer currently stored, and says why.
create function internal.release_tenant_customer(
  p_tenant text,
  p_expected_customer_id text,
  p_actor text,
  p_reason text
) returns internal.link_outcome
language plpgsql security definer
set search_path = ''
as $$
declare
  current_id text;
begin
  if coalesce(pg_catalog.btrim(p_reason), '') = '' then
    raise exception 'reason is required to release a customer'
      using errcode = 'invalid_parameter_value', column = 'reason';
  end if;
  if coalesce(p_actor, '') = '' then
    raise exception 'actor is required' using errcode = 'invalid_parameter_value', column = 'actor';
  end if;
  select t.stripe_customer_id into current_id from public.tenants t
  where t.tenant = p_tenant for update;
  if not found then
    raise exception 'tenant % does not exist', p_tenant
      using errcode = 'no_data_found', column = 'tenant';
  end if;
  if current_id is null then
    return ('unchanged', null, 'no customer is stored')::internal.link_outcome;
  end if;
  if current_id is distinct from p_expected_customer_id then
    perform internal.insert_id_audit('tenant', p_tenant, 'conflict', current_id, null, p_actor,
      'release refused, expected ' || coalesce(p_expected_customer_id, 'NULL') || ': '
      || p_reason, null);
    return ('conflict', current_id, pg_catalog.format('tenant %s has customer %s, not %s',
      p_tenant, current_id, coalesce(p_expected_customer_id, 'NULL')))::internal.link_outcome;
  end if;
  insert into internal.released_customers (stripe_customer_id, tenant, actor, reason)
  values (current_id, p_tenant, p_actor, p_reason);
  perform internal.set_audit_context('release', p_actor, p_reason, null);
  update public.tenants set stripe_customer_id = null, updated_at = now()
  where tenant = p_tenant;
  perform internal.set_audit_context(null, null, null, null);
  return ('released', null, null)::internal.link_outcome;
end;
$$;
comment on function internal.release_tenant_customer(text, text, text, text) is
  'Audited operator action: forgets a tenant''s customer; that customer is never linked again.';

-- Swaps a tenant's customer for another in one step: compare-and-set on the old ID; the old
-- customer is released for good, the new one must be free.
create function internal.replace_tenant_customer(
  p_tenant text,
  p_old_customer_id text,
  p_new_customer_id text,
  p_actor text,
  p_reason text
) returns internal.link_outcome
language plpgsql security definer
set search_path = ''
as $$
declare
  current_id text;
  holder text;
begin
  if p_new_customer_id is null or p_new_customer_id !~ '^cus_[A-Za-z0-9]+$' then
    raise exception 'customer_id must look like cus_..., got %',
      coalesce(p_new_customer_id, 'NULL')
      using errcode = 'invalid_parameter_value', column = 'customer_id';
  end if;
  if coalesce(pg_catalog.btrim(p_reason), '') = '' then
    raise exception 'reason is required to replace a customer'
      using errcode = 'invalid_parameter_value', column = 'reason';
  end if;
  if coalesce(p_actor, '') = '' then
    raise exception 'actor is required' using errcode = 'invalid_parameter_value', column = 'actor';
  end if;
  select t.stripe_customer_id into current_id from public.tenants t
  where t.tenant = p_tenant for update;
  if not found then
    raise exception 'tenant % does not exist', p_tenant
      using errcode = 'no_data_found', column = 'tenant';
  end if;
  if current_id = p_new_customer_id then
    return ('unchanged', current_id, null)::internal.link_outcome;
  end if;
  if current_id is distinct from p_old_customer_id then
    perform internal.insert_id_audit('tenant', p_tenant, 'conflict', current_id,
      p_new_customer_id, p_actor, 'replace refused, expected '
      || coalesce(p_old_customer_id, 'NULL') || ': ' || p_reason, null);
    return ('conflict', current_id, pg_catalog.format('tenant %s has customer %s, not %s',
      p_tenant, coalesce(current_id, 'NULL'), coalesce(p_old_customer_id, 'NULL'))
    )::internal.link_outcome;
  end if;
  if exists (select 1 from internal.released_customers r
             where r.stripe_customer_id = p_new_customer_id) then
    perform internal.insert_id_audit('tenant', p_tenant, 'duplicate', current_id,
      p_new_customer_id, p_actor, p_reason, null);
    return ('duplicate', current_id, pg_catalog.format('customer %s was released before',
      p_new_customer_id))::internal.link_outcome;
  end if;
  select t.tenant into holder from public.tenants t where t.stripe_customer_id = p_new_customer_id;
  if found then
    perform internal.insert_id_audit('tenant', p_tenant, 'duplicate', current_id,
      p_new_customer_id, p_actor, p_reason, null);
    return ('duplicate', current_id, pg_catalog.format('customer %s belongs to tenant %s',
      p_new_customer_id, holder))::internal.link_outcome;
  end if;
  begin
    insert into internal.released_customers (stripe_customer_id, tenant, actor, reason)
    values (current_id, p_tenant, p_actor, 'replaced by ' || p_new_customer_id || ': ' || p_reason);
    perform internal.set_audit_context('replace', p_actor, p_reason, null);
    update public.tenants set stripe_customer_id = p_new_customer_id, updated_at = now()
    where tenant = p_tenant;
    perform internal.set_audit_context(null, null, null, null);
  exception when unique_violation then
    perform internal.insert_id_audit('tenant', p_tenant, 'duplicate', current_id,
      p_new_customer_id, p_actor, p_reason, null);
    return ('duplicate', current_id, pg_catalog.format(
      'customer %s was linked to another tenant concurrently', p_new_customer_id)
    )::internal.link_outcome;
  end;
  return ('replaced', p_new_customer_id, null)::internal.link_outcome;
end;
$$;
comment on function internal.replace_tenant_customer(text, text, text, text, text) is
  'Audited swap of a tenant''s customer, only from the expected old ID; the old one is retired.';

-- How many customers this tenant name has released: the customer-create idempotency key carries
-- it, so a re-created tenant never replays the create that made the old tenant's customer.
create function internal.tenant_customer_generation(p_tenant text) returns integer
language sql stable security definer
set search_path = ''
as $$
  select pg_catalog.count(*)::integer from internal.released_customers r where r.tenant = p_tenant;
$$;

-- A tenant that holds a customer is part of the identity trail: refuse to delete it.
create function internal.refuse_delete_tenant_with_customer() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if old.stripe_customer_id is not null then
    raise exception 'tenant % has Stripe customer %; it cannot be deleted', old.tenant,
      old.stripe_customer_id
      using errcode = 'restrict_violation',
        hint = 'Release the customer with internal.release_tenant_customer() '
          || '(deno task billing release --tenant), then delete the tenant.';
  end if;
  return old;
end;
$$;
create trigger refuse_delete_tenant_with_customer
  before delete on public.tenants
  for each row execute function internal.refuse_delete_tenant_with_customer();

-- TRUNCATE fires no row triggers, so it would drop IDs without an audit row: refuse it while
-- any ID is stored, and the audit trail always.
create function internal.refuse_truncate_stored_ids() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  holds_ids boolean;
begin
  holds_ids := case tg_table_name
    when 'tenants' then exists (
      select 1 from public.tenants where stripe_customer_id is not null)
    when 'manual_bills' then exists (
      select 1 from internal.manual_bills where stripe_invoice_id is not null)
    when 'billing_historicals' then exists (
      select 1 from internal.billing_historicals where stripe_invoice_id is not null)
    else true
  end;
  if holds_ids then
    raise exception '%.% holds Stripe IDs; TRUNCATE would drop them without an audit row',
      tg_table_schema, tg_table_name
      using errcode = 'restrict_violation',
        hint = 'Release the IDs through the ID functions, then delete the rows.';
  end if;
  return null;
end;
$$;
create trigger refuse_truncate_stored_ids before truncate on public.tenants
  for each statement execute function internal.refuse_truncate_stored_ids();
create trigger refuse_truncate_stored_ids before truncate on internal.manual_bills
  for each statement execute function internal.refuse_truncate_stored_ids();
create trigger refuse_truncate_stored_ids before truncate on internal.billing_historicals
  for each statement execute function internal.refuse_truncate_stored_ids();
create trigger refuse_truncate_stored_ids before truncate on internal.bill_invoice_links
  for each statement execute function internal.refuse_truncate_stored_ids();
create trigger refuse_truncate_stored_ids before truncate on internal.stripe_id_audit
  for each statement execute function internal.refuse_truncate_stored_ids();
create trigger refuse_truncate_stored_ids before truncate on internal.released_customers
  for each statement execute function internal.refuse_truncate_stored_ids();

revoke truncate on public.tenants, internal.manual_bills, internal.billing_historicals,
  internal.bill_invoice_links, internal.stripe_id_audit
  from public, anon, authenticated, service_role;

revoke all on internal.released_customers, internal.id_audit_context
  from public, anon, authenticated, service_role;
grant select on internal.released_customers to service_role;
revoke all on function internal.release_tenant_customer(text, text, text, text),
  internal.replace_tenant_customer(text, text, text, text, text),
  internal.tenant_customer_generation(text),
  internal.refuse_delete_tenant_with_customer(), internal.refuse_truncate_stored_ids(),
  internal.audit_bill_tenant_change()
  from public, anon, authenticated;
grant execute on function internal.release_tenant_customer(text, text, text, text),
  internal.replace_tenant_customer(text, text, text, text, text),
  internal.tenant_customer_generation(text)
  to service_role;
-- Audit rows come only from the ID functions and the (security definer) trigger.
revoke all on function internal.insert_id_audit(text, text, text, text, text, text, text, uuid),
  internal.set_audit_context(text, text, text, uuid)
  from public, anon, authenticated, service_role;
