-- The setup-intent limit: counted per tenant in Postgres, only by the service side.
begin;
select plan(9);

select tests.clear_authentication();
select throws_ok($$ select internal.take_setup_intent_slot('rl/', 1, 60) $$, '42501', null,
  'anon cannot take a slot');
reset role;
select tests.authenticate_as('00000000-0000-4000-8000-000000000180');
select throws_ok($$ select internal.take_setup_intent_slot('rl/', 1, 60) $$, '42501', null,
  'authenticated cannot take (or burn) a tenant''s slots');
select throws_ok($$ select * from internal.setup_intent_attempts $$, '42501', null,
  'authenticated cannot read the counters');
reset role;

select tests.authenticate_as_service_role();
select is(internal.take_setup_intent_slot('rlA/', 2, 600), 0, 'the first attempt is allowed');
select is(internal.take_setup_intent_slot('rlA/', 2, 600), 0, 'the second too');
select ok(internal.take_setup_intent_slot('rlA/', 2, 600) between 599 and 600,
  'the third is refused with the seconds left in the window');
select is(internal.take_setup_intent_slot('rlB/', 2, 600), 0, 'another tenant has its own limit');
select throws_ok($$ select internal.take_setup_intent_slot('rlA/', 0, 600) $$, '22023',
  'limit must be at least 1, got 0', 'a zero limit is refused by name');
reset role;
update internal.setup_intent_attempts set window_start = now() - interval '11 minutes'
where tenant = 'rlA/';
select is(internal.take_setup_intent_slot('rlA/', 2, 600), 0, 'a new window starts afresh');

select * from finish();
rollback;
