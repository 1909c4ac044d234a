/**
 * Applying verified Stripe events to the invoice state mirror. The store-once, apply-once and
 * order-safety rules live in SQL (internal.receive_stripe_event) so that one transaction decides
 * them; this module picks the events worth storing and hands them over.
 */
import { asService } from "./as_caller.ts";
import type { postgres, Sql } from "./db.ts";

/** Event types the mirror follows (also checked by internal.stripe_event_is_relevant). */
export const MIRRORED_EVENT_TYPES: ReadonlySet<string> = new Set([
  "invoice.created",
  "invoice.finalized",
  "invoice.paid",
  "invoice.payment_failed",
  "invoice.voided",
  "invoice.marked_uncollectible",
  "invoice.deleted",
  "invoice.updated",
  "customer.deleted",
]);

/** What happened to one delivery. */
export type EventOutcome =
  | "applied" // first delivery; the mirror changed
  | "stale" // first delivery; newer state was already mirrored
  | "duplicate" // seen before; nothing done
  | "ignored"; // a type the mirror does not follow; nothing stored

/** The envelope fields the store reads; the whole event is stored as received. */
export interface StripeEventLike {
  id: string;
  type: string;
  created: number;
}

// postgres.js JSON-encodes parameters the server types as json: pass values, never JSON text.
function asJson(value: unknown): postgres.JSONValue {
  return value as postgres.JSONValue;
}

/** Stores and applies one verified event (as service_role); unfollowed types are ignored. */
export async function receiveStripeEvent(sql: Sql, event: StripeEventLike): Promise<EventOutcome> {
  if (!MIRRORED_EVENT_TYPES.has(event.type)) return "ignored";
  return await asService(sql, async (tx) => {
    const [row] = await tx<{ outcome: EventOutcome }[]>`
      select internal.receive_stripe_event(${tx.json(asJson(event))}) as outcome`;
    return row.outcome;
  });
}

/** Records a signed event the mirror refused (as service_role), naming the field at fault. */
export async function recordRejectedStripeEvent(
  sql: Sql,
  event: StripeEventLike,
  field: string | null,
  reason: string,
): Promise<void> {
  await asService(sql, async (tx) => {
    await tx`select internal.record_rejected_stripe_event(${tx.json(asJson(event))}, ${field},
      ${reason})`;
  });
}

/** Whether a database error says the event's data is unusable (retrying cannot help). */
export function isUnusableEventError(err: unknown): boolean {
  const code = (err as { code?: string }).code ?? "";
  // 22xxx: data exceptions (22023 is our own refusal by field); 23514: a check constraint.
  return code.startsWith("22") || code === "23514";
}

/**
 * Whether any `t=` timestamp in a Stripe-Signature header lies more than `toleranceSeconds`
 * in the future. The SDK only refuses signatures that are too old.
 */
export function signedInTheFuture(
  header: string,
  nowSeconds: number,
  toleranceSeconds: number,
): boolean {
  return header.split(",").some((part) => {
    const [key, value] = part.trim().split("=", 2);
    return key === "t" && /^\d+$/.test(value ?? "") &&
      Number(value) > nowSeconds + toleranceSeconds;
  });
}
