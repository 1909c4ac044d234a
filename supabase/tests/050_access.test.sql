-- Who can read what: customer IDs stay server-side, tenants see only the invoices of tenants
-- they administer, anon sees nothing, the ID functions are for the service side.
begin;
select plan(24);

insert into public.tenants (tenant, stripe_customer_id) values ('accA/', 'cus_accA'), ('accB/', 'cus_accB');
insert into auth.users (id, aud, role, email) values
  ('00000000-0000-4000-8000-0000000000a1', 'authenticated', 'authenticated', 'admin-a@test'),
  ('00000000-0000-4000-8000-0000000000b1', 'authenticated', 'authenticated', 'admin-b@test'),
  ('00000000-0000-4000-8000-0000000000c1', 'authenticated', 'authenticated', 'reader-a@test'),
  ('00000000-0000-4000-8000-0000000000d1', 'authenticated', 'authenticated', 'nobody@test');
insert into public.user_grants (user_id, object_role, capability) values
  ('00000000-0000-4000-8000-0000000000a1', 'accA/', 'admin'),
  ('00000000-0000-4000-8000-0000000000b1', 'accB/', 'admin'),
  ('00000000-0000-4000-8000-0000000000c1', 'accA/', 'read');
insert into internal.manual_bills (tenant, usd_cents, description, date_start, date_end, stripe_invoice_id)
values ('accA/', 100, 'a-contract', '2030-01-01', '2030-02-01', 'in_accA');
insert into internal.billing_historicals (tenant, billed_month, report)
values ('accB/', '2030-01-01', '{"subtotal": 700, "line_items": []}');

-- anon
select tests.clear_authentication();
select throws_ok($$ select tenant from public.tenants $$, '42501', null, 'anon cannot read tenants');
select throws_ok($$ select * from public.invoices_ext $$, '42501', null, 'anon cannot read invoices_ext');
select throws_ok($$ select * from internal.manual_bills $$, '42501', null, 'anon cannot read internal tables');
select throws_ok($$ select internal.link_tenant_customer('accA/', 'cus_x', 'anon') $$, '42501', null,
  'anon cannot link customers');

-- authenticated, admin of accA/
select tests.authenticate_as('00000000-0000-4000-8000-0000000000a1');
select throws_ok($$ select stripe_customer_id from public.tenants $$, '42501', null,
  'authenticated cannot read stripe_customer_id');
select throws_ok($$ select * from public.tenants $$, '42501', null,
  'authenticated cannot select * (it includes stripe_customer_id)');
select results_eq($$ select tenant::text from public.tenants where tenant like 'acc%' $$,
  $$ values ('accA/') $$, 'an admin sees the tenants they administer, other columns only');
select results_eq($$ select billed_prefix, invoice_type, stripe_invoice_id from public.invoices_ext
  where billed_prefix like 'acc%' $$,
  $$ values ('accA/'::text, 'manual'::text, 'in_accA'::text) $$,
  'an admin sees the invoices of their tenant only');
select throws_ok($$ select * from internal.invoices_ext $$, '42501', null,
  'authenticated cannot read the unauthorized view');
select throws_ok($$ select * from internal.stripe_id_audit $$, '42501', null,
  'authenticated cannot read the audit');
select throws_ok($$ select internal.link_bill_invoice('manual', 1, 'in_x', 'me') $$, '42501', null,
  'authenticated cannot link invoices');
select throws_ok($$ select internal.release_bill_invoice('manual', 1, 'in_x', 'me', 'why') $$, '42501',
  null, 'authenticated cannot release invoices');
select throws_ok($$ update public.tenants set billing_name = 'x' where tenant = 'accA/' $$, '42501', null,
  'authenticated cannot update tenants');

-- authenticated, admin of accB/
select tests.authenticate_as('00000000-0000-4000-8000-0000000000b1');
select results_eq($$ select billed_prefix, invoice_type, subtotal from public.invoices_ext
  where billed_prefix like 'acc%' $$,
  $$ values ('accB/'::text, 'final'::text, 700) $$, 'the other admin sees only their tenant');

-- authenticated with only a read grant, and with no grant
select tests.authenticate_as('00000000-0000-4000-8000-0000000000c1');
select is_empty($$ select * from public.invoices_ext where billed_prefix like 'acc%' $$,
  'a read grant is not enough to see invoices');
select tests.authenticate_as('00000000-0000-4000-8000-0000000000d1');
select is_empty($$ select * from public.invoices_ext where billed_prefix like 'acc%' $$,
  'a user without grants sees no invoices');
select is_empty($$ select tenant from public.tenants where tenant like 'acc%' $$,
  'a user without grants sees no tenants');

-- A grant on a parent prefix covers the tenant (prefix semantics, as upstream).
reset role;
insert into public.user_grants (user_id, object_role, capability)
values ('00000000-0000-4000-8000-0000000000d1', 'accB/', 'admin');
select tests.authenticate_as('00000000-0000-4000-8000-0000000000d1');
select is((select count(*)::int from public.invoices_ext where billed_prefix like 'acc%'), 1,
  'granting admin makes the tenant''s invoices visible');

-- service_role
select tests.authenticate_as_service_role();
select is((select count(*)::int from public.invoices_ext where billed_prefix like 'acc%'), 2,
  'service_role sees every tenant''s invoices');
select is((select stripe_customer_id from public.tenants where tenant = 'accA/'), 'cus_accA',
  'service_role reads customer IDs');
select is((internal.link_tenant_customer('accB/', 'cus_accB', 'svc')).outcome, 'unchanged',
  'service_role can call the link functions');
select lives_ok($$ update internal.manual_bills set stripe_invoice_id = 'in_accA2' where description = 'a-contract' $$,
  'service_role can update an ID directly');
select is((select count(*)::int from internal.stripe_id_audit where new_id = 'in_accA2'), 1,
  'and that direct update is audited');
select throws_ok($$ insert into internal.stripe_id_audit (object_kind, object_key, action, actor)
  values ('tenant', 'accA/', 'link', 'forger') $$, '42501', null,
  'nobody but the definer functions writes audit rows');

select * from finish();
rollback;
