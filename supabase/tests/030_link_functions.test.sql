-- Compare-and-set links, releases, replacements, and the audit trail they leave.
begin;
select plan(34);

insert into public.tenants (tenant) values ('linkA/'), ('linkB/');
insert into internal.manual_bills (tenant, usd_cents, description, date_start, date_end)
values ('linkA/', 100, 'l1', '2030-01-01', '2030-02-01'), ('linkB/', 100, 'l2', '2030-01-01', '2030-02-01');
insert into internal.billing_historicals (tenant, billed_month, report) values ('linkA/', '2030-01-01', '{}');
create temp table ids on commit drop as select
  (select id from internal.manual_bills where description = 'l1') as m1,
  (select id from internal.manual_bills where description = 'l2') as m2,
  (select id from internal.billing_historicals where tenant = 'linkA/') as f1;

-- Tenants.
select is((internal.link_tenant_customer('linkA/', 'cus_A1', 'test', 'first link')).outcome,
  'linked', 'linking a tenant with no customer stores the ID');
select is((select stripe_customer_id from public.tenants where tenant = 'linkA/'), 'cus_A1',
  'the customer ID is stored');
select is((internal.link_tenant_customer('linkA/', 'cus_A1', 'test')).outcome, 'unchanged',
  'linking the same ID again is a no-op');
select is((internal.link_tenant_customer('linkA/', 'cus_A2', 'test', 'race')).outcome, 'conflict',
  'linking a different ID reports a conflict');
select is((select stripe_customer_id from public.tenants where tenant = 'linkA/'), 'cus_A1',
  'a conflicting link does not overwrite the stored ID');
select is((internal.link_tenant_customer('linkB/', 'cus_A1', 'test')).outcome, 'duplicate',
  'a customer already linked to another tenant is refused');
select is((select stripe_customer_id from public.tenants where tenant = 'linkB/'), null,
  'and nothing is written');
select throws_ok($$ select internal.link_tenant_customer('linkB/', 'bogus', 'test') $$, '22023',
  'customer_id must look like cus_..., got bogus', 'a malformed customer ID is refused by name');
select throws_ok($$ select internal.link_tenant_customer('nobody/', 'cus_X', 'test') $$, 'P0002',
  'tenant nobody/ does not exist', 'an unknown tenant is refused');

-- Bills.
select is((internal.link_bill_invoice('manual', (select m1 from ids), 'in_M1', 'run-1', 'created')).outcome,
  'linked', 'linking a bill with no invoice stores the ID');
select is((internal.link_bill_invoice('manual', (select m1 from ids), 'in_M1', 'run-2')).outcome,
  'unchanged', 'linking the same invoice again is a no-op');
select is((internal.link_bill_invoice('manual', (select m1 from ids), 'in_M2', 'run-2')).outcome,
  'conflict', 'linking a different invoice reports a conflict');
select is((select stripe_invoice_id from internal.manual_bills where id = (select m1 from ids)),
  'in_M1', 'a conflicting link does not overwrite the stored invoice');
select is((internal.link_bill_invoice('final', (select f1 from ids), 'in_M1', 'run-2')).outcome,
  'duplicate', 'an invoice linked to a manual bill cannot be linked to a usage bill');
select is((internal.link_bill_invoice('final', (select f1 from ids), 'in_F1', 'run-2')).outcome,
  'linked', 'usage bills link too');
select throws_ok($$ select internal.link_bill_invoice('weekly', 1, 'in_X', 'test') $$, '22023',
  'bill_kind must be final or manual, got weekly', 'an unknown bill kind is refused by name');
select throws_ok($$ select internal.link_bill_invoice('manual', -1, 'in_X', 'test') $$, 'P0002',
  'bill manual:-1 does not exist', 'an unknown bill is refused');
select throws_ok($$ select internal.link_bill_invoice('manual', 1, 'cus_X', 'test') $$, '22023',
  'invoice_id must look like in_..., got cus_X', 'a malformed invoice ID is refused by name');

-- Release.
select throws_ok(format($$ select internal.release_bill_invoice('manual', %s, 'in_M1', 'ops', ' ') $$,
  (select m1 from ids)), '22023', 'reason is required to release an invoice',
  'a release needs a reason');
select is((internal.release_bill_invoice('manual', (select m1 from ids), 'in_OTHER', 'ops', 'voided')).outcome,
  'conflict', 'a release naming another invoice is refused');
select is((select stripe_invoice_id from internal.manual_bills where id = (select m1 from ids)),
  'in_M1', 'and keeps the stored invoice');
select is((internal.release_bill_invoice('manual', (select m1 from ids), 'in_M1', 'ops', 'voided by hand')).outcome,
  'released', 'a release naming the stored invoice clears it');
select is((select stripe_invoice_id from internal.manual_bills where id = (select m1 from ids)),
  null, 'the bill has no invoice after a release');
select is((internal.link_bill_invoice('manual', (select m1 from ids), 'in_M3', 'run-3', 'reissue')).outcome,
  'linked', 'a released bill can be linked to its new invoice');

-- Replace.
select is((internal.replace_bill_invoice('final', (select f1 from ids), 'in_WRONG', 'in_F2', 'run-4', 'recreate')).outcome,
  'conflict', 'a replacement from an ID that is not stored is refused');
select is((internal.replace_bill_invoice('final', (select f1 from ids), 'in_F1', 'in_F2', 'run-4', 'recreate')).outcome,
  'replaced', 'a replacement from the stored ID swaps it');
select is((select stripe_invoice_id from internal.billing_historicals where id = (select f1 from ids)),
  'in_F2', 'the new invoice is stored');

-- Audit trail.
select results_eq(
  $$ select action, old_id, new_id, actor, reason from internal.stripe_id_audit
     where object_kind = 'tenant' and object_key in ('linkA/', 'linkB/') order by id $$,
  $$ values ('link', null::text, 'cus_A1'::text, 'test'::text, 'first link'::text),
            ('conflict', 'cus_A1', 'cus_A2', 'test', 'race'),
            ('duplicate', null, 'cus_A1', 'test', null) $$,
  'tenant links, conflicts and duplicates are audited with who and why');
select results_eq(
  format($$ select action, old_id, new_id, actor from internal.stripe_id_audit
     where object_kind = 'manual' and object_key = '%s' order by id $$, (select m1 from ids)),
  $$ values ('link', null::text, 'in_M1'::text, 'run-1'::text),
            ('conflict', 'in_M1', 'in_M2', 'run-2'),
            ('conflict', 'in_M1', null, 'ops'),
            ('release', 'in_M1', null, 'ops'),
            ('link', null, 'in_M3', 'run-3') $$,
  'bill links, conflicts and releases are audited');
select is((select reason from internal.stripe_id_audit where action = 'release' and old_id = 'in_M1'),
  'voided by hand', 'a release records its reason');
select results_eq(
  format($$ select action, old_id, new_id from internal.stripe_id_audit
     where object_kind = 'final' and object_key = '%s' order by id $$, (select f1 from ids)),
  $$ values ('duplicate', null::text, 'in_M1'::text), ('link', null, 'in_F1'),
            ('conflict', 'in_F1', 'in_F2'), ('replace', 'in_F1', 'in_F2') $$,
  'usage bill links and replacements are audited');

-- Direct UPDATEs of an ID column are audited too, naming the role.
update internal.manual_bills set stripe_invoice_id = 'in_DIRECT' where id = (select m2 from ids);
select is((select action || ' ' || coalesce(old_id, '-') || ' ' || new_id from internal.stripe_id_audit
  where object_kind = 'manual' and object_key = (select m2 from ids)::text),
  'direct_update - in_DIRECT', 'a direct UPDATE of an invoice ID is audited');
select matches((select actor from internal.stripe_id_audit where new_id = 'in_DIRECT'),
  '^role postgres ', 'the audit names the role that made the direct UPDATE');
update public.tenants set stripe_customer_id = null where tenant = 'linkA/';
select is((select action || ' ' || old_id || ' ' || coalesce(new_id, '-') from internal.stripe_id_audit
  where object_kind = 'tenant' and object_key = 'linkA/' order by id desc limit 1),
  'direct_update cus_A1 -', 'a direct UPDATE of a customer ID is audited');

select * from finish();
rollback;
