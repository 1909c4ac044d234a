/**
 * The skip rules (free tier, trial, minimum, upstream's order) and what a skippable bill's
 * invoice in Stripe makes of them: a stale or orphaned draft is discarded, a finalized one
 * reported. Pure.
 */
import { linesFor, MINIMUM_CHARGE_CENTS } from "./bill_invoice.ts";
import { matchInvoice } from "./matching.ts";
import type {
  Action,
  Bill,
  BillKey,
  Classification,
  InvoiceSnapshot,
  PlanContext,
  SkipReason,
  StripeKnowledge,
  WarnReason,
} from "./plan_types.ts";

export function key(bill: Bill): BillKey {
  return { kind: bill.kind, id: bill.id, tenant: bill.tenant };
}

export function skip(bill: Bill, reason: SkipReason, detail: string, invoiceId?: string) {
  return {
    kind: "skip" as const,
    bill: key(bill),
    reason,
    detail,
    ...(invoiceId ? { invoiceId } : {}),
  };
}

export function warn(bill: Bill, reason: WarnReason, detail: string, invoiceId?: string): Action {
  return { kind: "warn", bill: key(bill), reason, detail, ...(invoiceId ? { invoiceId } : {}) };
}

/**
 * Phase 1 (no Stripe): preview and malformed bills are refused; free tier, trial and minimum
 * (upstream order) make a bill skippable, settled at once unless an invoice is stored (which may
 * be a stale draft to discard).
 */
export function classify(bill: Bill): Classification {
  const refuse = (reason: "preview" | "missing_report" | "inconsistent_bill", detail: string) => ({
    kind: "settled" as const,
    action: { kind: "refuse" as const, bill: key(bill), reason, detail },
  });
  if (bill.kind === "preview") return refuse("preview", "preview bills are never published");
  if (bill.kind === "final" && bill.extra === null) {
    return refuse("missing_report", "a final bill must carry its usage report");
  }
  const lines = linesFor(bill);
  if ("error" in lines) return refuse("inconsistent_bill", `bill is inconsistent: ${lines.error}`);
  let s: ReturnType<typeof skip> | null = null;
  if (bill.kind === "final" && bill.tenantTrialStart === null) {
    s = skip(bill, "free_tier", "tenant is on the free tier");
  } else if (
    bill.kind === "final" && bill.tenantTrialStart !== null && bill.dateEnd < bill.tenantTrialStart
  ) {
    s = skip(
      bill,
      "trial_starts_after_period",
      `period ends before the trial starts (${bill.tenantTrialStart})`,
    );
  } else if (bill.subtotal < MINIMUM_CHARGE_CENTS) {
    s = skip(bill, "under_minimum", `subtotal ${bill.subtotal}¢ is under Stripe's 50¢ minimum`);
  }
  // Skippable, but what Stripe holds for it (a stored or an orphaned draft) decides how.
  if (s) return { kind: "check_stored", skip: s };
  const needsPaymentMethod = bill.kind === "final" &&
    Number(bill.extra?.processed_data_gb ?? 0) === 0;
  return { kind: "needs_stripe", needsPaymentMethod };
}

/**
 * A bill that needs no invoice, seen with its stored one: a draft is discarded (deleted and its
 * ID released, so nothing can finalize it); a finalized one is reported; a void or deleted one
 * leaves the skip as it is. `deletedByUs` says an earlier attempt already deleted the draft.
 */
export function settleSkip(
  bill: Bill,
  s: Extract<Action, { kind: "skip" }>,
  stored: InvoiceSnapshot | null,
  deletedByUs: boolean,
): Action {
  const id = bill.storedInvoiceId!;
  if (stored === null) {
    return deletedByUs
      ? { ...s, kind: "discard", invoiceId: id, alreadyDeleted: true, linked: true }
      : { ...s, detail: `${s.detail}; its invoice ${id} was deleted in Stripe` };
  }
  switch (stored.status) {
    case "draft":
      return {
        ...s,
        kind: "discard",
        invoiceId: id,
        alreadyDeleted: false,
        linked: true,
        detail: `${s.detail}: deletes its stale draft ${id}`,
      };
    case "void":
      return { ...s, detail: `${s.detail}; its invoice ${id} is void`, invoiceId: id };
    default:
      return warn(
        bill,
        "invoice_differs",
        `invoice ${id} is ${stored.status} for ${stored.total}¢ but the bill needs none now (${s.reason}: ${s.detail})`,
        id,
      );
  }
}

/**
 * A skippable bill with no stored ID whose earlier create may have lost its link (a crash
 * between create and link): a draft carrying its bill ID is deleted, a finalized one linked.
 */
export function settleOrphan(
  bill: Bill,
  s: Extract<Action, { kind: "skip" }>,
  k: StripeKnowledge,
  ctx: PlanContext,
): Action {
  if (k.invoice.via !== "listed") return s;
  const m = matchInvoice(bill, k.invoice.listed, [], ctx.installation);
  if (m.kind !== "found" || m.via !== "bill_id" || m.invoice.status === "void") return s;
  const id = m.invoice.id;
  if (m.invoice.status !== "draft") {
    return { ...s, adopt: { invoiceId: id, via: m.via }, invoiceId: id };
  }
  return {
    ...s,
    kind: "discard",
    invoiceId: id,
    alreadyDeleted: false,
    linked: false,
    detail: `${s.detail}: deletes the draft ${id} an interrupted run left`,
  };
}
