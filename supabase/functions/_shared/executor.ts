/**
 * The one place publishing writes to Stripe. Before every write it records the intent (fenced
 * by the item's lease) and commits it; right after a create it stores the invoice ID, before any
 * line is added; it verifies the invoice total against the bill and fails loudly when they differ.
 */
import type { Sql } from "./db.ts";
import { recordInvoiceState } from "./invoices.ts";
import type { Action, InvoiceSpec, LineSpec } from "./planner.ts";
import { type StripeCaller, stripeCode } from "./stripe_calls.ts";
import type { Stripe } from "./stripe_client.ts";

/** Where the executor runs: which item of which run, by which worker. */
export interface ExecDeps {
  sql: Sql;
  caller: StripeCaller;
  runId: string;
  itemNo: number;
  worker: string;
  now: () => Date;
}

/** What an action came to. */
export interface ExecResult {
  outcome: "created" | "updated" | "unchanged" | "replaced" | "skipped" | "warned" | "failed";
  invoiceId: string | null;
  detail: string;
  /** Set when the outcome was turned into a warning (e.g. a link conflict). */
  reason?: string;
}

/** The invoice total disagrees with the bill: never left silently. */
export class TotalMismatchError extends Error {
  constructor(invoiceId: string, expected: number, actual: number) {
    super(
      `invoice ${invoiceId} totals ${actual}¢ but the bill (with rounding) is ${expected}¢`,
    );
    this.name = "TotalMismatchError";
  }
}

interface LinkOutcome {
  outcome: "linked" | "unchanged" | "conflict" | "duplicate" | "replaced" | "released";
  stored_id: string | null;
  detail: string | null;
}

/** Commits the record of a Stripe write about to happen; throws if the lease was lost. */
async function intent(
  d: ExecDeps,
  step: string,
  invoiceId: string | null,
  params: Record<string, unknown>,
  idempotencyKey: string | null = null,
): Promise<void> {
  await d.sql`select internal.record_publish_intent(${d.runId}::uuid, ${d.itemNo}, ${d.worker},
    ${step}, ${idempotencyKey}, ${invoiceId}, ${d.sql.json(params as never)})`;
}

async function link(
  d: ExecDeps,
  action: Action,
  invoiceId: string,
  reason: string,
): Promise<LinkOutcome> {
  const kind = action.bill.kind;
  const [row] = await d.sql<LinkOutcome[]>`
    select outcome, stored_id, detail from internal.link_bill_invoice(${kind}, ${action.bill.id},
      ${invoiceId}, ${"publish:" + d.worker}, ${reason}, ${d.runId}::uuid)`;
  return row;
}

async function replaceLink(
  d: ExecDeps,
  action: Action,
  oldId: string,
  newId: string,
): Promise<LinkOutcome> {
  const [row] = await d.sql<LinkOutcome[]>`
    select outcome, stored_id, detail from internal.replace_bill_invoice(${action.bill.kind},
      ${action.bill.id}, ${oldId}, ${newId}, ${"publish:" + d.worker},
      'recreate_existing: replaced by a new invoice', ${d.runId}::uuid)`;
  return row;
}

const linkOk = (o: LinkOutcome) =>
  o.outcome === "linked" || o.outcome === "unchanged" || o.outcome === "replaced";

/** The add_lines entry for a line: a priced quantity, or a signed amount for credits. */
export function addLineParam(line: LineSpec): Stripe.InvoiceAddLinesParams.Line {
  const period = { start: line.periodStart, end: line.periodEnd };
  if (line.unitAmount >= 0) {
    return {
      description: line.description,
      period,
      quantity: line.quantity,
      price_data: {
        currency: "usd",
        product_data: { name: line.description || "Flow usage" },
        unit_amount: line.unitAmount,
      },
    };
  }
  // Prices cannot be negative; a credit is an amount-only line.
  return { description: line.description, period, amount: line.amount };
}

function updateParams(fields: Partial<InvoiceSpec>): Stripe.InvoiceUpdateParams {
  const p: Stripe.InvoiceUpdateParams = {};
  if (fields.collectionMethod) p.collection_method = fields.collectionMethod;
  // A due date only goes with send_invoice (Stripe refuses it on charge_automatically).
  const sending = (fields.collectionMethod ?? null) === "send_invoice" ||
    (fields.collectionMethod === undefined && fields.dueDate != null);
  if (sending && fields.dueDate != null) p.due_date = fields.dueDate;
  if (fields.description !== undefined) p.description = fields.description;
  if (fields.customFields) p.custom_fields = fields.customFields;
  if (fields.metadata) p.metadata = fields.metadata;
  return p;
}

/** The create body; a pure function of the action, so a replay sends the same parameters. */
export function createParams(
  action: Extract<Action, { kind: "create" }>,
): Stripe.InvoiceCreateParams {
  const spec = action.invoice;
  return {
    customer: action.customerId!,
    currency: "usd",
    auto_advance: false,
    collection_method: spec.collectionMethod,
    ...(spec.collectionMethod === "send_invoice" && spec.dueDate !== null
      ? { due_date: spec.dueDate }
      : {}),
    description: spec.description,
    custom_fields: spec.customFields,
    metadata: spec.metadata,
    pending_invoice_items_behavior: "exclude",
  };
}

async function replaceLines(
  d: ExecDeps,
  invoiceId: string,
  remove: string[],
  add: LineSpec[],
): Promise<Stripe.Invoice | null> {
  let last: Stripe.Invoice | null = null;
  if (remove.length > 0) {
    await intent(d, "remove_lines", invoiceId, { lines: remove });
    last = await d.caller.call(
      "POST /v1/invoices/:id/remove_lines",
      (s, o) =>
        s.invoices.removeLines(invoiceId, {
          lines: remove.map((id) => ({ id, behavior: "delete" as const })),
        }, o),
    );
  }
  if (add.length > 0) {
    await intent(d, "add_lines", invoiceId, { count: add.length });
    last = await d.caller.call(
      "POST /v1/invoices/:id/add_lines",
      (s, o) => s.invoices.addLines(invoiceId, { lines: add.map(addLineParam) }, o),
    );
  }
  return last;
}

function verify(invoiceId: string, expected: number, actual: number): void {
  if (expected !== actual) throw new TotalMismatchError(invoiceId, expected, actual);
}

/** Skip, warn and refuse write nothing to Stripe; an adopted invoice is linked first. */
async function settleWithoutWrites(
  d: ExecDeps,
  action: Extract<Action, { kind: "skip" | "warn" }>,
): Promise<ExecResult> {
  const outcome = action.kind === "skip" ? "skipped" : "warned";
  if (action.adopt) {
    const l = await link(d, action, action.adopt.invoiceId, `adopted by ${action.adopt.via}`);
    if (!linkOk(l)) {
      return {
        outcome: "warned",
        invoiceId: action.adopt.invoiceId,
        detail: `could not link ${action.adopt.invoiceId}: ${l.detail}`,
        reason: "conflict",
      };
    }
  }
  return { outcome, invoiceId: action.invoiceId ?? null, detail: action.detail };
}

async function update(
  d: ExecDeps,
  action: Extract<Action, { kind: "update" }>,
): Promise<ExecResult> {
  const id = action.invoiceId;
  if (action.adopt) {
    const l = action.replaces
      ? await replaceLink(d, action, action.replaces, id)
      : await link(d, action, id, `adopted by ${action.adopt.via}`);
    if (!linkOk(l)) {
      return {
        outcome: "warned",
        invoiceId: id,
        detail: `could not link ${id}: ${l.detail}`,
        reason: "conflict",
      };
    }
  }
  let last: Stripe.Invoice | null = null;
  if (action.fields) {
    const params = updateParams(action.fields);
    await intent(d, "update_invoice", id, params as Record<string, unknown>);
    last = await d.caller.call(
      "POST /v1/invoices/:id",
      (s, o) => s.invoices.update(id, params, o),
    );
  }
  if (action.lines) {
    last = await replaceLines(d, id, action.lines.remove, action.lines.add) ?? last;
  }
  if (last) await recordInvoiceState(d.sql, last, d.now());
  verify(id, action.expectedTotal, last?.total ?? action.currentTotal);
  const wrote = action.fields !== null || action.lines !== null;
  const what = [action.fields ? "fields" : "", action.lines ? "lines" : ""].filter(Boolean);
  return {
    outcome: action.replaces ? "replaced" : wrote ? "updated" : "unchanged",
    invoiceId: id,
    detail: wrote ? `draft ${id}: rewrote ${what.join(" and ")}` : `draft ${id} is up to date`,
  };
}

async function create(
  d: ExecDeps,
  action: Extract<Action, { kind: "create" }>,
): Promise<ExecResult> {
  if (!action.customerId) throw new Error("cannot create an invoice without a customer");
  const old = action.replaces;
  if (old && old.how !== "none") {
    const step = old.how === "void" ? "void_invoice" : "delete_invoice";
    await intent(d, step, old.invoiceId, { reason: "replace" });
    if (old.how === "void") {
      const v = await d.caller.call(
        "POST /v1/invoices/:id/void",
        (s, o) => s.invoices.voidInvoice(old.invoiceId, {}, o),
      );
      await recordInvoiceState(d.sql, v, d.now());
    } else {
      await d.caller.call("DELETE /v1/invoices/:id", (s) => s.invoices.del(old.invoiceId));
      await recordInvoiceState(d.sql, { id: old.invoiceId, deleted: true }, d.now());
    }
  }
  const params = createParams(action);
  await intent(
    d,
    "create_invoice",
    null,
    { due_date: params.due_date ?? null },
    action.idempotencyKey,
  );
  let inv: Stripe.Invoice;
  try {
    inv = await d.caller.call(
      "POST /v1/invoices",
      (s, o) => s.invoices.create(params, o),
      { idempotencyKey: action.idempotencyKey },
    );
  } catch (err) {
    if (
      stripeCode(err) === "resource_missing" && (err as { param?: string }).param === "customer"
    ) {
      await d.sql`select internal.record_customer_deleted(${action.customerId},
        ${d.now().toISOString()}::timestamptz)`;
      return {
        outcome: "warned",
        invoiceId: null,
        detail: `customer ${action.customerId} no longer exists in Stripe`,
        reason: "customer_deleted",
      };
    }
    throw err;
  }
  // Store the ID before anything else, so a crash from here on is recovered by ID.
  const l = old
    ? await replaceLink(d, action, old.invoiceId, inv.id!)
    : await link(d, action, inv.id!, "created");
  if (!linkOk(l)) {
    // Someone else linked another invoice meanwhile: ours must not live on as a second one.
    await intent(d, "delete_invoice", inv.id!, { reason: "orphan" });
    await d.caller.call("DELETE /v1/invoices/:id", (s) => s.invoices.del(inv.id!));
    await recordInvoiceState(d.sql, { id: inv.id!, deleted: true }, d.now());
    return {
      outcome: "warned",
      invoiceId: l.stored_id,
      detail: `created ${inv.id} but could not link it (${l.detail}); deleted it`,
      reason: "conflict",
    };
  }
  const last = await replaceLines(d, inv.id!, [], action.lines) ?? inv;
  await recordInvoiceState(d.sql, last, d.now());
  verify(inv.id!, action.expectedTotal, last.total);
  return {
    outcome: old ? "replaced" : "created",
    invoiceId: inv.id!,
    detail: old
      ? `replaced ${old.invoiceId} with ${inv.id} (${action.lines.length} lines)`
      : `created ${inv.id} with ${action.lines.length} lines`,
  };
}

/** Performs one action. Throws on Stripe/DB failures (the caller decides retry or fail). */
export function execute(d: ExecDeps, action: Action): Promise<ExecResult> {
  switch (action.kind) {
    case "create":
      return create(d, action);
    case "update":
      return update(d, action);
    case "skip":
    case "warn":
      return settleWithoutWrites(d, action);
    case "refuse":
      return Promise.resolve({ outcome: "failed", invoiceId: null, detail: action.detail });
  }
}
