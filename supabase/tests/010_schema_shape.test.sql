-- The fix's columns, keys and view shape.
begin;
select plan(16);

insert into public.tenants (tenant) values ('shapeCo/');

select has_column('public', 'tenants', 'stripe_customer_id', 'tenants stores the customer ID');
select col_is_null('public', 'tenants', 'stripe_customer_id', 'customer ID is nullable');
select has_column('internal', 'manual_bills', 'stripe_invoice_id', 'manual bills store invoice IDs');
select col_is_null('internal', 'manual_bills', 'stripe_invoice_id', 'manual invoice ID is nullable');
select has_column('internal', 'billing_historicals', 'stripe_invoice_id',
  'usage bills store invoice IDs');
select col_is_null('internal', 'billing_historicals', 'stripe_invoice_id',
  'usage invoice ID is nullable');
select col_not_null('internal', 'manual_bills', 'id', 'manual bills have a surrogate id');
select col_is_unique('internal', 'manual_bills', 'id', 'manual bill id is unique');
select col_is_pk('internal', 'billing_historicals', 'id', 'usage bill id is the primary key');

-- The surrogate id survives a date edit.
select lives_ok($$
  insert into internal.manual_bills (tenant, usd_cents, description, date_start, date_end)
  values ('shapeCo/', 100, 'shape test', '2030-01-01', '2030-02-01')
$$, 'a manual bill can be inserted');
create temp table shape_bill on commit drop as
  select id from internal.manual_bills where description = 'shape test';
update internal.manual_bills set date_end = '2030-03-01' where description = 'shape test';
select is((select id from internal.manual_bills where description = 'shape test'),
  (select id from shape_bill), 'editing the dates keeps the bill id');

select is(
  (select array_agg(column_name::text order by ordinal_position)
   from information_schema.columns where table_schema = 'internal' and table_name = 'invoices_ext'
     and ordinal_position <= 8),
  array['date_start', 'date_end', 'billed_prefix', 'line_items', 'subtotal', 'extra',
    'invoice_type', 'stripe_invoice_id'],
  'internal.invoices_ext keeps the upstream columns and appends stripe_invoice_id');
select is(
  (select array_agg(column_name::text order by ordinal_position)
   from information_schema.columns where table_schema = 'public' and table_name = 'invoices_ext'
     and ordinal_position <= 8),
  array['date_start', 'date_end', 'billed_prefix', 'line_items', 'subtotal', 'extra',
    'invoice_type', 'stripe_invoice_id'],
  'public.invoices_ext keeps the upstream columns and appends stripe_invoice_id');

update internal.manual_bills set stripe_invoice_id = 'in_shape1' where description = 'shape test';
select is((select stripe_invoice_id from internal.invoices_ext where line_items -> 0 ->> 'description' = 'shape test'),
  'in_shape1', 'internal.invoices_ext shows a manual bill''s invoice ID');
insert into internal.billing_historicals (tenant, billed_month, report)
values ('shapeCo/', '2030-01-01', '{"subtotal": 5, "line_items": []}');
update internal.billing_historicals set stripe_invoice_id = 'in_shape2'
where tenant = 'shapeCo/' and billed_month = '2030-01-01';
select is((select stripe_invoice_id from internal.invoices_ext
  where billed_prefix = 'shapeCo/' and invoice_type = 'final' and date_start = '2030-01-01'),
  'in_shape2', 'internal.invoices_ext shows a usage bill''s invoice ID');
select is((select stripe_invoice_id from public.invoices_ext
  where billed_prefix = 'shapeCo/' and invoice_type = 'final' and date_start = '2030-01-01'),
  'in_shape2', 'public.invoices_ext shows it too');

select * from finish();
rollback;
