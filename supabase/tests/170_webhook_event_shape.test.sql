-- A signed event the mirror cannot store is refused by field before anything is written; only
-- the service side may record rejected events or read them.
begin;
select plan(12);

create function pg_temp.evt(p_id text, p_created jsonb, p_invoice jsonb) returns jsonb
language sql as $$
  select jsonb_build_object('id', p_id, 'object', 'event', 'type', 'invoice.paid',
    'created', p_created, 'livemode', false, 'data', jsonb_build_object('object',
      jsonb_build_object('id', 'in_shape1', 'object', 'invoice', 'status', 'paid',
        'customer', 'cus_shape', 'amount_due', 100, 'total', 100, 'currency', 'usd') || p_invoice))
$$;

select tests.authenticate_as_service_role();
select throws_ok($$ select internal.receive_stripe_event(pg_temp.evt('evt_s1', '1e300', '{}')) $$,
  '22023', 'event.created must be a Unix timestamp in seconds, got 1000000000000000000000000000000000000000',
  'a created far out of range is refused by name');
select throws_ok($$ select internal.receive_stripe_event(pg_temp.evt('evt_s2', '-5', '{}')) $$,
  '22023', null, 'a negative created is refused');
select throws_ok($$ select internal.receive_stripe_event(pg_temp.evt('evt_s3', '1900000000',
  '{"amount_due": "12abc"}')) $$, '22023',
  'event.data.object.amount_due must be an integer amount, got "12abc"',
  'a non-numeric amount is refused by name');
select throws_ok($$ select internal.receive_stripe_event(pg_temp.evt('evt_s4', '1900000000',
  '{"total": 1e30}')) $$, '22023', null, 'an amount beyond bigint is refused');
select throws_ok($$ select internal.receive_stripe_event(pg_temp.evt('evt_s5', '1900000000',
  '{"status": "refunded"}')) $$, '22023',
  'event.data.object.status must be an invoice status, got "refunded"',
  'an unknown status is refused by name');
select throws_ok($$ select internal.receive_stripe_event(pg_temp.evt('evt_s6', '1900000000',
  '{"deleted": "yes"}')) $$, '22023', null, 'a non-boolean deleted is refused');
select is((select count(*)::int from internal.stripe_events where id in ('evt_s1', 'evt_s2', 'evt_s3', 'evt_s4', 'evt_s5', 'evt_s6')), 0,
  'nothing refused was stored');
select is(internal.receive_stripe_event(pg_temp.evt('evt_s7', '1900000000', '{"amount_due": null}')),
  'applied', 'a well-formed event (null amount allowed) is still applied');

select lives_ok($$ select internal.record_rejected_stripe_event(pg_temp.evt('evt_s8', '1e300', '{}'),
  'created', 'out of range') $$, 'service_role records a rejected event');
select is((select field from internal.stripe_rejected_events where event_id = 'evt_s8'), 'created',
  'with the field at fault');
reset role;

select tests.authenticate_as('00000000-0000-4000-8000-000000000170');
select throws_ok($$ select internal.record_rejected_stripe_event('{}', 'x', 'y') $$, '42501', null,
  'authenticated cannot record rejected events');
reset role;
select tests.clear_authentication();
select throws_ok($$ select * from internal.stripe_rejected_events $$, '42501', null,
  'anon cannot read rejected events');
reset role;

select * from finish();
rollback;
