/**
 * What every command needs: the database, Stripe, who is acting, and how to print. Opening it
 * checks the environment before anything is done: the key's format (locally), the database
 * (reachable, migrated) and the Stripe account (the one this database is bound to), then prints
 * a banner naming the database and the account/mode.
 */
import { createDb, dbUrlFromEnv, type Sql } from "../supabase/functions/_shared/db.ts";
import { accountBudget, accountRateFor } from "../supabase/functions/_shared/rate_budget.ts";
import { StripeCaller } from "../supabase/functions/_shared/stripe_calls.ts";
import {
  createStripe,
  type StripeConfig,
  stripeConfigFromEnv,
} from "../supabase/functions/_shared/stripe_client.ts";
import {
  type AccountBinding,
  accountLabel,
  keyLivemode,
  requireBoundAccount,
  retrieveStripeAccount,
  type StripeAccountRef,
} from "../supabase/functions/_shared/stripe_account.ts";
import { describeStripeError } from "../supabase/functions/_shared/stripe_errors.ts";
import { EXIT } from "./exit_codes.ts";

/** The local emulator's address, used on the local stack when no Stripe key is configured. */
export const LOCAL_EMULATOR_BASE = "http://127.0.0.1:12111";

/** Resources and settings of one CLI invocation. */
export interface CliContext {
  sql: Sql;
  /** Stripe, for commands that declare they need it (others get an error on use). */
  caller: StripeCaller;
  /** The account the key belongs to, checked against the binding (null: no Stripe needed). */
  account: StripeAccountRef | null;
  /** Where the database is, without credentials: `host:port/dbname`. */
  database: string;
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

/** The environment is wrong (database, migrations, key, account): nothing was done. */
export class EnvironmentError extends Error {
  readonly exitCode = EXIT.refused;
  constructor(message: string) {
    super(message);
    this.name = "EnvironmentError";
  }
}

function positiveNumber(env: Env, name: string, fallback: number): number {
  const raw = env.get(name);
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) {
    throw new EnvironmentError(`${name} must be a positive number, got "${raw}"`);
  }
  return n;
}

/** Parses a `.env` file: KEY=VALUE lines, # comments, optional quotes. */
export function parseDotEnv(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!m) continue;
    let value = m[2];
    const quoted = /^(["'])(.*)\1$/.exec(value);
    if (quoted) value = quoted[2];
    else value = value.replace(/\s+#.*$/, "");
    out[m[1]] = value;
  }
  return out;
}

/**
 * The process environment over the repository's `.env` (as `.env.example` says: copy it to
 * `.env`). Variables already set win; empty values count as unset.
 */
export function envWithDotEnv(env: Env, path: string): Env {
  let file: Record<string, string> = {};
  try {
    file = parseDotEnv(Deno.readTextFileSync(path));
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return {
    get(name) {
      const value = env.get(name) ?? file[name];
      return value === "" ? undefined : value;
    },
  };
}

/** `host:port/dbname` of a connection string: never the user's password. */
export function describeDbUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || "5432"}${u.pathname || "/postgres"}`;
  } catch {
    return "(SUPABASE_DB_URL is not a valid postgresql:// URL)";
  }
}

/** Stripe settings from the environment; the local emulator when on the local stack without a key. */
export function stripeConfig(env: Env): { config: StripeConfig; note?: string } {
  const key = env.get("STRIPE_SECRET_KEY");
  if (key) {
    try {
      keyLivemode(key);
    } catch (err) {
      throw new EnvironmentError((err as Error).message);
    }
    return { config: stripeConfigFromEnv(env) };
  }
  if (env.get("SUPABASE_DB_URL")) {
    throw new EnvironmentError(
      "STRIPE_SECRET_KEY is not set (required when SUPABASE_DB_URL is set; see .env.example)",
    );
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

function pgCode(err: unknown): string | undefined {
  return typeof err === "object" && err !== null && "code" in err
    ? String((err as { code: unknown }).code)
    : undefined;
}

/** Connects and checks that the migrations are applied; errors say what to do. */
async function openDatabase(url: string, where: string): Promise<Sql> {
  const sql = createDb(url, { max: 8, applicationName: "billing-cli" });
  let migrated: boolean;
  try {
    const [row] = await sql<{ migrated: boolean }[]>`
      select to_regclass('internal.stripe_account_binding') is not null
        and to_regclass('internal.publish_runs') is not null as migrated`;
    migrated = row.migrated;
  } catch (err) {
    await sql.end({ timeout: 1 }).catch(() => {});
    const code = pgCode(err);
    const why = code === "28P01" || code === "28000"
      ? "the password or user was refused"
      : code === "3D000"
      ? "the database does not exist"
      : `${(err as Error).message}`.replace(/postgres(ql)?:\/\/[^\s]+/g, "(url)");
    throw new EnvironmentError(
      `cannot connect to the database at ${where} (SUPABASE_DB_URL): ${why}. ` +
        "Check SUPABASE_DB_URL (unset means the local stack: bash dev/stack.sh start).",
    );
  }
  if (!migrated) {
    await sql.end({ timeout: 1 }).catch(() => {});
    throw new EnvironmentError(
      `the database at ${where} is not migrated (internal.publish_runs or ` +
        "internal.stripe_account_binding is missing): run the migrations first, " +
        'e.g. supabase migration up --db-url "$SUPABASE_DB_URL" (see docs/deploy.md)',
    );
  }
  return sql;
}

/** Builds the context: checks the environment, then prints the banner. */
export async function openContext(
  env: Env,
  options: { json: boolean; needsStripe: boolean },
): Promise<CliContext> {
  const dbUrl = dbUrlFromEnv(env);
  const database = describeDbUrl(dbUrl);
  const actor = env.get("BILLING_ACTOR") ?? `cli:${env.get("USER") ?? "operator"}`;
  const say = options.json ? (line = "") => console.error(line) : (line = "") => console.log(line);
  const stripe = options.needsStripe ? stripeConfig(env) : null;
  const live = stripe ? keyLivemode(stripe.config.secretKey) : false;
  // Stripe allows 100 req/s live and 25 in test mode, 20 Search/s; one budget is shared by
  // every caller of the account, so only a little headroom is kept.
  const stripeRate = positiveNumber(
    env,
    "STRIPE_RATE_LIMIT",
    accountRateFor(live ? "live" : "test"),
  );
  const searchRate = positiveNumber(env, "STRIPE_SEARCH_RATE_LIMIT", 18);
  const sql = await openDatabase(dbUrl, database);
  let caller: StripeCaller | null = null;
  let account: StripeAccountRef | null = null;
  let binding: AccountBinding | null = null;
  try {
    if (stripe) {
      if (stripe.note) console.error(stripe.note);
      const client = createStripe(stripe.config);
      caller = new StripeCaller(client, {
        ratePerSecond: stripeRate,
        searchRatePerSecond: searchRate,
        // The account's budget is shared with publishing runs and the dashboard.
        budget: accountBudget(sql, client, Deno.env),
      });
      try {
        account = await retrieveStripeAccount(caller.stripe, live);
      } catch (err) {
        throw new EnvironmentError(
          `cannot tell which Stripe account STRIPE_SECRET_KEY belongs to: ` +
            describeStripeError("GET /v1/account", err),
        );
      }
      try {
        binding = await requireBoundAccount(sql, account, actor);
      } catch (err) {
        if ((err as Error).name === "StripeAccountMismatchError") {
          throw new EnvironmentError((err as Error).message);
        }
        throw err;
      }
    }
  } catch (err) {
    await sql.end({ timeout: 1 }).catch(() => {});
    throw err;
  }
  const stripePart = account
    ? `Stripe ${accountLabel(account)}${
      binding?.outcome === "bound" ? " (now bound to this database)" : ""
    }`
    : "Stripe not used";
  console.error(`database ${database} · ${stripePart}`);
  return {
    sql,
    get caller(): StripeCaller {
      if (!caller) throw new Error("this command does not use Stripe");
      return caller;
    },
    account,
    database,
    actor,
    json: options.json,
    say,
    stripeRate,
    close: () => sql.end({ timeout: 5 }),
  };
}
