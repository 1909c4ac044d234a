-- Operator safety: the Stripe account binding (recorded on first use, then ok or mismatch,
-- moved only by a compare-and-set rebind with history), run results that tell warned from done,
-- paged run items and the unknown-tenant check. Service role only.
begin;
select plan(31);
select tests.create_user('op300@example.com') as op300_user \gset

insert into public.tenants (tenant, trial_start) values ('op300a/', '2030-01-01');
insert into internal.billing_historicals (tenant, billed_month, report) values
  ('op300a/', '2032-01-01', '{"subtotal": 1000, "line_items": []}');
insert into internal.manual_bills (tenant, usd_cents, description, date_start, date_end) values
  ('op300a/', 9000, 'Contract', '2032-01-01', '2032-01-31'),
  ('op300a/', 7000, 'Another', '2032-01-02', '2032-01-31');

-- Access: only the service role.
select ok(not has_function_privilege('anon', 'internal.check_stripe_account(text, boolean, text)',
  'execute') and not has_function_privilege('authenticated',
  'internal.check_stripe_account(text, boolean, text)', 'execute'),
  'anon and authenticated may not check or bind the account');
select ok(not has_function_privilege('authenticated',
  'internal.rebind_stripe_account(text, text, boolean, text, text)', 'execute'),
  'authenticated may not rebind');
select ok(has_function_privilege('service_role',
  'internal.check_stripe_account(text, boolean, text)', 'execute')
  and has_function_privilege('service_role',
  'internal.publish_run_items_page(uuid, text, integer, integer)', 'execute'),
  'service_role may check the account and page run items');
select ok(not has_table_privilege('authenticated', 'internal.stripe_account_binding', 'select')
  and not has_table_privilege('anon', 'internal.stripe_account_binding', 'select')
  and not has_table_privilege('service_role', 'internal.stripe_account_binding', 'update'),
  'nobody but the owner writes the binding table; API roles cannot read it');
select is(
  (select count(*)::int from pg_proc p join pg_namespace n on n.oid = p.pronamespace
   where n.nspname = 'internal' and p.proname in ('check_stripe_account', 'rebind_stripe_account',
     'publish_run_result', 'publish_run_items_page', 'unknown_tenants', 'publish_run_counters',
     'finish_publish_run_if_done', 'publish_run_report')
     and not coalesce(p.proconfig @> array['search_path=""'], false)),
  0, 'every new function sets an empty search_path');

-- As anon and authenticated, the functions are refused.
select tests.clear_authentication();
select throws_ok($$ select internal.check_stripe_account('acct_x1', false, 'anon') $$, '42501',
  null, 'anon cannot call check_stripe_account');
select tests.authenticate_as(:'op300_user');
select throws_ok($$ select internal.unknown_tenants(array['op300a/']) $$, '42501', null,
  'authenticated cannot call unknown_tenants');
reset role;

-- Binding: start from none (the Deno tests bind later; this transaction rolls back).
delete from internal.stripe_account_binding;
select tests.authenticate_as_service_role();
select is(internal.check_stripe_account('acct_first1', false, 'op300') ->> 'outcome', 'bound',
  'the first account seen is recorded');
select is(internal.check_stripe_account('acct_first1', false, 'someone') ->> 'outcome', 'ok',
  'the same account and mode is ok');
select is(internal.check_stripe_account('acct_first1', false, 'someone') ->> 'bound_by', 'op300',
  'the binding keeps who recorded it');
select is(internal.check_stripe_account('acct_other2', false, 'op300') ->> 'outcome', 'mismatch',
  'another account is a mismatch');
select is(internal.check_stripe_account('acct_first1', true, 'op300') ->> 'outcome', 'mismatch',
  'the same account in the other mode is a mismatch');
select is(internal.check_stripe_account('acct_other2', false, 'op300') ->> 'account_id',
  'acct_first1', 'a mismatch names the bound account');
select throws_ok($$ select internal.check_stripe_account('cus_nope', false, 'x') $$, '22023',
  'account_id must look like acct_..., got cus_nope', 'a malformed account ID is refused');
select throws_ok(
  $$ select internal.rebind_stripe_account('acct_wrong3', 'acct_live4', true, 'op', 'go live') $$,
  '22023', 'the bound account is acct_first1, not acct_wrong3',
  'rebinding needs the bound account (compare-and-set)');
select throws_ok(
  $$ select internal.rebind_stripe_account('acct_first1', 'acct_live4', true, 'op', ' ') $$,
  '22023', 'actor and reason are required', 'rebinding needs a reason');
select is(internal.rebind_stripe_account('acct_first1', 'acct_live4', true, 'op', 'go live')
  ->> 'outcome', 'rebound', 'a deliberate rebind moves the binding');
select is(internal.check_stripe_account('acct_live4', true, 'op') ->> 'outcome', 'ok',
  'the new account is the bound one');
select is((select old_account_id || '>' || new_account_id || ':' || reason
  from internal.stripe_account_rebinds order by id desc limit 1),
  'acct_first1>acct_live4:go live', 'the rebind is in the history');

-- Results: warned and failed are told apart from done; the lifecycle column stays done.
select internal.enqueue_publish_run('2032-01-01', array['op300a/'], '{}', 'op300',
  'a0000000-0000-4000-8000-000000000300');
select internal.claim_publish_items('a0000000-0000-4000-8000-000000000300', 'w', 10);
select internal.complete_publish_item('a0000000-0000-4000-8000-000000000300', 1, 'w', 'created',
  'create', 'no_invoice', null, null, '{}', null, null);
select internal.complete_publish_item('a0000000-0000-4000-8000-000000000300', 2, 'w', 'warned',
  'warn', 'voided', 'void in Stripe', null, '{}', null, null);
select is(internal.publish_run_report('a0000000-0000-4000-8000-000000000300', false) ->> 'status',
  'running', 'a run with an item left is still running');
select internal.complete_publish_item('a0000000-0000-4000-8000-000000000300', 3, 'w', 'skipped',
  'skip', 'free_tier', null, null, '{}', null, null);
select is(internal.publish_run_report('a0000000-0000-4000-8000-000000000300', false) ->> 'status',
  'warned', 'a finished run with a warned bill is warned, not done');
select is((select status from internal.publish_runs
  where id = 'a0000000-0000-4000-8000-000000000300'), 'done',
  'the stored lifecycle status is done (the scheduler reads it)');
select is(internal.publish_run_result('done', '{"failed": 1, "warned": 2}'), 'failed',
  'failed outranks warned');
select is(internal.publish_run_result('done', '{"failed": 0, "warned": 0}'), 'done',
  'nothing warned or failed is done');

-- Paging by state.
select is((select array_agg(item ->> 'bill' order by item_no) from
  internal.publish_run_items_page('a0000000-0000-4000-8000-000000000300', 'warned', 0, 10)),
  (select array['manual:' || min(id)] from internal.manual_bills where tenant = 'op300a/'),
  'the warned page holds only the warned bill');
select throws_ok(
  $$ select * from internal.publish_run_items_page('a0000000-0000-4000-8000-000000000300',
    'bogus', 0, 10) $$, '22023',
  'state must be pending, running, done, failed or warned, got bogus', 'an unknown state is refused');
select is(internal.unknown_tenants(array['op300a/', 'nosuch300/']), array['nosuch300/'],
  'unknown_tenants names only the missing tenant');

-- The dashboard's customer Search miss: recorded only for a tenant without a stored customer,
-- superseded by a stored one; service role only.
select ok(not has_function_privilege('authenticated',
  'internal.customer_search_missed(text)', 'execute'), 'authenticated may not read misses');
select internal.record_customer_search_miss('op300a/', 'op300');
select is(internal.customer_search_missed('op300a/'), true, 'a recorded miss is seen');
reset role;
update public.tenants set stripe_customer_id = 'cus_op300x' where tenant = 'op300a/';
select tests.authenticate_as_service_role();
select is(internal.customer_search_missed('op300a/'), false, 'a stored customer supersedes it');
select internal.record_customer_search_miss('nosuch300/', 'op300');
select is((select count(*)::int from internal.stripe_customer_search_misses
  where tenant = 'nosuch300/'), 0, 'no miss is recorded for a tenant that does not exist');

select * from finish();
rollback;
