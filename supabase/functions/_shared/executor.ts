/**
 * The one place publishing writes to Stripe. Every write has a deterministic key (installation,
 * bill, generation, operation, payload and the state it applies to), is preceded by a committed
 * intent fenced by the item's lease, and is attempted only while the lease is held. Right after
 * a create the invoice ID is stored, before any line is added. The result is verified against
 * the bill (total and customer) from Stripe's answer, or from a fresh retrieve when the answer
 * was a replay of an earlier request.
 */

import { linesMatch } from "./bill_invoice.ts";
import {
  createParams,
  type ExecDeps,
  type ExecResult,
  intent,
  link,
  linkOk,
  type LinkOutcome,
  replaceLines,
  replaceLink,
  send,
  updateParams,
  verify,
} from "./executor_steps.ts";
import { writeKey } from "./idempotency.ts";
import { recordInvoiceState, retrieveInvoice } from "./invoices.ts";
import type { Action } from "./plan_types.ts";
import { isStripeNotFound, stripeCode, wasReplayed } from "./stripe_calls.ts";
import type { Stripe } from "./stripe_client.ts";

export {
  addLineParam,
  createParams,
  type ExecDeps,
  type ExecResult,
  StaleReplayError,
  TotalMismatchError,
} from "./executor_steps.ts";

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
  if (action.discardOrphan) {
    const orphan = action.discardOrphan;
    await intent(d, "delete_invoice", orphan, { reason: "orphan" });
    try {
      await send(d, "DELETE /v1/invoices/:id", (s) => s.invoices.del(orphan));
    } catch (err) {
      if (!isStripeNotFound(err)) throw err;
    }
    await recordInvoiceState(d.sql, { id: orphan, deleted: true }, d.now());
  }
  const params = createParams(action);
  await intent(
    d,
    "create_invoice",
    null,
    { due_date: params.due_date ?? null, customer: action.customerId },
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
