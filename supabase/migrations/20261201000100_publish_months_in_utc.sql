-- Months are UTC months whatever the session's or the database's TimeZone: a project may set
-- its database default zone, and `p_month::timestamptz` then named another instant than the
-- bills' billed_month (midnight UTC), so a run selected no usage bills and still said done.

create or replace function internal.enqueue_publish_run(
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
    -- The month as UTC instants, whatever the session's TimeZone: a range, so the index serves it
    -- and a row written at another zone's midnight still belongs to its month.
    where h.billed_month >= (p_month::timestamp at time zone 'UTC')
      and h.billed_month < ((p_month + interval '1 month')::timestamp at time zone 'UTC')
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

create or replace function internal.publish_invoices_monthly(p_now timestamptz default now())
returns uuid
language plpgsql security definer
set search_path = ''
as $$
declare
  -- The previous month in UTC, not in the session's zone.
  v_month date := date_trunc('month', (p_now at time zone 'UTC') - interval '1 month')::date;
  run_id uuid;
begin
  select r.id into run_id from internal.publish_runs r
  where r.month = v_month and r.created_by = 'pg_cron'
  order by r.created_at limit 1;
  if run_id is null then
    run_id := internal.enqueue_publish_run(v_month, null, '{}'::jsonb, 'pg_cron');
  end if;
  perform internal.publish_invoices_tick(p_now);
  return run_id;
end;
$$;
