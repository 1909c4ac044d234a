-- invoices_ext reads a usage bill's month in UTC whatever the session's zone, and a signed-in
-- admin never sees an invoice that is on another customer than their tenant's (a bill moved to
-- their tenant from another, not yet republished).
begin;
select plan(6);
select tests.create_user('v106@example.com') as v106_user \gset

set local timezone = 'UTC';
insert into public.tenants (tenant, trial_start, stripe_customer_id) values
  ('v106a/', '2030-01-01', 'cus_v106a'), ('v106b/', '2030-01-01', 'cus_v106b');
insert into public.user_grants (user_id, object_role, capability)
values (:'v106_user', 'v106b/', 'admin');
-- Upstream's row: midnight UTC.
insert into internal.billing_historicals (tenant, billed_month, report) values
  ('v106b/', '2031-10-01 00:00:00+00', '{"subtotal": 1000, "line_items": []}');
insert into internal.manual_bills (tenant, usd_cents, description, date_start, date_end)
values ('v106a/', 9000, 'Contract', '2031-10-01', '2031-10-31');
select internal.link_bill_invoice('manual', (select id from internal.manual_bills
  where tenant = 'v106a/'), 'in_v106onA', 'test');
insert into internal.stripe_invoice_state (stripe_invoice_id, customer_id, status, amount_due,
  total, hosted_invoice_url, source_time, source)
values ('in_v106onA', 'cus_v106a', 'draft', 9000, 9000, 'https://invoice.example/a', now(),
  'test');

set local timezone = 'America/New_York';
select is((select date_start from internal.invoices_ext where billed_prefix = 'v106b/'
    and invoice_type = 'final'), '2031-10-01'::date,
  'internal.invoices_ext: October in a New York session');
select tests.authenticate_as(:'v106_user');
select is((select date_start from public.invoices_ext where invoice_type = 'final'),
  '2031-10-01'::date, 'public.invoices_ext: October in a New York session');
select is((select date_end from public.invoices_ext where invoice_type = 'final'),
  '2031-10-31'::date, 'and it ends on the 31st');

-- The contract moves from tenant A to B; its invoice is still on A's customer.
reset role;
update internal.manual_bills set tenant = 'v106b/' where tenant = 'v106a/';
select tests.authenticate_as(:'v106_user');
select is((select count(*)::int from public.invoices_ext where invoice_type = 'manual'), 1,
  'B''s admin sees the moved bill');
select is((select row(stripe_invoice_id, invoice_status, amount_due, hosted_invoice_url)::text
    from public.invoices_ext where invoice_type = 'manual'), '(,,,)',
  'but not the invoice on A''s customer: no ID, status, amount or link');
reset role;
select is((select stripe_invoice_id from internal.invoices_ext where invoice_type = 'manual'
    and billed_prefix = 'v106b/'), 'in_v106onA', 'the service side still sees the stored ID');

select * from finish();
rollback;
