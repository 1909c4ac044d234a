-- Durable publish runs (DESIGN §4): a run and one item per selected bill, written in the same
-- transaction that selects the bills; workers (function invocations, the CLI) claim items with
-- FOR UPDATE SKIP LOCKED and a lease, so several drain one run and a crashed worker's items come
-- back when the lease ends. Intents are recorded before every Stripe write. No session state:
-- Supabase's pooler runs in transaction mode.

create table internal.publish_runs (
  id uuid primary key default extensions.gen_random_uuid(),
  month date not null,
  tenants text[],
  options jsonb not null default '{}',
  created_at timestamptz not null default now(),
  created_by text not null,
  status text not null default 'pending',
  started_at timestamptz,
  finished_at timestamptz,
  item_count integer not null default 0,
  counters jsonb,
  constraint publish_runs_month_is_month check (date_trunc('month', month) = month),
  constraint publish_runs_status check (status in ('pending', 'running', 'done')),
  constraint publish_runs_options_object check (jsonb_typeof(options) = 'object')
);
comment on table internal.publish_runs is
  'One publish of a month (or a dry run of it). The report is the run plus its items.';
create index publish_runs_month on internal.publish_runs (month, created_at desc);
-- The per-minute scheduler looks only for unfinished runs.
create index publish_runs_unfinished on internal.publish_runs (created_at)
  where status <> 'done';

create table internal.publish_run_items (
  run_id uuid not null references internal.publish_runs (id) on delete cascade,
  item_no integer not null,
  bill_kind text not null,
  bill_id bigint not null,
  tenant text not null,
  state text not null default 'pending',
  lease_owner text,
  lease_expires_at timestamptz,
  attempts integer not null default 0,
  outcome text,
  action text,
  reason text,
  detail text,
  stripe_invoice_id text,
  stripe_calls jsonb,
  plan jsonb,
  error text,
  updated_at timestamptz not null default now(),
  finished_at timestamptz,
  primary key (run_id, item_no),
  -- Bill first: lookups by (run_id, item_no) must use the primary key, never this index.
  unique (bill_kind, bill_id, run_id),
  constraint publish_run_items_kind check (bill_kind in ('final', 'manual')),
  constraint publish_run_items_state check (state in ('pending', 'running', 'done', 'failed')),
  constraint publish_run_items_outcome check (outcome is null or outcome in
    ('created', 'updated', 'unchanged', 'replaced', 'skipped', 'warned', 'planned', 'failed')),
  constraint publish_run_items_lease check (state <> 'running' or
    (lease_owner is not null and lease_expires_at is not null))
);
comment on table internal.publish_run_items is
  'One bill of a run: its lease, and once done what was decided and done (the per-bill history).';
-- Claims scan only unfinished items, in item order: flat however many items are done.
create index publish_run_items_claimable on internal.publish_run_items (run_id, item_no)
  where state in ('pending', 'running');
-- Bill history and the cross-run exclusion check.
create index publish_run_items_bill on internal.publish_run_items (bill_kind, bill_id)
  where state = 'running';
create index publish_run_items_bill_history on internal.publish_run_items (bill_kind, bill_id,
  updated_at desc);

-- Written (and committed) before each Stripe write: what is about to be done, with which key.
create table internal.publish_intents (
  id bigint generated always as identity primary key,
  at timestamptz not null default now(),
  run_id uuid not null,
  bill_kind text not null check (bill_kind in ('final', 'manual')),
  bill_id bigint not null,
  worker text not null,
  step text not null,
  idempotency_key text,
  stripe_invoice_id text,
  params jsonb
);
comment on table internal.publish_intents is
  'Durable record of every Stripe write the publisher was about to make (before making it).';
create index publish_intents_bill on internal.publish_intents (bill_kind, bill_id, at desc);

-- Reads the options of a run with defaults; raises naming the option when one is malformed.
create function internal.publish_run_options(p_options jsonb) returns jsonb
language plpgsql immutable
set search_path = ''
as $$
declare
  o jsonb := coalesce(p_options, '{}'::jsonb);
  k text;
begin
  if jsonb_typeof(o) <> 'object' then
    raise exception 'options must be a JSON object' using errcode = 'invalid_parameter_value',
      column = 'options';
  end if;
  for k in select jsonb_object_keys(o) loop
    if k not in ('dry_run', 'recreate_existing', 'usage_collection_method', 'rate_per_second',
      'lease_seconds', 'max_attempts') then
      raise exception 'options.% is not a known option', k
        using errcode = 'invalid_parameter_value', column = 'options';
    end if;
  end loop;
  if (o -> 'dry_run') is not null and jsonb_typeof(o -> 'dry_run') <> 'boolean' then
    raise exception 'options.dry_run must be a boolean' using errcode = 'invalid_parameter_value',
      column = 'options';
  end if;
  if (o -> 'recreate_existing') is not null and jsonb_typeof(o -> 'recreate_existing') <> 'boolean' then
    raise exception 'options.recreate_existing must be a boolean'
      using errcode = 'invalid_parameter_value', column = 'options';
  end if;
  if (o -> 'usage_collection_method') is not null and coalesce(o ->> 'usage_collection_method', '') not in
    ('charge_automatically', 'send_invoice') then
    raise exception 'options.usage_collection_method must be charge_automatically or send_invoice'
      using errcode = 'invalid_parameter_value', column = 'options';
  end if;
  if (o -> 'rate_per_second') is not null and (case when jsonb_typeof(o -> 'rate_per_second') = 'number'
    then (o ->> 'rate_per_second')::numeric not between 0.01 and 100 else true end) then
    raise exception 'options.rate_per_second must be a number between 0.01 and 100'
      using errcode = 'invalid_parameter_value', column = 'options';
  end if;
  if (o -> 'lease_seconds') is not null and (case when jsonb_typeof(o -> 'lease_seconds') = 'number'
    then (o ->> 'lease_seconds')::numeric < 10 else true end) then
    raise exception 'options.lease_seconds must be a number of at least 10'
      using errcode = 'invalid_parameter_value', column = 'options';
  end if;
  if (o -> 'max_attempts') is not null and (case when jsonb_typeof(o -> 'max_attempts') = 'number'
    then (o ->> 'max_attempts')::numeric < 1 or (o ->> 'max_attempts')::numeric % 1 <> 0
    else true end) then
    raise exception 'options.max_attempts must be a whole number of at least 1'
      using errcode = 'invalid_parameter_value', column = 'options';
  end if;
  return jsonb_build_object(
    'dry_run', false,
    'recreate_existing', false,
    'usage_collection_method', 'charge_automatically',
    'rate_per_second', 20,
    'lease_seconds', 300,
    'max_attempts', 5
  ) || o;
end;
$$;

-- Creates a run for a month and, in the same transaction, one item per selected bill: final
-- bills of that month, and manual bills overlapping it (upstream's selection). Returns the run.
-- With p_run_id of an existing run, returns it unchanged (a retried enqueue adds nothing).
create function internal.enqueue_publish_run(
  p_month date,
  p_tenants text[],
  p_options jsonb,
  p_actor text,
  p_run_id uuid default null
) returns uuid
language plpgsql security definer
set search_path = ''
as $$
declare
  run_id uuid := coalesce(p_run_id, extensions.gen_random_uuid());
  existing internal.publish_runs;
  month_end date;
  opts jsonb;
  n integer;
begin
  if p_month is null or date_trunc('month', p_month)::date <> p_month then
    raise exception 'month must be the first day of a month, got %', coalesce(p_month::text, 'NULL')
      using errcode = 'invalid_parameter_value', column = 'month';
  end if;
  if coalesce(p_actor, '') = '' then
    raise exception 'actor is required' using errcode = 'invalid_parameter_value', column = 'actor';
  end if;
  if p_tenants is not null and (cardinality(p_tenants) = 0
    or exists (select 1 from unnest(p_tenants) t where t is null or t !~ '^[[:alnum:]_.-]+/$')) then
    raise exception 'tenants must be a non-empty list of tenant names ending in /'
      using errcode = 'invalid_parameter_value', column = 'tenants';
  end if;
  opts := internal.publish_run_options(p_options);
  select * into existing from internal.publish_runs r where r.id = run_id;
  if found then
    if existing.month <> p_month then
      raise exception 'run % is for month %, not %', run_id, existing.month, p_month
        using errcode = 'invalid_parameter_value', column = 'run_id';
    end if;
    return run_id;
  end if;
  month_end := (p_month + interval '1 month' - interval '1 day')::date;
  insert into internal.publish_runs (id, month, tenants, options, created_by)
  values (run_id, p_month, p_tenants, opts, p_actor);
  insert into internal.publish_run_items (run_id, item_no, bill_kind, bill_id, tenant)
  select run_id, (row_number() over (order by b.tenant collate "C", b.kind, b.id))::integer,
    b.kind, b.id, b.tenant
  from (
    select 'final'::text as kind, h.id, h.tenant::text as tenant
    from internal.billing_historicals h
    where h.billed_month = p_month::timestamptz
    union all
    select 'manual', m.id, m.tenant::text
    from internal.manual_bills m
    where m.date_start <= month_end and m.date_end >= p_month
  ) b
  where p_tenants is null or b.tenant = any (p_tenants);
  get diagnostics n = row_count;
  update internal.publish_runs set item_count = n,
    status = case when n = 0 then 'done' else 'pending' end,
    finished_at = case when n = 0 then now() end,
    counters = case when n = 0 then '{}'::jsonb end
  where id = run_id;
  return run_id;
end;
$$;
comment on function internal.enqueue_publish_run(date, text[], jsonb, text, uuid) is
  'Creates a publish run and its items (one per selected bill) in one transaction.';

-- A claimed item, as handed to a worker.
create type internal.publish_claim as (
  run_id uuid,
  item_no integer,
  bill_kind text,
  bill_id bigint,
  tenant text,
  attempts integer,
  lease_expires_at timestamptz,
  active_workers integer
);

-- Claims up to p_limit claimable items of a run for p_worker: pending ones, and running ones whose
-- lease has ended (their worker died). A bill being worked on by another run's live item is left
-- alone, so two runs never publish one bill at once. Transaction-level advisory locks only.
create function internal.claim_publish_items(
  p_run_id uuid,
  p_worker text,
  p_limit integer,
  p_lease interval default null,
  p_now timestamptz default now()
) returns setof internal.publish_claim
language plpgsql security definer
set search_path = ''
as $$
declare
  run internal.publish_runs;
  lease interval;
  cand record;
  claimed integer := 0;
  workers integer;
  expires timestamptz;
begin
  if coalesce(p_worker, '') = '' then
    raise exception 'worker is required' using errcode = 'invalid_parameter_value',
      column = 'worker';
  end if;
  if p_limit is null or p_limit < 1 or p_limit > 1000 then
    raise exception 'limit must be between 1 and 1000' using errcode = 'invalid_parameter_value',
      column = 'limit';
  end if;
  select * into run from internal.publish_runs r where r.id = p_run_id;
  if not found then
    raise exception 'run % does not exist', p_run_id using errcode = 'no_data_found',
      column = 'run_id';
  end if;
  lease := coalesce(p_lease, make_interval(secs => (run.options ->> 'lease_seconds')::numeric));
  if lease < interval '1 second' then
    raise exception 'lease must be positive' using errcode = 'invalid_parameter_value',
      column = 'lease';
  end if;
  expires := p_now + lease;
  for cand in
    select i.item_no, i.bill_kind, i.bill_id
    from internal.publish_run_items i
    where i.run_id = p_run_id
      and i.state in ('pending', 'running')
      and (i.state = 'pending' or i.lease_expires_at < p_now)
    order by i.item_no
    limit p_limit * 4
    for update skip locked
  loop
    exit when claimed >= p_limit;
    -- Serializes claims of one bill across runs for this transaction; the check below then sees
    -- any claim another transaction committed before we got the lock.
    continue when not pg_catalog.pg_try_advisory_xact_lock(
      pg_catalog.hashtext('publish-bill:' || cand.bill_kind || ':' || cand.bill_id));
    continue when exists (
      select 1 from internal.publish_run_items o
      where o.bill_kind = cand.bill_kind and o.bill_id = cand.bill_id and o.state = 'running'
        and o.lease_expires_at >= p_now and o.run_id <> p_run_id);
    update internal.publish_run_items i
    set state = 'running', lease_owner = p_worker, lease_expires_at = expires,
      attempts = i.attempts + 1, updated_at = p_now
    where i.run_id = p_run_id and i.item_no = cand.item_no;
    claimed := claimed + 1;
  end loop;
  if run.status = 'pending' and claimed > 0 then
    update internal.publish_runs set status = 'running', started_at = p_now where id = p_run_id;
  end if;
  select count(distinct i.lease_owner)::integer into workers
  from internal.publish_run_items i
  where i.run_id = p_run_id and i.state = 'running' and i.lease_expires_at >= p_now;
  if claimed = 0 then
    perform internal.finish_publish_run_if_done(p_run_id, p_now);
  end if;
  return query
    select i.run_id, i.item_no, i.bill_kind, i.bill_id, i.tenant, i.attempts, i.lease_expires_at,
      greatest(workers, 1)
    from internal.publish_run_items i
    where i.run_id = p_run_id and i.state = 'running' and i.lease_owner = p_worker
      and i.lease_expires_at = expires
    order by i.item_no;
end;
$$;
comment on function internal.claim_publish_items(uuid, text, integer, interval, timestamptz) is
  'Leases up to n claimable items of a run to a worker (SKIP LOCKED); returns them.';

-- Marks a run done (with its counters) once no item is pending or running.
create function internal.finish_publish_run_if_done(p_run_id uuid, p_now timestamptz default now())
returns boolean
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
  where r.id = p_run_id and r.status <> 'done';
  return true;
end;
$$;

-- Counts of a run's items by state and by outcome.
create function internal.publish_run_counters(p_run_id uuid) returns jsonb
language sql stable
set search_path = ''
as $$
  select jsonb_build_object(
    'items', count(*),
    'pending', count(*) filter (where i.state = 'pending'),
    'running', count(*) filter (where i.state = 'running'),
    'done', count(*) filter (where i.state = 'done'),
    'failed', count(*) filter (where i.state = 'failed'),
    'outcomes', coalesce((
      select jsonb_object_agg(o.outcome, o.n) from (
        select x.outcome, count(*) as n from internal.publish_run_items x
        where x.run_id = p_run_id and x.outcome is not null group by x.outcome
      ) o), '{}'::jsonb))
  from internal.publish_run_items i
  where i.run_id = p_run_id
$$;

-- Records that p_worker is about to make a Stripe write for an item it holds; extends the lease.
-- Raises (writing nothing) when the worker no longer holds the item, so a worker whose lease ran
-- out cannot act on a bill another worker has taken over.
create function internal.record_publish_intent(
  p_run_id uuid,
  p_item_no integer,
  p_worker text,
  p_step text,
  p_idempotency_key text,
  p_invoice_id text,
  p_params jsonb,
  p_lease interval default null,
  p_now timestamptz default now()
) returns bigint
language plpgsql security definer
set search_path = ''
as $$
declare
  item internal.publish_run_items;
  opts jsonb;
  intent_id bigint;
begin
  if coalesce(p_step, '') = '' then
    raise exception 'step is required' using errcode = 'invalid_parameter_value', column = 'step';
  end if;
  select * into item from internal.publish_run_items i
  where i.run_id = p_run_id and i.item_no = p_item_no for update;
  if not found then
    raise exception 'item %/% does not exist', p_run_id, p_item_no using errcode = 'no_data_found',
      column = 'item_no';
  end if;
  if item.state <> 'running' or item.lease_owner is distinct from p_worker
    or item.lease_expires_at < p_now then
    raise exception 'worker % does not hold item %/% (state %, owner %)', p_worker, p_run_id,
      p_item_no, item.state, coalesce(item.lease_owner, '-')
      using errcode = 'lock_not_available', column = 'lease_owner';
  end if;
  select r.options into opts from internal.publish_runs r where r.id = p_run_id;
  update internal.publish_run_items i
  set lease_expires_at = p_now + coalesce(p_lease,
      make_interval(secs => (opts ->> 'lease_seconds')::numeric)),
    updated_at = p_now
  where i.run_id = p_run_id and i.item_no = p_item_no;
  insert into internal.publish_intents (run_id, bill_kind, bill_id, worker, step, idempotency_key,
    stripe_invoice_id, params, at)
  values (p_run_id, item.bill_kind, item.bill_id, p_worker, p_step, p_idempotency_key,
    p_invoice_id, p_params, p_now)
  returning id into intent_id;
  return intent_id;
end;
$$;
comment on function internal.record_publish_intent(uuid, integer, text, text, text, text, jsonb,
  interval, timestamptz) is
  'Durable record of a Stripe write about to happen; fenced by the item''s lease.';

-- Finishes an item the worker holds: done with its outcome, or (p_retry) back to pending for
-- another attempt unless the run's max_attempts is used up, then failed. Returns the new state.
create function internal.complete_publish_item(
  p_run_id uuid,
  p_item_no integer,
  p_worker text,
  p_outcome text,
  p_action text,
  p_reason text,
  p_detail text,
  p_invoice_id text,
  p_stripe_calls jsonb,
  p_plan jsonb,
  p_error text,
  p_retry boolean default false,
  p_now timestamptz default now()
) returns text
language plpgsql security definer
set search_path = ''
as $$
declare
  item internal.publish_run_items;
  max_attempts integer;
  new_state text;
begin
  select * into item from internal.publish_run_items i
  where i.run_id = p_run_id and i.item_no = p_item_no for update;
  if not found then
    raise exception 'item %/% does not exist', p_run_id, p_item_no using errcode = 'no_data_found',
      column = 'item_no';
  end if;
  if item.state <> 'running' or item.lease_owner is distinct from p_worker then
    raise exception 'worker % does not hold item %/% (state %, owner %)', p_worker, p_run_id,
      p_item_no, item.state, coalesce(item.lease_owner, '-')
      using errcode = 'lock_not_available', column = 'lease_owner';
  end if;
  if p_outcome is not null and p_outcome not in ('created', 'updated', 'unchanged', 'replaced',
    'skipped', 'warned', 'planned', 'failed') then
    raise exception 'outcome % is not known', p_outcome using errcode = 'invalid_parameter_value',
      column = 'outcome';
  end if;
  select (r.options ->> 'max_attempts')::integer into max_attempts
  from internal.publish_runs r where r.id = p_run_id;
  if p_retry and item.attempts < max_attempts then
    new_state := 'pending';
  elsif p_retry or p_outcome = 'failed' or p_outcome is null then
    new_state := 'failed';
  else
    new_state := 'done';
  end if;
  update internal.publish_run_items i
  set state = new_state,
    lease_owner = null, lease_expires_at = null,
    outcome = case when new_state = 'pending' then null
      when new_state = 'failed' then 'failed' else p_outcome end,
    action = p_action, reason = p_reason, detail = p_detail,
    stripe_invoice_id = coalesce(p_invoice_id, i.stripe_invoice_id),
    stripe_calls = coalesce(i.stripe_calls, '{}'::jsonb) || coalesce(p_stripe_calls, '{}'::jsonb),
    plan = p_plan, error = p_error, updated_at = p_now,
    finished_at = case when new_state = 'pending' then null else p_now end
  where i.run_id = p_run_id and i.item_no = p_item_no;
  if new_state <> 'pending' then
    perform internal.finish_publish_run_if_done(p_run_id, p_now);
  end if;
  return new_state;
end;
$$;
comment on function internal.complete_publish_item(uuid, integer, text, text, text, text, text,
  text, jsonb, jsonb, text, boolean, timestamptz) is
  'Finishes (or returns for retry) an item the worker holds; closes the run after its last item.';

-- The run report: the run, live counters and (optionally) its items.
create function internal.publish_run_report(p_run_id uuid, p_with_items boolean default true)
returns jsonb
language plpgsql security definer
set search_path = ''
as $$
declare
  run internal.publish_runs;
begin
  perform internal.finish_publish_run_if_done(p_run_id);
  select * into run from internal.publish_runs r where r.id = p_run_id;
  if not found then
    raise exception 'run % does not exist', p_run_id using errcode = 'no_data_found',
      column = 'run_id';
  end if;
  return jsonb_build_object(
    'run_id', run.id, 'month', pg_catalog.to_char(run.month, 'YYYY-MM'), 'tenants', run.tenants,
    'options', run.options, 'status', run.status, 'created_at', run.created_at,
    'created_by', run.created_by, 'started_at', run.started_at, 'finished_at', run.finished_at,
    'counters', coalesce(run.counters, internal.publish_run_counters(run.id)),
    'items', case when p_with_items then coalesce((
      select jsonb_agg(jsonb_build_object(
        'item_no', i.item_no, 'bill', i.bill_kind || ':' || i.bill_id, 'tenant', i.tenant,
        'state', i.state, 'attempts', i.attempts, 'outcome', i.outcome, 'action', i.action,
        'reason', i.reason, 'detail', i.detail, 'stripe_invoice_id', i.stripe_invoice_id,
        'stripe_calls', i.stripe_calls, 'plan', i.plan, 'error', i.error) order by i.item_no)
      from internal.publish_run_items i where i.run_id = run.id), '[]'::jsonb) end);
end;
$$;
comment on function internal.publish_run_report(uuid, boolean) is
  'A run with its counters and per-bill outcomes: what operators and the function return.';

revoke all on internal.publish_runs, internal.publish_run_items, internal.publish_intents
  from public, anon, authenticated;
grant select on internal.publish_runs, internal.publish_run_items, internal.publish_intents
  to service_role;
revoke all on function internal.publish_run_options(jsonb),
  internal.enqueue_publish_run(date, text[], jsonb, text, uuid),
  internal.claim_publish_items(uuid, text, integer, interval, timestamptz),
  internal.finish_publish_run_if_done(uuid, timestamptz),
  internal.publish_run_counters(uuid),
  internal.record_publish_intent(uuid, integer, text, text, text, text, jsonb, interval, timestamptz),
  internal.complete_publish_item(uuid, integer, text, text, text, text, text, text, jsonb, jsonb,
    text, boolean, timestamptz),
  internal.publish_run_report(uuid, boolean)
  from public, anon, authenticated;
grant execute on function internal.enqueue_publish_run(date, text[], jsonb, text, uuid),
  internal.claim_publish_items(uuid, text, integer, interval, timestamptz),
  internal.record_publish_intent(uuid, integer, text, text, text, text, jsonb, interval, timestamptz),
  internal.complete_publish_item(uuid, integer, text, text, text, text, text, text, jsonb, jsonb,
    text, boolean, timestamptz),
  internal.publish_run_report(uuid, boolean)
  to service_role;
