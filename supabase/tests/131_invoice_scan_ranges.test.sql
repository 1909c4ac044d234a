-- The invoice index scan's ranges: saved with each page under the lease, kept for a pass that
-- is handed back, gone with a new, finished or dropped pass; bad ranges are refused by name;
-- only service_role may save them.
begin;
select plan(21);
select tests.create_user('q131@example.com') as q131_user \gset

select ok(
  not has_function_privilege('anon', 'internal.record_stripe_invoice_ranges(text, text, jsonb, '
    'jsonb, interval, timestamptz, bigint)', 'execute')
  and not has_function_privilege('authenticated', 'internal.record_stripe_invoice_ranges(text, '
    'text, jsonb, jsonb, interval, timestamptz, bigint)', 'execute')
  and not has_function_privilege('public', 'internal.record_stripe_invoice_ranges(text, text, '
    'jsonb, jsonb, interval, timestamptz, bigint)', 'execute'),
  'anon, authenticated and public may not save ranges');
select ok(has_function_privilege('service_role', 'internal.record_stripe_invoice_ranges(text, '
  'text, jsonb, jsonb, interval, timestamptz, bigint)', 'execute'), 'service_role may');
select is(
  (select count(*)::int from pg_proc p join pg_namespace n on n.oid = p.pronamespace
   where n.nspname = 'internal'
     and p.proname in ('record_stripe_invoice_ranges', 'stripe_invoice_scan_forget_ranges')
     and not coalesce(p.proconfig @> array['search_path=""'], false)),
  0, 'both functions set an empty search_path');

select tests.authenticate_as_service_role();
select is((select outcome from internal.take_stripe_invoice_scan('acct_131', 'w1',
  '2031-01-01 00:00+00', interval '15 minutes', interval '60 seconds', 300,
  '2031-01-01 00:00:10+00')), 'leased', 'w1 starts the first pass');
select throws_ok(
  $$ select internal.record_stripe_invoice_ranges('acct_131', 'w2', '[]', '[]') $$,
  '55P03', null, 'a worker without the lease cannot save ranges');
select throws_ok(
  $$ select internal.record_stripe_invoice_ranges('acct_131', 'w1', '[]',
       '[{"gte": "yesterday", "lte": null, "floor": null, "cursor": null}]') $$,
  '22023', 'each range needs numeric or null gte, lte and floor, and a cursor like in_... or null',
  'a range with a non-numeric bound is refused');
select throws_ok(
  $$ select internal.record_stripe_invoice_ranges('acct_131', 'w1', '[]', '{"gte": 1}') $$,
  '22023', 'ranges must be a JSON array', 'ranges that are not an array are refused');
select is(
  internal.record_stripe_invoice_ranges('acct_131', 'w1',
    '[{"id": "in_131a", "customer": "cus_131", "status": "draft", "created": 1900000100,
       "total": 500, "metadata": {}}]',
    '[{"gte": null, "lte": null, "floor": 1900000100, "cursor": "in_131a"},
      {"gte": null, "lte": 1900000099, "floor": null, "cursor": null}]',
    interval '60 seconds', '2031-01-01 00:00:20+00'),
  1, 'a page is upserted with the ranges left');
select is((select jsonb_array_length(pass_ranges) from internal.stripe_invoice_scan
  where account = 'acct_131'), 2, 'both ranges are saved');

-- Stripe's clock at the newest page lifts the watermark past the newest invoice, never lowers it.
select is(internal.record_stripe_invoice_ranges('acct_131', 'w1', '[]',
    '[{"gte": null, "lte": null, "floor": 1900000100, "cursor": "in_131a"},
      {"gte": null, "lte": 1900000099, "floor": null, "cursor": null}]',
    interval '60 seconds', '2031-01-01 00:00:21+00', 1900000000),
  0, 'an older Date is recorded');
select is((select pass_high from internal.stripe_invoice_scan where account = 'acct_131'),
  1900000100::bigint, 'but does not lower what the pass has seen');

-- Handed back out of time, the pass keeps its ranges for the next scanner.
select ok(internal.release_stripe_invoice_scan('acct_131', 'w1', true), 'w1 hands the pass back');
select is((select outcome from internal.take_stripe_invoice_scan('acct_131', 'w3',
  '2031-01-01 00:00+00', interval '15 minutes', interval '60 seconds', 300,
  '2031-01-01 00:00:30+00')), 'leased', 'w3 resumes it');
select is((select pass_ranges -> 1 ->> 'lte' from internal.stripe_invoice_scan
  where account = 'acct_131'), '1900000099', 'with the ranges w1 left');

-- A finished pass leaves none behind for the next one.
select is(internal.record_stripe_invoice_ranges('acct_131', 'w3', '[]', '[]',
    interval '60 seconds', '2031-01-01 00:00:31+00', 1900000500), 0,
  'w3 reads the last range, the newest page answered at 1900000500 on Stripe''s clock');
select is(internal.finish_stripe_invoice_scan('acct_131', 'w3'), 1900000500::bigint,
  'w3 finishes it: the watermark is Stripe''s clock then, past the newest invoice');
select is((select pass_ranges from internal.stripe_invoice_scan where account = 'acct_131'),
  null::jsonb, 'and its ranges are gone');

-- A dropped pass (its cursor was refused) takes its ranges with it.
select is((select outcome from internal.take_stripe_invoice_scan('acct_131', 'w4',
  '2031-01-02 00:00+00', interval '15 minutes', interval '60 seconds', 300,
  '2031-01-02 00:00:00+00')), 'leased', 'w4 starts the next pass');
select is(internal.record_stripe_invoice_ranges('acct_131', 'w4', '[]',
    '[{"gte": 1900000000, "lte": null, "floor": 1900000000, "cursor": "in_131gone"}]',
    interval '60 seconds', '2031-01-02 00:00:01+00'), 0, 'and saves a range');
select ok(internal.release_stripe_invoice_scan('acct_131', 'w4', false), 'w4 drops the pass');
select is((select pass_ranges from internal.stripe_invoice_scan where account = 'acct_131'),
  null::jsonb, 'and its ranges with it');
select * from finish();
rollback;
