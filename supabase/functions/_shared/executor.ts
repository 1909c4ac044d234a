/**
 * The one place publishing writes to Stripe. Every write has a deterministic key (installation,
 * bill, generation, operation, payload and the state it applies to), is preceded by a committed
 * intent fenced by the item's lease, and is attempted only while the lease is held. Right after
 * a create the invoice ID is stored, before any line is added. The result is verified against
 * the bill (total and customer) from Stripe's answer, or from a fresh retrieve when the answer
 * was a replay of an earlier request.
 */
import type { Sql } from "./db.ts";
import { writeKey } from "./idempotency.ts";
import { recordInvoiceState, retrieveInvoice } from "./invoices.ts";
import type { ItemLease } from "./lease.ts";
import { linesMatch } from "./bill_invoice.ts";
import type { Action, InvoiceSpec, LineSpec } from "./plan_types.ts";
import { isStripeNotFound, type StripeCaller, stripeCode, wasReplayed } from "./stripe_calls.ts";
import type { Stripe } from "./stripe_client.ts";

/** Where the executor runs: which item of which run, by which worker, under which lease. */
export interface ExecDeps {
  sql: Sql;
  caller: StripeCaller;
  runId: string;
  itemNo: number;
  worker: string;
  now: () => Date;
  lease: ItemLease;
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
    super(`invoice ${invoiceId} totals ${actual}¢ but the bill is ${expected}¢`);
    this.name = "TotalMismatchError";
  }
}

/**
 * A write was answered from Stripe's idempotency cache, but the draft is not as that write left
 * it (someone changed it since): the bill moves on to fresh keys and the item is retried.
 */
export class StaleReplayError extends Error {
  constructor(invoiceId: string, what: string) {
    super(`a replayed ${what} on ${invoiceId} no longer describes the draft; retrying afresh`);
    this.name = "StaleReplayError";
  }
}

interface LinkOutcome {
  outcome: "linked" | "unchanged" | "conflict" | "duplicate" | "replaced" | "released";
  stored_id: string | null;
  detail: string | null;
}

/** Commits the record of a Stripe write about to happen; throws if the lease was lost. */
export async function intent(
  d: ExecDeps,
  step: string,
  invoiceId: string | null,
  params: Record<string, unknown>,
  idempotencyKey: string | null = null,
): Promise<void> {
  await d.sql`select internal.record_publish_intent(${d.runId}::uuid, ${d.itemNo}, ${d.worker},
    ${step}, ${idempotencyKey}, ${invoiceId}, ${d.sql.json(params as never)})`;
}

/** One Stripe write under the lease: checked before every attempt, kept alive while in flight. */
function send<T>(
  d: ExecDeps,
  endpoint: string,
  fn: (stripe: Stripe, o: Stripe.RequestOptions) => Promise<T>,
  idempotencyKey?: string,
): Promise<T> {
  return d.lease.during(() =>
    d.caller.call(endpoint, fn, { idempotencyKey, beforeAttempt: () => d.lease.ensure() })
  );
}

async function link(
  d: ExecDeps,
  action: Action,
  invoiceId: string,
  reason: string,
): Promise<LinkOutcome> {
  const [row] = await d.sql<LinkOutcome[]>`
    select outcome, stored_id, detail from internal.link_bill_invoice(${action.bill.kind},
      ${action.bill.id}, ${invoiceId}, ${"publish:" + d.worker}, ${reason}, ${d.runId}::uuid)`;
  return row;
}

async function replaceLink(
  d: ExecDeps,
  action: Action,
  oldId: string,
  newId: string,
  why: string,
): Promise<LinkOutcome> {
  const [row] = await d.sql<LinkOutcome[]>`
    select outcome, stored_id, detail from internal.replace_bill_invoice(${action.bill.kind},
      ${action.bill.id}, ${oldId}, ${newId}, ${"publish:" + d.worker},
      ${"replaced by a new invoice: " + why}, ${d.runId}::uuid)`;
  return row;
}

const linkOk = (o: LinkOutcome) =>
  o.outcome === "linked" || o.outcome === "unchanged" || o.outcome === "replaced";

/** The add_lines entry for a line: an amount in cents (no Price, so no Product is made). */
export function addLineParam(line: LineSpec): Stripe.InvoiceAddLinesParams.Line {
  return {
    description: line.description,
    period: { start: line.periodStart, end: line.periodEnd },
    amount: line.amount,
  };
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

/**
 * Replaces every line of a draft: remove these, add those, each call keyed by the lines it
 * removes and adds, so a second worker or a late retry replays instead of adding them twice.
 */
async function replaceLines(
  d: ExecDeps,
  keyBase: string,
  invoiceId: string,
  remove: string[],
  add: LineSpec[],
): Promise<{ invoice: Stripe.Invoice | null; replayed: boolean }> {
  let last: Stripe.Invoice | null = null;
  let replayed = false;
  if (remove.length > 0) {
    const params = { lines: remove.map((id) => ({ id, behavior: "delete" as const })) };
    const key = writeKey(keyBase, "remove-lines", { invoice: invoiceId, remove });
    await intent(d, "remove_lines", invoiceId, { lines: remove }, key);
    last = await send(
      d,
      "POST /v1/invoices/:id/remove_lines",
      (s, o) => s.invoices.removeLines(invoiceId, params, o),
      key,
    );
    replayed ||= wasReplayed(last);
  }
  if (add.length > 0) {
    const params = { lines: add.map(addLineParam) };
    const key = writeKey(keyBase, "add-lines", { invoice: invoiceId, removed: remove, params });
    await intent(d, "add_lines", invoiceId, { count: add.length }, key);
    last = await send(
      d,
      "POST /v1/invoices/:id/add_lines",
      (s, o) => s.invoices.addLines(invoiceId, params, o),
      key,
    );
    replayed ||= wasReplayed(last);
  }
  return { invoice: last, replayed };
}

/**
 * Checks the draft against the bill: its total from Stripe's answer, or (no answer, or one that
 * was a replay and may be stale) from a fresh retrieve, whose lines must then be the wanted ones.
 */
async function verify(
  d: ExecDeps,
  invoiceId: string,
  want: { total: number; lines: LineSpec[] },
  answer: { total: number } | null,
  checkLines: boolean,
): Promise<void> {
  let total = answer?.total;
  if (total === undefined) {
    const fresh = await retrieveInvoice({ sql: d.sql, caller: d.caller, now: d.now }, invoiceId);
    if (!fresh) throw new StaleReplayError(invoiceId, "write (the invoice is gone)");
    if (checkLines && !linesMatch(fresh.snapshot.lines ?? [], want.lines)) {
      await intent(d, "replayed", invoiceId, { why: "stale replay" });
      throw new StaleReplayError(invoiceId, "line write");
    }
    total = fresh.snapshot.total;
  }
  if (total !== want.total) throw new TotalMismatchError(invoiceId, want.total, total);
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

/** Deletes a stale draft (the bill needs no invoice now) and releases its ID, audited. */
async function discard(
  d: ExecDeps,
  action: Extract<Action, { kind: "discard" }>,
): Promise<ExecResult> {
  const id = action.invoiceId;
  if (!action.alreadyDeleted) {
    await intent(d, "delete_invoice", id, { reason: "stale", why: action.reason });
    try {
      await send(d, "DELETE /v1/invoices/:id", (s) => s.invoices.del(id));
    } catch (err) {
      if (!isStripeNotFound(err)) throw err;
    }
    await recordInvoiceState(d.sql, { id, deleted: true }, d.now());
  }
  if (!action.linked) return { outcome: "skipped", invoiceId: null, detail: action.detail };
  const [l] = await d.sql<LinkOutcome[]>`
    select outcome, stored_id, detail from internal.release_bill_invoice(${action.bill.kind},
      ${action.bill.id}, ${id}, ${"publish:" + d.worker},
      ${`stale draft deleted: the bill needs no invoice (${action.reason})`})`;
  if (l.outcome !== "released" && l.outcome !== "unchanged") {
    return { outcome: "warned", invoiceId: id, detail: l.detail ?? "", reason: "conflict" };
  }
  return { outcome: "skipped", invoiceId: null, detail: action.detail };
}

async function update(
  d: ExecDeps,
  action: Extract<Action, { kind: "update" }>,
): Promise<ExecResult> {
  const id = action.invoiceId;
  if (action.adopt) {
    const l = action.replaces
      ? await replaceLink(d, action, action.replaces, id, "adopted successor")
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
  let replayed = false;
  if (action.fields) {
    const params = updateParams(action.fields);
    const key = writeKey(action.keyBase, "update", {
      invoice: id,
      params,
      before: action.fieldsBefore,
    });
    await intent(d, "update_invoice", id, params as Record<string, unknown>, key);
    last = await send(d, "POST /v1/invoices/:id", (s, o) => s.invoices.update(id, params, o), key);
    replayed ||= wasReplayed(last);
  }
  if (action.lines) {
    const r = await replaceLines(d, action.keyBase, id, action.lines.remove, action.lines.add);
    last = r.invoice ?? last;
    replayed ||= r.replayed;
  }
  if (last) await recordInvoiceState(d.sql, last, d.now());
  const wanted = action.lines?.add ?? null;
  await verify(
    d,
    id,
    { total: action.expectedTotal, lines: wanted ?? [] },
    replayed ? null : last ?? { total: action.currentTotal },
    replayed && wanted !== null,
  );
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
    await intent(d, step, old.invoiceId, { reason: "replace", why: old.why });
    if (old.how === "void") {
      const key = writeKey(action.keyBase, "void", { invoice: old.invoiceId });
      const v = await send(
        d,
        "POST /v1/invoices/:id/void",
        (s, o) => s.invoices.voidInvoice(old.invoiceId, {}, o),
        key,
      );
      await recordInvoiceState(d.sql, v, d.now());
    } else {
      try {
        await send(d, "DELETE /v1/invoices/:id", (s) => s.invoices.del(old.invoiceId));
      } catch (err) {
        if (!isStripeNotFound(err)) throw err;
      }
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
    inv = await send(
      d,
      "POST /v1/invoices",
      (s, o) => s.invoices.create(params, o),
      action.idempotencyKey,
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
  const id = inv.id!;
  // Store the ID before anything else, so a crash from here on is recovered by ID.
  const l = old ? await replaceLink(d, action, old.invoiceId, id, old.why) : await link(
    d,
    action,
    id,
    "created",
  );
  if (!linkOk(l)) {
    // Someone else linked another invoice meanwhile: ours must not live on as a second one.
    await intent(d, "delete_invoice", id, { reason: "orphan" });
    await send(d, "DELETE /v1/invoices/:id", (s) => s.invoices.del(id));
    await recordInvoiceState(d.sql, { id, deleted: true }, d.now());
    return {
      outcome: "warned",
      invoiceId: l.stored_id,
      detail: `created ${id} but could not link it (${l.detail}); deleted it`,
      reason: "conflict",
    };
  }
  // A replayed create means an earlier attempt made this invoice and may have added lines:
  // read them, and replace whatever is there.
  let remove: string[] = [];
  let createdReplayed = false;
  if (wasReplayed(inv)) {
    createdReplayed = true;
    const fresh = await retrieveInvoice({ sql: d.sql, caller: d.caller, now: d.now }, id);
    const lines = fresh?.snapshot.lines ?? [];
    if (fresh && linesMatch(lines, action.lines)) {
      await verify(
        d,
        id,
        { total: action.expectedTotal, lines: action.lines },
        fresh.invoice,
        false,
      );
      return { outcome: old ? "replaced" : "created", invoiceId: id, detail: `created ${id}` };
    }
    remove = lines.map((x) => x.id);
  }
  const r = await replaceLines(d, action.keyBase, id, remove, action.lines);
  const last = r.invoice ?? inv;
  await recordInvoiceState(d.sql, last, d.now());
  await verify(
    d,
    id,
    { total: action.expectedTotal, lines: action.lines },
    r.replayed || (createdReplayed && !r.invoice) ? null : last,
    r.replayed,
  );
  const n = action.lines.length;
  const lines = `${n} line${n === 1 ? "" : "s"}`;
  return {
    outcome: old ? "replaced" : "created",
    invoiceId: id,
    detail: old ? `replaced ${old.invoiceId} with ${id} (${lines})` : `created ${id} with ${lines}`,
  };
}

/** Performs one action. Throws on Stripe/DB failures (the caller decides retry or fail). */
export function execute(d: ExecDeps, action: Action): Promise<ExecResult> {
  switch (action.kind) {
    case "create":
      return create(d, action);
    case "update":
      return update(d, action);
    case "discard":
      return discard(d, action);
    case "skip":
    case "warn":
      return settleWithoutWrites(d, action);
    case "refuse":
      return Promise.resolve({ outcome: "failed", invoiceId: null, detail: action.detail });
  }
}
