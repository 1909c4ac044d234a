/**
 * Stripe metadata keys, kept compatible with the system this replaces, plus the bill identity
 * this system adds to every invoice it creates.
 */

/** Customer, invoice and setup intent: the tenant slug, e.g. "acmeCo/". */
export const TENANT_NAME_KEY = "estuary.dev/tenant_name";
/** Customer: the human billing-contact name (Customer.name stays the tenant slug). */
export const CUSTOMER_NAME_KEY = "estuary.dev/customer_name";
/** Invoice: "final" (usage) or "manual". */
export const INVOICE_TYPE_KEY = "estuary.dev/invoice_type";
/** Invoice: first day of the billed period, YYYY-MM-DD. */
export const PERIOD_START_KEY = "estuary.dev/period_start";
/** Invoice: last day of the billed period, YYYY-MM-DD. */
export const PERIOD_END_KEY = "estuary.dev/period_end";
/** Customer (and invoices made here): "true" when created by the billing automation. */
export const CREATED_BY_AUTOMATION_KEY = "estuary.dev/created_by_automation";
/** Invoice: the stable bill identity `<kind>:<id>`, e.g. "manual:3". */
export const BILL_ID_KEY = "estuary.dev/bill_id";

/** The two kinds of bill that become invoices. */
export type BillKind = "final" | "manual";

/** Formats a bill's stable identity as stored in {@link BILL_ID_KEY}. */
export function billRef(kind: BillKind, id: number | bigint | string): string {
  return `${kind}:${id}`;
}

/** Parses `<kind>:<id>`; returns null when the text is not a bill reference. */
export function parseBillRef(text: string): { kind: BillKind; id: number } | null {
  const m = /^(final|manual):([1-9][0-9]*)$/.exec(text);
  if (!m) return null;
  return { kind: m[1] as BillKind, id: Number(m[2]) };
}

/** The Search query that finds a tenant's customers (adoption only). */
export function customerSearchQuery(tenant: string): string {
  return `metadata["${TENANT_NAME_KEY}"]:"${
    tenant.replaceAll("\\", "\\\\").replaceAll('"', '\\"')
  }"`;
}
