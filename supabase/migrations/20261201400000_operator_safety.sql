-- Operator safety: the Stripe account this installation is bound to, run results that tell
-- warned from done, paged run items, and the tenant check for --tenants.

-- One row: the Stripe account (and mode) every command and function must be talking to. A
-- wrong key or mode answers 404 for every stored ID, which must never read as "deleted".
create table internal.stripe_account_binding (
  singleton boolean primary key default true,
  account_id text not null,
  livemode boolean not null,
  bound_at timestamptz not null default now(),
  bound_by text not null,
  constraint stripe_account_binding_one_row check (singleton),
  constraint stripe_account_binding_account_format check (account_id ~ '^acct_[A-Za-z0-9]+$')
);
comment on table internal.stripe_account_binding is
  'The Stripe account and mode this database publishes to; recorded on first use, then checked.';

-- Every move of the binding to another account or mode: who, when, from what, why.
create table internal.stripe_account_rebinds (
  id bigint generated always as identity primary key,
  at timestamptz not null default now(),
  old_account_id text not null,
  old_livemode boolean not null,
  new_account_id text not null,
  new_livemode boolean not null,
  actor text not null,
  reason text not null
);
comment on table internal.stripe_account_rebinds is
  'History of deliberate moves of the Stripe account binding.';

-- Binds on first use; afterwards says whether the given account and mode are the bound ones.
-- Returns {outcome: bound | ok | mismatch, account_id, livemode, bound_at, bound_by} where the
-- account fields are the bound ones (so a mismatch message can name both).
create function internal.check_stripe_account(
  p_account_id text,
  p_livemode boolean,
  p_actor text
) returns jsonb
language plpgsql security definer
set search_path = ''
as $$
declare
  bound internal.stripe_account_binding;
  outcome text;
begin
  if p_account_id is null or p_account_id !~ '^acct_[A-Za-z0-9]+$' then
    raise exception 'account_id must look like acct_..., got %', coalesce(p_account_id, 'NULL')
      using errcode = 'invalid_parameter_value', column = 'account_id';
  end if;
  if p_livemode is null then
    raise exception 'livemode is required' using errcode = 'invalid_parameter_value',
      column = 'livemode';
  end if;
  if coalesce(p_actor, '') = '' then
    raise exception 'actor is required' using errcode = 'invalid_parameter_value', column = 'actor';
  end if;
  insert into internal.stripe_account_binding (account_id, livemode, bound_by)
  values (p_account_id, p_livemode, p_actor)
  on conflict (singleton) do nothing;
  outcome := case when found then 'bound' end;
  select * into bound from internal.stripe_account_binding b where b.singleton;
  if outcome is null then
    outcome := case when bound.account_id = p_account_id and bound.livemode = p_livemode
      then 'ok' else 'mismatch' end;
  end if;
  return jsonb_build_object('outcome', outcome, 'account_id', bound.account_id,
    'livemode', bound.livemode, 'bound_at', bound.bound_at, 'bound_by', bound.bound_by);
end;
$$;
comment on function internal.check_stripe_account(text, boolean, text) is
  'Records the Stripe account on first use; then ok or mismatch against the recorded one.';

-- Moving the installation to another account or mode (e.g. test mode to live at go-live) is a
-- deliberate act: compare-and-set on the bound account, with a reason, kept in stripe_account_rebinds.
create function internal.rebind_stripe_account(
  p_expected_account_id text,
  p_account_id text,
  p_livemode boolean,
  p_actor text,
  p_reason text
) returns jsonb
language plpgsql security definer
set search_path = ''
as $$
declare
  bound internal.stripe_account_binding;
begin
  if p_account_id is null or p_account_id !~ '^acct_[A-Za-z0-9]+$' then
    raise exception 'account_id must look like acct_..., got %', coalesce(p_account_id, 'NULL')
      using errcode = 'invalid_parameter_value', column = 'account_id';
  end if;
  if p_livemode is null then
    raise exception 'livemode is required' using errcode = 'invalid_parameter_value',
      column = 'livemode';
  end if;
  if coalesce(p_actor, '') = '' or coalesce(btrim(p_reason), '') = '' then
    raise exception 'actor and reason are required' using errcode = 'invalid_parameter_value',
      column = 'reason';
  end if;
  select * into bound from internal.stripe_account_binding b where b.singleton for update;
  if not found or bound.account_id is distinct from p_expected_account_id then
    raise exception 'the bound account is %, not %', coalesce(bound.account_id, 'none'),
      coalesce(p_expected_account_id, 'NULL')
      using errcode = 'invalid_parameter_value', column = 'expected_account_id';
  end if;
  update internal.stripe_account_binding b
  set account_id = p_account_id, livemode = p_livemode, bound_at = now(), bound_by = p_actor
  where b.singleton;
  insert into internal.stripe_account_rebinds (old_account_id, old_livemode, new_account_id,
    new_livemode, actor, reason)
  values (bound.account_id, bound.livemode, p_account_id, p_livemode, p_actor, p_reason);
  return jsonb_build_object('outcome', 'rebound', 'account_id', p_account_id,
    'livemode', p_livemode);
end;
$$;
comment on function internal.rebind_stripe_account(text, text, boolean, text, text) is
  'Moves the binding to another Stripe account or mode (compare-and-set, with history).';

-- Counts of a run's items by state and outcome, plus the bills left unbilled: warned (and, in
-- a dry run, planned warnings) and refused plans, with their amounts.
create or replace function internal.publish_run_counters(p_run_id uuid) returns jsonb
language sql stable
set search_path = ''
as $$
  select jsonb_build_object(
    'items', count(*),
    'pending', count(*) filter (where i.state = 'pending'),
    'running', count(*) filter (where i.state = 'running'),
    'done', count(*) filter (where i.state = 'done'),
    'failed', count(*) filter (where i.state = 'failed'
      or (i.outcome = 'planned' and i.action = 'refuse')),
    'warned', count(*) filter (where i.outcome = 'warned'
      or (i.outcome = 'planned' and i.action = 'warn')),
    'outcomes', coalesce((
      select jsonb_object_agg(o.outcome, o.n) from (
        select x.outcome, count(*) as n from internal.publish_run_items x
        where x.run_id = p_run_id and x.outcome is not null group by x.outcome
      ) o), '{}'::jsonb))
  from internal.publish_run_items i
  where i.run_id = p_run_id
$$;

-- What a run came to: pending or running while items remain; once finished, failed when any
-- bill failed, warned when any bill was warned (left unbilled for an operator), else done.
-- The table's status column stays the lifecycle (pending, running, done) the scheduler reads.
create function internal.publish_run_result(p_status text, p_counters jsonb) returns text
language sql immutable
set search_path = ''
as $$
  select case
    when p_status <> 'done' then p_status
    when coalesce((p_counters ->> 'failed')::integer, 0) > 0 then 'failed'
    when coalesce((p_counters ->> 'warned')::integer, 0) > 0 then 'warned'
    else 'done' end
$$;

-- Marks a run done (with its counters) once no item is pending or running.
create or replace function internal.finish_publish_run_if_done(
  p_run_id uuid,
  p_now timestamptz default now()
) returns boolean
language plpgsql
set search_path = ''
as $$
begin
  if exists (select 1 from internal.publish_run_items i
    where i.run_id = p_run_id and i.state in ('pending', 'running')) then
    return false;
  end if;
  update internal.publish_runs r
  set status = 'done', finished_at = coalesce(r.finished_at, p_now),
    counters = internal.publish_run_counters(p_run_id)
  where r.id = p_run_id and (r.status <> 'done' or r.counters is null
    or not r.counters ? 'warned');
  return true;
end;
$$;

-- The run report without items (bounded whatever the run's size): the run, its result status,
-- counters, and the amounts of the bills that were warned or failed. Items are paged with
-- publish_run_items_page.
create or replace function internal.publish_run_report(
  p_run_id uuid,
  p_with_items boolean default true
) returns jsonb
language plpgsql security definer
set search_path = ''
as $$
declare
  run internal.publish_runs;
  counters jsonb;
begin
  perform internal.finish_publish_run_if_done(p_run_id);
  select * into run from internal.publish_runs r where r.id = p_run_id;
  if not found then
    raise exception 'run % does not exist', p_run_id using errcode = 'no_data_found',
      column = 'run_id';
  end if;
  counters := coalesce(run.counters, internal.publish_run_counters(run.id));
  return jsonb_build_object(
    'run_id', run.id, 'month', pg_catalog.to_char(run.month, 'YYYY-MM'), 'tenants', run.tenants,
    'options', run.options, 'status', internal.publish_run_result(run.status, counters),
    'created_at', run.created_at, 'created_by', run.created_by, 'started_at', run.started_at,
    'finished_at', run.finished_at, 'counters', counters,
    'items', case when p_with_items then coalesce((
      select jsonb_agg(p.item order by p.item_no)
      from internal.publish_run_items_page(run.id, null, 0, 1000) p), '[]'::jsonb) end);
end;
$$;
comment on function internal.publish_run_report(uuid, boolean) is
  'A run with its result status and counters; with p_with_items, its first 1,000 items.';

-- One page of a run's items in item order, after item p_after_item_no, optionally only those
-- in a state: pending, running, done, failed, or warned (warned outcomes and planned warnings).
create function internal.publish_run_items_page(
  p_run_id uuid,
  p_state text,
  p_after_item_no integer,
  p_limit integer
) returns table (item_no integer, item jsonb)
language plpgsql stable security definer
set search_path = ''
as $$
begin
  if p_state is not null and p_state not in ('pending', 'running', 'done', 'failed', 'warned') then
    raise exception 'state must be pending, running, done, failed or warned, got %', p_state
      using errcode = 'invalid_parameter_value', column = 'state';
  end if;
  if p_limit is null or p_limit < 1 or p_limit > 1000 then
    raise exception 'limit must be between 1 and 1000' using errcode = 'invalid_parameter_value',
      column = 'limit';
  end if;
  return query
    select i.item_no, jsonb_build_object(
      'item_no', i.item_no, 'bill', i.bill_kind || ':' || i.bill_id, 'tenant', i.tenant,
      'state', i.state, 'attempts', i.attempts, 'outcome', i.outcome, 'action', i.action,
      'reason', i.reason, 'detail', i.detail, 'stripe_invoice_id', i.stripe_invoice_id,
      'stripe_calls', i.stripe_calls, 'plan', i.plan, 'error', i.error,
      'lease_owner', i.lease_owner, 'lease_expires_at', i.lease_expires_at)
    from internal.publish_run_items i
    where i.run_id = p_run_id and i.item_no > coalesce(p_after_item_no, 0)
      and (p_state is null
        or (p_state = 'warned' and (i.outcome = 'warned'
          or (i.outcome = 'planned' and i.action = 'warn')))
        or (p_state = 'failed' and (i.state = 'failed'
          or (i.outcome = 'planned' and i.action = 'refuse')))
        or (p_state not in ('warned', 'failed') and i.state = p_state))
    order by i.item_no
    limit p_limit;
end;
$$;
comment on function internal.publish_run_items_page(uuid, text, integer, integer) is
  'A page of a run''s items (optionally one state), for reports of any size.';

-- The tenants of p_tenants that do not exist, so a typo in --tenants is an error, not 0 bills.
create function internal.unknown_tenants(p_tenants text[]) returns text[]
language sql stable security definer
set search_path = ''
as $$
  select coalesce(array_agg(t order by t), '{}')
  from unnest(p_tenants) t
  where not exists (select 1 from public.tenants x where x.tenant::text = t)
$$;
comment on function internal.unknown_tenants(text[]) is
  'Which of the given tenant names are not tenants.';

revoke all on internal.stripe_account_binding, internal.stripe_account_rebinds
  from public, anon, authenticated, service_role;
grant select on internal.stripe_account_binding, internal.stripe_account_rebinds to service_role;
revoke all on function internal.check_stripe_account(text, boolean, text),
  internal.rebind_stripe_account(text, text, boolean, text, text),
  internal.publish_run_counters(uuid),
  internal.publish_run_result(text, jsonb),
  internal.finish_publish_run_if_done(uuid, timestamptz),
  internal.publish_run_report(uuid, boolean),
  internal.publish_run_items_page(uuid, text, integer, integer),
  internal.unknown_tenants(text[])
  from public, anon, authenticated, service_role;
grant execute on function internal.check_stripe_account(text, boolean, text),
  internal.rebind_stripe_account(text, text, boolean, text, text),
  internal.publish_run_result(text, jsonb),
  internal.publish_run_report(uuid, boolean),
  internal.publish_run_items_page(uuid, text, integer, integer),
  internal.unknown_tenants(text[])
  to service_role;
