-- One request budget per Stripe account, shared by every process that calls it (CLI runs, the
-- scheduled run, index and event scans, the dashboard). Stripe's limit belongs to the account
-- (live and test mode apart), so a budget held per run or per worker overshoots whenever two of
-- them run at once, and while workers join a run (each saw fewer workers than there are).
--
-- A reservation scheduler (GCRA, the token bucket as arrival times): each request reserves the
-- next free slot, 1/rate after the previous one, and waits until it; idle time is credited up
-- to `burst` requests. One round trip per request, no polling; one clock (the database's) for
-- every process.

create table internal.stripe_rate_buckets (
  -- The account label and mode, e.g. 'acct_123:live' or 'acct_123:test:search'.
  bucket text primary key check (bucket <> ''),
  -- The theoretical arrival time of the next request (the earliest free slot).
  next_slot timestamptz not null
);
comment on table internal.stripe_rate_buckets is
  'Per Stripe account (and mode): the next free slot of its shared request budget.';

-- Reserves one request of the bucket at p_rate per second, with up to p_burst requests of idle
-- credit. Returns how long to wait before sending it, in milliseconds (0: now).
create function internal.reserve_stripe_request(
  p_bucket text,
  p_rate double precision,
  p_burst double precision default 1,
  p_now timestamptz default clock_timestamp()
) returns double precision
language plpgsql security definer
set search_path = ''
as $$
declare
  slot timestamptz;
  credit interval;
  step interval;
begin
  if coalesce(p_bucket, '') = '' then
    raise exception 'bucket is required' using errcode = 'invalid_parameter_value',
      column = 'bucket';
  end if;
  if p_rate is null or not (p_rate > 0 and p_rate < 1e6) then
    raise exception 'rate must be a positive number of requests per second'
      using errcode = 'invalid_parameter_value', column = 'rate';
  end if;
  if p_burst is null or not (p_burst >= 1 and p_burst < 1e6) then
    raise exception 'burst must be at least one request' using errcode = 'invalid_parameter_value',
      column = 'burst';
  end if;
  step := make_interval(secs => 1 / p_rate);
  credit := make_interval(secs => (p_burst - 1) / p_rate);
  insert into internal.stripe_rate_buckets (bucket, next_slot) values (p_bucket, p_now)
  on conflict (bucket) do nothing;
  select greatest(x.next_slot, p_now - credit) into slot
  from internal.stripe_rate_buckets x where x.bucket = p_bucket for update;
  update internal.stripe_rate_buckets x set next_slot = slot + step where x.bucket = p_bucket;
  return greatest(0, extract(epoch from (slot - p_now)) * 1000);
end;
$$;
comment on function internal.reserve_stripe_request(text, double precision, double precision,
  timestamptz) is
  'Reserves the next slot of a Stripe account''s shared request budget; returns the wait (ms).';

revoke all on internal.stripe_rate_buckets from public, anon, authenticated;
grant select on internal.stripe_rate_buckets to service_role;
revoke all on function internal.reserve_stripe_request(text, double precision, double precision,
  timestamptz) from public, anon, authenticated;
grant execute on function internal.reserve_stripe_request(text, double precision,
  double precision, timestamptz) to service_role;
