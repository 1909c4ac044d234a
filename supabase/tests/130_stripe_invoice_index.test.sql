-- The account-wide Stripe invoice index: one scanner per account at a time (lease, taken back
-- when it expires), pages fenced by the lease, a watermark that never goes down, freshness
-- against the run, and service-role-only access.
begin;
select plan(24);
select tests.create_user('q130@example.com') as q130_user \gset

select has_table('internal', 'stripe_invoice_index', 'stripe_invoice_index exists');
select has_table('internal', 'stripe_invoice_scan', 'stripe_invoice_scan exists');
select is(
  (select count(*)::int from pg_proc p join pg_namespace n on n.oid = p.pronamespace
   where n.nspname = 'internal' and p.proname in ('take_stripe_invoice_scan',
     'record_stripe_invoice_page', 'finish_stripe_invoice_scan', 'release_stripe_invoice_scan',
     'stripe_invoice_scan_held')
     and not coalesce(p.proconfig @> array['search_path=""'], false)),
  0, 'every index function sets an empty search_path');
select ok(
  not has_function_privilege('anon', 'internal.take_stripe_invoice_scan(text, text, timestamptz, '
    'interval, interval, integer, timestamptz)', 'execute')
  and not has_function_privilege('authenticated', 'internal.record_stripe_invoice_page(text, '
    'text, jsonb, text, interval, timestamptz)', 'execute')
  and not has_function_privilege('authenticated',
    'internal.finish_stripe_invoice_scan(text, text)', 'execute')
  and not has_function_privilege('public',
    'internal.release_stripe_invoice_scan(text, text, boolean)', 'execute'),
  'anon, authenticated and public may not execute the index functions');
select ok(
  has_function_privilege('service_role', 'internal.take_stripe_invoice_scan(text, text, '
    'timestamptz, interval, interval, integer, timestamptz)', 'execute')
  and has_function_privilege('service_role', 'internal.record_stripe_invoice_page(text, text, '
    'jsonb, text, interval, timestamptz)', 'execute')
  and has_function_privilege('service_role',
    'internal.finish_stripe_invoice_scan(text, text)', 'execute'),
  'service_role may execute them');
select ok(not has_table_privilege('authenticated', 'internal.stripe_invoice_index', 'select')
  and not has_table_privilege('anon', 'internal.stripe_invoice_scan', 'select'),
  'signed-in users and anon cannot read the index');

select tests.authenticate_as_service_role();

-- The first scan of an account lists the whole account (no created bound).
select results_eq(
  $$ select outcome, pass_from from internal.take_stripe_invoice_scan('acct_130', 'w1',
       '2031-01-01 00:00+00', interval '15 minutes', interval '60 seconds', 300,
       '2031-01-01 00:00:10+00') $$,
  $$ values ('leased'::text, null::bigint) $$, 'the first scan is leased, over the whole account');
select is(
  (select outcome from internal.take_stripe_invoice_scan('acct_130', 'w2', '2031-01-01 00:00+00',
     interval '15 minutes', interval '60 seconds', 300, '2031-01-01 00:00:20+00')),
  'busy', 'a second worker finds it busy');
select throws_ok(
  $$ select internal.record_stripe_invoice_page('acct_130', 'w2', '[]', null) $$,
  '55P03', null, 'a worker without the lease cannot write a page');
select throws_ok(
  $$ select internal.record_stripe_invoice_page('acct_130', 'w1', '[{"id": "nope"}]', null) $$,
  '22023', null, 'a malformed invoice is refused');
select is(
  internal.record_stripe_invoice_page('acct_130', 'w1',
    '[{"id": "in_130a", "customer": "cus_130", "status": "draft", "created": 1900000100,
       "total": 500, "metadata": {"estuary.dev/bill_id": "final:1"}},
      {"id": "in_130b", "customer": {"id": "cus_130"}, "status": "open", "created": 1900000050,
       "total": 700, "metadata": null}]', 'in_130b', interval '60 seconds',
    '2031-01-01 00:00:30+00'),
  2, 'a page is upserted');
select is(internal.record_stripe_invoice_page('acct_130', 'w1',
    '[{"id": "in_130c", "customer": "cus_131", "status": "paid", "created": 1900000010,
       "total": 100, "metadata": {}}]', null, interval '60 seconds', '2031-01-01 00:00:40+00'),
  1, 'the last page is upserted');
select is((select count(*)::int from internal.stripe_invoice_index
  where account = 'acct_130' and customer_id = 'cus_130'), 2,
  'customers are read from ids and expanded objects');
select is((select complete_through from internal.stripe_invoice_scan where account = 'acct_130'),
  null::bigint, 'no watermark before the pass completes');
select is(internal.finish_stripe_invoice_scan('acct_130', 'w1'),
  1900000100::bigint, 'the watermark is the newest created seen');
select results_eq(
  $$ select scanned_at, lease_owner, completed_passes from internal.stripe_invoice_scan
     where account = 'acct_130' $$,
  $$ values ('2031-01-01 00:00:10+00'::timestamptz, null::text, 1::bigint) $$,
  'scanned_at is when the pass started; the lease is released');

-- Fresh for a run enqueued before that pass; stale for a later run or after max age.
select is((select outcome from internal.take_stripe_invoice_scan('acct_130', 'w2',
  '2031-01-01 00:00:05+00', interval '15 minutes', interval '60 seconds', 300,
  '2031-01-01 00:01:00+00')), 'fresh', 'fresh for a run made before the pass started');
select results_eq(
  $$ select outcome, pass_from from internal.take_stripe_invoice_scan('acct_130', 'w2',
       '2031-01-01 00:00:05+00', interval '15 minutes', interval '60 seconds', 300,
       '2031-01-01 00:20:00+00') $$,
  $$ values ('leased'::text, 1899999800::bigint) $$,
  'stale after max age: the next pass starts at the watermark less the skew');
-- That pass sees only an older invoice (the newer ones were deleted): the watermark stays.
select is(internal.record_stripe_invoice_page('acct_130', 'w2',
    '[{"id": "in_130d", "customer": "cus_130", "status": "void", "created": 1899999900,
       "total": 0}]', null, interval '60 seconds', '2031-01-01 00:20:01+00'), 1,
  'an older invoice is indexed');
select is(internal.finish_stripe_invoice_scan('acct_130', 'w2'),
  1900000100::bigint, 'the watermark never goes down');

-- An expired lease is taken back, and the pass it left is resumed at its cursor.
select is((select outcome from internal.take_stripe_invoice_scan('acct_130', 'w3',
  '2031-01-02 00:00+00', interval '15 minutes', interval '60 seconds', 300,
  '2031-01-02 00:00:00+00')), 'leased', 'w3 starts a pass');
select is(internal.record_stripe_invoice_page('acct_130', 'w3', '[]', 'in_130x',
  interval '60 seconds', '2031-01-02 00:00:01+00'), 0, 'and reads a page');
select results_eq(
  $$ select outcome, pass_cursor from internal.take_stripe_invoice_scan('acct_130', 'w4',
       '2031-01-02 00:00+00', interval '15 minutes', interval '60 seconds', 300,
       '2031-01-02 00:05:00+00') $$,
  $$ values ('leased'::text, 'in_130x'::text) $$,
  'after w3''s lease expired, w4 resumes its pass at the cursor');

-- Not for signed-in users.
select tests.authenticate_as(:'q130_user');
select throws_ok(
  $$ select internal.take_stripe_invoice_scan('acct_130', 'u', now()) $$,
  '42501', null, 'authenticated users cannot take the scan');
select * from finish();
rollback;
