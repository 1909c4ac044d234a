-- Store Stripe identity instead of re-finding it by metadata search: the customer of each tenant
-- and the invoice of each bill, written only through compare-and-set functions, audited, and
-- never silently replaced.

-- Stable surrogate keys: a bill's natural key changes when its dates are edited.
alter table internal.manual_bills add column id bigint generated always as identity;
alter table internal.manual_bills add constraint manual_bills_id_key unique (id);
alter table internal.billing_historicals add column id bigint generated always as identity;
alter table internal.billing_historicals add constraint billing_historicals_pkey primary key (id);

alter table public.tenants add column stripe_customer_id text;
alter table public.tenants add constraint tenants_stripe_customer_id_format
  check (stripe_customer_id ~ '^cus_[A-Za-z0-9]+$');
alter table public.tenants add constraint tenants_stripe_customer_id_key
  unique (stripe_customer_id);

alter table internal.manual_bills add column stripe_invoice_id text;
alter table internal.manual_bills add constraint manual_bills_stripe_invoice_id_format
  check (stripe_invoice_id ~ '^in_[A-Za-z0-9]+$');
alter table internal.manual_bills add constraint manual_bills_stripe_invoice_id_key
  unique (stripe_invoice_id);

alter table internal.billing_historicals add column stripe_invoice_id text;
alter table internal.billing_historicals add constraint billing_historicals_stripe_invoice_id_format
  check (stripe_invoice_id ~ '^in_[A-Za-z0-9]+$');
alter table internal.billing_historicals add constraint billing_historicals_stripe_invoice_id_key
  unique (stripe_invoice_id);

comment on column public.tenants.stripe_customer_id is
  'The tenant''s Stripe customer. Written by internal.link_tenant_customer only.';
comment on column internal.manual_bills.stripe_invoice_id is
  'The bill''s Stripe invoice. Written by internal.link_bill_invoice only.';
comment on column internal.billing_historicals.stripe_invoice_id is
  'The bill''s Stripe invoice. Written by internal.link_bill_invoice only.';

-- An invoice belongs to one bill across both bill tables: each stored ID is registered here.
create table internal.bill_invoice_links (
  stripe_invoice_id text primary key,
  bill_kind text not null check (bill_kind in ('final', 'manual')),
  bill_id bigint not null,
  unique (bill_kind, bill_id)
);
comment on table internal.bill_invoice_links is
  'Registry that makes a Stripe invoice ID unique across manual and final bills.';

-- Every change of a stored Stripe ID, and every refused one.
create table internal.stripe_id_audit (
  id bigint generated always as identity primary key,
  at timestamptz not null default now(),
  object_kind text not null check (object_kind in ('tenant', 'final', 'manual')),
  object_key text not null,
  action text not null check (action in
    ('link', 'conflict', 'duplicate', 'release', 'replace', 'direct_update')),
  old_id text,
  new_id text,
  actor text not null,
  reason text,
  run_id uuid
);
comment on table internal.stripe_id_audit is
  'Who linked, released, replaced or edited which Stripe ID, when and why; and refused links.';
create index stripe_id_audit_object on internal.stripe_id_audit (object_kind, object_key, at);

-- The link functions say who and why through this transaction-local setting, so the audit
-- trigger can tell their writes from a direct UPDATE.
create function internal.set_audit_context(p_action text, p_actor text, p_reason text, p_run_id uuid)
returns void
language sql
set search_path = ''
as $$
  select pg_catalog.set_config('billing.audit_context', pg_catalog.jsonb_build_object(
    'action', p_action, 'actor', p_actor, 'reason', p_reason, 'run_id', p_run_id)::text, true);
$$;

-- Writes one audit row; security definer so any role allowed to change an ID can be audited.
create function internal.insert_id_audit(
  p_kind text, p_key text, p_action text, p_old_id text, p_new_id text, p_actor text,
  p_reason text, p_run_id uuid
) returns void
language sql security definer
set search_path = ''
as $$
  insert into internal.stripe_id_audit (object_kind, object_key, action, old_id, new_id, actor,
    reason, run_id)
  values (p_kind, p_key, p_action, p_old_id, p_new_id, p_actor, p_reason, p_run_id);
$$;

-- Audits every change of a stored ID. Runs as the invoker, so current_user names whoever made a
-- direct UPDATE; the link functions supply actor and reason through billing.audit_context.
create function internal.audit_stripe_id_change() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  ctx jsonb := nullif(pg_catalog.current_setting('billing.audit_context', true), '')::jsonb;
  claims jsonb := nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb;
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
  perform internal.insert_id_audit(
    kind, key,
    coalesce(ctx ->> 'action', 'direct_update'),
    old_id, new_id,
    coalesce(ctx ->> 'actor', pg_catalog.format('role %s (login %s, user %s)', current_user,
      session_user, coalesce(claims ->> 'sub', '-'))),
    ctx ->> 'reason',
    (ctx ->> 'run_id')::uuid
  );
  return null;
end;
$$;

create trigger audit_stripe_customer_id
  after insert or update of stripe_customer_id on public.tenants
  for each row execute function internal.audit_stripe_id_change();
create trigger audit_stripe_invoice_id
  after insert or update of stripe_invoice_id on internal.manual_bills
  for each row execute function internal.audit_stripe_id_change();
create trigger audit_stripe_invoice_id
  after insert or update of stripe_invoice_id on internal.billing_historicals
  for each row execute function internal.audit_stripe_id_change();

-- Keeps internal.bill_invoice_links in step with both bill tables.
create function internal.register_bill_invoice() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  kind text := case when tg_table_name = 'manual_bills' then 'manual' else 'final' end;
  holder record;
begin
  if tg_op = 'UPDATE' and old.stripe_invoice_id is not distinct from new.stripe_invoice_id then
    return new;
  end if;
  if tg_op = 'UPDATE' and old.stripe_invoice_id is not null then
    delete from internal.bill_invoice_links where stripe_invoice_id = old.stripe_invoice_id;
  end if;
  if new.stripe_invoice_id is not null then
    select l.bill_kind, l.bill_id into holder
    from internal.bill_invoice_links l where l.stripe_invoice_id = new.stripe_invoice_id;
    if found then
      raise exception 'Stripe invoice % is already linked to bill %:%',
        new.stripe_invoice_id, holder.bill_kind, holder.bill_id
        using errcode = 'unique_violation', column = 'stripe_invoice_id';
    end if;
    insert into internal.bill_invoice_links (stripe_invoice_id, bill_kind, bill_id)
    values (new.stripe_invoice_id, kind, new.id);
  end if;
  return new;
end;
$$;

create trigger register_bill_invoice
  before insert or update of stripe_invoice_id on internal.manual_bills
  for each row execute function internal.register_bill_invoice();
create trigger register_bill_invoice
  before insert or update of stripe_invoice_id on internal.billing_historicals
  for each row execute function internal.register_bill_invoice();

-- A bill that has an invoice is part of the money trail: refuse to delete it.
create function internal.refuse_delete_invoiced_bill() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if old.stripe_invoice_id is not null then
    raise exception 'bill %:% has Stripe invoice %; it cannot be deleted',
      case when tg_table_name = 'manual_bills' then 'manual' else 'final' end, old.id,
      old.stripe_invoice_id
      using errcode = 'restrict_violation',
        hint = 'Void or delete the invoice in Stripe, release it with '
          || 'internal.release_bill_invoice() (deno task billing release), then delete the bill.';
  end if;
  return old;
end;
$$;

create trigger refuse_delete_invoiced_bill
  before delete on internal.manual_bills
  for each row execute function internal.refuse_delete_invoiced_bill();
create trigger refuse_delete_invoiced_bill
  before delete on internal.billing_historicals
  for each row execute function internal.refuse_delete_invoiced_bill();

-- Outcome of a compare-and-set link: linked (was empty), unchanged (same ID already stored),
-- conflict (another ID is stored; nothing written), duplicate (the ID belongs to another object).
create type internal.link_outcome as (outcome text, stored_id text, detail text);

-- Links a tenant to its Stripe customer, compare-and-set.
create function internal.link_tenant_customer(
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
  select t.tenant into holder from public.tenants t where t.stripe_customer_id = p_customer_id;
  if found then
    perform internal.insert_id_audit('tenant', p_tenant, 'duplicate', null, p_customer_id,
      p_actor, p_reason, p_run_id);
    return ('duplicate', null,
      pg_catalog.format('customer %s belongs to tenant %s', p_customer_id, holder)
    )::internal.link_outcome;
  end if;
  perform internal.set_audit_context('link', p_actor, p_reason, p_run_id);
  update public.tenants set stripe_customer_id = p_customer_id, updated_at = now()
  where tenant = p_tenant;
  perform internal.set_audit_context(null, null, null, null);
  return ('linked', p_customer_id, null)::internal.link_outcome;
end;
$$;
comment on function internal.link_tenant_customer(text, text, text, text, uuid) is
  'Stores a tenant''s Stripe customer unless another is stored; audits links and conflicts.';

-- Locks one bill row and returns its stored invoice ID; raises when the bill does not exist.
create function internal.lock_bill(p_bill_kind text, p_bill_id bigint)
returns text
language plpgsql
set search_path = ''
as $$
declare
  current_id text;
begin
  if p_bill_kind = 'manual' then
    select b.stripe_invoice_id into current_id from internal.manual_bills b
    where b.id = p_bill_id for update;
  elsif p_bill_kind = 'final' then
    select b.stripe_invoice_id into current_id from internal.billing_historicals b
    where b.id = p_bill_id for update;
  else
    raise exception 'bill_kind must be final or manual, got %', coalesce(p_bill_kind, 'NULL')
      using errcode = 'invalid_parameter_value', column = 'bill_kind';
  end if;
  if not found then
    raise exception 'bill %:% does not exist', p_bill_kind, p_bill_id
      using errcode = 'no_data_found', column = 'bill_id';
  end if;
  return current_id;
end;
$$;

-- Writes a bill's invoice column (callers have locked the row and set the audit context).
create function internal.write_bill_invoice(p_bill_kind text, p_bill_id bigint, p_invoice_id text)
returns void
language plpgsql
set search_path = ''
as $$
begin
  if p_bill_kind = 'manual' then
    update internal.manual_bills set stripe_invoice_id = p_invoice_id where id = p_bill_id;
  else
    update internal.billing_historicals set stripe_invoice_id = p_invoice_id where id = p_bill_id;
  end if;
end;
$$;

-- Links a bill to its Stripe invoice, compare-and-set.
create function internal.link_bill_invoice(
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
  perform internal.set_audit_context('link', p_actor, p_reason, p_run_id);
  perform internal.write_bill_invoice(p_bill_kind, p_bill_id, p_invoice_id);
  perform internal.set_audit_context(null, null, null, null);
  return ('linked', p_invoice_id, null)::internal.link_outcome;
end;
$$;
comment on function internal.link_bill_invoice(text, bigint, text, text, text, uuid) is
  'Stores a bill''s Stripe invoice unless another is stored; audits links and conflicts.';

-- Forgets a bill's invoice so the bill can be issued again (after its invoice was voided or
-- deleted). Only when the caller names the invoice currently stored, and says why.
create function internal.release_bill_invoice(
  p_bill_kind text,
  p_bill_id bigint,
  p_expected_invoice_id text,
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
    raise exception 'reason is required to release an invoice'
      using errcode = 'invalid_parameter_value', column = 'reason';
  end if;
  if coalesce(p_actor, '') = '' then
    raise exception 'actor is required' using errcode = 'invalid_parameter_value', column = 'actor';
  end if;
  current_id := internal.lock_bill(p_bill_kind, p_bill_id);
  if current_id is null then
    return ('unchanged', null, 'no invoice is stored')::internal.link_outcome;
  end if;
  if current_id is distinct from p_expected_invoice_id then
    perform internal.insert_id_audit(p_bill_kind, p_bill_id::text, 'conflict', current_id, null,
      p_actor, 'release refused, expected ' || coalesce(p_expected_invoice_id, 'NULL') || ': '
      || p_reason, null);
    return ('conflict', current_id, pg_catalog.format('bill %s:%s has invoice %s, not %s',
      p_bill_kind, p_bill_id, current_id, coalesce(p_expected_invoice_id, 'NULL'))
    )::internal.link_outcome;
  end if;
  perform internal.set_audit_context('release', p_actor, p_reason, null);
  perform internal.write_bill_invoice(p_bill_kind, p_bill_id, null);
  perform internal.set_audit_context(null, null, null, null);
  return ('released', null, null)::internal.link_outcome;
end;
$$;
comment on function internal.release_bill_invoice(text, bigint, text, text, text) is
  'Audited operator action: forgets a bill''s invoice so the bill may be reissued.';

-- Replaces a bill's invoice with its successor (recreate_existing): compare-and-set on the old ID.
create function internal.replace_bill_invoice(
  p_bill_kind text,
  p_bill_id bigint,
  p_old_invoice_id text,
  p_new_invoice_id text,
  p_actor text,
  p_reason text,
  p_run_id uuid default null
) returns internal.link_outcome
language plpgsql security definer
set search_path = ''
as $$
declare
  current_id text;
begin
  if p_new_invoice_id is null or p_new_invoice_id !~ '^in_[A-Za-z0-9]+$' then
    raise exception 'invoice_id must look like in_..., got %', coalesce(p_new_invoice_id, 'NULL')
      using errcode = 'invalid_parameter_value', column = 'invoice_id';
  end if;
  if coalesce(pg_catalog.btrim(p_reason), '') = '' then
    raise exception 'reason is required to replace an invoice'
      using errcode = 'invalid_parameter_value', column = 'reason';
  end if;
  current_id := internal.lock_bill(p_bill_kind, p_bill_id);
  if current_id = p_new_invoice_id then
    return ('unchanged', current_id, null)::internal.link_outcome;
  end if;
  if current_id is distinct from p_old_invoice_id then
    perform internal.insert_id_audit(p_bill_kind, p_bill_id::text, 'conflict', current_id,
      p_new_invoice_id, p_actor, 'replace refused, expected ' || coalesce(p_old_invoice_id, 'NULL')
      || ': ' || p_reason, p_run_id);
    return ('conflict', current_id, pg_catalog.format('bill %s:%s has invoice %s, not %s',
      p_bill_kind, p_bill_id, current_id, coalesce(p_old_invoice_id, 'NULL'))
    )::internal.link_outcome;
  end if;
  perform internal.set_audit_context('replace', p_actor, p_reason, p_run_id);
  perform internal.write_bill_invoice(p_bill_kind, p_bill_id, p_new_invoice_id);
  perform internal.set_audit_context(null, null, null, null);
  return ('replaced', p_new_invoice_id, null)::internal.link_outcome;
end;
$$;
comment on function internal.replace_bill_invoice(text, bigint, text, text, text, text, uuid) is
  'Audited swap of a bill''s invoice for its replacement, only from the expected old ID.';

-- Customer IDs stay server-side: signed-in users may read every tenant column but this one.
revoke select on public.tenants from anon, authenticated;
grant select (id, tenant, detail, created_at, updated_at, tasks_quota, collections_quota,
  data_tiers, usage_tiers, recurring_usd_cents, trial_start, payment_provider, billing_email,
  billing_name, billing_address, hide_preview) on public.tenants to authenticated;

-- invoices_ext gains the stored invoice ID as an appended column.
create or replace view internal.invoices_ext as
select
  date_trunc('month', h.billed_month)::date as date_start,
  (date_trunc('month', h.billed_month) + interval '1 month' - interval '1 day')::date as date_end,
  h.tenant::text as billed_prefix,
  coalesce(nullif(h.report -> 'line_items', 'null'), '[]'::jsonb) as line_items,
  coalesce(nullif(h.report -> 'subtotal', 'null'), '0')::integer as subtotal,
  h.report as extra,
  'final'::text as invoice_type,
  h.stripe_invoice_id
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
  'manual'::text as invoice_type,
  m.stripe_invoice_id
from internal.manual_bills m;

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

-- The ID functions are for the service side only.
revoke all on function internal.set_audit_context(text, text, text, uuid),
  internal.insert_id_audit(text, text, text, text, text, text, text, uuid),
  internal.audit_stripe_id_change(), internal.register_bill_invoice(),
  internal.refuse_delete_invoiced_bill(), internal.lock_bill(text, bigint),
  internal.write_bill_invoice(text, bigint, text),
  internal.link_tenant_customer(text, text, text, text, uuid),
  internal.link_bill_invoice(text, bigint, text, text, text, uuid),
  internal.release_bill_invoice(text, bigint, text, text, text),
  internal.replace_bill_invoice(text, bigint, text, text, text, text, uuid)
  from public, anon, authenticated;
grant execute on function internal.link_tenant_customer(text, text, text, text, uuid),
  internal.link_bill_invoice(text, bigint, text, text, text, uuid),
  internal.release_bill_invoice(text, bigint, text, text, text),
  internal.replace_bill_invoice(text, bigint, text, text, text, text, uuid)
  to service_role;
-- Direct UPDATEs by the service side must still be able to write their audit row.
grant execute on function internal.insert_id_audit(text, text, text, text, text, text, text, uuid)
  to service_role;
revoke all on internal.bill_invoice_links, internal.stripe_id_audit
  from public, anon, authenticated;
grant select on internal.bill_invoice_links, internal.stripe_id_audit to service_role;
