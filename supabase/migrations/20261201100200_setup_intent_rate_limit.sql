-- setup-intent is rate-limited per tenant. The counter lives here, not in a function instance's
-- memory, so every instance (and every region) shares one limit per tenant.

create table internal.setup_intent_attempts (
  tenant text primary key,
  window_start timestamptz not null,
  attempts integer not null check (attempts >= 1)
);
comment on table internal.setup_intent_attempts is
  'Setup intents asked for per tenant in the current fixed window (the dashboard rate limit).';

-- Counts one attempt for the tenant. Returns 0 when it is within p_limit per p_window_seconds,
-- else how many seconds remain until the window ends. One row per tenant, so concurrent calls
-- serialize on it and none slips past the limit.
create function internal.take_setup_intent_slot(
  p_tenant text,
  p_limit integer,
  p_window_seconds integer
) returns integer
language plpgsql security definer
set search_path = ''
as $$
declare
  window_length interval;
  row internal.setup_intent_attempts;
begin
  if coalesce(p_tenant, '') = '' then
    raise exception 'tenant is required' using errcode = 'invalid_parameter_value',
      column = 'tenant';
  end if;
  if p_limit is null or p_limit < 1 then
    raise exception 'limit must be at least 1, got %', coalesce(p_limit::text, 'NULL')
      using errcode = 'invalid_parameter_value', column = 'limit';
  end if;
  if p_window_seconds is null or p_window_seconds < 1 then
    raise exception 'window_seconds must be at least 1, got %',
      coalesce(p_window_seconds::text, 'NULL')
      using errcode = 'invalid_parameter_value', column = 'window_seconds';
  end if;
  window_length := pg_catalog.make_interval(secs => p_window_seconds);
  insert into internal.setup_intent_attempts as a (tenant, window_start, attempts)
  values (p_tenant, pg_catalog.now(), 1)
  on conflict (tenant) do update set
    window_start = case when a.window_start + window_length <= pg_catalog.now()
      then pg_catalog.now() else a.window_start end,
    attempts = case when a.window_start + window_length <= pg_catalog.now()
      then 1 else a.attempts + 1 end
  returning * into row;
  if row.attempts <= p_limit then
    return 0;
  end if;
  return greatest(1, pg_catalog.ceil(extract(epoch from
    row.window_start + window_length - pg_catalog.now())))::integer;
end;
$$;
comment on function internal.take_setup_intent_slot(text, integer, integer) is
  'Counts a setup-intent attempt; 0 when allowed, else the seconds until the tenant may retry.';

revoke all on internal.setup_intent_attempts from public, anon, authenticated, service_role;
grant select on internal.setup_intent_attempts to service_role;
revoke all on function internal.take_setup_intent_slot(text, integer, integer)
  from public, anon, authenticated;
grant execute on function internal.take_setup_intent_slot(text, integer, integer) to service_role;
