/**
 * The dashboard's billing operations for a signed-in tenant admin, all by stored Stripe ID:
 * setup intent, payment methods (list, make primary, delete), one invoice, the invoice list.
 *
 * POST `{operation, tenant, ...}`. The caller's JWT is verified here (not only by the gateway),
 * authorization is asked of the database as the caller, and the customer comes from the shared
 * resolution, so the dashboard and publishing never create two customers for one tenant.
 */
import { accountBudget } from "../_shared/rate_budget.ts";
import { asCaller, requireTenantAdmin } from "../_shared/as_caller.ts";
import { AuthError, bearerToken, jwtKeysFromEnv, verifyUserJwt } from "../_shared/auth.ts";
import { resolveCustomer } from "../_shared/customers.ts";
import { createDb, dbUrlFromEnv, type Sql } from "../_shared/db.ts";
import {
  type Env,
  type FunctionApp,
  HttpError,
  json,
  readJsonObject,
  withCors,
} from "../_shared/http.ts";
import {
  createTenantSetupIntent,
  deleteTenantPaymentMethod,
  getTenantPaymentMethods,
  setTenantPrimaryPaymentMethod,
} from "../_shared/payment_methods.ts";
import {
  isRetryableStripeError,
  StripeCaller,
  stripeCode,
  stripeStatus,
  StripeThrottledError,
} from "../_shared/stripe_calls.ts";
import { createStripe, stripeConfigFromEnv } from "../_shared/stripe_client.ts";
import {
  AccountGuard,
  envKeyLivemode,
  StripeAccountMismatchError,
} from "../_shared/stripe_account.ts";
import {
  type BillSelector,
  findTenantBill,
  listTenantInvoices,
  retrieveBillInvoice,
} from "../_shared/tenant_invoices.ts";
import {
  isoDateSchema,
  parseOrThrow,
  stripeIdSchema,
  tenantSchema,
  z,
} from "../_shared/validation.ts";

const paymentMethodId = stripeIdSchema("pm");

const requestSchema = z.discriminatedUnion("operation", [
  z.object({ operation: z.literal("setup-intent"), tenant: tenantSchema }),
  z.object({ operation: z.literal("get-tenant-payment-methods"), tenant: tenantSchema }),
  z.object({
    operation: z.literal("set-tenant-primary-payment-method"),
    tenant: tenantSchema,
    payment_method_id: paymentMethodId,
  }),
  z.object({
    operation: z.literal("delete-tenant-payment-method"),
    tenant: tenantSchema,
    payment_method_id: paymentMethodId,
  }),
  z.object({
    operation: z.literal("get-tenant-invoice"),
    tenant: tenantSchema,
    // The stable bill ID from list-tenant-invoices, or upstream's (type, period) key.
    bill_id: z.string().regex(/^(final|manual):[1-9][0-9]*$/, "must look like manual:12")
      .optional(),
    type: z.enum(["final", "manual"]).optional(),
    date_start: isoDateSchema.optional(),
    date_end: isoDateSchema.optional(),
  }),
  z.object({
    operation: z.literal("list-tenant-invoices"),
    tenant: tenantSchema,
    limit: z.number().int().min(1).max(1000).optional(),
  }),
]);

type BillingRequest = z.infer<typeof requestSchema>;
type InvoiceRequest = Extract<BillingRequest, { operation: "get-tenant-invoice" }>;

function billSelector(req: InvoiceRequest): BillSelector {
  if (req.bill_id) return { bill_id: req.bill_id };
  for (const field of ["date_start", "date_end", "type"] as const) {
    if (!req[field]) {
      throw new HttpError(
        400,
        "invalid_request",
        `${field} is required (or bill_id)`,
        req.date_start || req.date_end || req.type ? field : "bill_id",
      );
    }
  }
  return { type: req.type!, date_start: req.date_start!, date_end: req.date_end! };
}

/** Setup intents per tenant per window, shared by every instance (counted in Postgres). */
export interface SetupIntentLimit {
  limit: number;
  windowSeconds: number;
}

function positiveInt(env: Env, name: string, fallback: number): number {
  const raw = env.get(name);
  const n = Number(raw);
  return raw !== undefined && Number.isInteger(n) && n >= 1 ? n : fallback;
}

/** SETUP_INTENT_LIMIT per SETUP_INTENT_WINDOW_SECONDS; 10 an hour unless set. */
export function setupIntentLimitFromEnv(env: Env): SetupIntentLimit {
  return {
    limit: positiveInt(env, "SETUP_INTENT_LIMIT", 10),
    windowSeconds: positiveInt(env, "SETUP_INTENT_WINDOW_SECONDS", 3600),
  };
}

/** Counts the attempt; a 429 with Retry-After when the tenant is past its limit. */
async function takeSetupIntentSlot(
  sql: Sql,
  tenant: string,
  limit: SetupIntentLimit,
): Promise<Response | null> {
  const [{ wait }] = await sql<{ wait: number }[]>`
    select internal.take_setup_intent_slot(${tenant}, ${limit.limit}, ${limit.windowSeconds})
      as wait`;
  if (wait === 0) return null;
  return json(
    {
      error: {
        code: "rate_limited",
        message: `too many setup intents for ${tenant}; try again in ${wait} s`,
        field: "tenant",
      },
    },
    429,
    { "Retry-After": String(wait) },
  );
}

type PaymentRequest = Exclude<
  BillingRequest,
  { operation: "get-tenant-invoice" | "list-tenant-invoices" }
>;

/** The customer-side operations, by the tenant's stored (or adopted, or created) customer. */
async function paymentOperation(
  body: PaymentRequest,
  sql: Sql,
  caller: StripeCaller,
  actor: string,
): Promise<unknown> {
  const deps = { sql, caller, actor };
  if (body.operation === "setup-intent") {
    const { customerId } = await resolveCustomer(deps, body.tenant);
    return { setup_intent: await createTenantSetupIntent(caller, customerId!, body.tenant) };
  }
  // Reading or changing methods never creates a customer; adopting one still stores its ID.
  // A tenant a Search already found no customer for costs no Search (free tiers, page loads).
  let resolved = await resolveCustomer(deps, body.tenant, { dryRun: true, useMissCache: true });
  if (resolved.source === "adopted") resolved = await resolveCustomer(deps, body.tenant);
  const customerId = resolved.customerId;
  if (body.operation === "get-tenant-payment-methods") {
    return customerId
      ? await getTenantPaymentMethods(caller, customerId)
      : { primary: null, payment_methods: [] };
  }
  if (!customerId) {
    throw new HttpError(
      404,
      "payment_method_not_found",
      `no payment method ${body.payment_method_id} for this tenant`,
      "payment_method_id",
    );
  }
  return body.operation === "set-tenant-primary-payment-method"
    ? await setTenantPrimaryPaymentMethod(caller, customerId, body.payment_method_id)
    : await deleteTenantPaymentMethod(caller, customerId, body.payment_method_id);
}

/**
 * Stripe failures the caller may see: busy or down is a 503 to retry (never a silent success);
 * anything else Stripe refused is a 502. Stripe's message stays in the log.
 */
function stripeFailure(err: unknown): HttpError | null {
  if (err instanceof StripeThrottledError || isRetryableStripeError(err)) {
    console.warn(`billing: Stripe unavailable: ${(err as Error).message}`);
    return new HttpError(503, "stripe_unavailable", "Stripe is busy; try again in a moment");
  }
  const status = stripeStatus(err);
  if (status === undefined) return null;
  console.error(
    `billing: Stripe refused (${status} ${stripeCode(err) ?? "-"}): ${(err as Error).message}`,
  );
  return new HttpError(502, "stripe_error", "Stripe refused the request");
}

/** Builds the billing function over `env` (Deno.env when deployed, a map under the gateway). */
export function createApp(env: Env): FunctionApp {
  const keys = jwtKeysFromEnv(env);
  const setupIntentLimit = setupIntentLimitFromEnv(env);
  let sql: Sql | undefined;
  let caller: StripeCaller | undefined;
  const db = () => sql ??= createDb(dbUrlFromEnv(env), { max: 3, applicationName: "billing" });
  // A person is waiting: fewer retries than a publishing run.
  const stripe = () =>
    caller ??= (() => {
      const client = createStripe(stripeConfigFromEnv(env));
      // The account's budget is shared with publishing runs and the CLI.
      return new StripeCaller(client, { maxAttempts: 3, budget: accountBudget(db, client, env) });
    })();
  let guard: AccountGuard | undefined;
  // Start-up check of every invocation that calls Stripe: the key's account is the bound one.
  const checkedStripe = async (): Promise<StripeCaller> => {
    const c = stripe();
    guard ??= new AccountGuard(() => c.stripe, envKeyLivemode(env));
    try {
      await guard.check(db(), "billing");
    } catch (err) {
      if (!(err instanceof StripeAccountMismatchError)) throw err;
      console.error(`billing: refused: ${err.message}`);
      throw new HttpError(503, "misconfigured", "billing is not available right now");
    }
    return c;
  };

  const handle = async (req: Request): Promise<Response> => {
    if (req.method !== "POST") {
      throw new HttpError(405, "method_not_allowed", "use POST with a JSON body");
    }
    const token = bearerToken(req);
    if (!token) throw new HttpError(401, "unauthorized", "a signed-in user is required");
    let user;
    try {
      user = await verifyUserJwt(token, keys);
    } catch (err) {
      if (err instanceof AuthError) throw new HttpError(401, "unauthorized", err.message);
      throw err;
    }
    const body = parseOrThrow(requestSchema, await readJsonObject(req));
    const claims = user.claims;

    // Authorization, and every row the caller is shown, are decided as the caller; only
    // customer resolution (which must read stripe_customer_id) runs on the service side.
    switch (body.operation) {
      case "list-tenant-invoices": {
        const rows = await asCaller(db(), claims, async (tx) => {
          await requireTenantAdmin(tx, body.tenant);
          return await listTenantInvoices(tx, body.tenant, body.limit ?? 100);
        });
        return json({ invoices: rows });
      }
      case "get-tenant-invoice": {
        const selector = billSelector(body);
        const bill = await asCaller(db(), claims, async (tx) => {
          await requireTenantAdmin(tx, body.tenant);
          return await findTenantBill(tx, body.tenant, selector);
        });
        const invoice = await retrieveBillInvoice(
          db(),
          await checkedStripe(),
          bill.stripe_invoice_id,
        );
        return json({ bill_id: bill.bill_id, invoice });
      }
      default: {
        await asCaller(db(), claims, (tx) => requireTenantAdmin(tx, body.tenant));
        if (body.operation === "setup-intent") {
          const limited = await takeSetupIntentSlot(db(), body.tenant, setupIntentLimit);
          if (limited) return limited;
        }
        return json(
          await paymentOperation(body, db(), await checkedStripe(), `billing:${user.sub}`),
        );
      }
    }
  };

  return {
    fetch: withCors("billing", async (req) => {
      try {
        return await handle(req);
      } catch (err) {
        throw stripeFailure(err) ?? err;
      }
    }),
    close: async () => {
      await sql?.end();
    },
  };
}
