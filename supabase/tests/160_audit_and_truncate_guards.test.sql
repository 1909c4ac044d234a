-- Audit rows cannot be forged from a session, and TRUNCATE cannot drop stored IDs unaudited.
begin;
select plan(20);

insert into public.tenants (tenant) values ('forgeA/'), ('forgeB/');
insert into internal.manual_bills (tenant, usd_cents, description, date_start, date_end)
values ('forgeA/', 100, 'f1', '2030-01-01', '2030-02-01');

-- As service_role: a session-set audit context is not trusted by the trigger.
select tests.authenticate_as_service_role();
select set_config('billing.audit_context',
  '{"action":"link","actor":"run-forged","reason":"looks official"}', true);
update public.tenants set stripe_customer_id = 'cus_FORGE1' where tenant = 'forgeA/';
select is((select action from internal.stripe_id_audit where new_id = 'cus_FORGE1'),
  'direct_update', 'a direct UPDATE is audited as direct_update despite a forged context');
select matches((select actor from internal.stripe_id_audit where new_id = 'cus_FORGE1'),
  '^role service_role ', 'and names the role that made it, not the forged actor');
select is((select reason from internal.stripe_id_audit where new_id = 'cus_FORGE1'), null,
  'and carries no forged reason');

select throws_ok($$ select internal.insert_id_audit('tenant', 'forgeB/', 'link', null,
  'cus_FORGE2', 'run-forged', 'fake', null) $$, '42501', null,
  'service_role cannot call the audit insert helper');
select throws_ok($$ select internal.set_audit_context('link', 'run-forged', 'fake', null) $$,
  '42501', null, 'service_role cannot set the audit context');
select throws_ok($$ insert into internal.stripe_id_audit (object_kind, object_key, action, actor)
  values ('tenant', 'forgeB/', 'link', 'run-forged') $$, '42501', null,
  'service_role cannot insert audit rows');
select throws_ok($$ select internal.audit_stripe_id_change() $$, '42501', null,
  'the audit trigger function cannot be called directly');

-- An ID function's context does not leak to a later direct UPDATE in the same transaction.
select internal.link_bill_invoice('manual', (select id from internal.manual_bills where description = 'f1'),
  'in_FORGE1', 'run-7', 'created');
update internal.manual_bills set stripe_invoice_id = 'in_FORGE2' where description = 'f1';
select results_eq($$ select action, actor from internal.stripe_id_audit
  where new_id in ('in_FORGE1', 'in_FORGE2') order by id $$,
  $$ values ('link'::text, 'run-7'::text),
            ('direct_update', 'role service_role (login postgres, user -)') $$,
  'the link is audited as the run, the following direct UPDATE as the role');

select is((select count(*)::integer from internal.stripe_id_audit where actor = 'run-forged'), 0,
  'no audit row carries the forged actor');

-- Replacing a bill's invoice by one another bill holds is a recorded duplicate, not an error.
insert into internal.manual_bills (tenant, usd_cents, description, date_start, date_end)
values ('forgeA/', 100, 'f2', '2030-03-01', '2030-04-01');
select internal.link_bill_invoice('manual', (select id from internal.manual_bills where description = 'f2'),
  'in_FORGE3', 'run-8');
select is((internal.replace_bill_invoice('manual',
  (select id from internal.manual_bills where description = 'f2'), 'in_FORGE3', 'in_FORGE2',
  'run-8', 'recreate')).outcome, 'duplicate',
  'a replacement by an invoice another bill holds is a duplicate');
select is((select action from internal.stripe_id_audit where new_id = 'in_FORGE2'
  and actor = 'run-8'), 'duplicate', 'and is audited as one');

-- Moving an invoiced bill to another tenant still works for service_role, audited by role.
select lives_ok($$ update internal.manual_bills set tenant = 'forgeB/' where description = 'f2' $$,
  'service_role can move an invoiced bill without execute on the audit writer');
select is((select action || ' ' || actor from internal.stripe_id_audit
  where action = 'tenant_change' and new_id = 'in_FORGE3'),
  'tenant_change role service_role (login postgres, user -)', 'and the move is audited');

-- TRUNCATE: not granted to API roles.
select throws_ok($$ truncate public.tenants cascade $$, '42501', null,
  'service_role cannot truncate tenants');
select throws_ok($$ truncate internal.manual_bills $$, '42501', null,
  'service_role cannot truncate manual bills');
select throws_ok($$ truncate internal.billing_historicals $$, '42501', null,
  'service_role cannot truncate usage bills');
reset role;
select tests.authenticate_as('00000000-0000-4000-8000-000000000160');
select throws_ok($$ truncate public.tenants cascade $$, '42501', null,
  'authenticated cannot truncate tenants');
reset role;

-- ...and refused for the owner too while IDs are stored.
select throws_ok($$ truncate public.tenants cascade $$, '23001', null,
  'truncating tenants that hold customer IDs is refused');
select throws_ok($$ truncate internal.stripe_id_audit $$, '23001', null,
  'truncating the audit trail is refused');
select is((select count(*)::integer from public.tenants where tenant like 'forge%'), 2,
  'the tenants are still there');

select * from finish();
rollback;
