-- public.invoices_ext is a security barrier: a signed-in admin's own predicates and functions
-- only ever see rows of the tenants they administer, however cheap the planner thinks they are.
begin;
select plan(17);

insert into public.tenants (tenant) values ('sbA/'), ('sbB/');
insert into auth.users (id, aud, role, email) values
  ('00000000-0000-4000-8000-0000000005a1', 'authenticated', 'authenticated', 'sb-admin-a@test');
insert into public.user_grants (user_id, object_role, capability) values
  ('00000000-0000-4000-8000-0000000005a1', 'sbA/', 'admin');
insert into internal.billing_historicals (tenant, billed_month, report) values
  ('sbA/', '2030-01-01', '{"subtotal": 100, "line_items": [], "processed_data_gb": 7}'),
  ('sbB/', '2030-01-01', '{"subtotal": 200, "line_items": [], "processed_data_gb": "secret-of-b"}'),
  ('sbB/', '2030-02-01', '{"subtotal": 300, "line_items": [], "processed_data_gb": 0}');
insert into internal.manual_bills (tenant, usd_cents, description, date_start, date_end) values
  ('sbB/', 900, 'contract-of-b', '2030-01-01', '2030-03-01');

-- A leaky function, as a caller could create one: it raises with what it was given, and it also
-- remembers every value it saw in a transaction-local setting. Declared as cheap as possible so
-- the planner would rather run it before any other filter.
create function tests.sb_leak(p_value text) returns boolean
language plpgsql cost 0.0000001 as $$
begin
  perform set_config('tests.sb_seen',
    coalesce(current_setting('tests.sb_seen', true), '') || '[' || coalesce(p_value, 'NULL') || ']',
    true);
  if p_value like '%-of-b%' or p_value like '%sbB/%' then
    raise exception 'leaked: %', p_value;
  end if;
  return true;
end;
$$;
grant execute on function tests.sb_leak(text) to authenticated;

-- The rows a query returns as 'prefix:subtotal' text, or the error it raised (so that a leak
-- shows up as a failed assertion quoting what leaked, not as an aborted test file).
create function tests.sb_rows(p_query text) returns text
language plpgsql as $$
declare
  v_rows text;
begin
  execute 'select coalesce(string_agg(billed_prefix || '':'' || subtotal, '','' order by bill_id), '''')'
    || ' from (' || p_query || ') q' into v_rows;
  return v_rows;
exception when others then
  return 'ERROR: ' || sqlerrm;
end;
$$;
grant execute on function tests.sb_rows(text) to authenticated;

select tests.authenticate_as('00000000-0000-4000-8000-0000000005a1');

-- A cast that fails on another tenant's value would quote it in the error.
select lives_ok($$ select count(*) from public.invoices_ext
    where (extra ->> 'processed_data_gb')::int > 0 $$,
  'a failing cast never runs on another tenant''s row');
select is(tests.sb_rows($$ select * from public.invoices_ext
    where (extra ->> 'processed_data_gb')::int > 0 $$), 'sbA/:100',
  'and it answers with the caller''s rows only');

-- Division by zero inside an AND: an error would say "some hidden row matches".
select lives_ok($$ select count(*) from public.invoices_ext
    where billed_prefix like 'sb%' and 1 / (case when subtotal = 300 then 0 else 1 end) = 1 $$,
  'no yes/no oracle over other tenants'' amounts (usage bills)');
select lives_ok($$ select count(*) from public.invoices_ext
    where 1 / (case when line_items ->> 0 like '%contract-of-b%' then 0 else 1 end) = 1 $$,
  'no yes/no oracle over other tenants'' line items (manual bills)');
select lives_ok($$ select count(*) from public.invoices_ext
    where 1 / (case when billed_prefix = 'sbB/' then 0 else 1 end) = 1 $$,
  'no yes/no oracle over which tenants exist');

-- The leaky function, on each column that carries another tenant's data.
select lives_ok($$ select count(*) from public.invoices_ext where tests.sb_leak(extra::text) $$,
  'a leaky function never sees another tenant''s report');
select lives_ok($$ select count(*) from public.invoices_ext where tests.sb_leak(line_items::text) $$,
  'a leaky function never sees another tenant''s line items');
select lives_ok($$ select count(*) from public.invoices_ext
    where tests.sb_leak(billed_prefix || subtotal) $$,
  'a leaky function never sees another tenant''s prefix or amount');
select is(current_setting('tests.sb_seen', true) not like '%sbB/%'
    and current_setting('tests.sb_seen', true) not like '%-of-b%'
    and current_setting('tests.sb_seen', true) not like '%sbB/200%'
    and current_setting('tests.sb_seen', true) like '%sbA/100%', true,
  'everything the leaky function saw belonged to the caller''s tenant');

-- Joins and subqueries the caller writes are above the barrier too.
select lives_ok($$ select count(*) from public.invoices_ext i
    join (values ('secret'::text)) v(x) on tests.sb_leak(i.extra::text || v.x) $$,
  'a join condition with a leaky function sees the caller''s rows only');
select is(tests.sb_rows($$ select * from public.invoices_ext where tests.sb_leak(bill_id) $$),
  'sbA/:100', 'the caller still sees exactly their one bill through the leaky filter');

-- The view keeps its barrier option (a later migration cannot silently drop it).
reset role;
select ok((select coalesce('security_barrier=true' = any(reloptions), false)
    from pg_catalog.pg_class where oid = 'public.invoices_ext'::regclass),
  'public.invoices_ext is declared security_barrier');

-- The helpers the view calls are for the view: execute for the API roles that read it, nothing
-- for anon, and no way around the view (the schema they live in is not usable by callers).
select function_privs_are('internal', 'caller_admin_tenants', array[]::text[], 'anon', array[]::text[],
  'anon cannot execute internal.caller_admin_tenants');
select function_privs_are('internal', 'caller_admin_tenants', array[]::text[], 'authenticated',
  array['EXECUTE'], 'authenticated may execute it (the view calls it as the caller)');
select ok((select p.prosecdef and p.proconfig @> array['search_path=""']
    from pg_catalog.pg_proc p where p.oid = 'internal.caller_admin_tenants()'::regprocedure),
  'it is security definer with an empty search_path');
select tests.authenticate_as('00000000-0000-4000-8000-0000000005a1');
select throws_ok($$ select internal.caller_admin_tenants() $$, '42501', null,
  'a signed-in user cannot call it directly (no usage on schema internal)');
select tests.clear_authentication();
select throws_ok($$ select count(*) from public.invoices_ext $$, '42501', null,
  'anon still cannot read the view');

select * from finish();
rollback;
