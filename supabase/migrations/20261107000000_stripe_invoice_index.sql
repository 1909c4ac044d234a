-- An incremental, account-wide index of Stripe invoices, so publishing a bill with no stored
-- invoice ID need not list its customer's invoices (DESIGN §2.4) in steady state. One scan of
-- `GET /v1/invoices?created[gte]=...` (every page) serves every bill of a run; the per-customer
-- list stays the fallback wherever the index cannot vouch (never bootstrapped, scan incomplete,
-- a create intent whose ID may have been lost).
--
-- Keyed by a Stripe account label: one database may see several accounts (test and live mode,
-- or one emulator per test), and an index of one account says nothing about another.
-- Scans take a lease (a row, not a session lock: the pooler is transaction-mode) and may be
-- resumed page by page across invocations, so bootstrapping a large account fits any budget.

create table internal.stripe_invoice_index (
  account text not null,
  stripe_invoice_id text not null check (stripe_invoice_id ~ '^in_[A-Za-z0-9]+$'),
  customer_id text,
  status text,
  -- Stripe's `created`, Unix seconds on Stripe's clock.
  created bigint not null,
  total bigint,
  metadata jsonb not null default '{}',
  seen_at timestamptz not null default now(),
  primary key (account, stripe_invoice_id),
  constraint stripe_invoice_index_metadata_object check (jsonb_typeof(metadata) = 'object')
);
comment on table internal.stripe_invoice_index is
  'Stripe invoices as last seen by an account-wide scan (hints for adoption, not live state).';
create index stripe_invoice_index_customer on internal.stripe_invoice_index (account, customer_id);

create table internal.stripe_invoice_scan (
  account text primary key check (account <> ''),
  -- Every invoice whose `created` is below this (Stripe seconds) is in the index; null until
  -- the first complete pass over the whole account.
  complete_through bigint,
  -- When the last complete pass started: it saw every invoice created before then.
  scanned_at timestamptz,
  completed_passes bigint not null default 0,
  -- The pass in progress (resumable): when it started, its created[gte] bound (null: whole
  -- account), the cursor of its next page, the newest `created` it has seen.
  pass_started_at timestamptz,
  pass_from bigint,
  pass_cursor text,
  pass_high bigint,
  lease_owner text,
  lease_expires_at timestamptz,
  constraint stripe_invoice_scan_lease check ((lease_owner is null) = (lease_expires_at is null))
);
comment on table internal.stripe_invoice_scan is
  'Per Stripe account: how far the invoice index is complete, and who is scanning.';

-- Says whether the index of p_account is fresh (complete, and its last pass started at or after
-- both p_fresh_after and p_now - p_max_age); if not, leases the scan to p_owner unless another
-- owner holds a live lease. Outcome 'fresh', 'leased' (go scan: pass_* say where) or 'busy'.
create function internal.take_stripe_invoice_scan(
  p_account text,
  p_owner text,
  p_fresh_after timestamptz,
  p_max_age interval default interval '15 minutes',
  p_lease interval default interval '60 seconds',
  p_skew_seconds integer default 300,
  p_now timestamptz default now()
) returns table (
  outcome text,
  complete_through bigint,
  scanned_at timestamptz,
  pass_from bigint,
  pass_cursor text,
  lease_expires_at timestamptz
)
language plpgsql security definer
set search_path = ''
as $$
declare
  s internal.stripe_invoice_scan;
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
  insert into internal.stripe_invoice_scan (account) values (p_account)
  on conflict (account) do nothing;
  select * into s from internal.stripe_invoice_scan x where x.account = p_account for update;
  if s.complete_through is not null and s.scanned_at >= p_fresh_after
    and s.scanned_at >= p_now - coalesce(p_max_age, interval '15 minutes') then
    return query select 'fresh'::text, s.complete_through, s.scanned_at, null::bigint,
      null::text, null::timestamptz;
    return;
  end if;
  if s.lease_owner is not null and s.lease_owner <> p_owner and s.lease_expires_at >= p_now then
    return query select 'busy'::text, s.complete_through, s.scanned_at, null::bigint, null::text,
      s.lease_expires_at;
    return;
  end if;
  if s.pass_started_at is null then
    -- A new pass: from the watermark less the skew (writes in flight when it was read), or the
    -- whole account the first time.
    s.pass_started_at := p_now;
    s.pass_from := s.complete_through - p_skew_seconds;
    s.pass_cursor := null;
    s.pass_high := null;
  end if;
  update internal.stripe_invoice_scan x
  set lease_owner = p_owner, lease_expires_at = p_now + p_lease,
    pass_started_at = s.pass_started_at, pass_from = s.pass_from, pass_cursor = s.pass_cursor,
    pass_high = s.pass_high
  where x.account = p_account;
  return query select 'leased'::text, s.complete_through, s.scanned_at, s.pass_from,
    s.pass_cursor, p_now + p_lease;
end;
$$;
comment on function internal.take_stripe_invoice_scan(text, text, timestamptz, interval, interval,
  integer, timestamptz) is
  'Fresh, busy, or leases the invoice index scan of an account (resuming a pass in progress).';

-- Raises (writing nothing) unless p_owner holds the scan of p_account with a pass in progress.
create function internal.stripe_invoice_scan_held(p_account text, p_owner text)
returns internal.stripe_invoice_scan
language plpgsql
set search_path = ''
as $$
declare
  s internal.stripe_invoice_scan;
begin
  select * into s from internal.stripe_invoice_scan x where x.account = p_account for update;
  if not found or s.lease_owner is distinct from p_owner or s.pass_started_at is null then
    raise exception 'owner % does not hold the invoice scan of %', coalesce(p_owner, '-'),
      coalesce(p_account, '-') using errcode = 'lock_not_available', column = 'lease_owner';
  end if;
  return s;
end;
$$;

-- Upserts one page of a pass (Stripe invoice objects, a jsonb array), moves the pass's cursor
-- to p_next_cursor and extends the lease. Returns the number of invoices written.
create function internal.record_stripe_invoice_page(
  p_account text,
  p_owner text,
  p_invoices jsonb,
  p_next_cursor text,
  p_lease interval default interval '60 seconds',
  p_now timestamptz default now()
) returns integer
language plpgsql security definer
set search_path = ''
as $$
declare
  high bigint;
  n integer;
begin
  if jsonb_typeof(p_invoices) is distinct from 'array' then
    raise exception 'invoices must be a JSON array' using errcode = 'invalid_parameter_value',
      column = 'invoices';
  end if;
  if exists (select 1 from jsonb_array_elements(p_invoices) e
    where jsonb_typeof(e) <> 'object' or coalesce(e ->> 'id', '') !~ '^in_[A-Za-z0-9]+$'
      or jsonb_typeof(e -> 'created') is distinct from 'number'
      or (e -> 'metadata' is not null and jsonb_typeof(e -> 'metadata') not in ('object', 'null'))) then
    raise exception 'each invoice needs an id like in_..., a numeric created and object metadata'
      using errcode = 'invalid_parameter_value', column = 'invoices';
  end if;
  perform internal.stripe_invoice_scan_held(p_account, p_owner);
  insert into internal.stripe_invoice_index as i (account, stripe_invoice_id, customer_id, status,
    created, total, metadata, seen_at)
  select p_account, e ->> 'id',
    case jsonb_typeof(e -> 'customer') when 'object' then e -> 'customer' ->> 'id'
      else e ->> 'customer' end,
    e ->> 'status', (e ->> 'created')::bigint, (e ->> 'total')::bigint,
    coalesce(nullif(e -> 'metadata', 'null'::jsonb), '{}'::jsonb), p_now
  from jsonb_array_elements(p_invoices) e
  on conflict (account, stripe_invoice_id) do update set
    customer_id = coalesce(excluded.customer_id, i.customer_id), status = excluded.status,
    created = excluded.created, total = excluded.total, metadata = excluded.metadata,
    seen_at = excluded.seen_at;
  get diagnostics n = row_count;
  select max((e ->> 'created')::bigint) into high from jsonb_array_elements(p_invoices) e;
  update internal.stripe_invoice_scan x
  set pass_cursor = p_next_cursor, pass_high = greatest(x.pass_high, high),
    lease_expires_at = p_now + coalesce(p_lease, interval '60 seconds')
  where x.account = p_account;
  return n;
end;
$$;
comment on function internal.record_stripe_invoice_page(text, text, jsonb, text, interval,
  timestamptz) is
  'Upserts a page of a held invoice scan into the index and advances its cursor.';

-- Completes the pass p_owner holds: the watermark becomes the newest `created` seen (never
-- lower than before), scanned_at the pass's start; the lease is released. Returns the watermark.
create function internal.finish_stripe_invoice_scan(
  p_account text,
  p_owner text
) returns bigint
language plpgsql security definer
set search_path = ''
as $$
declare
  s internal.stripe_invoice_scan;
  through bigint;
begin
  s := internal.stripe_invoice_scan_held(p_account, p_owner);
  -- An account with no invoice yet is complete through 0: the next pass lists it all again.
  through := coalesce(greatest(s.complete_through, s.pass_high), 0);
  update internal.stripe_invoice_scan x
  set complete_through = through,
    scanned_at = greatest(x.scanned_at, s.pass_started_at),
    completed_passes = x.completed_passes + 1,
    pass_started_at = null, pass_from = null, pass_cursor = null, pass_high = null,
    lease_owner = null, lease_expires_at = null
  where x.account = p_account;
  return through;
end;
$$;
comment on function internal.finish_stripe_invoice_scan(text, text) is
  'Completes a held invoice scan: advances the watermark (monotonic) and releases the lease.';

-- Hands the scan back unfinished: the pass is kept for the next owner to resume (out of time),
-- or dropped (its cursor is unusable). Returns false when p_owner did not hold it.
create function internal.release_stripe_invoice_scan(
  p_account text,
  p_owner text,
  p_keep_pass boolean
) returns boolean
language plpgsql security definer
set search_path = ''
as $$
begin
  update internal.stripe_invoice_scan x
  set lease_owner = null, lease_expires_at = null,
    pass_started_at = case when p_keep_pass then x.pass_started_at end,
    pass_from = case when p_keep_pass then x.pass_from end,
    pass_cursor = case when p_keep_pass then x.pass_cursor end,
    pass_high = case when p_keep_pass then x.pass_high end
  where x.account = p_account and x.lease_owner = p_owner;
  return found;
end;
$$;
comment on function internal.release_stripe_invoice_scan(text, text, boolean) is
  'Releases a held invoice scan, keeping its pass for resumption or dropping it.';

revoke all on internal.stripe_invoice_index, internal.stripe_invoice_scan
  from public, anon, authenticated;
grant select on internal.stripe_invoice_index, internal.stripe_invoice_scan to service_role;
revoke all on function
  internal.take_stripe_invoice_scan(text, text, timestamptz, interval, interval, integer,
    timestamptz),
  internal.stripe_invoice_scan_held(text, text),
  internal.record_stripe_invoice_page(text, text, jsonb, text, interval, timestamptz),
  internal.finish_stripe_invoice_scan(text, text),
  internal.release_stripe_invoice_scan(text, text, boolean)
  from public, anon, authenticated;
grant execute on function
  internal.take_stripe_invoice_scan(text, text, timestamptz, interval, interval, integer,
    timestamptz),
  internal.record_stripe_invoice_page(text, text, jsonb, text, interval, timestamptz),
  internal.finish_stripe_invoice_scan(text, text),
  internal.release_stripe_invoice_scan(text, text, boolean)
  to service_role;
