/** What every command needs: the database, Stripe, who is acting, and how to print. */
import { accountBudget } from "../supabase/functions/_shared/rate_budget.ts";
import {
  createDb,
  dbUrlFromEnv,
  LOCAL_DB_URL,
  type Sql,
} from "../supabase/functions/_shared/db.ts";
import { StripeCaller } from "../supabase/functions/_shared/stripe_calls.ts";
import {
  createStripe,
  type StripeConfig,
  stripeConfigFromEnv,
} from "../supabase/functions/_shared/stripe_client.ts";

/** The local emulator's address, used on the local stack when no Stripe key is configured. */
export const LOCAL_EMULATOR_BASE = "http://127.0.0.1:12111";

/** Resources and settings of one CLI invocation. */
export interface CliContext {
  sql: Sql;
  caller: StripeCaller;
  /** Recorded in audit rows and run reports. */
  actor: string;
  json: boolean;
  /** Where people-facing lines go (stdout, or stderr when --json owns stdout). */
  say: (line?: string) => void;
  /** Requests per second this process may send to Stripe. */
  stripeRate: number;
  close(): Promise<void>;
}

/** Env access, so tests can pass their own. */
export interface Env {
  get(name: string): string | undefined;
}

function positiveNumber(env: Env, name: string, fallback: number): number {
  const raw = env.get(name);
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) {
    throw new Error(`${name} must be a positive number, got "${raw}"`);
  }
  return n;
}

/** Stripe settings from the environment; the local emulator when on the local stack without a key. */
export function stripeConfig(env: Env, dbUrl: string): { config: StripeConfig; note?: string } {
  if (env.get("STRIPE_SECRET_KEY")) return { config: stripeConfigFromEnv(env) };
  if (dbUrl !== LOCAL_DB_URL) {
    throw new Error("STRIPE_SECRET_KEY is not set (required when SUPABASE_DB_URL is set)");
  }
  const base = new URL(env.get("STRIPE_API_BASE") ?? LOCAL_EMULATOR_BASE);
  return {
    config: {
      secretKey: "sk_test_emulator",
      host: base.hostname,
      port: Number(base.port || 80),
      protocol: base.protocol === "https:" ? "https" : "http",
    },
    note: `no STRIPE_SECRET_KEY: using the local Stripe emulator at ${base.origin}`,
  };
}

/** Builds the context from the environment. */
export function createContext(env: Env, options: { json: boolean }): CliContext {
  const dbUrl = dbUrlFromEnv(env);
  const { config, note } = stripeConfig(env, dbUrl);
  const live = config.secretKey.startsWith("sk_live_") || config.secretKey.startsWith("rk_live_");
  // Stripe allows 100 req/s live and 25 in test mode, 20 Search/s; keep headroom.
  const stripeRate = positiveNumber(env, "STRIPE_RATE_LIMIT", live ? 90 : 22);
  const searchRate = positiveNumber(env, "STRIPE_SEARCH_RATE_LIMIT", 18);
  const sql = createDb(dbUrl, { max: 8, applicationName: "billing-cli" });
  const client = createStripe(config);
  const caller = new StripeCaller(client, {
    ratePerSecond: stripeRate,
    searchRatePerSecond: searchRate,
    // The account's budget is shared with publishing runs and the dashboard.
    budget: accountBudget(sql, client, env),
  });
  const say = options.json ? (line = "") => console.error(line) : (line = "") => console.log(line);
  if (note) console.error(note);
  return {
    sql,
    caller,
    actor: env.get("BILLING_ACTOR") ?? `cli:${env.get("USER") ?? "operator"}`,
    json: options.json,
    say,
    stripeRate,
    close: () => sql.end({ timeout: 5 }),
  };
}
