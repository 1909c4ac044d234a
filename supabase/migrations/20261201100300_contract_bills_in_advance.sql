-- Contract bills in advance (opt-in): a manual bill whose date_start falls in the next month is
-- published with this month's run, and finalize uses the same window. A bill published that way
-- is never selected by another month's run again, by its stable ID, so editing its dates later
-- does not publish it twice.

-- Installation-wide settings: one row.
create table internal.billing_settings (
  singleton boolean primary key default true check (singleton),
  contract_bills_in_advance boolean not null default false
);
comment on table internal.billing_settings is 'Installation-wide billing settings (one row).';
comment on column internal.billing_settings.contract_bills_in_advance is
  'Publish manual bills starting next month with this month''s run.';
insert into internal.billing_settings default values;

-- Per-tenant overrides of the installation setting (null: follow it).
create table internal.tenant_billing_settings (
  tenant public.catalog_tenant primary key references public.tenants (tenant) on delete cascade,
  contract_bills_in_advance boolean
);
comment on table internal.tenant_billing_settings is
  'Per-tenant overrides of internal.billing_settings.';

-- Which manual bills a run selected because they start next month.
create table internal.publish_advance_items (
  run_id uuid not null references internal.publish_runs (id) on delete cascade,
  bill_id bigint not null,
  primary key (run_id, bill_id)
);
comment on table internal.publish_advance_items is
  'Manual bills a run published in advance (their date_start was in the following month).';
create index publish_advance_items_bill on internal.publish_advance_items (bill_id);

-- The manual bills a month's run (and finalize) selects: those overlapping the month, plus,
-- where the setting is on, those starting next month; minus any whose stored invoice another
-- month's run published in advance.
create function internal.month_manual_bills(p_month date, p_tenants text[] default null)
returns table (bill_id bigint, tenant text, in_advance boolean)
language sql stable security definer
set search_path = ''
as $$
  select m.id, m.tenant::text, m.date_start > w.month_end
  from internal.manual_bills m
  cross join lateral (select (p_month + interval '1 month' - interval '1 day')::date as month_end,
    (p_month + interval '2 month' - interval '1 day')::date as next_month_end) w
  left join internal.tenant_billing_settings ts on ts.tenant = m.tenant
  where (p_tenants is null or m.tenant::text = any (p_tenants))
    and (
      (m.date_start <= w.month_end and m.date_end >= p_month)
      or (m.date_start > w.month_end and m.date_start <= w.next_month_end
          and coalesce(ts.contract_bills_in_advance,
            (select s.contract_bills_in_advance from internal.billing_settings s), false))
    )
    and not exists (
      select 1
      from internal.publish_advance_items a
      join internal.publish_runs r on r.id = a.run_id
      join internal.publish_run_items i on i.run_id = a.run_id and i.bill_kind = 'manual'
        and i.bill_id = a.bill_id
      where a.bill_id = m.id and r.month <> p_month
        and m.stripe_invoice_id is not null and i.stripe_invoice_id = m.stripe_invoice_id
    )
$$;
comment on function internal.month_manual_bills(date, text[]) is
  'Manual bills a month''s publish and finalize select (with contract bills in advance).';

-- Enqueue selects manual bills through internal.month_manual_bills; otherwise as before.
create or replace function internal.enqueue_publish_run(
  p_month date,
  p_tenants text[],
  p_options jsonb,
  p_actor text,
  p_run_id uuid default null
) returns uuid
language plpgsql security definer
set search_path = ''
as $$
declare
  run_id uuid := coalesce(p_run_id, extensions.gen_random_uuid());
  existing internal.publish_runs;
  opts jsonb;
  n integer;
begin
  if p_month is null or date_trunc('month', p_month)::date <> p_month then
    raise exception 'month must be the first day of a month, got %', coalesce(p_month::text, 'NULL')
      using errcode = 'invalid_parameter_value', column = 'month';
  end if;
  if coalesce(p_actor, '') = '' then
    raise exception 'actor is required' using errcode = 'invalid_parameter_value', column = 'actor';
  end if;
  if p_tenants is not null and (cardinality(p_tenants) = 0
    or exists (select 1 from unnest(p_tenants) t where t is null or t !~ '^[[:alnum:]_.-]+/$')) then
    raise exception 'tenants must be a non-empty list of tenant names ending in /'
      using errcode = 'invalid_parameter_value', column = 'tenants';
  end if;
  opts := internal.publish_run_options(p_options);
  select * into existing from internal.publish_runs r where r.id = run_id;
  if found then
    if existing.month <> p_month then
      raise exception 'run % is for month %, not %', run_id, existing.month, p_month
        using errcode = 'invalid_parameter_value', column = 'run_id';
    end if;
    return run_id;
  end if;
  insert into internal.publish_runs (id, month, tenants, options, created_by)
  values (run_id, p_month, p_tenants, opts, p_actor);
  -- One statement, so the advance record and the items come from one selection.
  with manual as (
    select mb.bill_id, mb.tenant, mb.in_advance
    from internal.month_manual_bills(p_month, p_tenants) mb
  ), advance as (
    insert into internal.publish_advance_items (run_id, bill_id)
    select run_id, manual.bill_id from manual where manual.in_advance
  )
  insert into internal.publish_run_items (run_id, item_no, bill_kind, bill_id, tenant)
  select run_id, (row_number() over (order by b.tenant collate "C", b.kind, b.id))::integer,
    b.kind, b.id, b.tenant
  from (
    select 'final'::text as kind, h.id, h.tenant::text as tenant
    from internal.billing_historicals h
    -- The month as UTC instants, whatever the session's TimeZone: a range, so the index serves it
    -- and a row written at another zone's midnight still belongs to its month.
    where h.billed_month >= (p_month::timestamp at time zone 'UTC')
      and h.billed_month < ((p_month + interval '1 month')::timestamp at time zone 'UTC')
      and (p_tenants is null or h.tenant::text = any (p_tenants))
    union all
    select 'manual', manual.bill_id, manual.tenant
    from manual
  ) b;
  get diagnostics n = row_count;
  update internal.publish_runs set item_count = n,
    status = case when n = 0 then 'done' else 'pending' end,
    finished_at = case when n = 0 then now() end,
    counters = case when n = 0 then '{}'::jsonb end
  where id = run_id;
  return run_id;
end;
$$;


revoke all on internal.billing_settings, internal.tenant_billing_settings,
  internal.publish_advance_items from public, anon, authenticated, service_role;
grant select on internal.billing_settings, internal.tenant_billing_settings,
  internal.publish_advance_items to service_role;
revoke all on function internal.month_manual_bills(date, text[]) from public, anon, authenticated;
grant execute on function internal.month_manual_bills(date, text[]) to service_role;
