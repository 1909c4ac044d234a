-- Mirrored invoice state reaches a signed-in user only through public.invoices_ext, and only for
-- the tenants they administer: their own invoices' status, amount and links, nobody else's.
begin;
select plan(11);

insert into public.tenants (tenant, stripe_customer_id)
values ('whAccA/', 'cus_whAccA'), ('whAccB/', 'cus_whAccB');
insert into auth.users (id, aud, role, email) values
  ('00000000-0000-4000-8000-00000000aa01', 'authenticated', 'authenticated', 'wh-admin-a@test'),
  ('00000000-0000-4000-8000-00000000bb01', 'authenticated', 'authenticated', 'wh-admin-b@test'),
  ('00000000-0000-4000-8000-00000000cc01', 'authenticated', 'authenticated', 'wh-reader-a@test');
insert into public.user_grants (user_id, object_role, capability) values
  ('00000000-0000-4000-8000-00000000aa01', 'whAccA/', 'admin'),
  ('00000000-0000-4000-8000-00000000bb01', 'whAccB/', 'admin'),
  ('00000000-0000-4000-8000-00000000cc01', 'whAccA/', 'read');
insert into internal.manual_bills (tenant, usd_cents, description, date_start, date_end, stripe_invoice_id)
values ('whAccA/', 1000, 'A contract', '2030-01-01', '2030-02-01', 'in_whAccA1');
insert into internal.billing_historicals (tenant, billed_month, report, stripe_invoice_id)
values ('whAccB/', '2030-01-01', '{"subtotal": 2000, "line_items": []}', 'in_whAccB1');

-- State arrives as webhooks do, on the service side; one invoice belongs to no bill.
select tests.authenticate_as_service_role();
select is(internal.receive_stripe_event(jsonb_build_object('id', e.id, 'type', 'invoice.finalized',
    'created', 1900000000, 'livemode', false, 'data', jsonb_build_object('object', jsonb_build_object(
      'id', e.inv, 'object', 'invoice', 'status', 'open', 'customer', e.cus, 'amount_due', e.amt,
      'currency', 'usd', 'hosted_invoice_url', 'https://pay.example/' || e.inv,
      'invoice_pdf', 'https://pay.example/' || e.inv || '.pdf')))), 'applied',
  'state of ' || e.inv || ' is mirrored')
from (values ('evt_whAccA1', 'in_whAccA1', 'cus_whAccA', 1000),
             ('evt_whAccB1', 'in_whAccB1', 'cus_whAccB', 2000),
             ('evt_whOrphan', 'in_whOrphan', 'cus_whAccA', 3000)) as e(id, inv, cus, amt);

select tests.authenticate_as('00000000-0000-4000-8000-00000000aa01');
select results_eq($$ select billed_prefix, stripe_invoice_id, invoice_status, amount_due,
    hosted_invoice_url, invoice_pdf, invoice_synced_at is not null
  from public.invoices_ext where billed_prefix like 'whAcc%' $$,
  $$ values ('whAccA/'::text, 'in_whAccA1'::text, 'open'::text, 1000::bigint,
    'https://pay.example/in_whAccA1'::text, 'https://pay.example/in_whAccA1.pdf'::text, true) $$,
  'admin of A sees the mirrored state of A''s invoice only');
select is_empty($$ select 1 from public.invoices_ext where stripe_invoice_id in ('in_whAccB1', 'in_whOrphan') $$,
  'admin of A cannot reach B''s invoice, or an invoice no bill holds, by its ID');
select throws_ok($$ select status from internal.stripe_invoice_state $$, '42501', null,
  'admin of A cannot read the mirror table');

select tests.authenticate_as('00000000-0000-4000-8000-00000000bb01');
select results_eq($$ select billed_prefix, invoice_status, amount_due from public.invoices_ext
  where billed_prefix like 'whAcc%' $$,
  $$ values ('whAccB/'::text, 'open'::text, 2000::bigint) $$,
  'admin of B sees B''s state only');

select tests.authenticate_as('00000000-0000-4000-8000-00000000cc01');
select is_empty($$ select 1 from public.invoices_ext where billed_prefix like 'whAcc%' $$,
  'a read grant shows no invoice state');

select tests.clear_authentication();
select throws_ok($$ select invoice_status from public.invoices_ext $$, '42501', null,
  'anon sees no invoice state');

-- A newer event reaches the admin's view at once.
select tests.authenticate_as_service_role();
select is(internal.receive_stripe_event(jsonb_build_object('id', 'evt_whAccA2', 'type', 'invoice.paid',
    'created', 1900000500, 'livemode', false, 'data', jsonb_build_object('object', jsonb_build_object(
      'id', 'in_whAccA1', 'object', 'invoice', 'status', 'paid', 'customer', 'cus_whAccA',
      'amount_due', 1000, 'currency', 'usd')))), 'applied', 'a payment is mirrored');
select tests.authenticate_as('00000000-0000-4000-8000-00000000aa01');
select is((select invoice_status from public.invoices_ext where stripe_invoice_id = 'in_whAccA1'), 'paid',
  'admin of A sees the invoice paid');

select * from finish();
rollback;
