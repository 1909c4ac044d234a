/** Reading a month's bills and their stored IDs for the CLI's Stripe-facing commands. */
import type { Sql } from "../supabase/functions/_shared/db.ts";
import { unknownTenants } from "../supabase/functions/_shared/runs.ts";
import { UsageError } from "./args.ts";

/** A bill as the month's commands show it. */
export interface MonthBill {
  bill_id: string;
  tenant: string;
  invoice_type: "final" | "manual";
  date_start: string;
  date_end: string;
  subtotal: number;
  stripe_invoice_id: string | null;
  customer_id: string | null;
}

/**
 * The bills a month's publish selects (final bills of the month, manual bills overlapping it or,
 * with contract bills in advance, starting next month), optionally for some tenants; all months
 * when `monthStart` is null.
 */
export async function loadMonthBills(
  sql: Sql,
  monthStart: string | null,
  tenants?: string[],
): Promise<MonthBill[]> {
  return await sql<MonthBill[]>`
    select i.bill_id, i.billed_prefix as tenant, i.invoice_type,
      to_char(i.date_start, 'YYYY-MM-DD') as date_start,
      to_char(i.date_end, 'YYYY-MM-DD') as date_end,
      i.subtotal, i.stripe_invoice_id, t.stripe_customer_id as customer_id
    from internal.invoices_ext i
    left join public.tenants t on t.tenant = i.billed_prefix
    where i.invoice_type in ('final', 'manual')
      and (${monthStart}::date is null
        or (i.invoice_type = 'final' and i.date_start >= ${monthStart}::date
            and i.date_end <= (${monthStart}::date + interval '1 month' - interval '1 day')::date)
        -- The same window as the month's publish (contract bills in advance included).
        or (i.invoice_type = 'manual' and i.bill_id in (
          select 'manual:' || mb.bill_id from internal.month_manual_bills(${monthStart}::date) mb)))
      and (${tenants ?? null}::text[] is null or i.billed_prefix = any(${tenants ?? null}::text[]))
    order by i.billed_prefix, i.invoice_type, i.date_start, i.bill_id`;
}

/** Refuses (exit 2) a --tenants list naming tenants that do not exist: a typo is not "0 bills". */
export async function requireKnownTenants(sql: Sql, tenants: string[] | null | undefined) {
  const unknown = await unknownTenants(sql, tenants ?? null);
  if (unknown.length > 0) {
    throw new UsageError(
      `--tenants: no such tenant${unknown.length === 1 ? "" : "s"}: ${unknown.join(", ")}`,
    );
  }
}
