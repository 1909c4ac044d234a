import assert from "node:assert/strict";
import {
  type Action,
  type Bill,
  classify,
  createIdempotencyKey,
  decide,
  humanDate,
  type InvoiceSnapshot,
  linesFor,
  planBills,
  type PlanContext,
  type StripeKnowledge,
} from "./planner.ts";
import { BILL_ID_KEY, INVOICE_TYPE_KEY, PERIOD_END_KEY, PERIOD_START_KEY } from "./metadata.ts";

const ctx: PlanContext = {
  runId: "00000000-0000-4000-8000-000000000001",
  now: new Date("2026-11-02T06:00:00Z"),
  recreateExisting: false,
  usageCollectionMethod: "charge_automatically",
};

function bill(over: Partial<Bill> = {}): Bill {
  return {
    kind: "final",
    id: 7,
    tenant: "acmeCo/",
    dateStart: "2026-10-01",
    dateEnd: "2026-10-31",
    lineItems: [
      { description: "Data processing (at $0.50/GB)", count: 412.5, rate: 50, subtotal: 20625 },
      { description: "Free tier credit", count: 1, rate: -500, subtotal: -500 },
    ],
    subtotal: 20125,
    extra: { processed_data_gb: 412.5 },
    storedInvoiceId: null,
    tenantTrialStart: "2026-03-01",
    paymentProvider: "stripe",
    generation: 0,
    releasedInvoiceIds: [],
    ...over,
  };
}

function know(over: Partial<StripeKnowledge> = {}): StripeKnowledge {
  return {
    customerId: "cus_A",
    customerSource: "stored",
    customerDeleted: false,
    hasDefaultPaymentMethod: null,
    invoice: { via: "listed", listed: { invoices: [], linkedTo: {} } },
    priorCreate: null,
    replacementStartedFor: null,
    createdThisRun: [],
    ...over,
  };
}

/** The draft a previous run would have left for `b`. */
function settledDraft(b: Bill, over: Partial<InvoiceSnapshot> = {}): InvoiceSnapshot {
  const create = decide(b, know(), ctx);
  assert.equal(create.kind, "create");
  if (create.kind !== "create") throw new Error("unreachable");
  return {
    id: "in_1",
    status: "draft",
    customer: "cus_A",
    created: 100,
    collectionMethod: create.invoice.collectionMethod,
    dueDate: create.invoice.dueDate,
    description: create.invoice.description,
    customFields: create.invoice.customFields,
    metadata: create.invoice.metadata,
    total: create.expectedTotal,
    lines: create.lines.map((l, i) => ({
      id: `il_${i}`,
      description: l.description,
      amount: l.amount,
      quantity: l.unitAmount >= 0 ? l.quantity : 1,
      periodStart: l.periodStart,
      periodEnd: l.periodEnd,
    })),
    ...over,
  };
}

const stored = (invoice: InvoiceSnapshot | null): StripeKnowledge["invoice"] => ({
  via: "stored",
  invoice,
});

Deno.test("classify() refuses preview bills and a final bill without its report", () => {
  const p = classify(bill({ kind: "preview" }));
  assert.equal(p.kind === "settled" && p.action.kind, "refuse");
  const m = classify(bill({ extra: null }));
  assert.equal(
    m.kind === "settled" && m.action.kind === "refuse" && m.action.reason,
    "missing_report",
  );
});

Deno.test("classify() skips with upstream's reasons, in upstream's order", () => {
  const reason = (b: Bill) => {
    const c = classify(b);
    return c.kind === "settled" && c.action.kind === "skip" ? c.action.reason : c.kind;
  };
  assert.equal(reason(bill({ tenantTrialStart: null })), "free_tier");
  assert.equal(reason(bill({ tenantTrialStart: "2026-11-15" })), "trial_starts_after_period");
  assert.equal(reason(bill({ subtotal: 49 })), "under_minimum");
  assert.equal(
    reason(bill({ kind: "manual", tenantTrialStart: null, subtotal: 5000 })),
    "needs_stripe",
  );
  const c = classify(bill({ extra: { processed_data_gb: 0 } }));
  assert.deepEqual(c, { kind: "needs_stripe", needsPaymentMethod: true });
});

Deno.test("decide() skips a no-data bill unless the customer has a default payment method", () => {
  const b = bill({ extra: { processed_data_gb: 0 } });
  const a = decide(b, know({ hasDefaultPaymentMethod: false }), ctx);
  assert.equal(a.kind === "skip" && a.reason, "no_data_moved_no_payment_method");
  assert.equal(decide(b, know({ hasDefaultPaymentMethod: null }), ctx).kind, "skip");
  assert.equal(decide(b, know({ hasDefaultPaymentMethod: true }), ctx).kind, "create");
});

Deno.test("decide() creates with upstream fields, the bill ID and a run-independent key", () => {
  const a = decide(bill(), know(), ctx);
  assert.equal(a.kind, "create");
  if (a.kind !== "create") return;
  assert.equal(a.idempotencyKey, "flow-invoice-create:final:7:g0");
  assert.equal(
    decide(bill(), know(), { ...ctx, runId: "other" }).kind === "create" &&
      (decide(bill(), know(), { ...ctx, runId: "other" }) as typeof a).idempotencyKey,
    a.idempotencyKey,
  );
  assert.equal(a.invoice.collectionMethod, "charge_automatically");
  assert.equal(a.invoice.dueDate, null);
  assert.equal(
    a.invoice.description,
    "Your Flow bill for the billing period between October 01 2026 - October 31 2026. Tenant: acmeCo/",
  );
  assert.deepEqual(a.invoice.customFields, [
    { name: "Billing Period Start", value: "October 01 2026" },
    { name: "Billing Period End", value: "October 31 2026" },
  ]);
  assert.equal(a.invoice.metadata[BILL_ID_KEY], "final:7");
  assert.equal(a.invoice.metadata[INVOICE_TYPE_KEY], "final");
  assert.equal(a.invoice.metadata[PERIOD_START_KEY], "2026-10-01");
  assert.equal(a.invoice.metadata[PERIOD_END_KEY], "2026-10-31");
  assert.equal(a.invoice.metadata["estuary.dev/tenant_name"], "acmeCo/");
  // ceil(412.5) = 413 GB at 50¢, and a signed credit; rounding adds 25¢.
  assert.deepEqual(a.lines.map((l) => [l.quantity, l.unitAmount, l.amount]), [
    [413, 50, 20650],
    [1, -500, -500],
  ]);
  assert.equal(a.roundingDiff, 25);
  assert.equal(a.expectedTotal, 20150);
  assert.equal(a.lines[0].periodStart, Date.parse("2026-10-01T12:00:00Z") / 1000);
  assert.equal(a.lines[0].periodEnd, Date.parse("2026-10-31T12:00:00Z") / 1000);
});

Deno.test("decide() sends manual bills as send_invoice due 30 days out; reuses a prior due date", () => {
  const m = bill({ kind: "manual", id: 3, lineItems: [], subtotal: 9000 });
  const a = decide(m, know(), ctx);
  assert.equal(a.kind === "create" && a.invoice.collectionMethod, "send_invoice");
  assert.equal(
    a.kind === "create" && a.invoice.dueDate,
    Date.parse("2026-12-02T06:00:00Z") / 1000,
  );
  const again = decide(
    m,
    know({ priorCreate: { idempotencyKey: "flow-invoice-create:manual:3:g0", dueDate: 123 } }),
    { ...ctx, now: new Date("2026-11-03T00:00:00Z") },
  );
  assert.equal(again.kind === "create" && again.invoice.dueDate, 123);
  const usageSend = decide(bill(), know(), { ...ctx, usageCollectionMethod: "send_invoice" });
  assert.equal(usageSend.kind === "create" && usageSend.invoice.collectionMethod, "send_invoice");
});

Deno.test("decide() follows the state table for a stored invoice", () => {
  const b = bill({ storedInvoiceId: "in_1" });
  const draft = settledDraft(b);
  const same = decide(b, know({ invoice: stored(draft) }), ctx);
  assert.deepEqual(
    same.kind === "update" && [same.reason, same.fields, same.lines],
    ["draft", null, null],
    "a settled draft needs no write",
  );
  for (const status of ["open", "paid", "uncollectible"] as const) {
    const a = decide(b, know({ invoice: stored({ ...draft, status }) }), ctx);
    assert.equal(a.kind === "skip" && a.reason, "already_processed", status);
  }
  const v = decide(b, know({ invoice: stored({ ...draft, status: "void" }) }), ctx);
  assert.equal(v.kind === "warn" && v.reason, "voided");
  const d = decide(b, know({ invoice: stored(null) }), ctx);
  assert.equal(d.kind === "warn" && d.reason, "deleted");
});

Deno.test("decide() updates a draft whose bill dates or lines changed, replacing every line", () => {
  const b = bill({ kind: "manual", id: 3, storedInvoiceId: "in_1", subtotal: 9000 });
  const draft = settledDraft(b);
  const edited = { ...b, dateEnd: "2026-12-31" };
  const a = decide(edited, know({ invoice: stored(draft) }), ctx);
  assert.equal(a.kind, "update");
  if (a.kind !== "update") return;
  assert.equal(a.fields?.description?.includes("December 31 2026"), true);
  assert.equal(a.fields?.metadata?.[PERIOD_END_KEY], "2026-12-31");
  assert.equal(a.fields?.collectionMethod, undefined, "collection method already right");
  assert.deepEqual(a.lines?.remove, ["il_0", "il_1"], "line periods moved: all replaced");
  const moreLines = decide(
    { ...b, lineItems: [...b.lineItems, { description: "x", count: 1, rate: 1, subtotal: 1 }] },
    know({ invoice: stored(draft) }),
    ctx,
  );
  assert.equal(moreLines.kind === "update" && moreLines.lines?.add.length, 3);
  const wrongMethod = decide(
    b,
    know({
      invoice: stored({ ...draft, collectionMethod: "charge_automatically", dueDate: null }),
    }),
    ctx,
  );
  assert.equal(
    wrongMethod.kind === "update" && wrongMethod.fields?.collectionMethod,
    "send_invoice",
  );
});

Deno.test("decide() adopts by bill ID, else by upstream key, and never a released invoice", () => {
  const b = bill();
  const ours = settledDraft(b, { id: "in_ours", status: "open" });
  const legacy: InvoiceSnapshot = {
    ...ours,
    id: "in_legacy",
    metadata: {
      "estuary.dev/tenant_name": "acmeCo/",
      [INVOICE_TYPE_KEY]: "final",
      [PERIOD_START_KEY]: "2026-10-01",
      [PERIOD_END_KEY]: "2026-10-31",
    },
  };
  const listed = (invoices: InvoiceSnapshot[], linkedTo = {}) =>
    know({ invoice: { via: "listed", listed: { invoices, linkedTo } } });
  const a = decide(b, listed([legacy, ours]), ctx);
  assert.deepEqual(a.kind === "skip" && a.adopt, { invoiceId: "in_ours", via: "bill_id" });
  const l = decide(b, listed([legacy]), ctx);
  assert.deepEqual(l.kind === "skip" && l.adopt, { invoiceId: "in_legacy", via: "upstream_key" });
  const taken = decide(b, listed([legacy], { in_legacy: "final:99" }), ctx);
  assert.equal(taken.kind, "create", "an invoice linked to another bill is not adopted");
  const released = decide(
    { ...b, releasedInvoiceIds: ["in_ours"], generation: 1 },
    listed([ours]),
    ctx,
  );
  assert.equal(
    released.kind === "create" && released.idempotencyKey,
    "flow-invoice-create:final:7:g1",
  );
  const draft = decide(b, listed([{ ...ours, status: "draft" }]), ctx);
  assert.equal(draft.kind === "update" && draft.reason, "adopted_draft");
});

Deno.test("decide() warns of a possible legacy match instead of creating", () => {
  const b = bill({ kind: "manual", id: 3, dateStart: "2026-10-01", dateEnd: "2026-12-31" });
  const legacy: InvoiceSnapshot = {
    ...settledDraft(b, { id: "in_old", status: "open" }),
    metadata: {
      "estuary.dev/tenant_name": "acmeCo/",
      [INVOICE_TYPE_KEY]: "manual",
      [PERIOD_START_KEY]: "2026-10-01",
      [PERIOD_END_KEY]: "2026-11-30",
    },
  };
  const a = decide(
    b,
    know({ invoice: { via: "listed", listed: { invoices: [legacy], linkedTo: {} } } }),
    ctx,
  );
  assert.equal(a.kind === "warn" && a.reason, "possible_legacy_match");
  assert.match(a.kind === "warn" ? a.detail : "", /in_old/);
  const voided = decide(
    b,
    know({
      invoice: {
        via: "listed",
        listed: { invoices: [{ ...legacy, status: "void" }], linkedTo: {} },
      },
    }),
    ctx,
  );
  assert.equal(voided.kind, "create", "a voided legacy invoice is no match");
});

Deno.test("decide() warns when the customer was deleted", () => {
  const a = decide(bill(), know({ customerDeleted: true }), ctx);
  assert.equal(a.kind === "warn" && a.reason, "customer_deleted");
});

Deno.test("decide() with recreate_existing replaces usage invoices only, once per run", () => {
  const r = { ...ctx, recreateExisting: true };
  const b = bill({ storedInvoiceId: "in_1" });
  const open = settledDraft(b, { status: "open" });
  const a = decide(b, know({ invoice: stored(open) }), r);
  assert.equal(a.kind, "create");
  assert.deepEqual(a.kind === "create" && a.replaces, { invoiceId: "in_1", how: "void" });
  assert.equal(a.kind === "create" && a.idempotencyKey, "flow-invoice-create:final:7:g1");
  const draft = decide(b, know({ invoice: stored(settledDraft(b)) }), r);
  assert.deepEqual(draft.kind === "create" && draft.replaces, { invoiceId: "in_1", how: "delete" });
  const mine = decide(b, know({ invoice: stored(settledDraft(b)), createdThisRun: ["in_1"] }), r);
  assert.equal(mine.kind, "update", "this run's own replacement is not replaced again");
  const manual = decide({ ...b, kind: "manual" }, know({ invoice: stored(open) }), r);
  assert.equal(manual.kind, "skip", "manual bills are never reissued");
  const voidedByHand = decide(b, know({ invoice: stored({ ...open, status: "void" }) }), r);
  assert.equal(voidedByHand.kind, "warn", "a hand-voided invoice is not replaced");
  const resumed = decide(
    b,
    know({ invoice: stored({ ...open, status: "void" }), replacementStartedFor: "in_1" }),
    r,
  );
  assert.equal(resumed.kind, "create", "a replacement this system started resumes");
});

Deno.test("planBills() is deterministic and sorted by tenant, kind, id", () => {
  const bills = [
    bill({ tenant: "b/", id: 2 }),
    bill({ tenant: "a/", kind: "manual", id: 9 }),
    bill({ tenant: "a/", id: 5, tenantTrialStart: null }),
  ];
  const k = new Map([["final:2", know()], ["manual:9", know()]]);
  const first = planBills(bills, k, ctx);
  const second = planBills([...bills].reverse(), k, ctx);
  assert.deepEqual(first, second);
  assert.deepEqual(first.map((a: Action) => `${a.bill.tenant}${a.bill.kind}:${a.bill.id}`), [
    "a/final:5",
    "a/manual:9",
    "b/final:2",
  ]);
});

Deno.test("helpers format dates and keys like upstream", () => {
  assert.equal(humanDate("2026-04-01"), "April 01 2026");
  assert.equal(
    createIdempotencyKey(bill({ kind: "manual", id: 3 })),
    "flow-invoice-create:manual:3:g0",
  );
  assert.equal(linesFor(bill({ lineItems: [] })).lines.length, 0);
});
