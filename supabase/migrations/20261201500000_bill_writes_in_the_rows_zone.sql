-- billing_historicals.billed_month_is_month (upstream's) truncates in the session's zone, so a row
-- is valid in the zone it was written in: midnight UTC (upstream's month-end job in a UTC
-- session) or the database's default zone's midnight. Forcing UTC for ID writes (migration
-- 20261201000200) fixed the first kind under a non-UTC session and broke the second. The write
-- now runs in UTC only for a row that is a UTC month start, and in the session's zone otherwise.
alter function internal.write_bill_invoice(text, bigint, text) reset timezone;

create or replace function internal.write_bill_invoice(
  p_bill_kind text,
  p_bill_id bigint,
  p_invoice_id text
) returns void
language plpgsql
set search_path = ''
as $$
declare
  session_zone text := pg_catalog.current_setting('TimeZone');
  utc_month_start boolean;
begin
  if p_bill_kind = 'manual' then
    update internal.manual_bills set stripe_invoice_id = p_invoice_id where id = p_bill_id;
    return;
  end if;
  select pg_catalog.date_trunc('month', h.billed_month, 'UTC') = h.billed_month
    into utc_month_start
  from internal.billing_historicals h where h.id = p_bill_id;
  if utc_month_start then
    -- Transaction-local, and put back right after the write.
    perform pg_catalog.set_config('TimeZone', 'UTC', true);
  end if;
  update internal.billing_historicals set stripe_invoice_id = p_invoice_id where id = p_bill_id;
  perform pg_catalog.set_config('TimeZone', session_zone, true);
end;
$$;
comment on function internal.write_bill_invoice(text, bigint, text) is
  'Writes a bill''s invoice column in the zone its billed_month is a month start in.';
