-- Contract bills in advance: the installation setting (off by default) widens a month's manual
-- selection to bills starting next month; only the service side reads the settings.
begin;
select plan(9);

insert into public.tenants (tenant) values ('advA/'), ('advB/');
insert into internal.manual_bills (tenant, usd_cents, description, date_start, date_end) values
  ('advA/', 100, 'adv-now', '2032-01-10', '2032-01-31'),
  ('advA/', 100, 'adv-next', '2032-02-01', '2032-03-31'),
  ('advA/', 100, 'adv-later', '2032-03-01', '2032-03-31'),
  ('advB/', 100, 'adv-b-next', '2032-02-15', '2032-02-28');

create function pg_temp.selected(p_month date, p_tenants text[]) returns text[]
language sql as $$
  select coalesce(array_agg(m.description order by m.description), '{}')
  from internal.month_manual_bills(p_month, p_tenants) s
  join internal.manual_bills m on m.id = s.bill_id
$$;

select is((select contract_bills_in_advance from internal.billing_settings), false,
  'contract bills in advance is off by default');
select is(pg_temp.selected('2032-01-01', array['advA/', 'advB/']), array['adv-now'],
  'off: a month selects the manual bills overlapping it');

update internal.billing_settings set contract_bills_in_advance = true;
select is(pg_temp.selected('2032-01-01', array['advA/', 'advB/']),
  array['adv-b-next', 'adv-next', 'adv-now'],
  'on: bills starting next month are selected too, not those starting later');
insert into internal.tenant_billing_settings (tenant, contract_bills_in_advance)
values ('advB/', false);
select is(pg_temp.selected('2032-01-01', array['advA/', 'advB/']), array['adv-next', 'adv-now'],
  'a tenant can opt out of the installation setting');

select tests.authenticate_as_service_role();
select lives_ok($$ select internal.enqueue_publish_run('2032-01-01', array['advA/'], '{}', 'test',
  '00000000-0000-4000-8000-000000000190') $$, 'a run is enqueued');
select is((select count(*)::int from internal.publish_advance_items
  where run_id = '00000000-0000-4000-8000-000000000190'), 1,
  'the run records the one bill it selected in advance');
select is((select contract_bills_in_advance from internal.billing_settings), true,
  'service_role reads the setting');
reset role;

select tests.authenticate_as('00000000-0000-4000-8000-000000000191');
select throws_ok($$ select * from internal.billing_settings $$, '42501', null,
  'authenticated cannot read the settings');
select throws_ok($$ select * from internal.month_manual_bills('2032-01-01') $$, '42501', null,
  'authenticated cannot list a month''s bills');
reset role;

select * from finish();
rollback;
