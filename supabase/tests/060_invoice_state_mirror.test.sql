-- The invoice state mirror: order-safe, shown in invoices_ext, service side only.
begin;
select plan(13);

insert into public.tenants (tenant) values ('mirA/');
insert into internal.manual_bills (tenant, usd_cents, description, date_start, date_end, stripe_invoice_id)
values ('mirA/', 1200, 'mirror bill', '2030-01-01', '2030-02-01', 'in_mir1');

select ok(internal.record_invoice_state(
  '{"id":"in_mir1","status":"open","amount_due":1200,"total":1200,"currency":"usd","customer":"cus_mir","hosted_invoice_url":"https://invoice.example/1","invoice_pdf":"https://invoice.example/1.pdf"}',
  '2030-02-02 10:00:00+00', 'test'), 'a first observation is written');
select ok(not internal.record_invoice_state('{"id":"in_mir1","status":"draft","amount_due":0}',
  '2030-02-02 09:00:00+00', 'test'), 'an older observation is refused');
select is((select status from internal.stripe_invoice_state where stripe_invoice_id = 'in_mir1'),
  'open', 'and leaves the newer state');
select ok(not internal.record_invoice_state('{"id":"in_mir1","status":"draft","amount_due":0}',
  '2030-02-02 10:00:00+00', 'test'), 'a same-second observation of an earlier lifecycle state is refused');
select ok(internal.record_invoice_state('{"id":"in_mir1","status":"paid","amount_due":1200,"customer":"cus_mir","invoice_pdf":"https://invoice.example/1.pdf"}',
  '2030-02-02 10:00:00+00', 'test'), 'a same-second observation of a later state wins');
select ok(internal.record_invoice_state('{"id":"in_mir1","object":"invoice","deleted":true}',
  '2030-02-03 00:00:00+00', 'test'), 'a deletion is recorded');
select results_eq($$ select status, deleted, amount_due, customer_id from internal.stripe_invoice_state
  where stripe_invoice_id = 'in_mir1' $$,
  $$ values ('paid'::text, true, 1200::bigint, 'cus_mir'::text) $$,
  'a deletion keeps the last known amounts');
select throws_ok($$ select internal.record_invoice_state('{"id":"cus_x"}', now(), 'test') $$, '22023',
  'invoice.id must look like in_..., got cus_x', 'a malformed invoice is refused by name');

select results_eq($$ select invoice_status, amount_due, invoice_pdf, bill_id ~ '^manual:[0-9]+$'
  from internal.invoices_ext where stripe_invoice_id = 'in_mir1' $$,
  $$ values ('deleted'::text, 1200::bigint, 'https://invoice.example/1.pdf'::text, true) $$,
  'internal.invoices_ext shows the mirrored state and the bill id');
select is(
  (select array_agg(column_name::text order by ordinal_position)
   from information_schema.columns where table_schema = 'public' and table_name = 'invoices_ext'
     and ordinal_position > 7),
  array['stripe_invoice_id', 'invoice_status', 'amount_due', 'hosted_invoice_url', 'invoice_pdf',
    'invoice_synced_at', 'bill_id'],
  'public.invoices_ext appends the mirrored state after stripe_invoice_id');

select ok(internal.record_customer_deleted('cus_mir', now()), 'a deleted customer is recorded');
select tests.authenticate_as_service_role();
select is((select count(*)::int from internal.stripe_invoice_state where stripe_invoice_id = 'in_mir1'), 1,
  'service_role reads the mirror');
select tests.authenticate_as('00000000-0000-4000-8000-00000000ffff');
select throws_ok($$ select * from internal.stripe_invoice_state $$, '42501', null,
  'authenticated cannot read the mirror table directly');

select * from finish();
rollback;
