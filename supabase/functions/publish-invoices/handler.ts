/**
 * publish-invoices: plans or publishes a month's bills, draining the durable run within a time
 * budget. Callable only with the service role's credential or the scheduler's own secret; the
 * gateway lets the request through (verify_jwt = false), so the check happens here.
 */
import { createDb, dbUrlFromEnv, type Sql } from "../_shared/db.ts";
import {
  type Env,
  type FunctionApp,
  HttpError,
  json,
  readJsonObject,
  withCors,
} from "../_shared/http.ts";
import { publish, RunConflictError, UnknownTenantsError } from "../_shared/publish.ts";
import { defaultOperationRate, defaultRequestRate, stripeModeOf } from "../_shared/rate_budget.ts";
import {
  AccountGuard,
  envKeyLivemode,
  StripeAccountMismatchError,
  StripeKeyFormatError,
} from "../_shared/stripe_account.ts";
import { describeStripeError } from "../_shared/stripe_errors.ts";
import { createStripe, type Stripe, stripeConfigFromEnv } from "../_shared/stripe_client.ts";
import { monthSchema, parseOrThrow, tenantSchema, z } from "../_shared/validation.ts";

/** The request body. Unknown fields are refused, so a typo never silently means "all tenants". */
export const publishBodySchema = z.strictObject({
  month: monthSchema,
  tenants: z.array(tenantSchema).min(1, "must list at least one tenant").max(10_000).optional(),
  dry_run: z.boolean().optional(),
  recreate_existing: z.boolean().optional(),
  run_id: z.uuid("must be a UUID").optional(),
});

/** Default time budget, below the 150 s wall clock of the free plan. */
export const DEFAULT_BUDGET_MS = 120_000;

const encoder = new TextEncoder();

/** Compares two secrets in constant time (over their SHA-256 digests, so length leaks nothing). */
export async function secretEquals(given: string, expected: string): Promise<boolean> {
  const [a, b] = await Promise.all([
    crypto.subtle.digest("SHA-256", encoder.encode(given)),
    crypto.subtle.digest("SHA-256", encoder.encode(expected)),
  ]);
  const x = new Uint8Array(a);
  const y = new Uint8Array(b);
  let diff = 0;
  for (let i = 0; i < x.length; i++) diff |= x[i] ^ y[i];
  return diff === 0;
}

function secretKeys(env: Env): string[] {
  const raw = env.get("SUPABASE_SECRET_KEYS");
  if (!raw) return [];
  try {
    const parsed = JSON.parse(raw);
    return parsed && typeof parsed === "object"
      ? Object.values(parsed).filter((v): v is string => typeof v === "string" && v !== "")
      : [];
  } catch {
    return [];
  }
}

/**
 * Who may call: `Authorization: Bearer <SUPABASE_SERVICE_ROLE_KEY>`, `apikey: <a secret key>`, or
 * `x-scheduler-secret: <PUBLISH_INVOICES_SECRET>`. Every configured credential is compared (no
 * early exit); returns the kind that matched, or null.
 */
export async function authorize(req: Request, env: Env): Promise<string | null> {
  const checks: Promise<[string, boolean]>[] = [];
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.get("authorization") ?? "")?.[1];
  const serviceKey = env.get("SUPABASE_SERVICE_ROLE_KEY");
  if (bearer && serviceKey) {
    checks.push(secretEquals(bearer, serviceKey).then((ok) => ["service_role", ok]));
  }
  const apikey = req.headers.get("apikey");
  if (apikey) {
    for (const key of secretKeys(env)) {
      checks.push(secretEquals(apikey, key).then((ok) => ["secret_key", ok]));
    }
  }
  const scheduler = req.headers.get("x-scheduler-secret");
  const schedulerSecret = env.get("PUBLISH_INVOICES_SECRET");
  if (scheduler && schedulerSecret) {
    checks.push(secretEquals(scheduler, schedulerSecret).then((ok) => ["scheduler", ok]));
  }
  const results = await Promise.all(checks);
  return results.find(([, ok]) => ok)?.[0] ?? null;
}

/** Dependencies tests may inject; otherwise built from the environment on first use. */
export interface PublishAppDeps {
  sql?: Sql;
  stripe?: Stripe;
  worker?: string;
  budgetMs?: number;
}

function dbError(err: unknown): HttpError | null {
  if (err instanceof UnknownTenantsError) {
    return new HttpError(400, "unknown_tenants", err.message, "tenants");
  }
  if (err instanceof RunConflictError) {
    return new HttpError(409, "run_in_progress", err.message, "run_id");
  }
  const e = err as { code?: string; column_name?: string; message?: string };
  if (e?.code === "22023") {
    return new HttpError(400, "invalid_request", e.message ?? "invalid request", e.column_name);
  }
  return null;
}

/** Builds the function's handler. */
export function createPublishApp(env: Env, deps: PublishAppDeps = {}): FunctionApp {
  let sql = deps.sql;
  let stripe = deps.stripe;
  const ownsSql = !deps.sql;
  const budgetMs = deps.budgetMs ??
    (Number(env.get("PUBLISH_TIME_BUDGET_MS")) || DEFAULT_BUDGET_MS);
  let guard: AccountGuard | undefined;
  const fetch = withCors("publish-invoices", async (req) => {
    if (req.method !== "POST") throw new HttpError(405, "method_not_allowed", "use POST");
    const caller = await authorize(req, env);
    if (!caller) {
      throw new HttpError(
        401,
        "unauthorized",
        "a service-role key or the scheduler secret is required",
      );
    }
    // Validate before touching anything: bad input writes nothing.
    const body = parseOrThrow(publishBodySchema, await readJsonObject(req));
    sql ??= createDb(dbUrlFromEnv(env), { max: 3, applicationName: "publish-invoices" });
    // Start-up checks, before anything is enqueued: the key's format, then its account.
    let livemode: boolean | undefined;
    try {
      livemode = envKeyLivemode(env);
    } catch (err) {
      if (!(err instanceof StripeKeyFormatError)) throw err;
      throw new HttpError(500, "misconfigured", err.message);
    }
    const client = stripe ??= createStripe(stripeConfigFromEnv(env));
    guard ??= new AccountGuard(() => client, livemode);
    try {
      await guard.check(sql, `publish-invoices (${caller})`);
    } catch (err) {
      if (err instanceof StripeAccountMismatchError) {
        throw new HttpError(503, "stripe_account_mismatch", err.message);
      }
      throw new HttpError(
        503,
        "stripe_unavailable",
        `cannot tell which Stripe account the key belongs to: ${
          describeStripeError("GET /v1/account", err)
        }`,
      );
    }
    const worker = deps.worker ?? `fn-${crypto.randomUUID().slice(0, 8)}`;
    try {
      // A run reserves from the account's budget at its rate: by default nearly Stripe's limit.
      const request = { ...body, rate_per_second: defaultRequestRate(stripeModeOf(client), env) };
      const rateBudget = { operationRatePerSecond: defaultOperationRate(env) };
      const result = await publish({ sql, stripe, worker, rateBudget }, request, {
        budgetMs,
        actor: `publish-invoices (${caller})`,
      });
      return json(result, result.status === "pending" ? 202 : 200);
    } catch (err) {
      throw dbError(err) ?? err;
    }
  });
  return {
    fetch,
    close: async () => {
      if (ownsSql && sql) await sql.end();
    },
  };
}
