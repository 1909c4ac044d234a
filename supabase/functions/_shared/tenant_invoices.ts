/**
 * A tenant's invoices for the dashboard. The list comes from public.invoices_ext, read as the
 * caller, with the mirrored Stripe state: no Stripe call per row. One invoice's details are
 * retrieved by the bill's stored invoice ID (never Search), and what Stripe says is written to
 * the mirror.
 */
import { asService, type Tx } from "./as_caller.ts";
import type { postgres, Sql } from "./db.ts";
import { HttpError } from "./http.ts";
import { isStripeNotFound, type StripeCaller } from "./stripe_calls.ts";
import type { Stripe } from "./stripe_client.ts";
import { fromUnixSeconds } from "./units.ts";

/** One row of the dashboard's invoice list. */
export interface TenantInvoiceRow {
  bill_id: string;
  invoice_type: "final" | "manual";
  billed_prefix: string;
  date_start: string;
  date_end: string;
  subtotal: number;
  line_items: unknown;
  extra: unknown;
  stripe_invoice_id: string | null;
  invoice_status: string | null;
  amount_due: number | null;
  hosted_invoice_url: string | null;
  invoice_pdf: string | null;
  invoice_synced_at: Date | null;
}

const ROW_COLUMNS = (tx: Tx) =>
  tx`bill_id, invoice_type, billed_prefix, date_start::text as date_start,
    date_end::text as date_end, subtotal, line_items, extra, stripe_invoice_id, invoice_status,
    amount_due::double precision as amount_due, hosted_invoice_url, invoice_pdf,
    invoice_synced_at`;

/** The tenant's invoices, newest first, as the caller may see them (run inside asCaller). */
export async function listTenantInvoices(
  tx: Tx,
  tenant: string,
  limit: number,
): Promise<TenantInvoiceRow[]> {
  return await tx<TenantInvoiceRow[]>`
    select ${ROW_COLUMNS(tx)} from public.invoices_ext
    where billed_prefix = ${tenant}
    order by date_end desc, date_start desc, invoice_type asc
    limit ${limit}`;
}

/** How the dashboard names a bill: its stable ID, or upstream's (type, period) key. */
export type BillSelector =
  | { bill_id: string }
  | { type: "final" | "manual"; date_start: string; date_end: string };

/** The bill's row as the caller may see it; 404 when there is none (run inside asCaller). */
export async function findTenantBill(
  tx: Tx,
  tenant: string,
  bill: BillSelector,
): Promise<TenantInvoiceRow> {
  const rows = "bill_id" in bill
    ? await tx<TenantInvoiceRow[]>`
      select ${ROW_COLUMNS(tx)} from public.invoices_ext
      where billed_prefix = ${tenant} and bill_id = ${bill.bill_id}`
    : await tx<TenantInvoiceRow[]>`
      select ${ROW_COLUMNS(tx)} from public.invoices_ext
      where billed_prefix = ${tenant} and invoice_type = ${bill.type}
        and date_start = ${bill.date_start}::date and date_end = ${bill.date_end}::date`;
  if (rows.length === 0) {
    const field = "bill_id" in bill ? "bill_id" : "date_start";
    throw new HttpError(404, "bill_not_found", `no such bill for ${tenant}`, field);
  }
  return rows[0];
}

/** What the dashboard shows of one invoice (upstream's StripeInvoice shape). */
export interface InvoiceDetails {
  id: string;
  status: string | null;
  amount_due: number;
  currency: string;
  hosted_invoice_url: string | null;
  invoice_pdf: string | null;
}

async function recordState(
  sql: Sql,
  // A value, not JSON text: postgres.js encodes json parameters itself.
  invoice: Record<string, unknown>,
  observedAt: Date,
): Promise<void> {
  await asService(sql, async (tx) => {
    await tx`select internal.record_invoice_state(${tx.json(invoice as postgres.JSONValue)},
      ${observedAt}, 'billing:get-tenant-invoice')`;
  });
}

/**
 * When Stripe last moved the invoice through its lifecycle, on Stripe's clock: the stamp for a
 * retrieved state. Stamping with our own clock could outrank a newer webhook event (event.created
 * is whole seconds on Stripe's clock), leaving a paid invoice shown as open; with Stripe's own
 * transition times, a later event always wins and a same-second one ties on lifecycle rank.
 */
export function invoiceStateTime(invoice: Stripe.Invoice): Date {
  const t = invoice.status_transitions ?? {};
  const seconds = Math.max(
    invoice.created ?? 0,
    t.finalized_at ?? 0,
    t.paid_at ?? 0,
    t.voided_at ?? 0,
    t.marked_uncollectible_at ?? 0,
  );
  return fromUnixSeconds(seconds);
}

/**
 * Retrieves the stored invoice by ID and mirrors what it learns. Null when the bill has no
 * invoice, or its invoice is a draft (not yet issued, as upstream) or was deleted.
 */
export async function retrieveBillInvoice(
  sql: Sql,
  caller: StripeCaller,
  stripeInvoiceId: string | null,
): Promise<InvoiceDetails | null> {
  if (!stripeInvoiceId) return null;
  let invoice: Stripe.Invoice;
  try {
    invoice = await caller.call(
      "GET /v1/invoices/:id",
      (s) => s.invoices.retrieve(stripeInvoiceId),
    );
  } catch (err) {
    if (!isStripeNotFound(err)) throw err;
    // Deletion is final (rank wins ties), so our own clock is a safe stamp here.
    await recordState(sql, { id: stripeInvoiceId, object: "invoice", deleted: true }, new Date());
    return null;
  }
  await recordState(
    sql,
    invoice as unknown as Record<string, unknown>,
    invoiceStateTime(invoice),
  );
  if (invoice.status === "draft") return null;
  return {
    id: invoice.id!,
    status: invoice.status,
    amount_due: invoice.amount_due,
    currency: invoice.currency,
    hosted_invoice_url: invoice.hosted_invoice_url ?? null,
    invoice_pdf: invoice.invoice_pdf ?? null,
  };
}
