import assert from "node:assert/strict";
import {
  type Action,
  type Bill,
  classify,
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
  installation: "11111111-2222-4333-8444-555555555555",
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
    keySalt: 0,
    orphans: [],
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
      quantity: 1,
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
    return c.kind === "check_stored" ? c.skip.reason : c.kind;
  };
  assert.equal(reason(bill({ tenantTrialStart: null })), "free_tier");
  assert.equal(reason(bill({ tenantTrialStart: "2026-11-15" })), "trial_starts_after_period");
  const small = [{ description: "x", count: 1, rate: 49, subtotal: 49 }];
  assert.equal(reason(bill({ subtotal: 49, lineItems: small })), "under_minimum");
  assert.equal(
    reason(bill({
      kind: "manual",
      tenantTrialStart: null,
      subtotal: 5000,
      lineItems: [{ description: "Contract", count: 1, rate: 5000, subtotal: 5000 }],
    })),
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
  assert.match(a.idempotencyKey, /:final:7:g0:create:/);
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
  // Amount-only lines carrying the bill's own line subtotals; the quantity stays in the text.
  assert.deepEqual(a.lines.map((l) => [l.description, l.amount]), [
    ["Data processing (at $0.50/GB): 412.5 × $0.50", 20625],
    ["Free tier credit", -500],
  ]);
  assert.equal(a.expectedTotal, 20125);
  assert.equal(a.lines[0].periodStart, Date.parse("2026-10-01T12:00:00Z") / 1000);
  assert.equal(a.lines[0].periodEnd, Date.parse("2026-10-31T12:00:00Z") / 1000);
});

Deno.test("decide() sends manual bills as send_invoice due 30 days out; reuses a prior due date", () => {
  const m = bill({
    kind: "manual",
    id: 3,
    lineItems: [{ description: "Contract", count: 1, rate: 9000, subtotal: 9000 }],
    subtotal: 9000,
  });
  const a = decide(m, know(), ctx);
  assert.equal(a.kind === "create" && a.invoice.collectionMethod, "send_invoice");
  assert.equal(
    a.kind === "create" && a.invoice.dueDate,
    Date.parse("2026-12-02T06:00:00Z") / 1000,
  );
  if (a.kind !== "create") throw new Error("unreachable");
  const prior = {
    idempotencyKey: a.idempotencyKey,
    dueDate: a.invoice.dueDate,
    at: ctx.now.getTime(),
    customerId: "cus_A",
  };
  const later = { ...ctx, now: new Date("2026-11-03T00:00:00Z") };
  const again = decide(m, know({ priorCreate: prior }), later);
  // Within Stripe's key window the retry sends the same body under the same key.
  assert.equal(again.kind === "create" && again.invoice.dueDate, a.invoice.dueDate);
  assert.equal(again.kind === "create" && again.idempotencyKey, a.idempotencyKey);
  // A day later the key is gone: a fresh due date (in the future) and so a fresh key.
  const dayLater = { ...ctx, now: new Date("2026-11-03T07:00:00Z") };
  const stale = decide(m, know({ priorCreate: prior }), dayLater);
  assert.equal(
    stale.kind === "create" && stale.invoice.dueDate,
    Date.parse("2026-12-03T07:00:00Z") / 1000,
  );
  assert.notEqual(stale.kind === "create" && stale.idempotencyKey, a.idempotencyKey);
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
  const b = bill({ kind: "manual", id: 3, storedInvoiceId: "in_1" });
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
    {
      ...b,
      lineItems: [...b.lineItems, { description: "x", count: 1, rate: 1, subtotal: 1 }],
      subtotal: b.subtotal + 1,
    },
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
  assert.match(released.kind === "create" ? released.idempotencyKey : "", /:final:7:g1:create:/);
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
  assert.deepEqual(a.kind === "create" && a.replaces, {
    invoiceId: "in_1",
    how: "void",
    why: "recreate_existing",
  });
  assert.match(a.kind === "create" ? a.idempotencyKey : "", /:final:7:g1:create:/);
  const draft = decide(b, know({ invoice: stored(settledDraft(b)) }), r);
  assert.equal(draft.kind === "create" && draft.replaces?.how, "delete");
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
  const a = decide(bill({ kind: "manual", id: 3, lineItems: [], subtotal: 0 }), know(), ctx);
  assert.equal(a.kind, "skip", "a bill of 0¢ is under the minimum");
  const c = decide(bill(), know(), ctx);
  assert.match(
    c.kind === "create" ? c.idempotencyKey : "",
    /^flow:11111111-2222-4333-8444-555555555555:final:7:g0:create:[0-9a-f]{24}$/,
  );
  const l = linesFor(bill({ lineItems: [] }));
  assert.ok("error" in l, "lines that do not add up to the subtotal are refused");
});
