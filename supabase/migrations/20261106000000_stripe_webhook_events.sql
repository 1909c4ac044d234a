-- Stripe webhook events, stored once by event ID and applied once to the invoice state mirror
-- (internal.stripe_invoice_state). Stripe retries deliveries and does not order them, so a
-- replay is acknowledged without effect and an older event never overwrites newer state (the
-- mirror's upsert compares event.created).

-- Every relevant event received, by Stripe's event ID.
create table internal.stripe_events (
  id text primary key check (id ~ '^evt_[A-Za-z0-9_]+$'),
  type text not null,
  -- event.created: when Stripe observed the change, the mirror's observation time.
  created timestamptz not null,
  livemode boolean not null,
  payload jsonb not null,
  received_at timestamptz not null default now(),
  -- Deliveries of this event seen, the first included (replays only bump this).
  deliveries integer not null default 1,
  applied_at timestamptz,
  -- applied: the mirror changed; stale: newer state was already mirrored.
  outcome text check (outcome in ('applied', 'stale'))
);
comment on table internal.stripe_events is
  'Stripe webhook events received, each stored and applied once; payloads kept for audit.';
create index stripe_events_object on internal.stripe_events ((payload -> 'data' -> 'object' ->> 'id'));

-- The event types the mirror follows; anything else is acknowledged and never stored.
create function internal.stripe_event_is_relevant(p_type text)
returns boolean
language sql immutable
set search_path = ''
as $$
  select p_type in ('invoice.created', 'invoice.finalized', 'invoice.paid',
    'invoice.payment_failed', 'invoice.voided', 'invoice.marked_uncollectible',
    'invoice.deleted', 'invoice.updated', 'customer.deleted')
$$;
comment on function internal.stripe_event_is_relevant(text) is
  'Event types applied to the invoice state mirror.';

-- Stores a verified event once and applies it once, in one transaction: a concurrent duplicate
-- waits on the row lock and then sees it applied. Returns applied, stale or duplicate.
create function internal.receive_stripe_event(p_event jsonb)
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
comment on function internal.receive_stripe_event(jsonb) is
  'Stores a verified Stripe event once and applies it to the mirror once, order-safely.';

revoke all on internal.stripe_events from public, anon, authenticated;
grant select on internal.stripe_events to service_role;
revoke all on function internal.stripe_event_is_relevant(text),
  internal.receive_stripe_event(jsonb)
  from public, anon, authenticated;
grant execute on function internal.stripe_event_is_relevant(text),
  internal.receive_stripe_event(jsonb)
  to service_role;
