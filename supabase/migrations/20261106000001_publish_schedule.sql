-- Scheduling the publisher with pg_cron (DESIGN §4): on the 2nd of each month enqueue the
-- previous month's run; every minute, while a run has claimable items, invoke publish-invoices to
-- drain it. The invocation is net.http_post with the project URL and the scheduler secret from
-- Vault (Supabase's documented pattern); the request is built by a function tests can call, and
-- where pg_net or Vault is absent (the local stack) the HTTP call is skipped and reported.
-- pg_cron 1.4.2 (Debian 12) takes 5-field schedules only.

create extension if not exists pg_cron;

-- Workers that run out of time hand unstarted items back without spending an attempt.
create function internal.release_publish_items(p_run_id uuid, p_worker text, p_item_nos integer[])
returns integer
language plpgsql security definer
set search_path = ''
as $$
declare
  n integer;
begin
  update internal.publish_run_items i
  set state = 'pending', lease_owner = null, lease_expires_at = null,
    attempts = greatest(i.attempts - 1, 0), updated_at = now()
  where i.run_id = p_run_id and i.item_no = any (p_item_nos) and i.state = 'running'
    and i.lease_owner = p_worker;
  get diagnostics n = row_count;
  return n;
end;
$$;
comment on function internal.release_publish_items(uuid, text, integer[]) is
  'Returns items a worker claimed but did not start to pending, without counting an attempt.';

-- The request the scheduler sends: URL and secret from Vault when it exists (NULL otherwise).
create function internal.publish_invoices_request(p_month date, p_run_id uuid default null)
returns table (url text, headers jsonb, body jsonb)
language plpgsql stable security definer
set search_path = ''
as $$
declare
  base text;
  secret text;
  -- Dynamic SQL: Vault is an optional extension, absent on the local stack.
  read_secret text := 'select decrypted_secret from vault.decrypted_secrets where name = $1';
begin
  if p_month is null or date_trunc('month', p_month)::date <> p_month then
    raise exception 'month must be the first day of a month, got %', coalesce(p_month::text, 'NULL')
      using errcode = 'invalid_parameter_value', column = 'month';
  end if;
  if pg_catalog.to_regclass('vault.decrypted_secrets') is not null then
    execute read_secret into base using 'project_url';
    execute read_secret into secret using 'publish_invoices_secret';
  end if;
  url := case when base is null then null
    else pg_catalog.rtrim(base, '/') || '/functions/v1/publish-invoices' end;
  headers := pg_catalog.jsonb_build_object('Content-Type', 'application/json',
    'x-scheduler-secret', secret);
  body := pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
    'month', pg_catalog.to_char(p_month, 'YYYY-MM'), 'run_id', p_run_id));
  return next;
end;
$$;
comment on function internal.publish_invoices_request(date, uuid) is
  'The publish-invoices request pg_cron sends (URL and secret from Vault); callable in tests.';

-- Invokes publish-invoices once per unfinished, non-dry run that has claimable items. Returns
-- what it did per run; without pg_net or a configured URL it sends nothing and says so.
create function internal.publish_invoices_tick(p_now timestamptz default now())
returns jsonb
language plpgsql security definer
set search_path = ''
as $$
declare
  run record;
  req record;
  has_net boolean := pg_catalog.to_regprocedure(
    'net.http_post(text, jsonb, jsonb, jsonb, integer)') is not null;
  request_id bigint;
  result jsonb := '[]'::jsonb;
  -- Dynamic SQL: pg_net is optional, absent on the local stack.
  post text := 'select net.http_post(url := $1, body := $2, params := ''{}''::jsonb, '
    'headers := $3, timeout_milliseconds := $4)';
begin
  for run in
    select r.id, r.month from internal.publish_runs r
    where r.status <> 'done' and not coalesce((r.options ->> 'dry_run')::boolean, false)
      and exists (select 1 from internal.publish_run_items i
        where i.run_id = r.id and i.state in ('pending', 'running')
          and (i.state = 'pending' or i.lease_expires_at < p_now))
    order by r.created_at
    limit 5
  loop
    select * into req from internal.publish_invoices_request(run.month, run.id);
    if not has_net then
      result := result || pg_catalog.jsonb_build_object('run_id', run.id, 'sent', false,
        'reason', 'pg_net is not installed');
    elsif req.url is null or req.headers ->> 'x-scheduler-secret' is null then
      result := result || pg_catalog.jsonb_build_object('run_id', run.id, 'sent', false,
        'reason', 'Vault secrets project_url / publish_invoices_secret are not set');
    else
      execute post into request_id using req.url, req.body, req.headers, 5000;
      result := result || pg_catalog.jsonb_build_object('run_id', run.id, 'sent', true,
        'request_id', request_id);
    end if;
  end loop;
  return result;
end;
$$;
comment on function internal.publish_invoices_tick(timestamptz) is
  'Per-minute scheduler step: invokes publish-invoices for runs with claimable items.';

-- Enqueues last month's run once (the 2nd of the month), then invokes the function for it.
create function internal.publish_invoices_monthly(p_now timestamptz default now())
returns uuid
language plpgsql security definer
set search_path = ''
as $$
declare
  v_month date := date_trunc('month', p_now - interval '1 month')::date;
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
comment on function internal.publish_invoices_monthly(timestamptz) is
  'Monthly scheduler step: enqueues the previous month''s publish run (once) and kicks it.';

revoke all on function internal.release_publish_items(uuid, text, integer[]),
  internal.publish_invoices_request(date, uuid),
  internal.publish_invoices_tick(timestamptz),
  internal.publish_invoices_monthly(timestamptz)
  from public, anon, authenticated;
grant execute on function internal.release_publish_items(uuid, text, integer[]),
  internal.publish_invoices_request(date, uuid),
  internal.publish_invoices_tick(timestamptz),
  internal.publish_invoices_monthly(timestamptz)
  to service_role;

-- Named jobs: re-declaring a name updates it, so this stays re-runnable.
select cron.schedule('publish-invoices-monthly', '0 6 2 * *',
  'select internal.publish_invoices_monthly()');
select cron.schedule('publish-invoices-continue', '* * * * *',
  'select internal.publish_invoices_tick()');
