-- Stripe limits each named operation too (25 requests/s unless an endpoint says otherwise, on
-- top of the account's 100 live / 25 test): a live month sends creates and add_lines at 50/s
-- each when only the account's budget is kept. A request now reserves a slot of the account's
-- bucket and of its operation's bucket in one round trip, and waits for the later of the two.

create function internal.reserve_stripe_requests(
  p_buckets text[],
  p_rates double precision[],
  p_burst double precision default 1,
  p_now timestamptz default clock_timestamp()
) returns double precision
language plpgsql security definer
set search_path = ''
as $$
declare
  b record;
  wait double precision := 0;
begin
  if p_buckets is null or cardinality(p_buckets) = 0 or cardinality(p_buckets) > 8 then
    raise exception 'buckets must name one to eight buckets'
      using errcode = 'invalid_parameter_value', column = 'buckets';
  end if;
  if p_rates is null or cardinality(p_rates) <> cardinality(p_buckets) then
    raise exception 'rates must give one rate per bucket'
      using errcode = 'invalid_parameter_value', column = 'rates';
  end if;
  -- Always locked in the same order, so two reservations never wait on each other's rows.
  for b in
    select x.bucket, x.rate
    from unnest(p_buckets, p_rates) as x(bucket, rate)
    order by x.bucket
  loop
    wait := greatest(wait, internal.reserve_stripe_request(b.bucket, b.rate, p_burst, p_now));
  end loop;
  return wait;
end;
$$;
comment on function internal.reserve_stripe_requests(text[], double precision[],
  double precision, timestamptz) is
  'Reserves a slot in each of several Stripe rate buckets (account, operation); returns the longest wait (ms).';
revoke all on function internal.reserve_stripe_requests(text[], double precision[],
  double precision, timestamptz) from public, anon, authenticated;
grant execute on function internal.reserve_stripe_requests(text[], double precision[],
  double precision, timestamptz) to service_role;
