-- A month is a UTC month whatever the session's TimeZone: enqueue selects the month's usage bills
-- and the monthly schedule picks the previous month, in a session set to America/New_York (as a
-- project whose database default zone was changed runs every session).
begin;
select plan(4);

insert into public.tenants (tenant, trial_start) values ('tz105/', '2030-01-01');
-- billed_month as upstream writes it: midnight UTC of the month's first day.
set local timezone = 'UTC';
insert into internal.billing_historicals (tenant, billed_month, report) values
  ('tz105/', '2031-10-01 00:00:00+00', '{"subtotal": 1000, "line_items": []}'),
  ('tz105/', '2031-11-01 00:00:00+00', '{"subtotal": 2000, "line_items": []}');
insert into internal.manual_bills (tenant, usd_cents, description, date_start, date_end) values
  ('tz105/', 9000, 'October contract', '2031-10-01', '2031-10-31');

set local timezone = 'America/New_York';
select tests.authenticate_as_service_role();
select internal.enqueue_publish_run('2031-10-01', array['tz105/'], '{}', 'test') as oct \gset
select is(
  (select array_agg(i.bill_kind || ':' || coalesce(h.report ->> 'subtotal', m.usd_cents::text)
     order by i.item_no)
   from internal.publish_run_items i
   left join internal.billing_historicals h on i.bill_kind = 'final' and h.id = i.bill_id
   left join internal.manual_bills m on i.bill_kind = 'manual' and m.id = i.bill_id
   where i.run_id = :'oct'),
  array['final:1000', 'manual:9000'],
  'in a New York session, October selects October''s usage bill (not September''s or none)');
select is((select item_count from internal.publish_runs where id = :'oct'), 2,
  'the run counts both bills');

-- 2031-11-01 02:00 UTC is still 31 October in New York: the previous UTC month is October.
select internal.publish_invoices_monthly('2031-11-01 02:00:00+00') as monthly \gset
select is((select month from internal.publish_runs where id = :'monthly'),
  '2031-10-01'::date, 'the monthly job picks the previous UTC month in a New York session');
select is((select count(*)::int from internal.publish_runs
   where month = '2031-10-01' and created_by = 'pg_cron'), 1,
  'and enqueues it once');

select * from finish();
rollback;
