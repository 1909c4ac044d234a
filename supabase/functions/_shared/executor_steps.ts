/**
 * The guarded steps every executor action is made of: the committed intent before a write, the
 * write itself under the item's lease, the compare-and-set links, the line replacement (keyed by
 * what it removes and adds) and the verification against the bill.
 */
import { linesMatch } from "./bill_invoice.ts";
import type { Sql } from "./db.ts";
import { writeKey } from "./idempotency.ts";
import { retrieveInvoice } from "./invoices.ts";
import type { ItemLease } from "./lease.ts";
import type { Action, InvoiceSpec, LineSpec } from "./plan_types.ts";
import { type StripeCaller, wasReplayed } from "./stripe_calls.ts";
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
  /** Every idempotency key sent (their events are this item's own, not someone's edit). */
  sentKeys?: string[];
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

export interface LinkOutcome {
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
export function send<T>(
  d: ExecDeps,
  endpoint: string,
  fn: (stripe: Stripe, o: Stripe.RequestOptions) => Promise<T>,
  idempotencyKey?: string,
): Promise<T> {
  if (idempotencyKey) d.sentKeys?.push(idempotencyKey);
  return d.lease.during(() =>
    d.caller.call(endpoint, fn, { idempotencyKey, beforeAttempt: () => d.lease.ensure() })
  );
}

export async function link(
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

export async function replaceLink(
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

export const linkOk = (o: LinkOutcome) =>
  o.outcome === "linked" || o.outcome === "unchanged" || o.outcome === "replaced";

/** The add_lines entry for a line: an amount in cents (no Price, so no Product is made). */
export function addLineParam(line: LineSpec): Stripe.InvoiceAddLinesParams.Line {
  return {
    description: line.description,
    period: { start: line.periodStart, end: line.periodEnd },
    amount: line.amount,
  };
}

export function updateParams(fields: Partial<InvoiceSpec>): Stripe.InvoiceUpdateParams {
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
export async function replaceLines(
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
export async function verify(
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
