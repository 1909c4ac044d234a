/**
 * Shared set-up for the publish integration tests: the local Postgres (dev/stack.sh start), an
 * in-process Stripe emulator, and uniquely named tenants and bills so parallel tests never meet.
 */
import { createDb, dbUrlFromEnv, type Sql } from "../_shared/db.ts";
import { type EngineDeps, publish } from "../_shared/publish.ts";
import assert from "node:assert/strict";
import type { Stripe } from "../_shared/stripe_client.ts";
import { type RunningEmulator, startStripeEmulator } from "../../../dev/stripe-emulator/server.ts";
import { emulatorClient } from "../../../dev/stripe-emulator/test_support.ts";
import { TEST_STRIPE_ACCOUNT } from "../../../dev/test_account.ts";

export interface World {
  sql: Sql;
  emu: RunningEmulator;
  stripe: Stripe;
  deps(worker?: string, stripe?: Stripe): EngineDeps;
  close(): Promise<void>;
}

export async function openWorld(): Promise<World> {
  const sql = createDb(dbUrlFromEnv(Deno.env), { max: 8 });
  const emu = await startStripeEmulator({ port: 0, accountId: TEST_STRIPE_ACCOUNT });
  const stripe = emulatorClient(emu.port);
  return {
    sql,
    emu,
    stripe,
    deps: (worker = `t-${crypto.randomUUID().slice(0, 8)}`, s = stripe) => ({
      sql,
      stripe: s,
      worker,
      callerOptions: { baseDelayMs: 5, maxDelayMs: 20 },
      // Tests that count calls exactly must not meet a keep-up read of the event log because
      // the machine was slow; tests of the log read it through the run's own pass.
      eventFeed: { keepUpSeconds: 3600 },
    }),
    async close() {
      await sql.end();
      await emu.close();
    },
  };
}

/** Deno test options for tests holding pools and servers open between steps. */
export const IO = { sanitizeOps: false, sanitizeResources: false };

export function uniqueTenant(prefix = "pub"): string {
  return `${prefix}${crypto.randomUUID().replaceAll("-", "").slice(0, 10)}/`;
}

export async function makeTenant(
  sql: Sql,
  opts: { prefix?: string; trialStart?: string | null; customerId?: string } = {},
): Promise<string> {
  const tenant = uniqueTenant(opts.prefix);
  await sql`insert into public.tenants (tenant, trial_start, billing_email)
    values (${tenant}, ${opts.trialStart === undefined ? "2026-01-01" : opts.trialStart},
      ${"billing@" + tenant.slice(0, -1) + ".example"})`;
  if (opts.customerId) {
    await sql`select internal.link_tenant_customer(${tenant}, ${opts.customerId}, 'test')`;
  }
  return tenant;
}

export interface Line {
  description: string;
  count: number;
  rate: number;
}

export async function finalBill(
  sql: Sql,
  tenant: string,
  month: string,
  lines: Line[],
  dataGb = 10,
): Promise<number> {
  const items = lines.map((l) => ({ ...l, subtotal: Math.round(l.count * l.rate) }));
  const subtotal = items.reduce((s, l) => s + l.subtotal, 0);
  const report = { line_items: items, subtotal, processed_data_gb: dataGb };
  return await insertUsageBill(sql, tenant, month, report);
}

/**
 * A usage bill row as upstream's month-end job writes it: billed_month at midnight UTC, from a
 * UTC session (the table's check truncates in the session's zone), whatever the database's
 * default zone is.
 */
export async function insertUsageBill(
  sql: Sql,
  tenant: string,
  month: string,
  report: Record<string, unknown>,
): Promise<number> {
  const id = await sql.begin(async (tx) => {
    await tx`set local timezone = 'UTC'`;
    const [row] = await tx<{ id: string }[]>`
      insert into internal.billing_historicals (tenant, billed_month, report)
      values (${tenant}, ${month + "-01 00:00:00+00"}::timestamptz, ${tx.json(report as never)})
      returning id::text`;
    return row.id;
  });
  return Number(id);
}

export async function manualBill(
  sql: Sql,
  tenant: string,
  cents: number,
  start: string,
  end: string,
  description = "Contract",
): Promise<number> {
  const [row] = await sql<{ id: string }[]>`
    insert into internal.manual_bills (tenant, usd_cents, description, date_start, date_end)
    values (${tenant}, ${cents}, ${description}, ${start}, ${end}) returning id::text`;
  return Number(row.id);
}

export async function storedInvoice(
  sql: Sql,
  kind: "final" | "manual",
  id: number,
): Promise<string | null> {
  const rows = kind === "final"
    ? await sql<{ s: string | null }[]>`
      select stripe_invoice_id as s from internal.billing_historicals where id = ${id}`
    : await sql<{ s: string | null }[]>`
      select stripe_invoice_id as s from internal.manual_bills where id = ${id}`;
  return rows[0]?.s ?? null;
}

export async function customerOf(sql: Sql, tenant: string): Promise<string | null> {
  const [row] = await sql<{ c: string | null }[]>`
    select stripe_customer_id as c from public.tenants where tenant = ${tenant}`;
  return row?.c ?? null;
}

/** The emulator's live (not deleted) invoices of a customer. */
export async function liveInvoices(w: World, customer: string) {
  const state = await w.emu.control.state();
  return state.invoices.filter((i) => i.customer === customer && !i.deleted);
}

/** Items of a run, by bill. */
export async function items(sql: Sql, runId: string) {
  return await sql<
    {
      bill: string;
      state: string;
      outcome: string | null;
      action: string | null;
      reason: string | null;
      detail: string | null;
      error: string | null;
      stripe_invoice_id: string | null;
    }[]
  >`select bill_kind || ':' || bill_id as bill, state, outcome, action, reason, detail, error,
      stripe_invoice_id
    from internal.publish_run_items where run_id = ${runId}::uuid order by item_no`;
}

/** The time budget tests give a publish call. */
export const BUDGET = { budgetMs: 60_000, actor: "test" };

// Each world is its own Stripe account: its invoice index must not meet another emulator's (a
// later emulator may reuse a port, and some tests move the clock a day ahead).
const accounts = new WeakMap<World, string>();

/** Engine deps for a world, on the world's own Stripe account label. */
export function deps(w: World, worker?: string, stripe?: Stripe): EngineDeps {
  let account = accounts.get(w);
  if (!account) accounts.set(w, account = `test:${crypto.randomUUID()}`);
  return { ...w.deps(worker, stripe), stripeAccount: account };
}

/** Publishes a month for some tenants to the end; the run must end `status` (default done). */
export async function run(
  w: World,
  month: string,
  tenants: string[],
  extra = {},
  status: "done" | "warned" = "done",
) {
  const r = await publish(deps(w), { month, tenants, ...extra }, BUDGET);
  assert.equal(r.status, status, JSON.stringify(r));
  return { runId: r.run_id, items: await items(w.sql, r.run_id) };
}
