/**
 * The publish planner: pure. From one bill and what is known of Stripe it decides create,
 * update, discard, skip, warn or refuse, with a reason (the state table in docs). No I/O, no
 * clock, no random: time, run and installation are inputs, so the same inputs give the same plan.
 * Dry-run is this module's output, shown; the executor performs it.
 */
import { billIdOf, fieldChanges, invoiceSpecFor, linesFor, linesMatch } from "./bill_invoice.ts";
import { billKeyBase, writeKey } from "./idempotency.ts";
import { matchInvoice } from "./matching.ts";
import { classify, key, settleOrphan, settleSkip, skip, warn } from "./skips.ts";
import { expectedInvoiceTotal } from "./money.ts";
import type {
  Action,
  Adoption,
  Bill,
  InvoiceSnapshot,
  LineSpec,
  PlanContext,
  StripeKnowledge,
} from "./plan_types.ts";

export * from "./plan_types.ts";
export {
  billIdOf,
  DUE_DAYS,
  fieldChanges,
  humanDate,
  invoiceSpecFor,
  linesFor,
  linesMatch,
  MINIMUM_CHARGE_CENTS,
  noonUtc,
} from "./bill_invoice.ts";
export { type Match, matchInvoice } from "./matching.ts";
export { classify, settleSkip } from "./skips.ts";

/** A create intent older than this has left Stripe's 24 h key window (with an hour to spare). */
export const CREATE_KEY_WINDOW_MS = 23 * 3_600_000;

/** The prefix of every key of this bill's writes at a generation. */
export function keyBaseFor(bill: Bill, ctx: PlanContext, k: StripeKnowledge, generation: number) {
  return billKeyBase(ctx.installation, billIdOf(bill), generation, k.keySalt);
}

function wantedLines(bill: Bill): LineSpec[] {
  const l = linesFor(bill);
  if ("error" in l) throw new Error(`bill ${billIdOf(bill)} is inconsistent: ${l.error}`);
  return l.lines;
}

function createAction(
  bill: Bill,
  k: StripeKnowledge,
  ctx: PlanContext,
  reason: "no_invoice" | "replace",
  replaces?: { invoiceId: string; how: "void" | "delete" | "none"; why: string },
): Action {
  const generation = reason === "replace" ? bill.generation + 1 : bill.generation;
  const keyBase = keyBaseFor(bill, ctx, k, generation);
  // Reuse an earlier create's due date only while Stripe still holds its key: then the replay
  // sends the same body. Past the window the key is gone and the customer's list finds the
  // invoice by bill ID; a stale due date would be in the past, which Stripe refuses.
  const prior = k.priorCreate &&
      k.priorCreate.idempotencyKey.startsWith(`${keyBase}:create:`) &&
      ctx.now.getTime() - k.priorCreate.at < CREATE_KEY_WINDOW_MS
    ? k.priorCreate.dueDate
    : null;
  const invoice = invoiceSpecFor(bill, ctx, prior);
  return {
    kind: "create",
    bill: key(bill),
    reason,
    customerId: k.customerId,
    idempotencyKey: writeKey(keyBase, "create", { customer: k.customerId, invoice }),
    keyBase,
    invoice,
    lines: wantedLines(bill),
    expectedTotal: expectedInvoiceTotal(bill),
    ...(replaces ? { replaces } : {}),
  };
}

/** Update a draft in place: write only what differs (a rerun of a settled draft writes nothing). */
function updateDraft(
  bill: Bill,
  inv: InvoiceSnapshot,
  k: StripeKnowledge,
  ctx: PlanContext,
  adopt?: Adoption,
): Extract<Action, { kind: "update" }> {
  if (inv.lines === null) throw new Error(`lines of draft ${inv.id} must be read before planning`);
  const lines = wantedLines(bill);
  const f = fieldChanges(inv, invoiceSpecFor(bill, ctx));
  return {
    kind: "update",
    bill: key(bill),
    reason: adopt ? "adopted_draft" : "draft",
    invoiceId: inv.id,
    keyBase: keyBaseFor(bill, ctx, k, bill.generation),
    ...(adopt ? { adopt } : {}),
    fields: f?.changes ?? null,
    fieldsBefore: f?.before ?? null,
    lines: linesMatch(inv.lines, lines) ? null : { remove: inv.lines.map((l) => l.id), add: lines },
    currentTotal: inv.total,
    expectedTotal: expectedInvoiceTotal(bill),
  };
}

/**
 * Replaces the bill's invoice: void (open) or delete (draft) it, then create its successor.
 * When an earlier attempt already created the successor (found by bill ID in the customer's
 * list), it is adopted instead of creating another.
 */
function replacement(
  bill: Bill,
  old: InvoiceSnapshot | null,
  k: StripeKnowledge,
  ctx: PlanContext,
  how: "void" | "delete" | "none",
  why: string,
): Action {
  const oldId = old?.id ?? bill.storedInvoiceId!;
  const listed = k.invoice.via === "stored" ? k.invoice.listed : undefined;
  if (how === "none" && listed) {
    const m = matchInvoice(bill, listed, [oldId], ctx.installation);
    if (m.kind === "found" && m.via === "bill_id" && m.invoice.status === "draft") {
      return {
        ...updateDraft(bill, m.invoice, k, ctx, { invoiceId: m.invoice.id, via: "bill_id" }),
        replaces: oldId,
      };
    }
  }
  return createAction(bill, k, ctx, "replace", { invoiceId: oldId, how, why });
}

/** The state table for an invoice that is the bill's (stored or just adopted). */
function forInvoice(
  bill: Bill,
  inv: InvoiceSnapshot,
  k: StripeKnowledge,
  ctx: PlanContext,
  adopt?: Adoption,
): Action {
  const withAdopt = <A extends Action>(a: A): A => (adopt ? { ...a, adopt } : a);
  const replaceable = ctx.recreateExisting && bill.kind === "final" &&
    !k.createdThisRun.includes(inv.id);
  const expected = expectedInvoiceTotal(bill);
  const wrongCustomer = k.customerId !== null && inv.customer !== k.customerId;
  switch (inv.status) {
    case "draft":
      // A draft on another customer (the bill moved tenant, the customer was replaced) is never
      // rewritten in place: it is replaced by one for the tenant's customer.
      if (wrongCustomer) {
        return replacement(
          bill,
          inv,
          k,
          ctx,
          "delete",
          `draft is on customer ${inv.customer}, the tenant's is ${k.customerId}`,
        );
      }
      if (replaceable) return replacement(bill, inv, k, ctx, "delete", "recreate_existing");
      return withAdopt(updateDraft(bill, inv, k, ctx, adopt));
    case "open":
    case "paid":
    case "uncollectible":
      if (inv.status === "open" && replaceable && !wrongCustomer) {
        return replacement(bill, inv, k, ctx, "void", "recreate_existing");
      }
      if (wrongCustomer) {
        return withAdopt(warn(
          bill,
          "customer_mismatch",
          `invoice ${inv.id} is ${inv.status} on customer ${inv.customer}, but ${bill.tenant}'s customer is ${k.customerId}`,
          inv.id,
        ));
      }
      if (inv.total !== expected) {
        return withAdopt(warn(
          bill,
          "invoice_differs",
          `invoice ${inv.id} is ${inv.status} for ${inv.total}¢ but the bill is ${expected}¢`,
          inv.id,
        ));
      }
      return withAdopt(
        skip(bill, "already_processed", `invoice ${inv.id} is ${inv.status}`, inv.id),
      );
    case "void":
      if (replaceable && k.replacementStartedFor === inv.id) {
        return replacement(bill, inv, k, ctx, "none", "recreate_existing");
      }
      return withAdopt(
        warn(
          bill,
          "voided",
          `invoice ${inv.id} was voided; it is not recreated (release it to reissue)`,
          inv.id,
        ),
      );
    default:
      return withAdopt(
        warn(bill, "conflict", `invoice ${inv.id} has unknown status ${inv.status}`, inv.id),
      );
  }
}

/** Phase 2: the action for a bill that phase 1 did not settle. */
export function decide(bill: Bill, k: StripeKnowledge, ctx: PlanContext): Action {
  const c = classify(bill);
  if (c.kind === "settled") return c.action;
  const stored = k.invoice.via === "stored" ? k.invoice.invoice : undefined;
  const deletedByUs = k.replacementStartedFor !== null &&
    k.replacementStartedFor === bill.storedInvoiceId;
  if (c.kind === "check_stored") {
    if (bill.storedInvoiceId) return settleSkip(bill, c.skip, stored ?? null, deletedByUs);
    return settleOrphan(bill, c.skip, k, ctx);
  }
  if (c.needsPaymentMethod && k.hasDefaultPaymentMethod !== true) {
    const s = skip(
      bill,
      "no_data_moved_no_payment_method",
      "no data moved this period and the customer has no default payment method",
    );
    return bill.storedInvoiceId && stored !== undefined
      ? settleSkip(bill, s, stored, deletedByUs)
      : s;
  }
  if (k.customerDeleted) {
    return warn(
      bill,
      "customer_deleted",
      `customer ${k.customerId} of ${bill.tenant} was deleted in Stripe`,
      bill.storedInvoiceId ?? undefined,
    );
  }
  const inv = k.invoice;
  if (inv.via === "stored") {
    if (inv.invoice === null) {
      // Deleted in Stripe. A replacement (or discard) we started continues; else warn.
      if (deletedByUs) return replacement(bill, null, k, ctx, "none", "continues a replacement");
      return warn(
        bill,
        "deleted",
        `invoice ${bill.storedInvoiceId} was deleted in Stripe; it is not recreated (release it to reissue)`,
        bill.storedInvoiceId ?? undefined,
      );
    }
    return forInvoice(bill, inv.invoice, k, ctx);
  }
  const orphan = k.orphans[0];
  if (orphan && orphan.status !== "draft") {
    return warn(
      bill,
      "conflict",
      `invoice ${orphan.id} of this bill is ${orphan.status} on customer ${orphan.customer}, not ${bill.tenant}'s: an interrupted run left it there before the bill moved; void it or link it by hand`,
      orphan.id,
    );
  }
  // A draft an interrupted run left on the bill's former tenant's customer goes before the create.
  const fresh = (): Action => ({
    ...createAction(bill, k, ctx, "no_invoice"),
    ...(orphan ? { discardOrphan: orphan.id } : {}),
  });
  if (inv.via === "none") return fresh();
  const m = matchInvoice(bill, inv.listed, [], ctx.installation);
  switch (m.kind) {
    case "found":
      return forInvoice(bill, m.invoice, k, ctx, { invoiceId: m.invoice.id, via: m.via });
    case "ambiguous":
      return warn(
        bill,
        "conflict",
        `several invoices match by ${m.via}: ${m.invoices.map((i) => i.id).join(", ")}`,
      );
    case "legacy_overlap":
      return warn(
        bill,
        "possible_legacy_match",
        `no exact match, but unlinked automation invoice(s) ${
          m.invoices.map((i) => i.id).join(", ")
        } of type ${bill.kind} overlap ${bill.dateStart}..${bill.dateEnd}: link one or confirm before publishing`,
        m.invoices[0].id,
      );
    case "none":
      return fresh();
  }
}

/** Orders actions by tenant, bill kind and bill ID. */
export function compareActions(a: Action, b: Action): number {
  const x = a.bill;
  const y = b.bill;
  return x.tenant < y.tenant
    ? -1
    : x.tenant > y.tenant
    ? 1
    : x.kind < y.kind
    ? -1
    : x.kind > y.kind
    ? 1
    : x.id - y.id;
}

/** Plans every bill; knowledge is keyed by `kind:id`. Sorted, deterministic. */
export function planBills(
  bills: Bill[],
  knowledge: ReadonlyMap<string, StripeKnowledge>,
  ctx: PlanContext,
): Action[] {
  return bills.map((bill) => {
    const c = classify(bill);
    if (c.kind === "settled") return c.action;
    const k = knowledge.get(`${bill.kind}:${bill.id}`);
    if (!k && c.kind === "check_stored" && !bill.storedInvoiceId) return c.skip;
    if (!k) throw new Error(`no Stripe knowledge for bill ${bill.kind}:${bill.id}`);
    return decide(bill, k, ctx);
  }).sort(compareActions);
}
