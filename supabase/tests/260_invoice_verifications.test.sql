-- Verifications of stored drafts and the Events API change log: a new cursor generation starts
-- without a read, a pass is leased and fenced, events are recorded once (in order), a
-- verification holds until a foreign change to its invoice or customer is recorded (its own
-- writes' events do not void it), a cursor idle past Stripe's event retention restarts and
-- voids what it vouched for, and only service_role may touch any of it.
begin;
select plan(36);
select tests.create_user('q260@example.com') as q260_user \gset

select has_table('internal', 'stripe_event_cursor', 'stripe_event_cursor exists');
select has_table('internal', 'stripe_object_changes', 'stripe_object_changes exists');
select has_table('internal', 'stripe_invoice_verifications', 'stripe_invoice_verifications exists');
select is(
  (select count(*)::int from pg_proc p join pg_namespace n on n.oid = p.pronamespace
   where n.nspname = 'internal' and p.proname in ('stripe_event_position',
     'take_stripe_event_scan', 'stripe_event_scan_held', 'record_stripe_event_page',
     'finish_stripe_event_scan', 'release_stripe_event_scan', 'record_invoice_verification',
     'invoice_verification_holds')
     and not coalesce(p.proconfig @> array['search_path=""'], false)),
  0, 'every function sets an empty search_path');
select ok(
  not has_function_privilege('anon', 'internal.take_stripe_event_scan(text, text, timestamptz, '
    'interval, interval, integer, timestamptz)', 'execute')
  and not has_function_privilege('authenticated', 'internal.record_invoice_verification(text, '
    'text, bigint, text, text, text, boolean, bigint, bigint, text[])', 'execute')
  and not has_function_privilege('authenticated', 'internal.invoice_verification_holds(text, '
    'text, bigint, text, text, text)', 'execute')
  and not has_function_privilege('public', 'internal.record_stripe_event_page(text, text, jsonb, '
    'bigint, text, interval, timestamptz)', 'execute')
  and not has_function_privilege('anon', 'internal.stripe_event_position(text)', 'execute'),
  'anon, authenticated and public may not execute the functions');
select ok(
  has_function_privilege('service_role', 'internal.take_stripe_event_scan(text, text, '
    'timestamptz, interval, interval, integer, timestamptz)', 'execute')
  and has_function_privilege('service_role', 'internal.record_invoice_verification(text, text, '
    'bigint, text, text, text, boolean, bigint, bigint, text[])', 'execute')
  and has_function_privilege('service_role', 'internal.invoice_verification_holds(text, text, '
    'bigint, text, text, text)', 'execute'),
  'service_role may execute them');
select ok(
  not has_table_privilege('authenticated', 'internal.stripe_invoice_verifications', 'select')
  and not has_table_privilege('anon', 'internal.stripe_object_changes', 'select')
  and not has_table_privilege('authenticated', 'internal.stripe_event_cursor', 'update'),
  'signed-in users and anon can neither read nor write the tables');

-- Acting as each API role.
select tests.authenticate_as(:'q260_user');
select throws_ok($$ select internal.stripe_event_position('acct_260') $$, '42501', null,
  'authenticated users cannot read the position');
select throws_ok($$ select * from internal.stripe_invoice_verifications $$, '42501', null,
  'authenticated users cannot read verifications');
select tests.clear_authentication();
set local role anon;
select throws_ok($$ select internal.invoice_verification_holds('acct_260', 'final', 1,
  'in_260a', 'cus_260', repeat('a', 64)) $$, '42501', null, 'anon cannot ask');
reset role;

select tests.authenticate_as_service_role();
select is((select count(*)::int from internal.stripe_event_position('acct_260')), 0,
  'no position before the cursor starts');
select results_eq($$ select outcome, pass_from from internal.take_stripe_event_scan('acct_260',
    'w1', '2031-01-01 00:00+00', interval '15 minutes', interval '60 seconds', 300,
    '2031-01-01 00:00:10+00') $$, $$ values ('leased'::text, null::bigint) $$,
  'a new cursor is leased to start a generation (no bound: only the newest event is read)');
select throws_ok($$ select internal.finish_stripe_event_scan('acct_260', 'w1') $$, '22023', null,
  'a generation cannot start without where Stripe''s clock stands');
select is(internal.finish_stripe_event_scan('acct_260', 'w1', 1924992000), 1924992000::bigint,
  'the generation starts at the newest event''s created');
select results_eq($$ select generation, seen_seq from internal.stripe_event_position('acct_260') $$,
  $$ values (1::bigint, 0::bigint) $$, 'generation 1, nothing recorded');

select internal.record_invoice_verification('acct_260', 'final', 1, 'in_260a', 'cus_260',
  repeat('a', 64), false, 1, 0, array['key-own-1']);
select internal.record_invoice_verification('acct_260', 'final', 2, 'in_260b', 'cus_260',
  repeat('b', 64), true, 1, 0, array[]::text[]);
select ok(internal.invoice_verification_holds('acct_260', 'final', 1, 'in_260a', 'cus_260',
  repeat('a', 64)), 'a fresh verification holds');
select ok(not internal.invoice_verification_holds('acct_260', 'final', 1, 'in_260a', 'cus_260',
  repeat('c', 64)), 'not for another wanted hash (the bill changed)');
select ok(not internal.invoice_verification_holds('acct_260', 'final', 1, 'in_260z', 'cus_260',
  repeat('a', 64)), 'not for another stored invoice');
select throws_ok($$ select internal.record_invoice_verification('acct_260', 'final', 3, 'in_260c',
  '', repeat('a', 64), false, 1, 0, null) $$, '22023', null, 'a customer is required');

-- A later run: the log is stale, so a pass is leased from the watermark less the skew.
select results_eq($$ select outcome, pass_from from internal.take_stripe_event_scan('acct_260',
    'w1', '2031-01-01 00:30+00', interval '15 minutes', interval '60 seconds', 300,
    '2031-01-01 00:30:00+00') $$,
  $$ values ('leased'::text, 1924991700::bigint) $$,
  'a pass reads from the watermark (where the generation started) less 300 s');
select is((select outcome from internal.take_stripe_event_scan('acct_260', 'w2',
    '2031-01-01 00:30+00', interval '15 minutes', interval '60 seconds', 300,
    '2031-01-01 00:30:01+00')), 'busy', 'a second worker finds it busy');
select throws_ok($$ select internal.record_stripe_event_page('acct_260', 'w2', '[]', null, null) $$,
  '55P03', null, 'a worker without the lease cannot record a page');
select throws_ok($$ select internal.record_stripe_event_page('acct_260', 'w1',
  '[{"id": "evt_1", "type": "invoice.updated", "created": 1, "kind": "other",
     "object_id": "in_1"}]', 1, null) $$,
  '22023', null, 'a malformed change is refused');

-- The verification's own write, and a customer update it does not watch: still holds.
select is(internal.record_stripe_event_page('acct_260', 'w1',
  '[{"id": "evt_260own", "type": "invoice.updated", "created": 1924992020, "kind": "invoice",
     "object_id": "in_260a", "idempotency_key": "key-own-1"},
    {"id": "evt_260cus", "type": "customer.updated", "created": 1924992030,
     "kind": "customer_updated", "object_id": "cus_260", "idempotency_key": null}]',
  1924992030, 'evt_260own', interval '60 seconds', '2031-01-01 00:30:02+00'), 2,
  'a page of two changes is recorded');
select ok(internal.invoice_verification_holds('acct_260', 'final', 1, 'in_260a', 'cus_260',
  repeat('a', 64)), 'its own write''s event and an unwatched customer update do not void it');
select ok(not internal.invoice_verification_holds('acct_260', 'final', 2, 'in_260b', 'cus_260',
  repeat('b', 64)), 'a customer update voids a verification that watches it');
select is(internal.record_stripe_event_page('acct_260', 'w1',
  '[{"id": "evt_260own", "type": "invoice.updated", "created": 1924992020, "kind": "invoice",
     "object_id": "in_260a", "idempotency_key": "key-own-1"}]',
  1924992020, null, interval '60 seconds', '2031-01-01 00:30:03+00'), 0,
  'an event read again (skew) is not recorded twice');
select is(internal.finish_stripe_event_scan('acct_260', 'w1'), 1924992030::bigint,
  'the watermark is the newest event seen');

-- A hand edit (no key of ours) voids it.
select is((select outcome from internal.take_stripe_event_scan('acct_260', 'w2',
    '2031-01-01 00:40+00', interval '15 minutes', interval '60 seconds', 300,
    '2031-01-01 00:40:00+00')), 'leased', 'the next pass');
select is(internal.record_stripe_event_page('acct_260', 'w2',
  '[{"id": "evt_260hand", "type": "invoiceitem.created", "created": 1924992500,
     "kind": "invoice", "object_id": "in_260a", "idempotency_key": null}]',
  1924992500, null, interval '60 seconds', '2031-01-01 00:40:01+00'), 1, 'a hand edit');
select ok(not internal.invoice_verification_holds('acct_260', 'final', 1, 'in_260a', 'cus_260',
  repeat('a', 64)), 'a change recorded after the verification, not its own, voids it');
select internal.finish_stripe_event_scan('acct_260', 'w2');

-- Re-verified after the edit, then the cursor sits idle past Stripe's 30 days of events.
select internal.record_invoice_verification('acct_260', 'final', 1, 'in_260a', 'cus_260',
  repeat('a', 64), false, 1,
  (select seen_seq from internal.stripe_event_position('acct_260')), array[]::text[]);
select ok(internal.invoice_verification_holds('acct_260', 'final', 1, 'in_260a', 'cus_260',
  repeat('a', 64)), 're-verified after the edit, it holds');
select results_eq($$ select outcome, pass_from from internal.take_stripe_event_scan('acct_260',
    'w3', '2031-02-15 00:00+00', interval '15 minutes', interval '60 seconds', 300,
    '2031-02-15 00:00:00+00') $$, $$ values ('leased'::text, null::bigint) $$,
  'a cursor idle past the retention starts a new generation');
select ok(internal.invoice_verification_holds('acct_260', 'final', 1, 'in_260a', 'cus_260',
  repeat('a', 64)), 'until that generation starts, the old one stands (nothing trusts it: stale)');
select is(internal.finish_stripe_event_scan('acct_260', 'w3', 1928879990), 1928879990::bigint,
  'the new generation starts');
select ok(not internal.invoice_verification_holds('acct_260', 'final', 1, 'in_260a', 'cus_260',
  repeat('a', 64)), 'and what the old generation vouched for no longer holds');

select * from finish();
rollback;
