-- A replacement invoice already linked to another bill (or linked by a concurrent writer first)
-- is a recorded `duplicate`, like a lost link race, not a raw unique-violation error.
create or replace function internal.replace_bill_invoice(
  p_bill_kind text,
  p_bill_id bigint,
  p_old_invoice_id text,
  p_new_invoice_id text,
  p_actor text,
  p_reason text,
  p_run_id uuid default null
) returns internal.link_outcome
language plpgsql security definer
set search_path = ''
as $$
declare
  current_id text;
begin
  if p_new_invoice_id is null or p_new_invoice_id !~ '^in_[A-Za-z0-9]+$' then
    raise exception 'invoice_id must look like in_..., got %', coalesce(p_new_invoice_id, 'NULL')
      using errcode = 'invalid_parameter_value', column = 'invoice_id';
  end if;
  if coalesce(pg_catalog.btrim(p_reason), '') = '' then
    raise exception 'reason is required to replace an invoice'
      using errcode = 'invalid_parameter_value', column = 'reason';
  end if;
  current_id := internal.lock_bill(p_bill_kind, p_bill_id);
  if current_id = p_new_invoice_id then
    return ('unchanged', current_id, null)::internal.link_outcome;
  end if;
  if current_id is distinct from p_old_invoice_id then
    perform internal.insert_id_audit(p_bill_kind, p_bill_id::text, 'conflict', current_id,
      p_new_invoice_id, p_actor, 'replace refused, expected ' || coalesce(p_old_invoice_id, 'NULL')
      || ': ' || p_reason, p_run_id);
    return ('conflict', current_id, pg_catalog.format('bill %s:%s has invoice %s, not %s',
      p_bill_kind, p_bill_id, current_id, coalesce(p_old_invoice_id, 'NULL'))
    )::internal.link_outcome;
  end if;
  begin
    perform internal.set_audit_context('replace', p_actor, p_reason, p_run_id);
    perform internal.write_bill_invoice(p_bill_kind, p_bill_id, p_new_invoice_id);
    perform internal.set_audit_context(null, null, null, null);
  exception when unique_violation then
    perform internal.insert_id_audit(p_bill_kind, p_bill_id::text, 'duplicate', current_id,
      p_new_invoice_id, p_actor, p_reason, p_run_id);
    return ('duplicate', current_id, pg_catalog.format(
      'invoice %s is linked to another bill', p_new_invoice_id))::internal.link_outcome;
  end;
  return ('replaced', p_new_invoice_id, null)::internal.link_outcome;
end;
$$;
