-- A tenant's customer: released and replaced only by the audited functions (as service_role),
-- never re-linked once released, and a tenant holding one cannot be deleted.
begin;
select plan(27);

insert into public.tenants (tenant) values ('lifeA/'), ('lifeB/'), ('lifeC/');
select internal.link_tenant_customer('lifeA/', 'cus_LIFE1', 'setup', 'first');
select internal.link_tenant_customer('lifeC/', 'cus_LIFE9', 'setup', 'first');

-- The API roles cannot call the new functions.
select tests.clear_authentication();
select throws_ok($$ select internal.release_tenant_customer('lifeA/', 'cus_LIFE1', 'x', 'y') $$,
  '42501', null, 'anon cannot release a customer');
select tests.authenticate_as('00000000-0000-4000-8000-000000000150');
select throws_ok($$ select internal.release_tenant_customer('lifeA/', 'cus_LIFE1', 'x', 'y') $$,
  '42501', null, 'authenticated cannot release a customer');
select throws_ok($$ select internal.replace_tenant_customer('lifeA/', 'cus_LIFE1', 'cus_Z', 'x', 'y') $$,
  '42501', null, 'authenticated cannot replace a customer');
reset role;

select tests.authenticate_as_service_role();
-- Release.
select throws_ok($$ select internal.release_tenant_customer('lifeA/', 'cus_LIFE1', 'ops', ' ') $$,
  '22023', 'reason is required to release a customer', 'a release needs a reason');
select is((internal.release_tenant_customer('lifeA/', 'cus_OTHER', 'ops', 'deleted')).outcome,
  'conflict', 'a release naming another customer is refused');
select is((select stripe_customer_id from public.tenants where tenant = 'lifeA/'), 'cus_LIFE1',
  'and keeps the stored customer');
select is((internal.release_tenant_customer('lifeA/', 'cus_LIFE1', 'ops', 'deleted in Stripe')).outcome,
  'released', 'a release naming the stored customer clears it');
select is((select stripe_customer_id from public.tenants where tenant = 'lifeA/'), null,
  'the tenant has no customer after a release');
select is((internal.release_tenant_customer('lifeA/', 'cus_LIFE1', 'ops', 'again')).outcome,
  'unchanged', 'releasing a tenant with no customer changes nothing');
select is((select tenant || ' ' || reason from internal.released_customers
  where stripe_customer_id = 'cus_LIFE1'), 'lifeA/ deleted in Stripe',
  'the released customer is remembered with its tenant and reason');
select is((internal.link_tenant_customer('lifeA/', 'cus_LIFE1', 'run-1', 'adopted')).outcome,
  'duplicate', 'a released customer is never linked again, not even to its old tenant');
select is((internal.link_tenant_customer('lifeB/', 'cus_LIFE1', 'run-1', 'adopted')).outcome,
  'duplicate', 'nor to another tenant');
select is((internal.link_tenant_customer('lifeA/', 'cus_LIFE2', 'ops', 'new customer')).outcome,
  'linked', 'a released tenant can be linked to a new customer');
select is(internal.tenant_customer_generation('lifeA/'), 1,
  'the tenant name counts one released customer');

-- Replace.
select is((internal.replace_tenant_customer('lifeA/', 'cus_WRONG', 'cus_LIFE3', 'ops', 'wrong')).outcome,
  'conflict', 'a replacement from a customer that is not stored is refused');
select is((internal.replace_tenant_customer('lifeA/', 'cus_LIFE2', 'cus_LIFE9', 'ops', 'merge')).outcome,
  'duplicate', 'a replacement by a customer of another tenant is refused');
select is((internal.replace_tenant_customer('lifeA/', 'cus_LIFE2', 'cus_LIFE1', 'ops', 'back')).outcome,
  'duplicate', 'a replacement by a released customer is refused');
select is((select stripe_customer_id from public.tenants where tenant = 'lifeA/'), 'cus_LIFE2',
  'refused replacements write nothing');
select is((internal.replace_tenant_customer('lifeA/', 'cus_LIFE2', 'cus_LIFE3', 'ops', 'wrong one')).outcome,
  'replaced', 'a replacement from the stored customer swaps it');
select is((select stripe_customer_id from public.tenants where tenant = 'lifeA/'), 'cus_LIFE3',
  'the new customer is stored');
select ok(exists (select 1 from internal.released_customers where stripe_customer_id = 'cus_LIFE2'),
  'the replaced customer is released for good');

select results_eq(
  $$ select action, old_id, new_id, actor from internal.stripe_id_audit
     where object_kind = 'tenant' and object_key = 'lifeA/' and actor <> 'setup' order by id $$,
  $$ values ('conflict', 'cus_LIFE1'::text, null::text, 'ops'::text),
            ('release', 'cus_LIFE1', null, 'ops'),
            ('duplicate', null, 'cus_LIFE1', 'run-1'),
            ('link', null, 'cus_LIFE2', 'ops'),
            ('conflict', 'cus_LIFE2', 'cus_LIFE3', 'ops'),
            ('duplicate', 'cus_LIFE2', 'cus_LIFE9', 'ops'),
            ('duplicate', 'cus_LIFE2', 'cus_LIFE1', 'ops'),
            ('replace', 'cus_LIFE2', 'cus_LIFE3', 'ops') $$,
  'every release, replacement and refusal is audited with who');
select is((select reason from internal.stripe_id_audit where action = 'release'
  and object_key = 'lifeA/'), 'deleted in Stripe', 'a release records its reason');

-- Deleting a tenant that holds a customer is refused; after a release it is allowed.
select throws_ok($$ delete from public.tenants where tenant = 'lifeC/' $$, '23001',
  'tenant lifeC/ has Stripe customer cus_LIFE9; it cannot be deleted',
  'deleting a tenant with a customer is refused');
select is((select stripe_customer_id from public.tenants where tenant = 'lifeC/'), 'cus_LIFE9',
  'and the tenant keeps its customer');
select internal.release_tenant_customer('lifeC/', 'cus_LIFE9', 'ops', 'tenant closed');
select lives_ok($$ delete from public.tenants where tenant = 'lifeC/' $$,
  'after a release the tenant can be deleted');
insert into public.tenants (tenant) values ('lifeC/');
select is((internal.link_tenant_customer('lifeC/', 'cus_LIFE9', 'run-2', 'adopted')).outcome,
  'duplicate', 'a new tenant of the same name cannot take over the old tenant''s customer');

select * from finish();
rollback;
