-- A request reserves the account's bucket and its operation's in one call and waits for the
-- later slot; operations are budgeted apart from each other; bad input is refused naming the
-- field and writes nothing; service_role only.
begin;
select plan(10);
select tests.create_user('q262@example.com') as q262_user \gset

select ok((select coalesce(proconfig @> array['search_path=""'], false) from pg_proc
  where oid = 'internal.reserve_stripe_requests(text[], double precision[], double precision, timestamptz)'::regprocedure),
  'reserve_stripe_requests sets an empty search_path');
select ok(
  not has_function_privilege('anon', 'internal.reserve_stripe_requests(text[], '
    'double precision[], double precision, timestamptz)', 'execute')
  and not has_function_privilege('authenticated', 'internal.reserve_stripe_requests(text[], '
    'double precision[], double precision, timestamptz)', 'execute')
  and has_function_privilege('service_role', 'internal.reserve_stripe_requests(text[], '
    'double precision[], double precision, timestamptz)', 'execute'),
  'only service_role may reserve');
select tests.authenticate_as(:'q262_user');
select throws_ok($$ select internal.reserve_stripe_requests(array['acct_262:live'], array[100]) $$,
  '42501', null, 'authenticated users cannot reserve');
select tests.clear_authentication();

select tests.authenticate_as_service_role();
-- The account at 100/s, each operation at 4/s: three creates at one instant go 0, 250, 500 ms
-- apart (the operation's limit), though the account's bucket would let them go 10 ms apart.
select is(array[
    internal.reserve_stripe_requests(array['acct_262:live', 'acct_262:live POST /v1/invoices'],
      array[100, 4], 1, '2031-01-01 00:00:00+00'),
    internal.reserve_stripe_requests(array['acct_262:live', 'acct_262:live POST /v1/invoices'],
      array[100, 4], 1, '2031-01-01 00:00:00+00'),
    internal.reserve_stripe_requests(array['acct_262:live', 'acct_262:live POST /v1/invoices'],
      array[100, 4], 1, '2031-01-01 00:00:00+00')],
  array[0, 250, 500]::float8[], 'an operation waits for its own slot');
-- Another operation at the same instant only waits for the account (three slots taken: 30 ms).
select is(internal.reserve_stripe_requests(
    array['acct_262:live POST /v1/invoices/:id/add_lines', 'acct_262:live'],
    array[4, 100], 1, '2031-01-01 00:00:00+00'),
  30::float8, 'another operation has a bucket of its own; the account''s is shared');
select is((select count(*)::int from internal.stripe_rate_buckets where bucket like 'acct_262:%'),
  3, 'one bucket for the account and one per operation');

select throws_ok($$ select internal.reserve_stripe_requests(array[]::text[], array[]::float8[]) $$,
  '22023', 'buckets must name one to eight buckets', 'no bucket is refused');
select throws_ok($$ select internal.reserve_stripe_requests(array['x262', 'y262'], array[4]) $$,
  '22023', 'rates must give one rate per bucket', 'a missing rate is refused');
select throws_ok($$ select internal.reserve_stripe_requests(array['x262'], array[0]) $$,
  '22023', 'rate must be a positive number of requests per second', 'a rate of 0 is refused');
select is((select count(*)::int from internal.stripe_rate_buckets where bucket in ('x262', 'y262')),
  0, 'refused input wrote nothing');
select * from finish();
rollback;
