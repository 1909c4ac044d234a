/**
 * The Stripe account's request budget, shared through Postgres by every process that calls the
 * account: each request reserves the next slot (`internal.reserve_stripe_request`) and waits for
 * it. Live and test mode keys are budgeted apart, as Stripe limits them apart.
 */
import type { Sql } from "./db.ts";
import { type Stripe, stripeModeOf } from "./stripe_client.ts";
import { stripeAccountOf } from "./engine.ts";
export { stripeModeOf };

/** Something a {@link StripeCaller} waits on before each attempt. */
export interface RequestBudget {
  /** `operation` is the named API operation ("POST /v1/invoices"), for its own limit. */
  reserve(operation?: string): Promise<void>;
}

/**
 * Stripe's own limits per account and mode (requests per second): the account's, Search's, and
 * each named operation's default.
 */
export const STRIPE_LIMITS = { live: 100, test: 25, search: 20, endpoint: 25 } as const;

/**
 * The share of Stripe's limits a caller reserves by default: one budget is shared by every
 * caller of the account, so the headroom only absorbs the difference between our clock and
 * Stripe's limiter (the dashboard needs none of its own).
 */
export const DEFAULT_LIMIT_SHARE = 0.98;

/** The named operation of an endpoint label: "GET /v1/invoices (index scan)" -> "GET /v1/invoices". */
export function operationOf(endpoint: string): string {
  return endpoint.replace(/\s+\(.*\)$/, "");
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** One bucket of the shared budget: `<account>:<mode>` (and `:search` for Search). */
export class SharedRequestBudget implements RequestBudget {
  constructor(
    private readonly sql: Sql | (() => Sql),
    readonly bucket: string,
    private readonly ratePerSecond: number,
    /** Requests of idle credit (kept small: Stripe's own burst is one second's worth). */
    private readonly burst = 1,
    private readonly sleep: (ms: number) => Promise<void> = defaultSleep,
    /** Each named operation's own limit (null: the account's only, e.g. for Search). */
    private readonly operationRatePerSecond: number | null = null,
  ) {
    if (!(ratePerSecond > 0)) throw new Error("ratePerSecond must be positive");
    if (operationRatePerSecond !== null && !(operationRatePerSecond > 0)) {
      throw new Error("operationRatePerSecond must be positive");
    }
  }

  async reserve(operation?: string): Promise<void> {
    // A postgres.js client is itself a function: a lazy getter is told apart by having no begin.
    const sql = typeof this.sql === "function" && !("begin" in this.sql)
      ? this.sql()
      : this.sql as Sql;
    const own = operation && this.operationRatePerSecond !== null;
    const [row] = own
      ? await sql<{ wait: number }[]>`
        select internal.reserve_stripe_requests(
          array[${this.bucket}, ${`${this.bucket} ${operationOf(operation)}`}]::text[],
          array[${this.ratePerSecond}, ${this.operationRatePerSecond}]::float8[],
          ${this.burst}::float8) as wait`
      : await sql<{ wait: number }[]>`
        select internal.reserve_stripe_request(${this.bucket}, ${this.ratePerSecond}::float8,
          ${this.burst}::float8) as wait`;
    const wait = Number(row.wait);
    if (wait > 0) await this.sleep(wait);
  }
}

type Env = { get(name: string): string | undefined };

/** The account's rate a caller reserves at by default for the key's mode. */
export function accountRateFor(mode: "live" | "test"): number {
  return STRIPE_LIMITS[mode] * DEFAULT_LIMIT_SHARE;
}

/** Each named operation's rate a caller reserves at by default. */
export const DEFAULT_OPERATION_RATE = STRIPE_LIMITS.endpoint * DEFAULT_LIMIT_SHARE;

/** Requests per second for the key's mode: `STRIPE_RATE_LIMIT`, else 98% of Stripe's limit. */
export function defaultRequestRate(mode: "live" | "test", env: Env): number {
  const configured = Number(env.get("STRIPE_RATE_LIMIT"));
  return configured > 0 ? configured : accountRateFor(mode);
}

/** Each named operation's rate: `STRIPE_ENDPOINT_RATE_LIMIT`, else 98% of Stripe's default. */
export function defaultOperationRate(env: Env): number {
  const configured = Number(env.get("STRIPE_ENDPOINT_RATE_LIMIT"));
  return configured > 0 ? configured : DEFAULT_OPERATION_RATE;
}

/**
 * The budget every caller outside a run (dashboard, CLI) reserves from: the account's bucket
 * and its operations' at the defaults above.
 */
export function accountBudget(
  sql: Sql | (() => Sql),
  stripe: Stripe,
  env: Env,
): SharedRequestBudget {
  const mode = stripeModeOf(stripe);
  return new SharedRequestBudget(
    sql,
    `${stripeAccountOf({ stripe })}:${mode}`,
    defaultRequestRate(mode, env),
    1,
    undefined,
    defaultOperationRate(env),
  );
}
