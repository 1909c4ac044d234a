-- The shared Stripe request budget: reservations spaced 1/rate apart across every caller, idle
-- credit capped at the burst, buckets apart per account and mode, bad input refused naming the
-- field, and service_role only.
begin;
select plan(14);
select tests.create_user('q261@example.com') as q261_user \gset

select has_table('internal', 'stripe_rate_buckets', 'stripe_rate_buckets exists');
select ok((select coalesce(proconfig @> array['search_path=""'], false) from pg_proc
  where oid = 'internal.reserve_stripe_request(text, double precision, double precision, timestamptz)'::regprocedure),
  'reserve_stripe_request sets an empty search_path');
select ok(
  not has_function_privilege('anon', 'internal.reserve_stripe_request(text, double precision, '
    'double precision, timestamptz)', 'execute')
  and not has_function_privilege('authenticated', 'internal.reserve_stripe_request(text, '
    'double precision, double precision, timestamptz)', 'execute')
  and not has_table_privilege('authenticated', 'internal.stripe_rate_buckets', 'select')
  and has_function_privilege('service_role', 'internal.reserve_stripe_request(text, '
    'double precision, double precision, timestamptz)', 'execute'),
  'only service_role may reserve');

select tests.authenticate_as(:'q261_user');
select throws_ok($$ select internal.reserve_stripe_request('acct_261:test', 25) $$, '42501', null,
  'authenticated users cannot take from the budget');
select tests.clear_authentication();
set local role anon;
select throws_ok($$ select internal.reserve_stripe_request('acct_261:test', 25) $$, '42501', null,
  'nor can anon');
reset role;

select tests.authenticate_as_service_role();
-- At 4 requests/s with no burst, reservations at the same instant are 250 ms apart.
select is(internal.reserve_stripe_request('acct_261:test', 4, 1, '2031-01-01 00:00:00+00'),
  0::float8, 'the first request goes at once');
select is(internal.reserve_stripe_request('acct_261:test', 4, 1, '2031-01-01 00:00:00+00'),
  250::float8, 'the second waits a quarter second');
select is(internal.reserve_stripe_request('acct_261:test', 4, 1, '2031-01-01 00:00:00.1+00'),
  400::float8, 'the third, asked 100 ms later, waits for its slot at 500 ms');
select is(internal.reserve_stripe_request('acct_261:live', 4, 1, '2031-01-01 00:00:00.1+00'),
  0::float8, 'the live bucket of the account is apart');
-- After a long idle only `burst` requests go at once.
select is(array[internal.reserve_stripe_request('acct_261:test', 4, 3, '2031-01-01 00:10:00+00'),
    internal.reserve_stripe_request('acct_261:test', 4, 3, '2031-01-01 00:10:00+00'),
    internal.reserve_stripe_request('acct_261:test', 4, 3, '2031-01-01 00:10:00+00'),
    internal.reserve_stripe_request('acct_261:test', 4, 3, '2031-01-01 00:10:00+00')],
  array[0, 0, 0, 250]::float8[], 'idle credit is capped at the burst (3), then 250 ms apart');
select throws_ok($$ select internal.reserve_stripe_request('', 4) $$, '22023', null,
  'a bucket is required');
select throws_ok($$ select internal.reserve_stripe_request('b', 0) $$, '22023',
  'rate must be a positive number of requests per second', 'a rate of 0 is refused');
select throws_ok($$ select internal.reserve_stripe_request('b', 4, 0.5) $$, '22023',
  'burst must be at least one request', 'a burst under one request is refused');
select is((select count(*)::int from internal.stripe_rate_buckets where bucket = 'b'), 0,
  'refused input wrote nothing');
select * from finish();
rollback;
