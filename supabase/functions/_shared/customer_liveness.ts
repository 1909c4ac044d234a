/**
 * Whether a tenant's stored customer still exists in Stripe. A customer deleted by hand (no
 * webhook received) is otherwise noticed only when a later create fails, so a draft on it would be
 * reported up to date. One retrieve per customer per run (callers pass one cache per run); a
 * deletion found is remembered in internal.stripe_deleted_customers like one from a webhook.
 */
import type { Sql } from "./db.ts";
import { isStripeNotFound, type StripeCaller } from "./stripe_calls.ts";

/** What the check needs: the database, a Stripe caller, and the clock. */
export interface CustomerLivenessDeps {
  sql: Sql;
  caller: StripeCaller;
  now?: () => Date;
}

/**
 * True when `customerId` is deleted (Stripe answers a deleted stub, or 404), recording it; false
 * when it is live. `checked` remembers answers for the rest of one run.
 */
export async function customerDeletedInStripe(
  deps: CustomerLivenessDeps,
  customerId: string,
  checked: Map<string, boolean> = new Map(),
): Promise<boolean> {
  const known = checked.get(customerId);
  if (known !== undefined) return known;
  const recorded = await deps.sql`select 1 from internal.stripe_deleted_customers
    where customer_id = ${customerId}`;
  let deleted = recorded.length > 0;
  if (!deleted) {
    try {
      const customer = await deps.caller.call(
        "GET /v1/customers/:id",
        (s) => s.customers.retrieve(customerId),
      );
      deleted = "deleted" in customer && customer.deleted === true;
    } catch (err) {
      if (!isStripeNotFound(err)) throw err;
      deleted = true;
    }
    if (deleted) {
      const now = (deps.now ?? (() => new Date()))();
      await deps.sql`select internal.record_customer_deleted(${customerId},
        ${now.toISOString()}::timestamptz)`;
    }
  }
  checked.set(customerId, deleted);
  return deleted;
}
