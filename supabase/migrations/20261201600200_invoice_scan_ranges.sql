-- The invoice index scan pages several `created` ranges at once (the bootstrap of a large
-- account was one cursor, one page at a time, while every worker that needed the index waited).
-- A pass in progress is now the set of ranges still to read, saved with every page, so a pass
-- handed back out of time (or by a crashed scanner) resumes where each range stood.

alter table internal.stripe_invoice_scan add column pass_ranges jsonb;
alter table internal.stripe_invoice_scan add constraint stripe_invoice_scan_pass_ranges_array
  check (pass_ranges is null or jsonb_typeof(pass_ranges) = 'array');
comment on column internal.stripe_invoice_scan.pass_ranges is
  'Ranges of the pass in progress still to read: [{gte, lte, floor, cursor}] (null: one range '
  'from pass_from at pass_cursor, as older scanners left it).';

-- Ranges belong to one pass: a new pass, a finished one or a dropped one starts without them.
create function internal.stripe_invoice_scan_forget_ranges()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.pass_started_at is distinct from old.pass_started_at then
    new.pass_ranges := null;
  end if;
  return new;
end;
$$;
create trigger stripe_invoice_scan_forget_ranges
before update on internal.stripe_invoice_scan
for each row execute function internal.stripe_invoice_scan_forget_ranges();

-- Upserts one page of a held pass (as record_stripe_invoice_page) and saves the ranges still to
-- read, in the same transaction, so a saved range never points past a page that was not kept.
-- p_listed_through: Stripe's clock (its Date header, Unix seconds) when the pass's newest page
-- was answered: every invoice created before then is read by the pass, so the watermark may go
-- that far even when the account's newest invoice is older (the next pass starts there).
create function internal.record_stripe_invoice_ranges(
  p_account text,
  p_owner text,
  p_invoices jsonb,
  p_ranges jsonb,
  p_lease interval default interval '60 seconds',
  p_now timestamptz default now(),
  p_listed_through bigint default null
) returns integer
language plpgsql security definer
set search_path = ''
as $$
declare
  n integer;
begin
  if jsonb_typeof(p_ranges) is distinct from 'array' then
    raise exception 'ranges must be a JSON array' using errcode = 'invalid_parameter_value',
      column = 'ranges';
  end if;
  if exists (select 1 from jsonb_array_elements(p_ranges) r
    where jsonb_typeof(r) <> 'object'
      or exists (select 1 from jsonb_object_keys(r) k where k not in ('gte', 'lte', 'floor', 'cursor'))
      or coalesce(jsonb_typeof(r -> 'gte'), 'null') not in ('number', 'null')
      or coalesce(jsonb_typeof(r -> 'lte'), 'null') not in ('number', 'null')
      or coalesce(jsonb_typeof(r -> 'floor'), 'null') not in ('number', 'null')
      or (coalesce(jsonb_typeof(r -> 'cursor'), 'null') <> 'null'
        and coalesce(r ->> 'cursor', '') !~ '^in_[A-Za-z0-9]+$')) then
    raise exception 'each range needs numeric or null gte, lte and floor, and a cursor like in_... or null'
      using errcode = 'invalid_parameter_value', column = 'ranges';
  end if;
  n := internal.record_stripe_invoice_page(p_account, p_owner, p_invoices, null, p_lease, p_now);
  update internal.stripe_invoice_scan x
  set pass_ranges = p_ranges,
    pass_high = case when p_listed_through is null then x.pass_high
      else greatest(x.pass_high, p_listed_through) end
  where x.account = p_account;
  return n;
end;
$$;
comment on function internal.record_stripe_invoice_ranges(text, text, jsonb, jsonb, interval,
  timestamptz, bigint) is
  'Upserts a page of a held invoice scan and saves the ranges its pass has still to read.';

revoke all on function internal.stripe_invoice_scan_forget_ranges() from public, anon,
  authenticated;
revoke all on function
  internal.record_stripe_invoice_ranges(text, text, jsonb, jsonb, interval, timestamptz, bigint)
  from public, anon, authenticated;
grant execute on function
  internal.record_stripe_invoice_ranges(text, text, jsonb, jsonb, interval, timestamptz, bigint)
  to service_role;
