-- public.invoices_ext at scale: a signed-in admin's reads (filtered by tenant, unfiltered, counted)
-- reach their bills by index instead of scanning every tenant's, the rows are exactly theirs,
-- and enqueue finds a month's usage bills by an index of its own.
begin;
select plan(21);

-- 3,000 tenants × 12 months of usage bills and four quarterly contracts each, every fifth usage bill
-- invoiced; user k administers tenant 10·k (k = 1..3), user 4 two tenants, user 5 only reads.
set local timezone = 'UTC';
insert into public.tenants (tenant)
select 'sc' || lpad(g::text, 5, '0') || '/' from generate_series(1, 3000) g;
insert into auth.users (id, aud, role, email)
select ('00000000-0000-4000-8000-0000000230' || lpad(k::text, 2, '0'))::uuid, 'authenticated',
  'authenticated', 'sc-user-' || k || '@test'
from generate_series(1, 5) k;
insert into public.user_grants (user_id, object_role, capability) values
  ('00000000-0000-4000-8000-000000023001', 'sc00010/', 'admin'),
  ('00000000-0000-4000-8000-000000023002', 'sc00020/', 'admin'),
  ('00000000-0000-4000-8000-000000023003', 'sc00030/', 'admin'),
  ('00000000-0000-4000-8000-000000023004', 'sc00011/', 'admin'),
  ('00000000-0000-4000-8000-000000023004', 'sc00012/', 'admin'),
  ('00000000-0000-4000-8000-000000023004', 'sc00020/', 'write'),
  ('00000000-0000-4000-8000-000000023005', 'sc00010/', 'read');
insert into internal.billing_historicals (tenant, billed_month, report, stripe_invoice_id)
select 'sc' || lpad(g::text, 5, '0') || '/', '2029-01-01'::timestamptz + make_interval(months => m),
  jsonb_build_object('subtotal', g, 'line_items', '[]'::jsonb),
  case when (g + m) % 5 = 0 then 'in_sc' || g || 'm' || m end
from generate_series(1, 3000) g, generate_series(0, 11) m;
insert into internal.manual_bills (tenant, usd_cents, description, date_start, date_end)
select 'sc' || lpad(g::text, 5, '0') || '/', 100, 'contract',
  '2029-01-01'::date + make_interval(months => 3 * q),
  ('2029-01-01'::date + make_interval(months => 3 * q + 3))::date - 1
from generate_series(1, 3000) g, generate_series(0, 3) q;
-- Bills of a tenant that has no tenants row are nobody's to see (as before).
insert into internal.billing_historicals (tenant, billed_month, report)
values ('scOrphan/', '2029-01-01', '{"subtotal": 1}');
insert into public.user_grants (user_id, object_role, capability)
values ('00000000-0000-4000-8000-000000023003', 'scOrphan/', 'admin');
analyze public.tenants, public.user_grants, internal.billing_historicals, internal.manual_bills,
  internal.stripe_invoice_state;

-- What a query did to the bill tables: for every scan node that ran, its node type and the rows
-- it examined (returned, plus removed by a filter or a recheck, times its loops).
create function tests.sc_scans(p_query text,
  p_relations text[] default array['billing_historicals', 'manual_bills'])
returns table (node text, relation text, examined bigint)
language plpgsql as $$
declare
  v_plan jsonb;
begin
  execute 'explain (analyze, format json) ' || p_query into v_plan;
  return query
    select n ->> 'Node Type', n ->> 'Relation Name',
      ((n ->> 'Actual Rows')::numeric + coalesce((n ->> 'Rows Removed by Filter')::numeric, 0)
        + coalesce((n ->> 'Rows Removed by Index Recheck')::numeric, 0))::bigint
        * (n ->> 'Actual Loops')::bigint
    from jsonb_path_query(v_plan, 'strict $.**') n
    where jsonb_typeof(n) = 'object'
      and n ->> 'Relation Name' = any (p_relations)
      and (n ->> 'Actual Loops')::bigint > 0;
end;
$$;
grant execute on function tests.sc_scans(text, text[]) to authenticated, service_role;

-- The planner's total cost for a query.
create function tests.sc_cost(p_query text) returns float8
language plpgsql as $$
declare
  v_plan jsonb;
begin
  execute 'explain (format json) ' || p_query into v_plan;
  return (v_plan -> 0 -> 'Plan' ->> 'Total Cost')::float8;
end;
$$;
grant execute on function tests.sc_cost(text) to authenticated;

select tests.authenticate_as('00000000-0000-4000-8000-000000023001');
select is_empty($$ select * from tests.sc_scans(
    'select * from public.invoices_ext order by date_start desc limit 24')
    where node = 'Seq Scan' $$,
  'an unfiltered read scans no bill table sequentially');
select results_eq($$ select relation, sum(examined)::int from tests.sc_scans(
    'select * from public.invoices_ext order by date_start desc limit 24')
    group by relation order by relation $$,
  $$ values ('billing_historicals'::text, 12), ('manual_bills'::text, 4) $$,
  'and it examines only the caller''s 12 usage bills and 4 contracts');
select results_eq($$ select relation, sum(examined)::int from tests.sc_scans(
    'select count(*) from public.invoices_ext') group by relation order by relation $$,
  $$ values ('billing_historicals'::text, 12), ('manual_bills'::text, 4) $$,
  'a counted read (count=exact) examines only the caller''s bills');
select results_eq($$ select relation, sum(examined)::int from tests.sc_scans(
    'select * from public.invoices_ext where billed_prefix = ''sc00010/''
     order by date_start desc limit 24') group by relation order by relation $$,
  $$ values ('billing_historicals'::text, 12), ('manual_bills'::text, 4) $$,
  'a tenant-filtered read examines only that tenant''s bills');

-- The planner never budgets for reading every bill (a plan costed like that is JIT-compiled at
-- scale, ~700 ms, even when the branch it costs never runs).
select cmp_ok((tests.sc_cost('select * from public.invoices_ext order by date_start desc limit 24')),
  '<', (select relpages * current_setting('seq_page_cost')::float8
      + reltuples * current_setting('cpu_tuple_cost')::float8
    from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where n.nspname = 'internal' and c.relname = 'billing_historicals'),
  'the unfiltered read is costed below a scan of the usage bills');

-- The rows are exactly the caller's: 12 usage bills and the 4 contracts of tenant 10.
select is((select count(*)::int from public.invoices_ext), 16,
  'admin of one tenant counts 16 bills (12 usage, 4 contracts)');
select is((select array_agg(distinct billed_prefix) from public.invoices_ext), array['sc00010/'],
  'and all of them are that tenant''s');
select is((select count(*)::int from public.invoices_ext where billed_prefix = 'sc00020/'), 0,
  'another tenant asked for by name shows nothing');

-- public.tenants under its policy: the caller's tenant, found by index.
select results_eq($$ select tenant::text from public.tenants where tenant like 'sc%' $$,
  $$ values ('sc00010/') $$, 'the tenants policy shows the administered tenant only');
select results_eq($$ select sum(examined)::int from tests.sc_scans(
    'select tenant from public.tenants', array['tenants']) $$,
  $$ values (1) $$, 'and examines that one tenant, not all 3,000');

select tests.authenticate_as('00000000-0000-4000-8000-000000023004');
select results_eq($$ select tenant::text from public.tenants where tenant like 'sc%' order by 1 $$,
  $$ values ('sc00011/'), ('sc00012/') $$, 'an admin of two tenants sees both tenants rows');
select results_eq($$ select billed_prefix, count(*)::int from public.invoices_ext
    group by billed_prefix order by billed_prefix $$,
  $$ values ('sc00011/'::text, 16), ('sc00012/'::text, 16) $$,
  'admin of two tenants sees both; a write grant adds nothing');

select tests.authenticate_as('00000000-0000-4000-8000-000000023005');
select is((select count(*)::int from public.invoices_ext), 0, 'a read grant shows nothing');

select tests.authenticate_as('00000000-0000-4000-8000-000000023003');
select is((select count(*)::int from public.invoices_ext where billed_prefix like 'scO%'), 0,
  'bills of a tenant without a tenants row stay hidden, grant or not');

select tests.authenticate_as_service_role();
select is((select count(*)::int from public.invoices_ext where billed_prefix like 'sc%'),
  3000 * 12 + 3000 * 4, 'service_role still sees every known tenant''s bills');
select results_eq($$ select relation, sum(examined)::int from tests.sc_scans(
    'select * from public.invoices_ext where billed_prefix = ''sc00010/''')
    group by relation order by relation $$,
  $$ values ('billing_historicals'::text, 12), ('manual_bills'::text, 4) $$,
  'and reads one tenant of them by index');
select is_empty($$ select * from public.invoices_ext where billed_prefix like 'sc%'
    except all select i.* from internal.invoices_ext i where i.billed_prefix like 'sc%'
      and exists (select 1 from public.tenants t where t.tenant = i.billed_prefix) $$,
  'every row service_role sees is internal.invoices_ext''s row, column for column');
select is_empty($$ select i.* from internal.invoices_ext i where i.billed_prefix like 'sc%'
      and exists (select 1 from public.tenants t where t.tenant = i.billed_prefix)
    except all select * from public.invoices_ext where billed_prefix like 'sc%' $$,
  'and none of internal.invoices_ext''s rows of known tenants is missing');

-- Enqueue selects a month's usage bills by billed_month.
reset role;
select has_index('internal', 'billing_historicals', 'billing_historicals_billed_month',
  array['billed_month'], 'billing_historicals has an index on billed_month');
select isnt_empty($$ select * from tests.sc_scans('select id from internal.billing_historicals
    where billed_month = ''2029-06-01''::timestamptz') where node like '%Index%' $$,
  'a month''s usage bills are found by an index');
select results_eq($$ select sum(examined)::int from tests.sc_scans(
    'select id from internal.billing_historicals where billed_month = ''2029-06-01''::timestamptz')
    where node not like 'Bitmap Index%' $$,
  $$ values (3000) $$,
  'examining only that month''s 3,000 bills, not all 36,000');

select * from finish();
rollback;
