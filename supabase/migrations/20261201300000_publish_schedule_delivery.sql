-- The scheduler learns what happened to its calls. pg_net answers asynchronously: the tick
-- that sends a request cannot see its response, so each request is recorded against its run,
-- and the next tick reports the previous call's outcome (status, timeout, error) beside the new
-- one. A wrong secret (401) or an unreachable URL is then visible in the tick's result instead
-- of only in pg_net's response table.
--
-- The request's timeout also changes: publish-invoices works for up to 120 s by default and the
-- platform cuts a request at 150 s, so pg_net's 5 s default recorded every long invocation as
-- timed out while the function was still publishing.

create table internal.publish_schedule_requests (
  request_id bigint primary key,
  run_id uuid not null references internal.publish_runs (id) on delete cascade,
  sent_at timestamptz not null default now()
);
create index publish_schedule_requests_run_idx
  on internal.publish_schedule_requests (run_id, sent_at desc, request_id desc);
comment on table internal.publish_schedule_requests is
  'Each pg_net request the scheduler sent, by run; the next tick reads its response.';
revoke all on internal.publish_schedule_requests from public, anon, authenticated, service_role;

create or replace function internal.publish_invoices_tick(p_now timestamptz default now())
returns jsonb
language plpgsql security definer
set search_path = ''
as $$
declare
  run record;
  req record;
  prev record;
  answered integer;
  answer_status integer;
  answer_timed_out boolean;
  answer_error text;
  answer_content text;
  has_net boolean := pg_catalog.to_regprocedure(
    'net.http_post(text, jsonb, jsonb, jsonb, integer)') is not null;
  has_responses boolean := pg_catalog.to_regclass('net._http_response') is not null;
  request_id bigint;
  entry jsonb;
  result jsonb := '[]'::jsonb;
  -- Above the function's default 120 s budget, at the platform's 150 s request limit.
  timeout_ms constant integer := 150000;
  -- Dynamic SQL: pg_net is optional.
  post text := 'select net.http_post(url := $1, body := $2, params := ''{}''::jsonb, '
    'headers := $3, timeout_milliseconds := $4)';
  read_answer text := 'select r.status_code, r.timed_out, r.error_msg, '
    'pg_catalog.left(r.content, 300) as content from net._http_response r where r.id = $1 '
    'order by r.created desc limit 1';
begin
  delete from internal.publish_schedule_requests s where s.sent_at < p_now - interval '7 days';
  for run in
    select r.id, r.month from internal.publish_runs r
    where r.status <> 'done' and not coalesce((r.options ->> 'dry_run')::boolean, false)
      and exists (select 1 from internal.publish_run_items i
        where i.run_id = r.id and i.state in ('pending', 'running')
          and (i.state = 'pending' or i.lease_expires_at < p_now))
    order by r.created_at
    limit 5
  loop
    entry := pg_catalog.jsonb_build_object('run_id', run.id);

    -- The previous call for this run, as pg_net recorded it.
    select s.request_id, s.sent_at into prev from internal.publish_schedule_requests s
    where s.run_id = run.id order by s.sent_at desc, s.request_id desc limit 1;
    if found then
      answered := 0;
      if has_responses then
        execute read_answer into answer_status, answer_timed_out, answer_error, answer_content
          using prev.request_id;
        get diagnostics answered = row_count;
      end if;
      entry := entry || pg_catalog.jsonb_build_object('last_response',
        case when answered = 0 then pg_catalog.jsonb_build_object(
            'request_id', prev.request_id, 'sent_at', prev.sent_at, 'answered', false)
          else pg_catalog.jsonb_build_object(
            'request_id', prev.request_id, 'sent_at', prev.sent_at, 'answered', true,
            'status_code', answer_status, 'timed_out', coalesce(answer_timed_out, false),
            'ok', coalesce(answer_status between 200 and 299, false),
            'error', coalesce(answer_error,
              case when answer_status between 200 and 299 then null else answer_content end))
        end);
    end if;

    select * into req from internal.publish_invoices_request(run.month, run.id);
    if not has_net then
      entry := entry || '{"sent": false, "reason": "pg_net is not installed"}'::jsonb;
    elsif req.url is null or req.headers ->> 'x-scheduler-secret' is null then
      entry := entry || pg_catalog.jsonb_build_object('sent', false,
        'reason', 'Vault secrets project_url / publish_invoices_secret are not set');
    else
      execute post into request_id using req.url, req.body, req.headers, timeout_ms;
      insert into internal.publish_schedule_requests (request_id, run_id)
      values (request_id, run.id)
      on conflict on constraint publish_schedule_requests_pkey do update
        set run_id = excluded.run_id, sent_at = excluded.sent_at;
      entry := entry || pg_catalog.jsonb_build_object('sent', true, 'request_id', request_id);
    end if;
    result := result || pg_catalog.jsonb_build_array(entry);
  end loop;
  return result;
end;
$$;
comment on function internal.publish_invoices_tick(timestamptz) is
  'Per-minute scheduler step: invokes publish-invoices for runs with claimable items and '
  'reports the previous call''s response per run.';

revoke all on function internal.publish_invoices_tick(timestamptz)
  from public, anon, authenticated;
grant execute on function internal.publish_invoices_tick(timestamptz) to service_role;
