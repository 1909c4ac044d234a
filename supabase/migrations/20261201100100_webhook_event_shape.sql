-- A correctly signed Stripe event that the mirror cannot use (an out-of-range created, a
-- non-numeric amount, an unknown status) is refused by field name before anything is written,
-- and recorded as rejected, so the webhook can acknowledge it instead of failing with a 500 that
-- Stripe retries for days.

create table internal.stripe_rejected_events (
  id bigint generated always as identity primary key,
  event_id text,
  type text,
  field text,
  reason text not null,
  payload jsonb not null,
  received_at timestamptz not null default now()
);
comment on table internal.stripe_rejected_events is
  'Signed Stripe events that could not be applied, with the field at fault; kept for audit.';
create index stripe_rejected_events_event on internal.stripe_rejected_events (event_id);

-- Raises invalid_parameter_value naming the first field the mirror could not store.
create function internal.check_stripe_event_shape(p_event jsonb)
returns void
language plpgsql immutable
set search_path = ''
as $$
declare
  v_object jsonb := p_event -> 'data' -> 'object';
  v_created numeric;
  field text;
  value jsonb;
begin
  if pg_catalog.jsonb_typeof(p_event -> 'created') = 'number' then
    v_created := (p_event ->> 'created')::numeric;
    -- Years 1970 to 9999: to_timestamp fails on values far outside.
    if v_created < 0 or v_created > 253402300799 or v_created <> pg_catalog.trunc(v_created) then
      raise exception 'event.created must be a Unix timestamp in seconds, got %',
        pg_catalog.left(p_event ->> 'created', 40)
        using errcode = 'invalid_parameter_value', column = 'created';
    end if;
  end if;
  if pg_catalog.jsonb_typeof(p_event -> 'livemode') not in ('boolean', 'null') then
    raise exception 'event.livemode must be a boolean'
      using errcode = 'invalid_parameter_value', column = 'livemode';
  end if;
  if pg_catalog.jsonb_typeof(v_object) is distinct from 'object'
     or v_object ->> 'object' is distinct from 'invoice' then
    return;
  end if;
  foreach field in array array['amount_due', 'total'] loop
    value := v_object -> field;
    if value is not null and pg_catalog.jsonb_typeof(value) <> 'null' and (
      pg_catalog.jsonb_typeof(value) <> 'number'
      or (value #>> '{}')::numeric <> pg_catalog.trunc((value #>> '{}')::numeric)
      or pg_catalog.abs((value #>> '{}')::numeric) > 9000000000000000000
    ) then
      raise exception 'event.data.object.% must be an integer amount, got %', field,
        pg_catalog.left(value::text, 40)
        using errcode = 'invalid_parameter_value', column = 'data.object.' || field;
    end if;
  end loop;
  value := v_object -> 'status';
  if value is not null and pg_catalog.jsonb_typeof(value) <> 'null' and (
    pg_catalog.jsonb_typeof(value) <> 'string'
    or (value #>> '{}') not in ('draft', 'open', 'paid', 'uncollectible', 'void')
  ) then
    raise exception 'event.data.object.status must be an invoice status, got %',
      pg_catalog.left(value::text, 40)
      using errcode = 'invalid_parameter_value', column = 'data.object.status';
  end if;
  foreach field in array array['customer', 'currency', 'hosted_invoice_url', 'invoice_pdf'] loop
    value := v_object -> field;
    if value is not null and pg_catalog.jsonb_typeof(value) not in ('string', 'null')
       and not (field = 'customer' and pg_catalog.jsonb_typeof(value) = 'object') then
      raise exception 'event.data.object.% must be a string', field
        using errcode = 'invalid_parameter_value', column = 'data.object.' || field;
    end if;
  end loop;
  if pg_catalog.jsonb_typeof(v_object -> 'deleted') not in ('boolean', 'null') then
    raise exception 'event.data.object.deleted must be a boolean'
      using errcode = 'invalid_parameter_value', column = 'data.object.deleted';
  end if;
end;
$$;

-- The shape check runs first; everything else is as before.
create or replace function internal.receive_stripe_event(p_event jsonb)
returns text
language plpgsql security definer
set search_path = ''
as $$
declare
  v_id text := p_event ->> 'id';
  v_type text := p_event ->> 'type';
  v_object jsonb := p_event -> 'data' -> 'object';
  v_created timestamptz;
  v_row internal.stripe_events;
  v_changed boolean;
begin
  if v_id is null or v_id !~ '^evt_[A-Za-z0-9_]+$' then
    raise exception 'event.id must look like evt_..., got %', coalesce(v_id, 'NULL')
      using errcode = 'invalid_parameter_value', column = 'id';
  end if;
  if not internal.stripe_event_is_relevant(v_type) then
    raise exception 'event type % is not applied to the mirror', coalesce(v_type, 'NULL')
      using errcode = 'invalid_parameter_value', column = 'type';
  end if;
  if pg_catalog.jsonb_typeof(p_event -> 'created') is distinct from 'number' then
    raise exception 'event.created must be a Unix timestamp'
      using errcode = 'invalid_parameter_value', column = 'created';
  end if;
  if pg_catalog.jsonb_typeof(v_object) is distinct from 'object'
     or v_object ->> 'object' is distinct from split_part(v_type, '.', 1) then
    raise exception 'event.data.object must be a %', split_part(v_type, '.', 1)
      using errcode = 'invalid_parameter_value', column = 'data.object';
  end if;
  perform internal.check_stripe_event_shape(p_event);
  v_created := pg_catalog.to_timestamp((p_event ->> 'created')::double precision);

  insert into internal.stripe_events as e (id, type, created, livemode, payload)
  values (v_id, v_type, v_created, coalesce((p_event ->> 'livemode')::boolean, false), p_event)
  on conflict (id) do update set deliveries = e.deliveries + 1
  returning * into v_row;
  if v_row.applied_at is not null then
    return 'duplicate';
  end if;

  if v_type = 'customer.deleted' then
    perform internal.record_customer_deleted(v_object ->> 'id', v_created);
    v_changed := true;
  else
    -- invoice.deleted carries the last draft; the mirror needs to know it is gone.
    v_changed := internal.record_invoice_state(
      case when v_type = 'invoice.deleted'
        then v_object || '{"deleted": true}'::jsonb else v_object end,
      v_created,
      'webhook:' || v_id);
  end if;

  update internal.stripe_events
  set applied_at = now(), outcome = case when v_changed then 'applied' else 'stale' end
  where id = v_id;
  return case when v_changed then 'applied' else 'stale' end;
end;
$$;

-- Records a signed event that was refused, with the field at fault.
create function internal.record_rejected_stripe_event(p_event jsonb, p_field text, p_reason text)
returns void
language sql security definer
set search_path = ''
as $$
  insert into internal.stripe_rejected_events (event_id, type, field, reason, payload)
  values (pg_catalog.left(p_event ->> 'id', 255), pg_catalog.left(p_event ->> 'type', 255),
    pg_catalog.left(p_field, 255), pg_catalog.left(coalesce(p_reason, 'rejected'), 1000), p_event);
$$;

revoke all on internal.stripe_rejected_events from public, anon, authenticated, service_role;
grant select on internal.stripe_rejected_events to service_role;
revoke all on function internal.check_stripe_event_shape(jsonb),
  internal.record_rejected_stripe_event(jsonb, text, text)
  from public, anon, authenticated;
grant execute on function internal.record_rejected_stripe_event(jsonb, text, text)
  to service_role;
