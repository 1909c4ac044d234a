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
  reserve(): Promise<void>;
}

/** Stripe's own limits per account and mode (requests per second). */
export const STRIPE_LIMITS = { live: 100, test: 25, search: 20 } as const;

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
  ) {
    if (!(ratePerSecond > 0)) throw new Error("ratePerSecond must be positive");
  }

  async reserve(): Promise<void> {
    // A postgres.js client is itself a function: a lazy getter is told apart by having no begin.
    const sql = typeof this.sql === "function" && !("begin" in this.sql)
      ? this.sql()
      : this.sql as Sql;
    const [row] = await sql<{ wait: number }[]>`
      select internal.reserve_stripe_request(${this.bucket}, ${this.ratePerSecond}::float8,
        ${this.burst}::float8) as wait`;
    const wait = Number(row.wait);
    if (wait > 0) await this.sleep(wait);
  }
}

/**
 * The budget every caller outside a run (dashboard, CLI) reserves from: the account's bucket
 * at `STRIPE_RATE_LIMIT` (default a little under Stripe's limit for the key's mode).
 */
export function accountBudget(
  sql: Sql | (() => Sql),
  stripe: Stripe,
  env: { get(name: string): string | undefined },
): SharedRequestBudget {
  const mode = stripeModeOf(stripe);
  const configured = Number(env.get("STRIPE_RATE_LIMIT"));
  const rate = configured > 0 ? configured : STRIPE_LIMITS[mode] * 0.96;
  return new SharedRequestBudget(sql, `${stripeAccountOf({ stripe })}:${mode}`, rate);
}
