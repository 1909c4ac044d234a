/**
 * Adoption matching, shared by publish and `adopt`: which of a customer's invoices is a bill's
 * when no ID is stored. Pure.
 */
import { billIdOf } from "./bill_invoice.ts";
import { INSTALLATION_KEY } from "./idempotency.ts";
import {
  BILL_ID_KEY,
  INVOICE_TYPE_KEY,
  PERIOD_END_KEY,
  PERIOD_START_KEY,
  TENANT_NAME_KEY,
} from "./metadata.ts";
import type { Bill, InvoiceSnapshot, ListedInvoices } from "./plan_types.ts";

function hasUpstreamKeys(inv: InvoiceSnapshot): boolean {
  return [TENANT_NAME_KEY, INVOICE_TYPE_KEY, PERIOD_START_KEY, PERIOD_END_KEY].every((k) =>
    typeof inv.metadata[k] === "string"
  );
}

/** Result of matching a bill against its customer's invoices. */
export type Match =
  | { kind: "found"; invoice: InvoiceSnapshot; via: "bill_id" | "upstream_key" }
  | { kind: "ambiguous"; invoices: InvoiceSnapshot[]; via: "bill_id" | "upstream_key" }
  | { kind: "legacy_overlap"; invoices: InvoiceSnapshot[] }
  | { kind: "none" };

/** Several hits: the one live (not void) invoice wins; otherwise it is ambiguous. */
function pick(hits: InvoiceSnapshot[], via: "bill_id" | "upstream_key"): Match | null {
  if (hits.length === 0) return null;
  if (hits.length === 1) return { kind: "found", invoice: hits[0], via };
  const live = hits.filter((i) => i.status !== "void");
  if (live.length === 1) return { kind: "found", invoice: live[0], via };
  return { kind: "ambiguous", invoices: live.length > 0 ? live : hits, via };
}

/**
 * True when another installation (a reset database, a staging copy on the same account) made
 * the invoice: its bill IDs name other bills, so it is never adopted. Invoices made before
 * installation IDs existed carry none and stay adoptable.
 */
export function fromOtherInstallation(inv: InvoiceSnapshot, installation: string | null): boolean {
  const owner = inv.metadata[INSTALLATION_KEY];
  return installation !== null && owner !== undefined && owner !== installation;
}

/**
 * Finds the bill's invoice among its customer's: `estuary.dev/bill_id` first, else upstream's
 * type + period key on an invoice without a bill ID that no other bill holds. Failing both, an
 * unlinked automation invoice of the same type with an overlapping period is a possible legacy
 * match (its bill's dates were edited before IDs were stored).
 */
export function matchInvoice(
  bill: Bill,
  listed: ListedInvoices,
  exclude: readonly string[] = [],
  installation: string | null = null,
): Match {
  const ref = billIdOf(bill);
  const candidates = listed.invoices
    .filter((i) =>
      !bill.releasedInvoiceIds.includes(i.id) && !exclude.includes(i.id) &&
      !fromOtherInstallation(i, installation)
    )
    .sort((a, b) => b.created - a.created || a.id.localeCompare(b.id));
  const byBillId = pick(candidates.filter((i) => i.metadata[BILL_ID_KEY] === ref), "bill_id");
  if (byBillId) return byBillId;
  const free = candidates.filter((i) =>
    i.metadata[BILL_ID_KEY] === undefined && hasUpstreamKeys(i) &&
    i.metadata[INVOICE_TYPE_KEY] === bill.kind &&
    (listed.linkedTo[i.id] === undefined || listed.linkedTo[i.id] === ref)
  );
  const byKey = pick(
    free.filter((i) =>
      i.metadata[PERIOD_START_KEY] === bill.dateStart && i.metadata[PERIOD_END_KEY] === bill.dateEnd
    ),
    "upstream_key",
  );
  if (byKey) return byKey;
  const overlapping = free.filter((i) =>
    i.status !== "void" && listed.linkedTo[i.id] === undefined &&
    i.metadata[PERIOD_START_KEY] <= bill.dateEnd && i.metadata[PERIOD_END_KEY] >= bill.dateStart
  );
  if (overlapping.length > 0) return { kind: "legacy_overlap", invoices: overlapping };
  return { kind: "none" };
}
