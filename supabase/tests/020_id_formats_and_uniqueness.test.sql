-- Stored IDs are well-formed, and each belongs to exactly one tenant or one bill.
begin;
select plan(9);

insert into public.tenants (tenant) values ('fmtA/'), ('fmtB/');
insert into internal.manual_bills (tenant, usd_cents, description, date_start, date_end)
values ('fmtA/', 100, 'm1', '2030-01-01', '2030-02-01'), ('fmtA/', 100, 'm2', '2030-03-01', '2030-04-01');
insert into internal.billing_historicals (tenant, billed_month, report)
values ('fmtA/', '2030-01-01', '{}');

select throws_ok($$ update public.tenants set stripe_customer_id = 'in_123' where tenant = 'fmtA/' $$,
  '23514', null, 'a customer ID must look like cus_...');
select throws_ok($$ update internal.manual_bills set stripe_invoice_id = 'cus_123' where description = 'm1' $$,
  '23514', null, 'a manual bill''s invoice ID must look like in_...');
select throws_ok($$ update internal.billing_historicals set stripe_invoice_id = 'in_ bad' where tenant = 'fmtA/' $$,
  '23514', null, 'a usage bill''s invoice ID must look like in_...');

update public.tenants set stripe_customer_id = 'cus_fmt1' where tenant = 'fmtA/';
select throws_ok($$ update public.tenants set stripe_customer_id = 'cus_fmt1' where tenant = 'fmtB/' $$,
  '23505', null, 'a customer ID belongs to one tenant');

update internal.manual_bills set stripe_invoice_id = 'in_fmt1' where description = 'm1';
select throws_ok($$ update internal.manual_bills set stripe_invoice_id = 'in_fmt1' where description = 'm2' $$,
  '23505', null, 'an invoice ID belongs to one manual bill');
select throws_ok($$ update internal.billing_historicals set stripe_invoice_id = 'in_fmt1' where tenant = 'fmtA/' $$,
  '23505', 'Stripe invoice in_fmt1 is already linked to bill manual:' ||
    (select id from internal.manual_bills where description = 'm1'),
  'an invoice ID cannot belong to a manual and a usage bill at once');

update internal.billing_historicals set stripe_invoice_id = 'in_fmt2' where tenant = 'fmtA/';
select throws_ok($$ update internal.manual_bills set stripe_invoice_id = 'in_fmt2' where description = 'm2' $$,
  '23505', null, 'nor a usage and a manual bill');

-- Moving an ID frees the old one.
update internal.manual_bills set stripe_invoice_id = 'in_fmt3' where description = 'm1';
select lives_ok($$ update internal.manual_bills set stripe_invoice_id = 'in_fmt1' where description = 'm2' $$,
  'an ID freed by a change can be stored elsewhere');
select is((select count(*)::int from internal.bill_invoice_links where stripe_invoice_id like 'in_fmt%'),
  3, 'the registry holds exactly the stored IDs');

select * from finish();
rollback;
