/**
 * What the publish engine runs on, shared by the function, the CLI and the benchmarks.
 */
import type { Sql } from "./db.ts";
import type { StripeCallerOptions } from "./stripe_calls.ts";
import type { Stripe } from "./stripe_client.ts";

/** What the engine runs on. */
export interface EngineDeps {
  sql: Sql;
  stripe: Stripe;
  /** This worker's name in leases and intents (unique per process/invocation). */
  worker: string;
  now?: () => Date;
  /** Overrides for the Stripe caller (tests shorten backoff). */
  callerOptions?: Omit<StripeCallerOptions, "ratePerSecond">;
  /**
   * The Stripe account the invoice index belongs to. Defaults to the API host the client talks
   * to: set it (e.g. to the acct_ ID) when one database publishes to more than one account.
   */
  stripeAccount?: string;
  /** Invoice index tuning (tests shorten waits); `enabled: false` always lists per customer. */
  invoiceIndex?: InvoiceIndexOptions;
  /** The Events API cursor that lets reruns skip retrieves; `enabled: false` retrieves all. */
  eventFeed?: EventFeedOptions;
  /** The account's request budget shared through Postgres; `enabled: false` shares per run. */
  rateBudget?: {
    enabled?: boolean;
    ratePerSecond?: number;
    burst?: number;
    /** Each named operation's rate (default 98% of Stripe's 25/s); null: no per-operation budget. */
    operationRatePerSecond?: number | null;
  };
}

/** How the drain reads Stripe's Events API to vouch for verified drafts. */
export interface EventFeedOptions {
  enabled?: boolean;
  /** How long to wait for another worker's pass before retrieving per bill (default 60 s). */
  waitMs?: number;
  /** The log is read again during a run when older than this (default 15 min). */
  maxAgeSeconds?: number;
  /** Between batches a worker reads the log if nobody did for this long (default 20 s). */
  keepUpSeconds?: number;
}

/** How the drain uses the account-wide invoice index. */
export interface InvoiceIndexOptions {
  enabled?: boolean;
  /** How long to wait for another worker's scan before listing per customer (default 60 s). */
  waitMs?: number;
  /** Longest a scan may page in one go before handing its pass back (default 60 s). */
  sliceMs?: number;
  /** An index older than this is scanned again during a run (default 15 min). */
  maxAgeSeconds?: number;
}

/** The Stripe account label of the client: deps.stripeAccount, else its API host and port. */
export function stripeAccountOf(deps: Pick<EngineDeps, "stripe" | "stripeAccount">): string {
  if (deps.stripeAccount) return deps.stripeAccount;
  // stripe-node's accessor for its own configuration (host and port; the key is not there).
  const get = (deps.stripe as unknown as { getApiField?: (k: string) => unknown }).getApiField;
  const field = (k: string) => (typeof get === "function" ? get.call(deps.stripe, k) : undefined);
  return `stripe:${field("host") ?? "api.stripe.com"}:${field("port") ?? 443}`;
}
