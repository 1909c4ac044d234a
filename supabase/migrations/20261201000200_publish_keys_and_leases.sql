-- Money-exact publishing, the database side:
-- * an installation ID, made once per database, named in every Stripe idempotency key and in the
--   metadata of what this installation creates (a reset database or a staging copy sharing the
--   Stripe account never replays or adopts another installation's objects);
-- * lease extension, so a worker keeps its item while a slow Stripe call is in flight and stops
--   writing the moment it cannot;
-- * an audit row when a bill that holds an invoice moves to another tenant.

create table internal.installation (
  id uuid primary key default extensions.gen_random_uuid(),
  created_at timestamptz not null default now(),
  singleton boolean not null default true unique check (singleton)
);
comment on table internal.installation is
  'This database''s identity towards Stripe: one row, made by this migration, never changed.';
insert into internal.installation default values;
revoke all on table internal.installation from public, anon, authenticated, service_role;

create function internal.installation_id() returns uuid
language sql stable security definer
set search_path = ''
as $$
  select i.id from internal.installation i
$$;
comment on function internal.installation_id() is
  'The installation ID named in idempotency keys and in estuary.dev/installation metadata.';
revoke all on function internal.installation_id() from public, anon, authenticated;
grant execute on function internal.installation_id() to service_role;

-- Extends p_worker's lease on an item it holds (by the run's lease_seconds); raises
-- lock_not_available when it does not hold it or the lease already ran out, writing nothing.
create function internal.extend_publish_item_lease(
  p_run_id uuid,
  p_item_no integer,
  p_worker text,
  p_now timestamptz default now()
) returns timestamptz
language plpgsql security definer
set search_path = ''
as $$
declare
  expires timestamptz;
begin
  update internal.publish_run_items i
  set lease_expires_at = p_now + make_interval(secs => (r.options ->> 'lease_seconds')::numeric),
    updated_at = p_now
  from internal.publish_runs r
  where r.id = i.run_id and i.run_id = p_run_id and i.item_no = p_item_no
    and i.state = 'running' and i.lease_owner = p_worker and i.lease_expires_at >= p_now
  returning i.lease_expires_at into expires;
  if expires is null then
    raise exception 'worker % does not hold item %/%', p_worker, p_run_id, p_item_no
      using errcode = 'lock_not_available', column = 'lease_owner';
  end if;
  return expires;
end;
$$;
comment on function internal.extend_publish_item_lease(uuid, integer, text, timestamptz) is
  'Keeps a worker''s lease on an item while it works; fails once the lease is gone.';
revoke all on function internal.extend_publish_item_lease(uuid, integer, text, timestamptz)
  from public, anon, authenticated;
grant execute on function internal.extend_publish_item_lease(uuid, integer, text, timestamptz)
  to service_role;

-- A bill that holds an invoice moving to another tenant is an identity change: audited.
alter table internal.stripe_id_audit drop constraint stripe_id_audit_action_check;
alter table internal.stripe_id_audit add constraint stripe_id_audit_action_check check (action in
  ('link', 'conflict', 'duplicate', 'release', 'replace', 'direct_update', 'tenant_change'));

create function internal.audit_bill_tenant_change() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  claims jsonb := nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb;
begin
  if old.tenant is not distinct from new.tenant or new.stripe_invoice_id is null then
    return null;
  end if;
  perform internal.insert_id_audit(
    case when tg_table_name = 'manual_bills' then 'manual' else 'final' end,
    new.id::text, 'tenant_change', new.stripe_invoice_id, new.stripe_invoice_id,
    pg_catalog.format('role %s (login %s, user %s)', current_user, session_user,
      coalesce(claims ->> 'sub', '-')),
    pg_catalog.format('tenant %s -> %s', old.tenant, new.tenant), null);
  return null;
end;
$$;

create trigger audit_bill_tenant_change
  after update of tenant on internal.manual_bills
  for each row execute function internal.audit_bill_tenant_change();
create trigger audit_bill_tenant_change
  after update of tenant on internal.billing_historicals
  for each row execute function internal.audit_bill_tenant_change();

-- Writing an invoice ID re-checks billing_historicals' billed_month_is_month, which truncates in
-- the session's zone: in a database whose default zone is not UTC every link of a usage bill
-- (billed_month at midnight UTC) failed. The write runs in UTC.
alter function internal.write_bill_invoice(text, bigint, text) set timezone to 'UTC';
