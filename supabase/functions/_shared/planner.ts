/**
 * The publish planner: pure. From one bill and what is known of Stripe it decides create, update,
 * skip, warn or refuse, with a reason (DESIGN §2.4, upstream §3.3). No I/O, no clock, no random:
 * time and run ID are inputs, so the same inputs always give the same plan. Dry-run is this
 * module's output, shown; the executor performs it.
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

/** Stripe's minimum chargeable amount, in cents. */
export const MINIMUM_CHARGE_CENTS = 50;
/** Days until a send_invoice invoice is due (upstream: now + 30 days). */
export const DUE_DAYS = 30;

export type CollectionMethod = "charge_automatically" | "send_invoice";
export type InvoiceStatus = "draft" | "open" | "paid" | "uncollectible" | "void";

/** One line of a bill (amounts in cents; count may be fractional in legacy reports). */
export interface BillLine {
  description: string | null;
  count: number;
  rate: number;
  subtotal: number;
}

/** A bill as selected for a month. `preview` rows are refused, never published. */
export interface Bill {
  kind: "final" | "manual" | "preview";
  id: number;
  tenant: string;
  /** YYYY-MM-DD, inclusive. */
  dateStart: string;
  dateEnd: string;
  lineItems: BillLine[];
  subtotal: number;
  /** The usage report (final bills): processed_data_gb and friends. */
  extra: { processed_data_gb?: number | null } | null;
  storedInvoiceId: string | null;
  tenantTrialStart: string | null;
  paymentProvider: "stripe" | "external" | null;
  /** Audited releases and replacements of this bill's invoice so far. */
  generation: number;
  /** Invoices this bill has released or replaced: never adopted again. */
  releasedInvoiceIds: string[];
}

/** A line of a Stripe invoice, as much as the planner compares. */
export interface LineSnapshot {
  id: string;
  description: string | null;
  amount: number;
  quantity: number | null;
  periodStart: number;
  periodEnd: number;
}

/** A Stripe invoice, as much as the planner needs. */
export interface InvoiceSnapshot {
  id: string;
  status: InvoiceStatus | null;
  customer: string | null;
  created: number;
  collectionMethod: CollectionMethod;
  dueDate: number | null;
  description: string | null;
  customFields: { name: string; value: string }[];
  metadata: Record<string, string>;
  total: number;
  /** Every line (all pages) for drafts; null when not read. */
  lines: LineSnapshot[] | null;
}

/** What identity resolution learned about the bill's invoice. */
export type InvoiceKnowledge =
  /** The stored ID was retrieved; null means Stripe answered 404 (deleted). */
  | { via: "stored"; invoice: InvoiceSnapshot | null; listed?: ListedInvoices }
  /** No stored ID: the customer's invoices, every page. */
  | { via: "listed"; listed: ListedInvoices }
  /** No customer yet (a dry run would create one, or it was just created): nothing to find. */
  | { via: "none" };

export interface ListedInvoices {
  invoices: InvoiceSnapshot[];
  /** Invoice ID → the bill (`kind:id`) it is already linked to, for listed invoices. */
  linkedTo: Record<string, string>;
}

/** Everything phase 2 needs to know from Stripe and from earlier runs. */
export interface StripeKnowledge {
  customerId: string | null;
  customerSource: "stored" | "adopted" | "created" | "would_create";
  customerDeleted: boolean;
  /** Only asked for when the no-data-moved rule needs it; null = unknown (treated as none). */
  hasDefaultPaymentMethod: boolean | null;
  invoice: InvoiceKnowledge;
  /** Params of an earlier create intent under the same idempotency key (replayed verbatim). */
  priorCreate: { idempotencyKey: string; dueDate: number | null } | null;
  /** An earlier attempt recorded voiding/deleting this invoice to replace it (recreate_existing). */
  replacementStartedFor: string | null;
  /** Invoices this run already created for the bill: never replaced again by the same run. */
  createdThisRun: string[];
}

/** Run-wide inputs. */
export interface PlanContext {
  runId: string;
  /** Used only for due dates. */
  now: Date;
  recreateExisting: boolean;
  usageCollectionMethod: CollectionMethod;
}

/** The invoice fields this system writes. */
export interface InvoiceSpec {
  collectionMethod: CollectionMethod;
  /** Unix seconds; send_invoice only. */
  dueDate: number | null;
  description: string;
  customFields: { name: string; value: string }[];
  metadata: Record<string, string>;
}

/** One invoice line: positive rates carry quantity × unit price, credits a signed amount. */
export interface LineSpec {
  description: string;
  quantity: number;
  unitAmount: number;
  amount: number;
  periodStart: number;
  periodEnd: number;
}

export type SkipReason =
  | "free_tier"
  | "trial_starts_after_period"
  | "under_minimum"
  | "no_data_moved_no_payment_method"
  | "already_processed";

export type WarnReason =
  | "voided"
  | "deleted"
  | "customer_deleted"
  | "conflict"
  | "possible_legacy_match";

export interface BillKey {
  kind: "final" | "manual" | "preview";
  id: number;
  tenant: string;
}

/** How an existing invoice was found without a stored ID. */
export interface Adoption {
  invoiceId: string;
  via: "bill_id" | "upstream_key";
}

export type Action =
  | {
    kind: "create";
    bill: BillKey;
    reason: "no_invoice" | "replace";
    customerId: string | null;
    idempotencyKey: string;
    invoice: InvoiceSpec;
    lines: LineSpec[];
    expectedTotal: number;
    roundingDiff: number;
    /** recreate_existing: the invoice this one replaces, and what to do to it first. */
    replaces?: { invoiceId: string; how: "void" | "delete" | "none" };
  }
  | {
    kind: "update";
    bill: BillKey;
    reason: "draft" | "adopted_draft";
    invoiceId: string;
    adopt?: Adoption;
    /** Fields to write; null when they already match. */
    fields: Partial<InvoiceSpec> | null;
    /** Replace every line: remove these, add those. Null when the lines already match. */
    lines: { remove: string[]; add: LineSpec[] } | null;
    /** The draft's total as read (checked when nothing is written). */
    currentTotal: number;
    expectedTotal: number;
    roundingDiff: number;
    /** recreate_existing resumed: the adopted invoice replaces this one (audited swap). */
    replaces?: string;
  }
  | {
    kind: "skip";
    bill: BillKey;
    reason: SkipReason;
    detail: string;
    invoiceId?: string;
    adopt?: Adoption;
  }
  | {
    kind: "warn";
    bill: BillKey;
    reason: WarnReason;
    detail: string;
    invoiceId?: string;
    adopt?: Adoption;
  }
  | { kind: "refuse"; bill: BillKey; reason: "preview" | "missing_report"; detail: string };

/** Phase 1 result: settled without Stripe, or what to ask Stripe. */
export type Classification =
  | { kind: "settled"; action: Action }
  | { kind: "needs_stripe"; needsPaymentMethod: boolean };

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

function key(bill: Bill): BillKey {
  return { kind: bill.kind, id: bill.id, tenant: bill.tenant };
}

/** The bill's stable identity as written to invoice metadata. */
export function billIdOf(bill: Bill): string {
  return billRef(bill.kind === "manual" ? "manual" : "final", bill.id);
}

/**
 * The create key: the bill and its generation (bumped only by an audited release/replace), never
 * the run, so a rerun after a crash replays the same key within Stripe's 24 h window.
 */
export function createIdempotencyKey(bill: Bill, generation = bill.generation): string {
  return `flow-invoice-create:${billIdOf(bill)}:g${generation}`;
}

/** Phase 1 (no Stripe): preview refusal, free tier, trial, minimum (upstream order). */
export function classify(bill: Bill): Classification {
  const settled = (action: Action): Classification => ({ kind: "settled", action });
  if (bill.kind === "preview") {
    return settled({
      kind: "refuse",
      bill: key(bill),
      reason: "preview",
      detail: "preview bills are never published to Stripe",
    });
  }
  if (bill.kind === "final") {
    if (bill.extra === null) {
      return settled({
        kind: "refuse",
        bill: key(bill),
        reason: "missing_report",
        detail: "a final bill must carry its usage report",
      });
    }
    if (bill.tenantTrialStart === null) {
      return settled(skip(bill, "free_tier", "tenant is on the free tier"));
    }
    if (bill.dateEnd < bill.tenantTrialStart) {
      return settled(
        skip(
          bill,
          "trial_starts_after_period",
          `period ends before the trial starts (${bill.tenantTrialStart})`,
        ),
      );
    }
  }
  if (bill.subtotal < MINIMUM_CHARGE_CENTS) {
    return settled(
      skip(bill, "under_minimum", `subtotal ${bill.subtotal}¢ is under Stripe's 50¢ minimum`),
    );
  }
  const needsPaymentMethod = bill.kind === "final" &&
    Number(bill.extra?.processed_data_gb ?? 0) === 0;
  return { kind: "needs_stripe", needsPaymentMethod };
}

function skip(bill: Bill, reason: SkipReason, detail: string, invoiceId?: string): Action {
  return { kind: "skip", bill: key(bill), reason, detail, ...(invoiceId ? { invoiceId } : {}) };
}

function warn(bill: Bill, reason: WarnReason, detail: string, invoiceId?: string): Action {
  return { kind: "warn", bill: key(bill), reason, detail, ...(invoiceId ? { invoiceId } : {}) };
}

/** The lines a bill becomes, and how far rounding counts up moved the total. */
export function linesFor(bill: Bill): { lines: LineSpec[]; roundingDiff: number } {
  const periodStart = noonUtc(bill.dateStart);
  const periodEnd = noonUtc(bill.dateEnd);
  let diff = 0;
  const lines = bill.lineItems.map((item) => {
    const quantity = Math.ceil(item.count);
    diff += (quantity - item.count) * item.rate;
    return {
      description: item.description ?? "",
      quantity,
      unitAmount: item.rate,
      amount: quantity * item.rate,
      periodStart,
      periodEnd,
    };
  });
  return { lines, roundingDiff: Math.round(diff) };
}

/** Invoice fields for a bill: upstream's description, custom fields and metadata. */
export function invoiceSpecFor(
  bill: Bill,
  ctx: PlanContext,
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
      [CREATED_BY_AUTOMATION_KEY]: "true",
    },
  };
}

/** How a line is compared: what Stripe shows for it. Credits are amount-only lines (quantity 1). */
function lineSignature(l: {
  description: string | null;
  amount: number;
  quantity: number | null;
  periodStart: number;
  periodEnd: number;
}): string {
  return JSON.stringify([l.description ?? "", l.amount, l.quantity, l.periodStart, l.periodEnd]);
}

/** The quantity Stripe will show for a line spec. */
export function stripeQuantity(line: LineSpec): number {
  return line.unitAmount >= 0 ? line.quantity : 1;
}

/** True when the invoice's lines are exactly the wanted lines (order ignored). */
export function linesMatch(existing: LineSnapshot[], wanted: LineSpec[]): boolean {
  if (existing.length !== wanted.length) return false;
  const a = existing.map(lineSignature).sort();
  const b = wanted.map((l) => lineSignature({ ...l, quantity: stripeQuantity(l) })).sort();
  return a.every((s, i) => s === b[i]);
}

function sameCustomFields(
  a: { name: string; value: string }[],
  b: { name: string; value: string }[],
): boolean {
  return a.length === b.length && a.every((f, i) => f.name === b[i].name && f.value === b[i].value);
}

/** The invoice fields that differ from what the bill wants (null when none). */
export function fieldChanges(inv: InvoiceSnapshot, spec: InvoiceSpec): Partial<InvoiceSpec> | null {
  const changes: Partial<InvoiceSpec> = {};
  if (inv.collectionMethod !== spec.collectionMethod) {
    changes.collectionMethod = spec.collectionMethod;
    changes.dueDate = spec.dueDate;
  } else if (spec.collectionMethod === "send_invoice" && inv.dueDate === null) {
    changes.dueDate = spec.dueDate;
  }
  if (inv.description !== spec.description) changes.description = spec.description;
  if (!sameCustomFields(inv.customFields, spec.customFields)) {
    changes.customFields = spec.customFields;
  }
  const metadataDiffers = Object.entries(spec.metadata).some(([k, v]) => inv.metadata[k] !== v);
  if (metadataDiffers) changes.metadata = spec.metadata;
  return Object.keys(changes).length > 0 ? changes : null;
}

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
 * Finds the bill's invoice among its customer's: `estuary.dev/bill_id` first, else upstream's
 * type + period key on an invoice without a bill ID that no other bill holds. Failing both, an
 * unlinked automation invoice of the same type with an overlapping period is a possible legacy
 * match (its bill's dates were edited before IDs were stored).
 */
export function matchInvoice(
  bill: Bill,
  listed: ListedInvoices,
  exclude: readonly string[] = [],
): Match {
  const ref = billIdOf(bill);
  const candidates = listed.invoices
    .filter((i) => !bill.releasedInvoiceIds.includes(i.id) && !exclude.includes(i.id))
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

function totals(bill: Bill): { lines: LineSpec[]; roundingDiff: number; expectedTotal: number } {
  const { lines, roundingDiff } = linesFor(bill);
  return { lines, roundingDiff, expectedTotal: bill.subtotal + roundingDiff };
}

function createAction(
  bill: Bill,
  k: StripeKnowledge,
  ctx: PlanContext,
  reason: "no_invoice" | "replace",
  replaces?: { invoiceId: string; how: "void" | "delete" | "none" },
): Action {
  const generation = reason === "replace" ? bill.generation + 1 : bill.generation;
  const idempotencyKey = createIdempotencyKey(bill, generation);
  const prior = k.priorCreate?.idempotencyKey === idempotencyKey ? k.priorCreate.dueDate : null;
  const t = totals(bill);
  return {
    kind: "create",
    bill: key(bill),
    reason,
    customerId: k.customerId,
    idempotencyKey,
    invoice: invoiceSpecFor(bill, ctx, prior),
    lines: t.lines,
    expectedTotal: t.expectedTotal,
    roundingDiff: t.roundingDiff,
    ...(replaces ? { replaces } : {}),
  };
}

/** Update a draft in place: write only what differs (a rerun of a settled draft writes nothing). */
function updateDraft(
  bill: Bill,
  inv: InvoiceSnapshot,
  ctx: PlanContext,
  adopt?: Adoption,
): Extract<Action, { kind: "update" }> {
  if (inv.lines === null) throw new Error(`lines of draft ${inv.id} must be read before planning`);
  const t = totals(bill);
  return {
    kind: "update",
    bill: key(bill),
    reason: adopt ? "adopted_draft" : "draft",
    invoiceId: inv.id,
    fields: fieldChanges(inv, invoiceSpecFor(bill, ctx)),
    lines: linesMatch(inv.lines, t.lines)
      ? null
      : { remove: inv.lines.map((l) => l.id), add: t.lines },
    currentTotal: inv.total,
    expectedTotal: t.expectedTotal,
    roundingDiff: t.roundingDiff,
  };
}

/**
 * recreate_existing: void (open) or delete (draft) the old invoice, then create its successor.
 * When an earlier attempt already created the successor (found by bill ID in the customer's
 * list), it is adopted instead of creating another.
 */
function replacement(
  bill: Bill,
  old: InvoiceSnapshot | null,
  k: StripeKnowledge,
  ctx: PlanContext,
  how: "void" | "delete" | "none",
): Action {
  const oldId = old?.id ?? bill.storedInvoiceId!;
  const listed = k.invoice.via === "stored" ? k.invoice.listed : undefined;
  if (how === "none" && listed) {
    const m = matchInvoice(bill, listed, [oldId]);
    if (m.kind === "found" && m.via === "bill_id" && m.invoice.status === "draft") {
      return {
        ...updateDraft(bill, m.invoice, ctx, { invoiceId: m.invoice.id, via: "bill_id" }),
        replaces: oldId,
      };
    }
  }
  return createAction(bill, k, ctx, "replace", { invoiceId: oldId, how });
}

/** The state table (DESIGN §2.4) for an invoice that is the bill's (stored or just adopted). */
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
  switch (inv.status) {
    case "draft":
      if (replaceable) return replacement(bill, inv, k, ctx, "delete");
      return withAdopt(updateDraft(bill, inv, ctx, adopt));
    case "open":
      if (replaceable) return replacement(bill, inv, k, ctx, "void");
      return withAdopt(skip(bill, "already_processed", `invoice ${inv.id} is open`, inv.id));
    case "paid":
    case "uncollectible":
      return withAdopt(
        skip(bill, "already_processed", `invoice ${inv.id} is ${inv.status}`, inv.id),
      );
    case "void":
      if (replaceable && k.replacementStartedFor === inv.id) {
        return replacement(bill, inv, k, ctx, "none");
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
  if (c.needsPaymentMethod && k.hasDefaultPaymentMethod !== true) {
    return skip(
      bill,
      "no_data_moved_no_payment_method",
      "no data moved this period and the customer has no default payment method",
    );
  }
  if (k.customerDeleted) {
    return warn(
      bill,
      "customer_deleted",
      `customer ${k.customerId} of ${bill.tenant} was deleted in Stripe`,
    );
  }
  const inv = k.invoice;
  if (inv.via === "stored") {
    if (inv.invoice === null) {
      // Deleted in Stripe. A replacement we started (deleted draft) continues; else warn.
      if (
        ctx.recreateExisting && bill.kind === "final" &&
        k.replacementStartedFor === bill.storedInvoiceId
      ) {
        return replacement(bill, null, k, ctx, "none");
      }
      return warn(
        bill,
        "deleted",
        `invoice ${bill.storedInvoiceId} was deleted in Stripe; it is not recreated (release it to reissue)`,
        bill.storedInvoiceId ?? undefined,
      );
    }
    return forInvoice(bill, inv.invoice, k, ctx);
  }
  if (inv.via === "none") return createAction(bill, k, ctx, "no_invoice");
  const m = matchInvoice(bill, inv.listed);
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
      return createAction(bill, k, ctx, "no_invoice");
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

/** Plans every bill; knowledge is keyed by `billIdOf`-style `kind:id`. Sorted, deterministic. */
export function planBills(
  bills: Bill[],
  knowledge: ReadonlyMap<string, StripeKnowledge>,
  ctx: PlanContext,
): Action[] {
  return bills.map((bill) => {
    const c = classify(bill);
    if (c.kind === "settled") return c.action;
    const k = knowledge.get(`${bill.kind}:${bill.id}`);
    if (!k) throw new Error(`no Stripe knowledge for bill ${bill.kind}:${bill.id}`);
    return decide(bill, k, ctx);
  }).sort(compareActions);
}
