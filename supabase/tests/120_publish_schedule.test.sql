-- The pg_cron jobs and the request they send: monthly enqueue on the 2nd, per-minute
-- continuation only while a run has claimable items, URL and secret from Vault, and no HTTP call
-- until Vault holds the URL and secret. The local stack's Vault and pg_net stand-ins
-- (dev/supabase-compat) are used inside this transaction, so nothing is sent.
begin;
select plan(17);
delete from vault.secrets where name in ('project_url', 'publish_invoices_secret');

select results_eq(
  $$ select jobname::text collate "C", schedule::text collate "C", command::text collate "C"
     from cron.job
     where jobname like 'publish-invoices-%' order by jobname $$,
  $$ values ('publish-invoices-continue'::text collate "C", '* * * * *'::text collate "C",
       'select internal.publish_invoices_tick()'::text collate "C"),
     ('publish-invoices-monthly', '0 6 2 * *', 'select internal.publish_invoices_monthly()') $$,
  'the monthly and per-minute jobs are scheduled (5-field cron)');
select ok(
  not has_function_privilege('authenticated', 'internal.publish_invoices_tick(timestamptz)',
    'execute')
  and not has_function_privilege('anon', 'internal.publish_invoices_request(date, uuid)',
    'execute'),
  'the schedule functions are not callable by API users');

-- Without Vault: no URL, no secret, and nothing is sent.
select is((select body from internal.publish_invoices_request('2031-05-01')),
  '{"month": "2031-05"}'::jsonb, 'the body names the month');
select is((select url from internal.publish_invoices_request('2031-05-01')), null,
  'without Vault there is no URL');
select throws_ok($$ select * from internal.publish_invoices_request('2031-05-09') $$, '22023',
  'month must be the first day of a month, got 2031-05-09', 'a mid-month date is refused');

-- A run with pending items; a dry run is never scheduled.
insert into public.tenants (tenant, trial_start) values ('q120a/', '2030-01-01');
insert into internal.billing_historicals (tenant, billed_month, report)
values ('q120a/', '2031-04-01', '{"subtotal": 1000, "line_items": []}');
select internal.enqueue_publish_run('2031-04-01', array['q120a/'], '{}', 'test') as run1 \gset
select internal.enqueue_publish_run('2031-04-01', array['q120a/'], '{"dry_run": true}', 'test')
  as dry \gset
select is(
  (select jsonb_agg(x ->> 'reason') from jsonb_array_elements(internal.publish_invoices_tick()) x
   where x ->> 'run_id' in (:'run1', :'dry')),
  '["Vault secrets project_url / publish_invoices_secret are not set"]'::jsonb,
  'without the Vault secrets the tick sends nothing, for the non-dry run only');

-- Vault holds the URL and the secret; what the tick sends is read back from pg_net's queue.
select vault.create_secret('https://ref.supabase.co/', 'project_url');
select vault.create_secret('s3cret', 'publish_invoices_secret');
create temporary view sent as
select q.url, pg_catalog.convert_from(q.body, 'UTF8')::jsonb as body, q.headers,
  q.timeout_milliseconds
from net.http_request_queue q;

select is((select url from internal.publish_invoices_request('2031-05-01')),
  'https://ref.supabase.co/functions/v1/publish-invoices', 'the URL comes from Vault');
select is((select headers ->> 'x-scheduler-secret' from internal.publish_invoices_request('2031-05-01')),
  's3cret', 'the scheduler secret comes from Vault');
select is(
  (select body from internal.publish_invoices_request('2031-04-01', :'run1')),
  jsonb_build_object('month', '2031-04', 'run_id', :'run1'), 'a continuation names its run');

select ok(
  (select bool_and((x ->> 'sent')::boolean) from jsonb_array_elements(internal.publish_invoices_tick()) x
   where x ->> 'run_id' = :'run1'),
  'with pg_net the tick invokes the function');
select is(
  (select count(*)::int from sent where body ->> 'run_id' = :'run1'), 1,
  'one request for the run');
select is(
  (select count(*)::int from sent where body ->> 'run_id' = :'dry'), 0,
  'never for a dry run');
select is(
  (select headers from sent where body ->> 'run_id' = :'run1'),
  '{"Content-Type": "application/json", "x-scheduler-secret": "s3cret"}'::jsonb,
  'sent with the secret header');

-- Items under a live lease: nothing to invoke for; an expired lease: invoke again.
select count(*) from internal.claim_publish_items(:'run1', 'w1', 10, interval '5 minutes',
  now());
delete from net.http_request_queue q
where pg_catalog.convert_from(q.body, 'UTF8')::jsonb ->> 'run_id' = :'run1';
select internal.publish_invoices_tick(now() + interval '1 minute');
select is((select count(*)::int from sent where body ->> 'run_id' = :'run1'), 0,
  'no invocation while every item is leased');
select internal.publish_invoices_tick(now() + interval '10 minutes');
select is((select count(*)::int from sent where body ->> 'run_id' = :'run1'), 1,
  'invoked again once the lease has ended');

-- Monthly: enqueues the previous month once.
select internal.publish_invoices_monthly('2031-05-02 06:00:00+00') as m1 \gset
select is((select month from internal.publish_runs where id = :'m1'), '2031-04-01'::date,
  'on the 2nd the previous month is enqueued');
select is(internal.publish_invoices_monthly('2031-05-02 06:05:00+00'), :'m1'::uuid,
  'a second monthly call reuses that run');

select * from finish();
rollback;
