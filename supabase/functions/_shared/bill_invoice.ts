/**
 * What a bill is as a Stripe invoice: its fields (upstream's description, custom fields and
 * metadata, plus the bill's identity), its lines and the total Stripe must show. Pure.
 */
import {
  BILL_ID_KEY,
  billRef,
  CREATED_BY_AUTOMATION_KEY,
  INVOICE_TYPE_KEY,
  PERIOD_END_KEY,
  PERIOD_START_KEY,
  TENANT_NAME_KEY,
} from "./metadata.ts";
import { INSTALLATION_KEY } from "./idempotency.ts";
import { expectedInvoiceTotal, formatCount, formatRate, lineCents } from "./money.ts";
import type {
  Bill,
  CollectionMethod,
  InvoiceSnapshot,
  InvoiceSpec,
  LineSnapshot,
  LineSpec,
  PlanContext,
} from "./plan_types.ts";

/** Stripe's minimum chargeable amount, in cents. */
export const MINIMUM_CHARGE_CENTS = 50;
/** Days until a send_invoice invoice is due (upstream: now + 30 days). */
export const DUE_DAYS = 30;

const MONTHS = [
  "January",
  "February",
  "March",
  "April",
  "May",
  "June",
  "July",
  "August",
  "September",
  "October",
  "November",
  "December",
];

/** Upstream's human date (`%B %d %Y`, e.g. "April 01 2026"). */
export function humanDate(isoDate: string): string {
  const [y, m, d] = isoDate.split("-");
  return `${MONTHS[Number(m) - 1]} ${d} ${y}`;
}

/** A date at 12:00 UTC as Unix seconds: earlier times render as the previous day in Stripe. */
export function noonUtc(isoDate: string): number {
  return Date.parse(`${isoDate}T12:00:00Z`) / 1000;
}

/** The bill's stable identity as written to invoice metadata. */
export function billIdOf(bill: Pick<Bill, "kind" | "id">): string {
  return billRef(bill.kind === "manual" ? "manual" : "final", bill.id);
}

/**
 * The lines a bill becomes: one amount-only line per bill line, its amount the line's cents
 * (see money.ts), its description the bill's, with count × rate appended where the count is
 * not 1 so the invoice still shows the quantity. Null (with why) when the bill's lines do not
 * add up to its subtotal.
 */
export function linesFor(bill: Bill): { lines: LineSpec[] } | { error: string } {
  const periodStart = noonUtc(bill.dateStart);
  const periodEnd = noonUtc(bill.dateEnd);
  const cents = lineCents(bill.subtotal, bill.lineItems);
  if (!cents.ok) return { error: cents.detail };
  const lines = bill.lineItems.map((item, i) => {
    const base = item.description ?? "";
    const description = item.count === 1
      ? base
      : `${base}${base ? ": " : ""}${formatCount(item.count)} × ${formatRate(item.rate)}`;
    return { description, amount: cents.cents[i], periodStart, periodEnd };
  });
  return { lines };
}

/** Invoice fields for a bill: upstream's description, custom fields and metadata. */
export function invoiceSpecFor(
  bill: Bill,
  ctx: Pick<PlanContext, "now" | "usageCollectionMethod" | "installation">,
  dueDateOverride: number | null = null,
): InvoiceSpec {
  const start = humanDate(bill.dateStart);
  const end = humanDate(bill.dateEnd);
  const collectionMethod: CollectionMethod = bill.kind === "manual"
    ? "send_invoice"
    : ctx.usageCollectionMethod;
  const dueDate = collectionMethod === "send_invoice"
    ? dueDateOverride ?? Math.floor(ctx.now.getTime() / 1000) + DUE_DAYS * 86_400
    : null;
  return {
    collectionMethod,
    dueDate,
    description:
      `Your Flow bill for the billing period between ${start} - ${end}. Tenant: ${bill.tenant}`,
    customFields: [
      { name: "Billing Period Start", value: start },
      { name: "Billing Period End", value: end },
    ],
    metadata: {
      [TENANT_NAME_KEY]: bill.tenant,
      [INVOICE_TYPE_KEY]: bill.kind,
      [PERIOD_START_KEY]: bill.dateStart,
      [PERIOD_END_KEY]: bill.dateEnd,
      [BILL_ID_KEY]: billIdOf(bill),
      [INSTALLATION_KEY]: ctx.installation,
      [CREATED_BY_AUTOMATION_KEY]: "true",
    },
  };
}

/** How a line is compared: what Stripe shows for an amount-only line (quantity 1). */
function lineSignature(l: {
  description: string | null;
  amount: number;
  quantity: number | null;
  periodStart: number;
  periodEnd: number;
}): string {
  return JSON.stringify([l.description ?? "", l.amount, l.quantity, l.periodStart, l.periodEnd]);
}

/** True when the invoice's lines are exactly the wanted lines (order ignored). */
export function linesMatch(existing: LineSnapshot[], wanted: LineSpec[]): boolean {
  if (existing.length !== wanted.length) return false;
  const a = existing.map(lineSignature).sort();
  const b = wanted.map((l) => lineSignature({ ...l, quantity: 1 })).sort();
  return a.every((s, i) => s === b[i]);
}

function sameCustomFields(
  a: { name: string; value: string }[],
  b: { name: string; value: string }[],
): boolean {
  return a.length === b.length && a.every((f, i) => f.name === b[i].name && f.value === b[i].value);
}

/**
 * The invoice fields that differ from what the bill wants, and their current values (null when
 * none differ). The current values go into the write's key: the same change from the same state
 * replays, a change made again after someone edited the draft does not.
 */
export function fieldChanges(
  inv: InvoiceSnapshot,
  spec: InvoiceSpec,
): { changes: Partial<InvoiceSpec>; before: Partial<InvoiceSpec> } | null {
  const changes: Partial<InvoiceSpec> = {};
  const before: Partial<InvoiceSpec> = {};
  if (inv.collectionMethod !== spec.collectionMethod) {
    changes.collectionMethod = spec.collectionMethod;
    changes.dueDate = spec.dueDate;
    before.collectionMethod = inv.collectionMethod;
    before.dueDate = inv.dueDate;
  } else if (spec.collectionMethod === "send_invoice" && inv.dueDate === null) {
    changes.dueDate = spec.dueDate;
    before.dueDate = null;
  }
  if (inv.description !== spec.description) {
    changes.description = spec.description;
    before.description = inv.description ?? "";
  }
  if (!sameCustomFields(inv.customFields, spec.customFields)) {
    changes.customFields = spec.customFields;
    before.customFields = inv.customFields;
  }
  const metadataDiffers = Object.entries(spec.metadata).some(([k, v]) => inv.metadata[k] !== v);
  if (metadataDiffers) {
    changes.metadata = spec.metadata;
    before.metadata = inv.metadata;
  }
  return Object.keys(changes).length > 0 ? { changes, before } : null;
}

/**
 * Why an invoice is not what its bill says Stripe should collect, from whom (null when it is):
 * the one check publish, drift and finalize share.
 */
export function invoiceMismatch(
  inv: { customer: string | null; total: number },
  bill: { subtotal: number },
  tenantCustomerId: string | null,
): string | null {
  if (tenantCustomerId !== null && inv.customer !== tenantCustomerId) {
    return `on customer ${inv.customer}, not the tenant's ${tenantCustomerId}`;
  }
  const want = expectedInvoiceTotal(bill);
  if (inv.total !== want) return `totals ${inv.total}¢, the bill ${want}¢`;
  return null;
}
