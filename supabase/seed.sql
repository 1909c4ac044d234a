-- Demo data for the local stack: a few tenants, their admins and their bills.
-- Usage bills for September and October 2026, a three-month manual contract, a free-tier tenant
-- and a bill under Stripe's 50-cent minimum.

insert into auth.users (id, aud, role, email, raw_app_meta_data, raw_user_meta_data, created_at)
values
  ('a11ce000-0000-4000-8000-000000000001', 'authenticated', 'authenticated',
   'alice@acme.example', '{"provider":"email"}', '{"full_name":"Alice Admin"}', '2026-01-05'),
  ('b0b00000-0000-4000-8000-000000000002', 'authenticated', 'authenticated',
   'bob@globex.example', '{"provider":"email"}', '{"full_name":"Bob Billing"}', '2026-02-11'),
  ('c4a11e00-0000-4000-8000-000000000003', 'authenticated', 'authenticated',
   'carol@acme.example', '{"provider":"email"}', '{"full_name":"Carol Reader"}', '2026-03-02')
on conflict (id) do nothing;

insert into public.tenants (tenant, trial_start, billing_email, billing_name, billing_address,
  recurring_usd_cents, created_at)
values
  ('acmeCo/', '2026-03-01', 'billing@acme.example', 'Acme Co',
   '{"line1":"1 Main St","line2":null,"city":"Springfield","state":"IL","postal_code":"62701","country":"US"}',
   0, '2026-01-05'),
  ('globex/', '2026-02-01', 'ap@globex.example', 'Globex Corporation', null, 0, '2026-02-11'),
  ('freeloader/', null, 'hi@freeloader.example', null, null, 0, '2026-04-20'),
  ('tinyco/', '2026-05-01', 'owner@tinyco.example', 'Tiny Co', null, 0, '2026-05-01')
on conflict (tenant) do nothing;

insert into public.user_grants (user_id, object_role, capability)
values
  ('a11ce000-0000-4000-8000-000000000001', 'acmeCo/', 'admin'),
  ('b0b00000-0000-4000-8000-000000000002', 'globex/', 'admin'),
  ('c4a11e00-0000-4000-8000-000000000003', 'acmeCo/', 'read')
on conflict (user_id, object_role) do nothing;

insert into internal.billing_historicals (tenant, billed_month, report)
select tenant, billed_month::timestamptz, jsonb_build_object(
    'billed_month', billed_month::timestamptz,
    'billed_prefix', tenant,
    'line_items', line_items,
    'subtotal', (select sum((li ->> 'subtotal')::int) from jsonb_array_elements(line_items) li),
    'processed_data_gb', data_gb,
    'task_usage_hours', task_hours,
    'recurring_fee', 0,
    'trial_credit', 0,
    'free_tier_credit', free_tier_credit,
    'trial_start', trial_start)
from (values
  ('acmeCo/', '2026-09-01', 412.5, 1488.0, 0, '2026-03-01', jsonb_build_array(
    jsonb_build_object('description', 'Data processing (at $0.50/GB)', 'count', 413, 'rate', 50,
      'subtotal', 20650),
    jsonb_build_object('description', 'Task usage (first 4464 hours at $0.14/hour)', 'count', 1488,
      'rate', 14, 'subtotal', 20832))),
  ('acmeCo/', '2026-10-01', 530.2, 1488.0, 0, '2026-03-01', jsonb_build_array(
    jsonb_build_object('description', 'Data processing (at $0.50/GB)', 'count', 531, 'rate', 50,
      'subtotal', 26550),
    jsonb_build_object('description', 'Task usage (first 4464 hours at $0.14/hour)', 'count', 1488,
      'rate', 14, 'subtotal', 20832))),
  ('freeloader/', '2026-10-01', 3.0, 20.0, -430, null, jsonb_build_array(
    jsonb_build_object('description', 'Data processing (at $0.50/GB)', 'count', 3, 'rate', 50,
      'subtotal', 150),
    jsonb_build_object('description', 'Task usage (first 4464 hours at $0.14/hour)', 'count', 20,
      'rate', 14, 'subtotal', 280),
    jsonb_build_object('description', 'Free tier credit', 'count', 1, 'rate', -430,
      'subtotal', -430))),
  ('tinyco/', '2026-10-01', 0.5, 0.0, 0, '2026-05-01', jsonb_build_array(
    jsonb_build_object('description', 'Data processing (at $0.50/GB)', 'count', 1, 'rate', 40,
      'subtotal', 40)))
) as v(tenant, billed_month, data_gb, task_hours, free_tier_credit, trial_start, line_items)
on conflict (tenant, billed_month) do nothing;

insert into internal.manual_bills (tenant, usd_cents, description, date_start, date_end)
values
  ('globex/', 1500000, 'Enterprise contract, Q4 2026 (three months)', '2026-10-01', '2026-12-31'),
  ('acmeCo/', 25000, 'Onboarding services', '2026-10-15', '2026-10-31')
on conflict do nothing;
