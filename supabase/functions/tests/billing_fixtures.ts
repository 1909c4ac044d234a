/**
 * Shared set-up for the billing, webhook and gateway tests: a Stripe emulator and a functions
 * gateway started in-process on free ports, the emulator's webhooks pointed at the gateway, and
 * helpers that make uniquely named tenants, users, grants and bills (tests run in parallel
 * against one database; nothing here deletes what another test made).
 */
import { insertUsageBill } from "./publish_helpers.ts";
import {
  type FunctionsGateway,
  startFunctionsGateway,
} from "../../../dev/functions-gateway/gateway.ts";
import {
  dashboardClient,
  type SupabaseClient,
} from "../../../dev/functions-gateway/supabase_client.ts";
import { mintUserJwt } from "../../../dev/functions-gateway/tokens.ts";
import { type RunningEmulator, startStripeEmulator } from "../../../dev/stripe-emulator/server.ts";
import { createDb, dbUrlFromEnv, type Sql } from "../_shared/db.ts";
import { createStripe, type Stripe } from "../_shared/stripe_client.ts";
import { TEST_STRIPE_ACCOUNT } from "../../../dev/test_account.ts";

/** The SDK and node:http keep timers and sockets beyond one test; the harness closes them. */
export const HARNESS_TEST = { sanitizeOps: false, sanitizeResources: false };

/** Everything a test talks to. */
export interface Harness {
  sql: Sql;
  emu: RunningEmulator;
  /** A Stripe client for the emulator, for setting up objects (not counted as the function's). */
  stripe: Stripe;
  gateway: FunctionsGateway;
  webhookSecret: string;
  close(): Promise<void>;
}

function suffix(): string {
  return crypto.randomUUID().replaceAll("-", "").slice(0, 12);
}

/** Starts emulator and gateway on free ports, wired together. */
export async function startHarness(): Promise<Harness> {
  const dbUrl = dbUrlFromEnv(Deno.env);
  const emu = await startStripeEmulator({ port: 0, accountId: TEST_STRIPE_ACCOUNT });
  const webhookSecret = `whsec_${suffix()}${suffix()}`;
  const gateway = await startFunctionsGateway({
    port: 0,
    dbUrl,
    secrets: {
      STRIPE_SECRET_KEY: "sk_test_emulator",
      STRIPE_API_BASE: emu.url,
      STRIPE_WEBHOOK_SECRET: webhookSecret,
    },
  });
  await emu.control.configureWebhooks({
    url: `${gateway.url}/functions/v1/stripe-webhook`,
    secret: webhookSecret,
    retryDelaysMs: [50],
    maxAttempts: 2,
  });
  const sql = createDb(dbUrl, { max: 2, applicationName: "billing-tests" });
  return {
    sql,
    emu,
    stripe: createStripe({
      secretKey: "sk_test_emulator",
      host: "127.0.0.1",
      port: emu.port,
      protocol: "http",
    }),
    gateway,
    webhookSecret,
    close: async () => {
      await emu.close();
      await gateway.close();
      await sql.end();
    },
  };
}

/** Runs `fn` with a fresh harness and closes it afterwards. */
export function withHarness(fn: (h: Harness) => Promise<void>): () => Promise<void> {
  return async () => {
    const h = await startHarness();
    try {
      await fn(h);
    } finally {
      await h.close();
    }
  };
}

/** A new tenant with billing contact fields; its name is unique, e.g. `t3f9.../`. */
export async function makeTenant(sql: Sql, prefix = "t"): Promise<string> {
  const tenant = `${prefix}${suffix()}/`;
  await sql`insert into public.tenants (tenant, billing_email, billing_name)
    values (${tenant}, ${`billing@${tenant.slice(0, -1)}.example`}, ${`Billing ${tenant}`})`;
  return tenant;
}

/** A new auth user; returns its ID. */
export async function makeUser(sql: Sql): Promise<string> {
  const id = crypto.randomUUID();
  await sql`insert into auth.users (id, aud, role, email)
    values (${id}, 'authenticated', 'authenticated', ${`${id}@users.example`})`;
  return id;
}

/** Grants `capability` on `prefix` to the user. */
export async function grant(
  sql: Sql,
  userId: string,
  prefix: string,
  capability: "read" | "write" | "admin",
): Promise<void> {
  await sql`insert into public.user_grants (user_id, object_role, capability)
    values (${userId}, ${prefix}, ${capability})`;
}

/** Stores the tenant's customer through the audited link function. */
export async function linkCustomer(sql: Sql, tenant: string, customerId: string): Promise<void> {
  const [r] = await sql<{ outcome: string }[]>`
    select outcome from internal.link_tenant_customer(${tenant}, ${customerId}, 'test')`;
  if (r.outcome !== "linked" && r.outcome !== "unchanged") {
    throw new Error(`link ${tenant} -> ${customerId}: ${r.outcome}`);
  }
}

/** A manual bill; returns its stable `manual:<id>`. */
export async function makeManualBill(
  sql: Sql,
  tenant: string,
  bill: { cents: number; start: string; end: string; invoiceId?: string },
): Promise<string> {
  const [row] = await sql<{ id: string }[]>`
    insert into internal.manual_bills (tenant, usd_cents, description, date_start, date_end)
    values (${tenant}, ${bill.cents}, 'test contract', ${bill.start}, ${bill.end})
    returning id::text`;
  if (bill.invoiceId) {
    await sql`select internal.link_bill_invoice('manual', ${row.id}::bigint, ${bill.invoiceId},
      'test')`;
  }
  return `manual:${row.id}`;
}

/** A monthly usage bill; returns its stable `final:<id>`. */
export async function makeFinalBill(
  sql: Sql,
  tenant: string,
  bill: { cents: number; month: string; invoiceId?: string },
): Promise<string> {
  const report = { subtotal: bill.cents, line_items: [] };
  // As upstream writes it: midnight UTC whatever the database's default zone.
  const id = await insertUsageBill(sql, tenant, bill.month.slice(0, 7), report);
  if (bill.invoiceId) {
    await sql`select internal.link_bill_invoice('final', ${id}::bigint, ${bill.invoiceId},
      'test')`;
  }
  return `final:${id}`;
}

/** A signed-in admin of a fresh tenant, with a session token. */
export interface TenantAdmin {
  tenant: string;
  userId: string;
  token: string;
}

/** Makes a tenant and a user holding admin on it. */
export async function makeTenantAdmin(h: Harness, prefix = "t"): Promise<TenantAdmin> {
  const tenant = await makeTenant(h.sql, prefix);
  const userId = await makeUser(h.sql);
  await grant(h.sql, userId, tenant, "admin");
  const token = await mintUserJwt({ sub: userId, projectUrl: h.gateway.url });
  return { tenant, userId, token };
}

/** A supabase-js client as the dashboard builds it, signed in with `token` if given. */
export function client(h: Harness, token?: string): SupabaseClient {
  return dashboardClient(h.gateway.url, h.gateway.publishableKey, { accessToken: token });
}

/** Status and JSON body of `functions.invoke`, whether it succeeded or not. */
export async function invoke(
  c: SupabaseClient,
  name: string,
  body: unknown,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const { data, error, response } = await c.functions.invoke(name, {
    body: body as Record<string, unknown>,
  });
  if (!error) return { status: response?.status ?? 200, body: data };
  const res = (error as { context?: Response }).context;
  if (!(res instanceof Response)) throw error;
  const text = await res.text();
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = { text };
  }
  return { status: res.status, body: parsed };
}

/** A customer in the emulator with the tenant's metadata, stored as the tenant's customer. */
export async function storedCustomer(h: Harness, tenant: string): Promise<string> {
  const c = await h.emu.control.createCustomer({
    name: tenant,
    metadata: { "estuary.dev/tenant_name": tenant },
  });
  await linkCustomer(h.sql, tenant, c.id);
  return c.id as string;
}
