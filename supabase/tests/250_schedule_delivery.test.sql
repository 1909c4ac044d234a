-- The scheduler's side of pg_net: the tick's request outlives the function's time budget, the
-- next tick reports the previous call's response (a 401, a timeout, no answer yet), and what
-- pg_net and Vault keep (the scheduler secret, the function's answers) is out of the API
-- roles' reach. Runs under both default-grant modes (dev/test.sh). Responses are written by
-- hand here, standing in for the worker, inside this rolled-back transaction.
begin;
select plan(30);

delete from vault.secrets where name in ('project_url', 'publish_invoices_secret');
select vault.create_secret('https://ref.supabase.co', 'project_url');
select vault.create_secret('wrong-secret', 'publish_invoices_secret');

-- pg_net's interface as documented.
select net.http_post('https://example.test/hook', '{"a": 1}', '{"q": "a b/é"}') as plain \gset
select is((select url from net.http_request_queue where id = :plain),
  'https://example.test/hook?q=a%20b%2F%C3%A9', 'params are URL-encoded onto the URL');
select is((select headers from net.http_request_queue where id = :plain),
  '{"Content-Type": "application/json"}'::jsonb, 'the default headers are JSON');
select is((select timeout_milliseconds from net.http_request_queue where id = :plain), 5000,
  'the default timeout is 5000 ms');
select is((select convert_from(body, 'UTF8')::jsonb from net.http_request_queue
  where id = :plain), '{"a": 1}'::jsonb, 'the body is stored as JSON text');
select is((select method::text from net.http_request_queue where id = :plain), 'POST',
  'a POST');
select net.http_post('https://example.test/', headers := '{"x-a": "1"}') as custom \gset
select is((select headers from net.http_request_queue where id = :custom),
  '{"x-a": "1", "Content-Type": "application/json"}'::jsonb,
  'a missing Content-Type is added');
select throws_ok(
  $$ select net.http_post('https://example.test/', headers := '{"Content-Type": "text/plain"}') $$,
  'P0001', 'Content-Type header must be "application/json"', 'a non-JSON body type is refused');

-- A run with a claimable item, and the tick's first call for it.
insert into public.tenants (tenant, trial_start) values ('q250a/', '2030-01-01');
insert into internal.billing_historicals (tenant, billed_month, report)
values ('q250a/', '2031-04-01', '{"subtotal": 1000, "line_items": []}');
select internal.enqueue_publish_run('2031-04-01', array['q250a/'], '{}', 'test') as run1 \gset
create temporary table ticks (n integer, entry jsonb);
insert into ticks select 1, x from jsonb_array_elements(internal.publish_invoices_tick()) x
where x ->> 'run_id' = :'run1';
select is((select entry ? 'last_response' from ticks where n = 1), false,
  'the first call has no previous response to report');
select ok((select (entry ->> 'sent')::boolean from ticks where n = 1), 'the first call is sent');
select (entry ->> 'request_id')::bigint as req1 from ticks where n = 1 \gset
select cmp_ok((select timeout_milliseconds from net.http_request_queue where id = :req1), '>',
  120000, 'the request waits longer than the function''s default 120 s budget');
select cmp_ok((select timeout_milliseconds from net.http_request_queue where id = :req1), '<=',
  150000, 'and no longer than the platform''s 150 s request limit');

-- Not answered yet: said so.
insert into ticks select 2, x from jsonb_array_elements(internal.publish_invoices_tick()) x
where x ->> 'run_id' = :'run1';
select is((select entry -> 'last_response' from ticks where n = 2),
  jsonb_build_object('request_id', :req1, 'answered', false,
    'sent_at', (select entry -> 'last_response' -> 'sent_at' from ticks where n = 2)),
  'a call without a response yet is reported as unanswered');
select (entry ->> 'request_id')::bigint as req2 from ticks where n = 2 \gset

-- The function refused the secret: the next tick says so, and the run stays pending.
insert into net._http_response (id, status_code, content_type, content, timed_out)
values (:req2, 401, 'application/json',
  '{"error":"unauthorized","message":"a service-role key or the scheduler secret is required"}',
  false);
insert into ticks select 3, x from jsonb_array_elements(internal.publish_invoices_tick()) x
where x ->> 'run_id' = :'run1';
select is((select (entry -> 'last_response' ->> 'status_code')::int from ticks where n = 3), 401,
  'the tick reports the previous call''s 401');
select is((select entry -> 'last_response' ->> 'ok' from ticks where n = 3), 'false',
  'as not ok');
select matches((select entry -> 'last_response' ->> 'error' from ticks where n = 3),
  'scheduler secret is required', 'with the function''s error');
select is((select (entry -> 'last_response' ->> 'request_id')::bigint from ticks where n = 3),
  :req2::bigint, 'naming the request');
select ok((select (entry ->> 'sent')::boolean from ticks where n = 3),
  'and calls again (a fixed secret recovers by itself)');
select is((select status from internal.publish_runs where id = :'run1'), 'pending',
  'the run is left pending');
select (entry ->> 'request_id')::bigint as req3 from ticks where n = 3 \gset

-- A timeout, as pg_net records it.
insert into net._http_response (id, timed_out, error_msg)
values (:req3, true, 'Timeout of 150000 ms reached');
insert into ticks select 4, x from jsonb_array_elements(internal.publish_invoices_tick()) x
where x ->> 'run_id' = :'run1';
select is(
  (select (entry -> 'last_response') - 'sent_at'::text from ticks where n = 4),
  jsonb_build_object('request_id', :req3, 'answered', true, 'status_code', null,
    'timed_out', true, 'ok', false, 'error', 'Timeout of 150000 ms reached'),
  'a timed-out call is reported with pg_net''s message');
select (entry ->> 'request_id')::bigint as req4 from ticks where n = 4 \gset

-- A success.
insert into net._http_response (id, status_code, content_type, content, timed_out)
values (:req4, 202, 'application/json', '{"status":"pending"}', false);
select is(
  (select (x -> 'last_response') - 'sent_at'::text
   from jsonb_array_elements(internal.publish_invoices_tick()) x
   where x ->> 'run_id' = :'run1'),
  jsonb_build_object('request_id', :req4, 'answered', true, 'status_code', 202,
    'timed_out', false, 'ok', true, 'error', null),
  'an accepted call is ok, with no error');

-- What pg_net and Vault keep is out of the API roles' reach.
select tests.clear_authentication();
select throws_ok($$ select * from net.http_request_queue $$, '42501', null,
  'anon cannot read the request queue (it holds the scheduler secret)');
select throws_ok($$ select * from net._http_response $$, '42501', null,
  'anon cannot read the responses');
select throws_ok($$ select * from vault.decrypted_secrets $$, '42501', null,
  'anon cannot read Vault');
select throws_ok($$ select net.http_post('https://example.test/') $$, '42501', null,
  'anon cannot send requests');
reset role;

select tests.authenticate_as(tests.create_user('q250@example.test'));
select throws_ok($$ select * from net.http_request_queue $$, '42501', null,
  'authenticated cannot read the request queue');
select throws_ok($$ select * from net._http_response $$, '42501', null,
  'authenticated cannot read the responses');
reset role;

select tests.authenticate_as_service_role();
select throws_ok($$ select * from net.http_request_queue $$, '42501', null,
  'service_role cannot read the request queue');
select throws_ok($$ select * from net._http_response $$, '42501', null,
  'service_role cannot read the responses');
select throws_ok($$ select * from vault.decrypted_secrets $$, '42501', null,
  'service_role cannot read Vault');
select throws_ok($$ select * from internal.publish_schedule_requests $$, '42501', null,
  'service_role cannot read the scheduler''s request log directly');
reset role;

select * from finish();
rollback;
