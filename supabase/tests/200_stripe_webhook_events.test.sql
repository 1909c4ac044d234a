-- Webhook events: stored once by ID, applied once, order-safe, malformed ones refused by name,
-- and only the service side may feed them in.
begin;
select plan(22);

insert into public.tenants (tenant) values ('whEvt/');
insert into internal.manual_bills (tenant, usd_cents, description, date_start, date_end, stripe_invoice_id)
values ('whEvt/', 5000, 'webhook bill', '2030-03-01', '2030-04-01', 'in_whEvt1');

-- An invoice event as Stripe sends it (only the fields the mirror reads).
create function pg_temp.evt(p_id text, p_type text, p_created bigint, p_status text)
returns jsonb language sql as $$
  select jsonb_build_object('id', p_id, 'object', 'event', 'type', p_type, 'created', p_created,
    'livemode', false, 'data', jsonb_build_object('object', jsonb_build_object(
      'id', 'in_whEvt1', 'object', 'invoice', 'status', p_status, 'customer', 'cus_whEvt',
      'amount_due', 5000, 'total', 5000, 'currency', 'usd',
      'hosted_invoice_url', case when p_status <> 'draft' then 'https://pay.example/in_whEvt1' end,
      'invoice_pdf', case when p_status <> 'draft' then 'https://pay.example/in_whEvt1.pdf' end)))
$$;

select ok(internal.stripe_event_is_relevant('invoice.paid'), 'invoice.paid is followed');
select ok(not internal.stripe_event_is_relevant('invoice.upcoming'), 'invoice.upcoming is not');

select tests.authenticate_as_service_role();
select is(internal.receive_stripe_event(pg_temp.evt('evt_w1', 'invoice.finalized', 1900000000, 'open')),
  'applied', 'a new event is applied');
select is(internal.receive_stripe_event(pg_temp.evt('evt_w1', 'invoice.finalized', 1900000000, 'open')),
  'duplicate', 'the same event again is a duplicate');
select results_eq($$ select count(*)::int, max(deliveries), max(outcome) from internal.stripe_events
  where id = 'evt_w1' $$, $$ values (1, 2, 'applied'::text) $$,
  'it is stored once, with both deliveries counted');

select is(internal.receive_stripe_event(pg_temp.evt('evt_w3', 'invoice.paid', 1900000100, 'paid')),
  'applied', 'a newer event is applied');
select is(internal.receive_stripe_event(pg_temp.evt('evt_w2', 'invoice.updated', 1900000050, 'open')),
  'stale', 'an older event delivered late is stored but changes nothing');
select results_eq($$ select status, source_time from internal.stripe_invoice_state
  where stripe_invoice_id = 'in_whEvt1' $$,
  $$ values ('paid'::text, to_timestamp(1900000100)) $$, 'the mirror keeps the newest state');
select is(internal.receive_stripe_event(pg_temp.evt('evt_w4', 'invoice.finalized', 1900000100, 'open')),
  'stale', 'a same-second event of an earlier lifecycle state loses');

select is(internal.receive_stripe_event(pg_temp.evt('evt_w5', 'invoice.deleted', 1900000200, 'draft')),
  'applied', 'invoice.deleted is applied');
select results_eq($$ select invoice_status from internal.invoices_ext where stripe_invoice_id = 'in_whEvt1' $$,
  $$ values ('deleted'::text) $$, 'and invoices_ext shows the invoice as deleted');

select is(internal.receive_stripe_event(jsonb_build_object('id', 'evt_w6', 'type', 'customer.deleted',
    'created', 1900000300, 'livemode', false,
    'data', jsonb_build_object('object', jsonb_build_object('id', 'cus_whEvt', 'object', 'customer',
      'deleted', true)))),
  'applied', 'customer.deleted is applied');
select is((select count(*)::int from internal.stripe_deleted_customers where customer_id = 'cus_whEvt'), 1,
  'and the customer is recorded as deleted');

select throws_ok($$ select internal.receive_stripe_event(pg_temp.evt('evil', 'invoice.paid', 1, 'paid')) $$,
  '22023', 'event.id must look like evt_..., got evil', 'a malformed event ID is refused by name');
select throws_ok($$ select internal.receive_stripe_event(pg_temp.evt('evt_w7', 'invoice.upcoming', 1, 'draft')) $$,
  '22023', 'event type invoice.upcoming is not applied to the mirror', 'an unfollowed type is refused');
select throws_ok($$ select internal.receive_stripe_event(pg_temp.evt('evt_w8', 'customer.deleted', 1, 'paid')) $$,
  '22023', 'event.data.object must be a customer', 'an event whose object is of the wrong kind is refused');
select throws_ok($$ select internal.receive_stripe_event(pg_temp.evt('evt_w9', 'invoice.paid', null, 'paid')) $$,
  '22023', 'event.created must be a Unix timestamp', 'an event without created is refused');
select is_empty($$ select 1 from internal.stripe_events where id in ('evt_w7', 'evt_w8', 'evt_w9') $$,
  'refused events leave nothing stored');

select tests.authenticate_as('00000000-0000-4000-8000-00000000ffff');
select throws_ok($$ select internal.receive_stripe_event(pg_temp.evt('evt_wa', 'invoice.paid', 1, 'paid')) $$,
  '42501', null, 'authenticated cannot feed events');
select throws_ok($$ select * from internal.stripe_events $$, '42501', null,
  'authenticated cannot read stored events');
select tests.clear_authentication();
select throws_ok($$ select internal.receive_stripe_event(pg_temp.evt('evt_wb', 'invoice.paid', 1, 'paid')) $$,
  '42501', null, 'anon cannot feed events');
reset role;

select is(
  (select proconfig from pg_proc where oid = 'internal.receive_stripe_event(jsonb)'::regprocedure),
  array['search_path=""'], 'receive_stripe_event pins an empty search_path');

select * from finish();
rollback;
