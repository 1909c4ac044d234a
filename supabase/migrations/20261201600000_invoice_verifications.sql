-- Reruns without a retrieve per bill. When publishing confirms that a bill's stored draft is
-- exactly what the bill wants, it records a verification. A per-account cursor over Stripe's
-- own Events API (not webhooks) records which invoices and customers changed since; a bill whose
-- verification still holds (same invoice, same wanted hash, no foreign change recorded since)
-- is planned without asking Stripe about its invoice.
--
-- Changes are numbered (seq) in the order the cursor recorded them. A verification keeps the
-- highest seq recorded before its item started reading Stripe: any change recorded later may
-- postdate what the item saw, so it voids the verification, unless the event was caused by one
-- of the writes that led to the verification (its idempotency key is one of own_keys).

create table internal.stripe_event_cursor (
  account text primary key check (account <> ''),
  -- Bumped when the cursor restarts (first use, or too long idle for Stripe's 30 days of
  -- events): verifications of an older generation are void.
  generation bigint not null default 0,
  -- Every event created before this (Stripe seconds) has been recorded; null before the first
  -- complete pass.
  complete_through bigint,
  -- When the last complete pass started (our clock): it saw every event created before then.
  scanned_at timestamptz,
  completed_passes bigint not null default 0,
  pass_started_at timestamptz,
  pass_from bigint,
  pass_cursor text,
  pass_high bigint,
  lease_owner text,
  lease_expires_at timestamptz,
  constraint stripe_event_cursor_lease check ((lease_owner is null) = (lease_expires_at is null))
);
comment on table internal.stripe_event_cursor is
  'Per Stripe account: how far its Events API has been read into stripe_object_changes.';

create table internal.stripe_object_changes (
  account text not null,
  event_id text not null check (event_id ~ '^evt_[A-Za-z0-9]+$'),
  seq bigint generated always as identity,
  -- 'invoice' (invoice.* and invoiceitem.* events, by invoice ID), 'customer_deleted',
  -- 'customer_updated' (by customer ID).
  kind text not null check (kind in ('invoice', 'customer_deleted', 'customer_updated')),
  object_id text not null,
  event_type text not null,
  event_created bigint not null,
  idempotency_key text,
  recorded_at timestamptz not null default now(),
  primary key (account, event_id)
);
comment on table internal.stripe_object_changes is
  'Invoice and customer changes read from the Events API, numbered in recording order.';
create index stripe_object_changes_object on internal.stripe_object_changes
  (account, object_id, seq);

create table internal.stripe_invoice_verifications (
  account text not null,
  bill_kind text not null check (bill_kind in ('final', 'manual')),
  bill_id bigint not null,
  stripe_invoice_id text not null check (stripe_invoice_id ~ '^in_[A-Za-z0-9]+$'),
  customer_id text not null,
  -- What the bill wanted when verified: customer, fields, lines and total (hex SHA-256).
  wanted_hash text not null check (wanted_hash ~ '^[0-9a-f]{64}$'),
  -- Whether a customer.updated voids it (a bill that needs the default payment method).
  watch_customer_updates boolean not null,
  generation bigint not null,
  seen_seq bigint not null,
  own_keys text[] not null default '{}',
  verified_at timestamptz not null default now(),
  primary key (account, bill_kind, bill_id)
);
comment on table internal.stripe_invoice_verifications is
  'A bill''s stored draft as publishing last confirmed it matched the bill.';

-- Where the account's change log stands: its generation (null: no complete pass yet) and the
-- highest seq recorded. Read before an item looks at Stripe.
create function internal.stripe_event_position(p_account text)
returns table (generation bigint, seen_seq bigint)
language sql stable security definer
set search_path = ''
as $$
  select c.generation,
    coalesce((select max(x.seq) from internal.stripe_object_changes x
      where x.account = p_account), 0)
  from internal.stripe_event_cursor c
  where c.account = p_account and c.complete_through is not null;
$$;

-- Fresh (a complete pass started at or after p_fresh_after and within p_max_age), busy
-- (another owner holds a live lease) or leased to p_owner (pass_* say where to read from).
create function internal.take_stripe_event_scan(
  p_account text,
  p_owner text,
  p_fresh_after timestamptz,
  p_max_age interval default interval '15 minutes',
  p_lease interval default interval '60 seconds',
  p_skew_seconds integer default 300,
  p_now timestamptz default now()
) returns table (outcome text, pass_from bigint, pass_cursor text)
language plpgsql security definer
set search_path = ''
as $$
declare
  s internal.stripe_event_cursor;
  -- Stripe keeps 30 days of events; a cursor idle longer restarts (a new generation).
  retention constant interval := interval '25 days';
begin
  if coalesce(p_account, '') = '' then
    raise exception 'account is required' using errcode = 'invalid_parameter_value',
      column = 'account';
  end if;
  if coalesce(p_owner, '') = '' then
    raise exception 'owner is required' using errcode = 'invalid_parameter_value',
      column = 'owner';
  end if;
  if p_lease is null or p_lease < interval '1 second' then
    raise exception 'lease must be at least one second' using errcode = 'invalid_parameter_value',
      column = 'lease';
  end if;
  if p_skew_seconds is null or p_skew_seconds < 0 then
    raise exception 'skew_seconds must be zero or more' using errcode = 'invalid_parameter_value',
      column = 'skew_seconds';
  end if;
  insert into internal.stripe_event_cursor (account) values (p_account)
  on conflict (account) do nothing;
  select * into s from internal.stripe_event_cursor x where x.account = p_account for update;
  if s.complete_through is not null and s.scanned_at >= p_fresh_after
    and s.scanned_at >= p_now - coalesce(p_max_age, interval '15 minutes') then
    return query select 'fresh'::text, null::bigint, null::text;
    return;
  end if;
  if s.lease_owner is not null and s.lease_owner <> p_owner and s.lease_expires_at >= p_now then
    return query select 'busy'::text, null::bigint, null::text;
    return;
  end if;
  if s.pass_started_at is null then
    -- A new generation (first use, or idle past Stripe's event retention) reads nothing but
    -- where Stripe's clock stands (pass_from null: the newest event); later passes read from
    -- the watermark less the skew.
    s.pass_from := case when s.complete_through is null or s.scanned_at < p_now - retention
      then null else s.complete_through - p_skew_seconds end;
    s.pass_started_at := p_now;
    s.pass_cursor := null;
    s.pass_high := null;
  end if;
  update internal.stripe_event_cursor x
  set lease_owner = p_owner, lease_expires_at = p_now + p_lease,
    pass_started_at = s.pass_started_at, pass_from = s.pass_from, pass_cursor = s.pass_cursor,
    pass_high = s.pass_high
  where x.account = p_account;
  return query select 'leased'::text, s.pass_from, s.pass_cursor;
end;
$$;

-- Raises (writing nothing) unless p_owner holds the event scan of p_account.
create function internal.stripe_event_scan_held(p_account text, p_owner text)
returns internal.stripe_event_cursor
language plpgsql
set search_path = ''
as $$
declare
  s internal.stripe_event_cursor;
begin
  select * into s from internal.stripe_event_cursor x where x.account = p_account for update;
  if not found or s.lease_owner is distinct from p_owner or s.pass_started_at is null then
    raise exception 'owner % does not hold the event scan of %', coalesce(p_owner, '-'),
      coalesce(p_account, '-') using errcode = 'lock_not_available', column = 'lease_owner';
  end if;
  return s;
end;
$$;

-- Records one page of events (a jsonb array of {id, type, created, object_id, kind,
-- idempotency_key}); events already recorded keep their seq. Moves the cursor, extends the lease.
create function internal.record_stripe_event_page(
  p_account text,
  p_owner text,
  p_changes jsonb,
  p_page_high bigint,
  p_next_cursor text,
  p_lease interval default interval '60 seconds',
  p_now timestamptz default now()
) returns integer
language plpgsql security definer
set search_path = ''
as $$
declare
  n integer;
begin
  if jsonb_typeof(p_changes) is distinct from 'array' then
    raise exception 'changes must be a JSON array' using errcode = 'invalid_parameter_value',
      column = 'changes';
  end if;
  if exists (select 1 from jsonb_array_elements(p_changes) e
    where jsonb_typeof(e) <> 'object' or coalesce(e ->> 'id', '') !~ '^evt_[A-Za-z0-9]+$'
      or coalesce(e ->> 'object_id', '') = '' or coalesce(e ->> 'type', '') = ''
      or jsonb_typeof(e -> 'created') is distinct from 'number'
      or coalesce(e ->> 'kind', '') not in ('invoice', 'customer_deleted', 'customer_updated')) then
    raise exception 'each change needs an evt_ id, a type, a numeric created, an object_id and a kind'
      using errcode = 'invalid_parameter_value', column = 'changes';
  end if;
  -- The lock on the cursor row also orders seq: one recorder at a time.
  perform internal.stripe_event_scan_held(p_account, p_owner);
  insert into internal.stripe_object_changes (account, event_id, kind, object_id, event_type,
    event_created, idempotency_key, recorded_at)
  select p_account, e ->> 'id', e ->> 'kind', e ->> 'object_id', e ->> 'type',
    (e ->> 'created')::bigint, nullif(e ->> 'idempotency_key', ''), p_now
  from jsonb_array_elements(p_changes) e
  order by (e ->> 'created')::bigint, e ->> 'id'
  on conflict (account, event_id) do nothing;
  get diagnostics n = row_count;
  update internal.stripe_event_cursor x
  set pass_cursor = p_next_cursor, pass_high = greatest(x.pass_high, p_page_high),
    lease_expires_at = p_now + coalesce(p_lease, interval '60 seconds')
  where x.account = p_account;
  return n;
end;
$$;

-- Completes the held pass: the watermark becomes the newest event seen (never lower than the
-- pass's own start bound), scanned_at the pass's start; releases the lease. A generation-start
-- pass (pass_from null) instead begins a new generation at p_start_through, the newest event's
-- created (0 when the account has none), which voids every verification of the old one.
create function internal.finish_stripe_event_scan(
  p_account text,
  p_owner text,
  p_start_through bigint default null
) returns bigint
language plpgsql security definer
set search_path = ''
as $$
declare
  s internal.stripe_event_cursor;
  through bigint;
begin
  s := internal.stripe_event_scan_held(p_account, p_owner);
  if s.pass_from is null then
    if p_start_through is null or p_start_through < 0 then
      raise exception 'a new generation needs start_through (the newest event''s created, or 0)'
        using errcode = 'invalid_parameter_value', column = 'start_through';
    end if;
    through := p_start_through;
    update internal.stripe_event_cursor x
    set generation = x.generation + 1, complete_through = through,
      scanned_at = s.pass_started_at, completed_passes = x.completed_passes + 1,
      pass_started_at = null, pass_from = null, pass_cursor = null, pass_high = null,
      lease_owner = null, lease_expires_at = null
    where x.account = p_account;
    return through;
  end if;
  through := greatest(s.complete_through, s.pass_high, s.pass_from);
  update internal.stripe_event_cursor x
  set complete_through = through,
    scanned_at = greatest(x.scanned_at, s.pass_started_at),
    completed_passes = x.completed_passes + 1,
    pass_started_at = null, pass_from = null, pass_cursor = null, pass_high = null,
    lease_owner = null, lease_expires_at = null
  where x.account = p_account;
  return through;
end;
$$;

-- Hands the scan back unfinished, keeping the pass (out of time) or dropping it.
create function internal.release_stripe_event_scan(
  p_account text,
  p_owner text,
  p_keep_pass boolean
) returns boolean
language plpgsql security definer
set search_path = ''
as $$
begin
  update internal.stripe_event_cursor x
  set lease_owner = null, lease_expires_at = null,
    pass_started_at = case when p_keep_pass then x.pass_started_at end,
    pass_from = case when p_keep_pass then x.pass_from end,
    pass_cursor = case when p_keep_pass then x.pass_cursor end,
    pass_high = case when p_keep_pass then x.pass_high end
  where x.account = p_account and x.lease_owner = p_owner;
  return found;
end;
$$;

-- Records (replacing the bill's previous one) that its stored draft matched what it wants.
create function internal.record_invoice_verification(
  p_account text,
  p_bill_kind text,
  p_bill_id bigint,
  p_invoice_id text,
  p_customer_id text,
  p_wanted_hash text,
  p_watch_customer_updates boolean,
  p_generation bigint,
  p_seen_seq bigint,
  p_own_keys text[]
) returns void
language plpgsql security definer
set search_path = ''
as $$
begin
  if coalesce(p_account, '') = '' then
    raise exception 'account is required' using errcode = 'invalid_parameter_value',
      column = 'account';
  end if;
  if p_generation is null or p_seen_seq is null then
    raise exception 'generation and seen_seq are required' using
      errcode = 'invalid_parameter_value', column = 'generation';
  end if;
  if coalesce(p_customer_id, '') = '' then
    raise exception 'customer_id is required' using errcode = 'invalid_parameter_value',
      column = 'customer_id';
  end if;
  insert into internal.stripe_invoice_verifications as v (account, bill_kind, bill_id,
    stripe_invoice_id, customer_id, wanted_hash, watch_customer_updates, generation, seen_seq,
    own_keys, verified_at)
  values (p_account, p_bill_kind, p_bill_id, p_invoice_id, p_customer_id, p_wanted_hash,
    coalesce(p_watch_customer_updates, true), p_generation, p_seen_seq,
    coalesce(p_own_keys, '{}'), now())
  on conflict (account, bill_kind, bill_id) do update set
    stripe_invoice_id = excluded.stripe_invoice_id, customer_id = excluded.customer_id,
    wanted_hash = excluded.wanted_hash,
    watch_customer_updates = excluded.watch_customer_updates,
    generation = excluded.generation, seen_seq = excluded.seen_seq,
    own_keys = excluded.own_keys, verified_at = excluded.verified_at;
end;
$$;

-- True when the bill's verification still holds: same invoice, customer and wanted hash, the
-- cursor's current generation, and no change to the invoice (or a deletion, or when watched an
-- update, of the customer) recorded after it, other than the events of its own writes.
create function internal.invoice_verification_holds(
  p_account text,
  p_bill_kind text,
  p_bill_id bigint,
  p_invoice_id text,
  p_customer_id text,
  p_wanted_hash text
) returns boolean
language sql stable security definer
set search_path = ''
as $$
  select exists (
    select 1
    from internal.stripe_invoice_verifications v
    join internal.stripe_event_cursor c on c.account = v.account
    where v.account = p_account and v.bill_kind = p_bill_kind and v.bill_id = p_bill_id
      and v.stripe_invoice_id = p_invoice_id and v.customer_id = p_customer_id
      and v.wanted_hash = p_wanted_hash
      and c.complete_through is not null and c.generation = v.generation
      and not exists (
        select 1 from internal.stripe_object_changes x
        where x.account = v.account and x.seq > v.seen_seq
          and ((x.kind = 'invoice' and x.object_id = v.stripe_invoice_id
              and (x.idempotency_key is null or x.idempotency_key <> all (v.own_keys)))
            or (x.kind = 'customer_deleted' and x.object_id = v.customer_id)
            or (x.kind = 'customer_updated' and x.object_id = v.customer_id
              and v.watch_customer_updates))));
$$;

revoke all on internal.stripe_event_cursor, internal.stripe_object_changes,
  internal.stripe_invoice_verifications from public, anon, authenticated;
grant select on internal.stripe_event_cursor, internal.stripe_object_changes,
  internal.stripe_invoice_verifications to service_role;
revoke all on function
  internal.stripe_event_position(text),
  internal.take_stripe_event_scan(text, text, timestamptz, interval, interval, integer,
    timestamptz),
  internal.stripe_event_scan_held(text, text),
  internal.record_stripe_event_page(text, text, jsonb, bigint, text, interval, timestamptz),
  internal.finish_stripe_event_scan(text, text, bigint),
  internal.release_stripe_event_scan(text, text, boolean),
  internal.record_invoice_verification(text, text, bigint, text, text, text, boolean, bigint,
    bigint, text[]),
  internal.invoice_verification_holds(text, text, bigint, text, text, text)
  from public, anon, authenticated;
grant execute on function
  internal.stripe_event_position(text),
  internal.take_stripe_event_scan(text, text, timestamptz, interval, interval, integer,
    timestamptz),
  internal.record_stripe_event_page(text, text, jsonb, bigint, text, interval, timestamptz),
  internal.finish_stripe_event_scan(text, text, bigint),
  internal.release_stripe_event_scan(text, text, boolean),
  internal.record_invoice_verification(text, text, bigint, text, text, text, boolean, bigint,
    bigint, text[]),
  internal.invoice_verification_holds(text, text, bigint, text, text, text)
  to service_role;
