-- A bill that holds an invoice cannot be deleted.
begin;
select plan(5);

insert into public.tenants (tenant) values ('delA/');
insert into internal.manual_bills (tenant, usd_cents, description, date_start, date_end)
values ('delA/', 100, 'd1', '2030-01-01', '2030-02-01'), ('delA/', 100, 'd2', '2030-03-01', '2030-04-01');
insert into internal.billing_historicals (tenant, billed_month, report) values ('delA/', '2030-01-01', '{}');
update internal.manual_bills set stripe_invoice_id = 'in_D1' where description = 'd1';
update internal.billing_historicals set stripe_invoice_id = 'in_D2' where tenant = 'delA/';

select throws_ok($$ delete from internal.manual_bills where description = 'd1' $$, '23001',
  format('bill manual:%s has Stripe invoice in_D1; it cannot be deleted',
    (select id from internal.manual_bills where description = 'd1')),
  'deleting a manual bill with an invoice is refused');
select throws_ok($$ delete from internal.billing_historicals where tenant = 'delA/' $$, '23001',
  null, 'deleting a usage bill with an invoice is refused');
select lives_ok($$ delete from internal.manual_bills where description = 'd2' $$,
  'a bill without an invoice can be deleted');

-- The message says what to do instead.
create function pg_temp.delete_hint() returns text language plpgsql as $$
declare h text;
begin
  delete from internal.manual_bills where description = 'd1';
  return null;
exception when restrict_violation then
  get stacked diagnostics h = pg_exception_hint;
  return h;
end $$;
select matches(pg_temp.delete_hint(), 'release it with internal.release_bill_invoice',
  'the refusal says to release the invoice first');

select internal.release_bill_invoice('manual', (select id from internal.manual_bills where description = 'd1'),
  'in_D1', 'test', 'voided');
select lives_ok($$ delete from internal.manual_bills where description = 'd1' $$,
  'after a release the bill can be deleted');

select * from finish();
rollback;
