-- The publish queue: enqueue selects the month's bills in one transaction, claims lease items
-- (skipping leased ones, taking back expired ones), intents are fenced by the lease, completion
-- retries or finishes, and two runs never work on one bill at once. Service role only.
begin;
select plan(43);
select tests.create_user('q110@example.com') as q110_user \gset

insert into public.tenants (tenant, trial_start) values
  ('q110a/', '2030-01-01'), ('q110b/', '2030-01-01'), ('q110c/', '2030-01-01');
insert into internal.billing_historicals (tenant, billed_month, report) values
  ('q110a/', '2031-01-01', '{"subtotal": 1000, "line_items": []}'),
  ('q110b/', '2031-01-01', '{"subtotal": 2000, "line_items": []}'),
  ('q110a/', '2031-02-01', '{"subtotal": 3000, "line_items": []}');
insert into internal.manual_bills (tenant, usd_cents, description, date_start, date_end) values
  ('q110c/', 9000, 'Quarterly contract', '2030-12-01', '2031-02-28'),
  ('q110c/', 500, 'Next year', '2032-01-01', '2032-01-31');

-- Shapes and privileges.
select has_table('internal', 'publish_runs', 'publish_runs exists');
select has_table('internal', 'publish_run_items', 'publish_run_items exists');
select has_table('internal', 'publish_intents', 'publish_intents exists');
select is(
  (select count(*)::int from pg_proc p join pg_namespace n on n.oid = p.pronamespace
   where n.nspname = 'internal' and p.proname in ('enqueue_publish_run', 'claim_publish_items',
     'complete_publish_item', 'record_publish_intent', 'publish_run_report',
     'publish_run_options', 'finish_publish_run_if_done', 'publish_run_counters')
     and not coalesce(p.proconfig @> array['search_path=""'], false)),
  0, 'every queue function sets an empty search_path');
select ok(
  not has_function_privilege('anon',
    'internal.claim_publish_items(uuid, text, integer, interval, timestamptz)', 'execute')
  and not has_function_privilege('authenticated',
    'internal.enqueue_publish_run(date, text[], jsonb, text, uuid)', 'execute')
  and not has_function_privilege('authenticated',
    'internal.complete_publish_item(uuid, integer, text, text, text, text, text, text, jsonb, '
    'jsonb, text, boolean, timestamptz)', 'execute'),
  'anon and authenticated may not execute the queue functions');
select ok(
  has_function_privilege('service_role',
    'internal.claim_publish_items(uuid, text, integer, interval, timestamptz)', 'execute')
  and has_function_privilege('service_role',
    'internal.enqueue_publish_run(date, text[], jsonb, text, uuid)', 'execute'),
  'service_role may execute the queue functions');
select ok(not has_table_privilege('authenticated', 'internal.publish_run_items', 'select'),
  'authenticated cannot read run items');

-- Bad input: an error naming the field, nothing written.
select tests.authenticate_as_service_role();
select throws_ok(
  $$ select internal.enqueue_publish_run('2031-01-15', null, '{}', 'test') $$,
  '22023', 'month must be the first day of a month, got 2031-01-15', 'a mid-month date is refused');
select throws_ok(
  $$ select internal.enqueue_publish_run('2031-01-01', array['nope'], '{}', 'test') $$,
  '22023', 'tenants must be a non-empty list of tenant names ending in /',
  'a malformed tenant is refused');
select throws_ok(
  $$ select internal.enqueue_publish_run('2031-01-01', null, '{"dry_run": "yes"}', 'test') $$,
  '22023', 'options.dry_run must be a boolean', 'a malformed option is refused');
select throws_ok(
  $$ select internal.enqueue_publish_run('2031-01-01', null, '{"colour": 1}', 'test') $$,
  '22023', 'options.colour is not a known option', 'an unknown option is refused');
select throws_ok(
  $$ select internal.enqueue_publish_run('2031-01-01', null, '{"rate_per_second": "x"}', 'test') $$,
  '22023', 'options.rate_per_second must be a number between 0.01 and 100',
  'a non-numeric rate is refused');
select is((select count(*)::int from internal.publish_runs where month = '2031-01-01'), 0,
  'refused enqueues wrote nothing');

-- Enqueue: final bills of the month and manual bills overlapping it, in one statement.
select internal.enqueue_publish_run('2031-01-01', array['q110a/', 'q110b/', 'q110c/'],
  '{"max_attempts": 3}', 'test', '11000000-0000-4000-8000-000000000001') as run1 \gset
select is(:'run1'::uuid, '11000000-0000-4000-8000-000000000001'::uuid, 'the given run ID is used');
select results_eq(
  $$ select bill_kind, tenant, state from internal.publish_run_items
     where run_id = '11000000-0000-4000-8000-000000000001' order by item_no $$,
  $$ values ('final'::text, 'q110a/'::text, 'pending'::text), ('final', 'q110b/', 'pending'),
            ('manual', 'q110c/', 'pending') $$,
  'January selects both January usage bills and the overlapping contract, not the others');
select is((select item_count from internal.publish_runs where id = :'run1'), 3, 'item count kept');
select is((select options ->> 'usage_collection_method' from internal.publish_runs
  where id = :'run1'), 'charge_automatically', 'options get their defaults');
select is(internal.enqueue_publish_run('2031-01-01', null, '{}', 'test', :'run1'), :'run1'::uuid,
  'enqueueing an existing run ID returns it');
select is((select count(*)::int from internal.publish_run_items where run_id = :'run1'), 3,
  '... and adds no items');
select throws_ok(
  $$ select internal.enqueue_publish_run('2031-03-01', null, '{}', 'test',
       '11000000-0000-4000-8000-000000000001') $$,
  '22023', null, 'an existing run ID for another month is refused');
select internal.enqueue_publish_run('2031-01-01', array['q110zzz/'], '{}', 'test') as run0 \gset
select is((select status from internal.publish_runs where id = :'run0'), 'done',
  'a run that selects nothing is done at once');

-- Claims: leases, SKIP LOCKED order, expiry.
select is(
  (select array_agg(item_no order by item_no) from internal.claim_publish_items(:'run1', 'w1', 2,
    interval '60 seconds', '2031-02-02 00:00:00+00')),
  array[1, 2], 'worker 1 claims the first two items');
select is((select status from internal.publish_runs where id = :'run1'), 'running',
  'the run is running once claimed');
select is(
  (select array_agg(item_no order by item_no) from internal.claim_publish_items(:'run1', 'w2', 5,
    interval '10 minutes', '2031-02-02 00:00:10+00')),
  array[3], 'worker 2 gets only the unleased item');
select is(
  (select active_workers from internal.claim_publish_items(:'run1', 'w3', 5,
    interval '60 seconds', '2031-02-02 00:00:20+00') limit 1), null,
  'a third worker finds nothing while leases hold');
select is(
  (select array_agg(item_no order by item_no) from internal.claim_publish_items(:'run1', 'w3', 5,
    interval '60 seconds', '2031-02-02 00:01:05+00')),
  array[1, 2], 'after worker 1''s lease ends its items come back');
select is((select attempts from internal.publish_run_items where run_id = :'run1' and item_no = 1),
  2, 'a reclaimed item counts another attempt');

-- Intents are fenced by the lease.
select throws_ok(
  format($$ select internal.record_publish_intent(%L, 1, 'w1', 'create_invoice', 'k', null, '{}',
    null, '2031-02-02 00:01:06+00') $$, :'run1'),
  '55P03', null, 'the worker that lost the lease cannot record an intent');
select ok(
  internal.record_publish_intent(:'run1', 1, 'w3', 'create_invoice', 'key-1', null,
    '{"due_date": 1}', interval '120 seconds', '2031-02-02 00:01:06+00') > 0,
  'the holder records its intent');
select is((select lease_expires_at from internal.publish_run_items
  where run_id = :'run1' and item_no = 1), '2031-02-02 00:03:06+00'::timestamptz,
  'recording an intent extends the lease');
select is((select step || ' ' || idempotency_key from internal.publish_intents
  where run_id = :'run1'), 'create_invoice key-1', 'the intent is stored with its key');

-- Completion.
select is(internal.complete_publish_item(:'run1', 1, 'w3', 'created', 'create', 'no_invoice',
  null, 'in_q110x', '{"POST /v1/invoices": 1}', null, null, false, '2031-02-02 00:01:10+00'),
  'done', 'an item completes');
select throws_ok(
  format($$ select internal.complete_publish_item(%L, 1, 'w3', 'created', null, null, null, null,
    null, null, null) $$, :'run1'),
  '55P03', null, 'a finished item cannot be completed again');
select is(internal.complete_publish_item(:'run1', 2, 'w3', null, null, null, null, null, null,
  null, 'Stripe 503', true, '2031-02-02 00:01:11+00'), 'pending',
  'a retryable failure goes back to pending');
select is(
  (select array_agg(item_no) from internal.claim_publish_items(:'run1', 'w3', 5,
    interval '60 seconds', '2031-02-02 00:01:12+00')), array[2], 'and is claimed again');
select is(internal.complete_publish_item(:'run1', 2, 'w3', null, null, null, null, null, null,
  null, 'Stripe 503', true, '2031-02-02 00:01:13+00'), 'failed',
  'out of attempts it fails');

-- Two runs never hold one bill at once.
select internal.enqueue_publish_run('2031-01-01', array['q110c/'], '{}', 'test',
  '11000000-0000-4000-8000-000000000002') as run2 \gset
select is(
  (select count(*)::int from internal.claim_publish_items(:'run2', 'w4', 5,
    interval '60 seconds', '2031-02-02 00:01:14+00')), 0,
  'a bill leased by another run is not claimed');
select is(internal.complete_publish_item(:'run1', 3, 'w2', 'skipped', 'skip', 'free_tier', null,
  null, '{}', null, null, false, '2031-02-02 00:01:15+00'), 'done', 'the other run finishes it');
select is(
  (select count(*)::int from internal.claim_publish_items(:'run2', 'w4', 5,
    interval '60 seconds', '2031-02-02 00:01:16+00')), 1, 'then the second run may claim it');

-- The report.
select is((select status from internal.publish_runs where id = :'run1'), 'done',
  'the run is done after its last item');
select is((internal.publish_run_report(:'run1') -> 'counters' -> 'outcomes'),
  '{"created": 1, "failed": 1, "skipped": 1}'::jsonb, 'the counters count outcomes');
select is(jsonb_array_length(internal.publish_run_report(:'run1') -> 'items'), 3,
  'the report lists every item');

-- Not for signed-in users.
select tests.authenticate_as(:'q110_user');
select throws_ok(
  format($$ select internal.claim_publish_items(%L, 'w9', 1) $$, :'run1'),
  '42501', null, 'authenticated users cannot claim items');
select * from finish();
rollback;
