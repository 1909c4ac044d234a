// Money-exact publishing against the local Postgres and the in-process emulator: what Stripe
// will collect equals the bill, for the tenant's own customer, once, under lease expiry, edits,
// tenant moves, fractional usage, foreign installations, replayed errors and session zones.
import assert from "node:assert/strict";
import { dbUrlFromEnv, postgres, type Sql } from "../_shared/db.ts";
import { drainRun, publish } from "../_shared/publish.ts";
import { wasReplayed } from "../_shared/stripe_calls.ts";
import { Stripe } from "../_shared/stripe_client.ts";
import {
  BUDGET,
  customerOf,
  deps,
  finalBill,
  insertUsageBill,
  IO,
  items,
  liveInvoices,
  makeTenant,
  manualBill,
  openWorld,
  run,
  storedInvoice,
  type World,
} from "./publish_helpers.ts";
import { dyingAfterWrite } from "./publish_model.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A client whose add_lines waits `ms` before it is sent (a slow request that lands late). */
function slowAddLines(stripe: Stripe, ms: number, onWait: () => void): Stripe {
  const invoices = new Proxy(stripe.invoices, {
    get(target, prop, recv) {
      if (prop !== "addLines") return Reflect.get(target, prop, recv);
      return async (...args: Parameters<typeof target.addLines>) => {
        onWait();
        await sleep(ms);
        return await target.addLines(...args);
      };
    },
  });
  return new Proxy(stripe, {
    get: (t, p, r) => (p === "invoices" ? invoices : Reflect.get(t, p, r)),
  });
}

async function audit(w: World, kind: string, id: number) {
  return await w.sql<{ action: string; old_id: string | null; new_id: string | null }[]>`
    select action, old_id, new_id from internal.stripe_id_audit
    where object_kind = ${kind} and object_key = ${String(id)} order by id`;
}

Deno.test({
  name: "a lease that expires during a slow add_lines: the second worker replays, lines once",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const tenant = await makeTenant(w.sql);
      const bill = await manualBill(w.sql, tenant, 10_000, "2026-10-01", "2026-10-31");
      const first = await publish(deps(w, "w0"), { month: "2026-10", tenants: [tenant] }, {
        ...BUDGET,
        budgetMs: 0,
      });
      let waiting!: () => void;
      const inFlight = new Promise<void>((r) => waiting = r);
      const slow = drainRun(
        deps(w, "slow", slowAddLines(w.stripe, 1_500, () => waiting())),
        first.run_id,
        { budgetMs: 60_000 },
      );
      // While the slow worker's add_lines is in flight its lease runs out, and another worker
      // takes the item over.
      await inFlight;
      await w.sql`update internal.publish_run_items set lease_expires_at = now() - interval '1 s'
        where run_id = ${first.run_id}::uuid`;
      const second = await drainRun(deps(w, "second"), first.run_id, { budgetMs: 60_000 });
      await slow;
      assert.equal(second.processed, 1, "the second worker took the expired item");
      const id = await storedInvoice(w.sql, "manual", bill);
      const inv = await w.stripe.invoices.retrieve(id!);
      assert.equal(inv.lines.data.length, 1, "the line is on the invoice once");
      assert.equal(inv.total, 10_000, "$100, not $200");
      // The second worker found the draft linked and finished the lines: its add replayed the
      // slow worker's (or the slow one's replayed the second's), so either way they are there once.
      const its = await items(w.sql, first.run_id);
      assert.ok(["created", "updated"].includes(its[0].outcome ?? ""), JSON.stringify(its));
      assert.equal((await liveInvoices(w, (await customerOf(w.sql, tenant))!)).length, 1);
    } finally {
      await w.close();
    }
  },
});

Deno.test({
  name: "a bill corrected under the minimum: its draft is deleted and released, not left to send",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const tenant = await makeTenant(w.sql);
      const bill = await manualBill(w.sql, tenant, 10_000, "2026-10-01", "2026-10-31");
      await run(w, "2026-10", [tenant]);
      const id = (await storedInvoice(w.sql, "manual", bill))!;
      await w.sql`update internal.manual_bills set usd_cents = 30 where id = ${bill}`;
      const again = await run(w, "2026-10", [tenant]);
      assert.equal(again.items[0].outcome, "skipped");
      assert.equal(again.items[0].reason, "under_minimum");
      assert.match(again.items[0].detail ?? "", new RegExp(`deletes its stale draft ${id}`));
      assert.equal(await storedInvoice(w.sql, "manual", bill), null, "the ID is released");
      await assert.rejects(w.stripe.invoices.retrieve(id), /No such invoice/);
      const trail = await audit(w, "manual", bill);
      assert.deepEqual(trail.at(-1), { action: "release", old_id: id, new_id: null });
      // Corrected back: a new invoice (the released one is never adopted again).
      await w.sql`update internal.manual_bills set usd_cents = 12000 where id = ${bill}`;
      const third = await run(w, "2026-10", [tenant]);
      assert.equal(third.items[0].outcome, "created", JSON.stringify(third.items));
      const next = await storedInvoice(w.sql, "manual", bill);
      assert.notEqual(next, id);
      assert.equal((await w.stripe.invoices.retrieve(next!)).total, 12_000);
    } finally {
      await w.close();
    }
  },
});

Deno.test({
  name: "a drafted bill moved to another tenant is replaced on that tenant's customer, audited",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const a = await makeTenant(w.sql);
      const b = await makeTenant(w.sql);
      const bill = await manualBill(w.sql, a, 10_000, "2026-10-01", "2026-10-31");
      await run(w, "2026-10", [a]);
      const old = (await storedInvoice(w.sql, "manual", bill))!;
      const customerA = await customerOf(w.sql, a);
      await w.sql`update internal.manual_bills set tenant = ${b} where id = ${bill}`;
      const moved = await run(w, "2026-10", [b]);
      assert.equal(moved.items[0].outcome, "replaced", JSON.stringify(moved.items));
      const now = (await storedInvoice(w.sql, "manual", bill))!;
      const customerB = await customerOf(w.sql, b);
      assert.ok(customerB && customerB !== customerA);
      const inv = await w.stripe.invoices.retrieve(now);
      assert.equal(inv.customer, customerB, "the invoice is on B's customer");
      assert.equal(inv.total, 10_000);
      await assert.rejects(w.stripe.invoices.retrieve(old), /No such invoice/);
      assert.equal((await liveInvoices(w, customerA!)).length, 0, "nothing left on A");
      const actions = (await audit(w, "manual", bill)).map((r) => r.action);
      assert.deepEqual(actions.slice(-2), ["tenant_change", "replace"]);
    } finally {
      await w.close();
    }
  },
});

Deno.test({
  name: "fractional usage (100.25 h × 14¢ = 1403.5¢) publishes to the bill's subtotal, once",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const tenant = await makeTenant(w.sql);
      const report = {
        line_items: [
          { description: "Task usage (at $0.14/hour)", count: 100.25, rate: 14, subtotal: 1403.5 },
          { description: "Recurring service charge", count: 1, rate: 5000, subtotal: 5000 },
        ],
        subtotal: 6404,
        processed_data_gb: 3,
      };
      const row = { id: await insertUsageBill(w.sql, tenant, "2026-10", report) };
      const first = await run(w, "2026-10", [tenant]);
      assert.equal(first.items[0].outcome, "created", JSON.stringify(first.items));
      const id = (await storedInvoice(w.sql, "final", Number(row.id)))!;
      const inv = await w.stripe.invoices.retrieve(id);
      assert.equal(inv.total, 6404, "Stripe collects the bill's 6404¢");
      assert.ok(inv.lines.data.some((l) => /100\.25 × \$0\.14/.test(l.description ?? "")));
      const again = await run(w, "2026-10", [tenant]);
      assert.equal(again.items[0].outcome, "unchanged", JSON.stringify(again.items));
    } finally {
      await w.close();
    }
  },
});

Deno.test({
  name: "another installation's invoice for the same bill ID is never adopted",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const customer = await w.emu.control.createCustomer({ name: "restored" });
      const tenant = await makeTenant(w.sql, { customerId: customer.id });
      const bill = await manualBill(w.sql, tenant, 7_000, "2026-10-01", "2026-10-31");
      // What a database reset (its bill IDs restart) left on the shared account.
      const foreign = await w.emu.control.createInvoice({
        customer: customer.id,
        status: "draft",
        metadata: {
          "estuary.dev/bill_id": `manual:${bill}`,
          "estuary.dev/installation": crypto.randomUUID(),
          "estuary.dev/tenant_name": tenant,
          "estuary.dev/invoice_type": "manual",
          "estuary.dev/period_start": "2026-10-01",
          "estuary.dev/period_end": "2026-10-31",
        },
      });
      const r = await run(w, "2026-10", [tenant]);
      assert.equal(r.items[0].outcome, "created", JSON.stringify(r.items));
      const id = await storedInvoice(w.sql, "manual", bill);
      assert.notEqual(id, foreign.id);
      const untouched = await w.stripe.invoices.retrieve(foreign.id);
      assert.equal(untouched.lines.data.length, 0, "the other installation's draft is left alone");
      const inv = await w.stripe.invoices.retrieve(id!);
      const [{ inst }] = await w.sql`select internal.installation_id()::text as inst`;
      assert.equal(inv.metadata?.["estuary.dev/installation"], inst);
      assert.equal(inv.total, 7_000);
    } finally {
      await w.close();
    }
  },
});

/**
 * A client whose first invoice create is answered as Stripe answers a lock timeout once
 * execution began: a 429 saved under the key and replayed (`Idempotent-Replayed: true`) to
 * every retry with that key. Nothing is created under that key.
 */
function replayingLockTimeout(stripe: Stripe, keys: string[]): Stripe {
  const poisoned = new Set<string>();
  const invoices = new Proxy(stripe.invoices, {
    get(target, prop, recv) {
      if (prop !== "create") return Reflect.get(target, prop, recv);
      return (params: Stripe.InvoiceCreateParams, opts?: Stripe.RequestOptions) => {
        const key = opts?.idempotencyKey ?? "";
        keys.push(key);
        if (poisoned.size === 0 || poisoned.has(key)) {
          const replayed = poisoned.has(key);
          poisoned.add(key);
          throw new Stripe.errors.StripeRateLimitError({
            type: "invalid_request_error",
            code: "lock_timeout",
            message: "This object cannot be accessed right now because another API request " +
              "or Stripe process is currently accessing it.",
            statusCode: 429,
            headers: replayed ? { "idempotent-replayed": "true" } : {},
          } as never);
        }
        return target.create(params, opts);
      };
    },
  });
  return new Proxy(stripe, {
    get: (t, p, r) => (p === "invoices" ? invoices : Reflect.get(t, p, r)),
  });
}

Deno.test({
  name: "a replayed lock_timeout: the bill moves on to a fresh key and gets one invoice",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const tenant = await makeTenant(w.sql);
      const bill = await manualBill(w.sql, tenant, 8_000, "2026-10-01", "2026-10-31");
      const keys: string[] = [];
      const r = await publish(
        deps(w, "replay", replayingLockTimeout(w.stripe, keys)),
        { month: "2026-10", tenants: [tenant] },
        BUDGET,
      );
      assert.equal(r.status, "done", JSON.stringify(r));
      const its = await items(w.sql, r.run_id);
      assert.equal(its[0].outcome, "created", JSON.stringify(its));
      assert.equal(new Set(keys).size, 2, `one key replayed, then a fresh one: ${keys}`);
      assert.ok(keys.length <= 3, `the replayed key is not retried over and over: ${keys}`);
      const id = await storedInvoice(w.sql, "manual", bill);
      assert.equal((await w.stripe.invoices.retrieve(id!)).total, 8_000);
      assert.equal((await liveInvoices(w, (await customerOf(w.sql, tenant))!)).length, 1);
    } finally {
      await w.close();
    }
  },
});

Deno.test({
  name: "in a New York session an October usage bill is published as October",
  ...IO,
  async fn() {
    const w = await openWorld();
    // Every session of this pool runs in New York time, as a project whose database default
    // zone was changed would.
    const ny = postgres(dbUrlFromEnv(Deno.env), {
      max: 4,
      prepare: false,
      onnotice: () => {},
      connection: { TimeZone: "America/New_York" },
    }) as unknown as Sql;
    try {
      const tenant = await makeTenant(w.sql);
      await finalBill(w.sql, tenant, "2026-10", [{ description: "Usage", count: 1, rate: 900 }]);
      const [{ tz }] = await ny`select current_setting('TimeZone') as tz`;
      assert.equal(tz, "America/New_York");
      const r = await publish({ ...deps(w), sql: ny }, { month: "2026-10", tenants: [tenant] }, {
        ...BUDGET,
      });
      const its = await items(w.sql, r.run_id);
      assert.equal(r.status, "done", JSON.stringify(its));
      assert.equal(its.length, 1, "October selects its usage bill");
      const inv = await w.stripe.invoices.retrieve(its[0].stripe_invoice_id!);
      assert.equal(inv.metadata?.["estuary.dev/period_start"], "2026-10-01");
      assert.equal(inv.metadata?.["estuary.dev/period_end"], "2026-10-31");
    } finally {
      await ny.end();
      await w.close();
    }
  },
});

Deno.test({
  name: "a dry run writes nothing to Stripe and stores nothing, whatever else it carries",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const tenant = await makeTenant(w.sql);
      const bill = await manualBill(w.sql, tenant, 10_000, "2026-10-01", "2026-10-31");
      const fresh = await makeTenant(w.sql);
      await manualBill(w.sql, fresh, 4_000, "2026-10-01", "2026-10-31");
      await run(w, "2026-10", [tenant]);
      const id = await storedInvoice(w.sql, "manual", bill);
      await w.sql`update internal.manual_bills set usd_cents = 20 where id = ${bill}`;
      const auditOf = () =>
        w.sql`select count(*)::int as n from internal.stripe_id_audit
          where (object_kind = 'manual' and object_key = ${String(bill)})
            or (object_kind = 'tenant' and object_key in (${tenant}, ${fresh}))`;
      const auditBefore = await auditOf();
      w.emu.emulator.calls.reset();
      const r = await publish(deps(w), {
        month: "2026-10",
        tenants: [tenant, fresh],
        dry_run: true,
        recreate_existing: true,
      }, BUDGET);
      assert.equal(r.status, "done");
      const its = await items(w.sql, r.run_id);
      assert.deepEqual(its.map((i) => `${i.outcome}:${i.action}`).sort(), [
        "planned:create",
        "planned:discard",
      ]);
      const calls = w.emu.emulator.calls.summary();
      assert.equal(calls.writes, 0, JSON.stringify(calls));
      assert.equal(await storedInvoice(w.sql, "manual", bill), id, "nothing released");
      assert.equal(await customerOf(w.sql, fresh), null, "no customer stored");
      const auditAfter = await auditOf();
      assert.equal(auditAfter[0].n, auditBefore[0].n, "no audit row: nothing changed");
    } finally {
      await w.close();
    }
  },
});

Deno.test({
  name: "errors Stripe saves and replays (lock_timeout on create, 500 on add_lines): one invoice",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const tenant = await makeTenant(w.sql);
      const bill = await manualBill(w.sql, tenant, 6_500, "2026-10-01", "2026-10-31");
      // The emulator saves both under the request's key, as Stripe does once execution began.
      await w.emu.control.addFault({ route: "POST /v1/invoices", kind: "lock_timeout" });
      await w.emu.control.addFault({
        route: "POST /v1/invoices/:id/add_lines",
        kind: "error",
        status: 500,
      });
      const r = await publish(deps(w), { month: "2026-10", tenants: [tenant] }, BUDGET);
      const its = await items(w.sql, r.run_id);
      assert.equal(r.status, "done", JSON.stringify(its));
      const id = await storedInvoice(w.sql, "manual", bill);
      const inv = await w.stripe.invoices.retrieve(id!);
      assert.equal(inv.total, 6_500);
      assert.equal(inv.lines.data.length, 1);
      assert.equal((await liveInvoices(w, (await customerOf(w.sql, tenant))!)).length, 1);
      const replays = w.emu.emulator.calls.list().filter((c) => c.replayed).length;
      assert.ok(replays >= 1, "Stripe's saved errors were replayed at least once");
    } finally {
      await w.close();
    }
  },
});

Deno.test({
  name: "a crash between create and link, then the bill needs no invoice: the orphan is deleted",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const customer = await w.emu.control.createCustomer({ name: "orphan" });
      const tenant = await makeTenant(w.sql, { customerId: customer.id });
      const bill = await manualBill(w.sql, tenant, 9_000, "2026-10-01", "2026-10-31");
      // Write 1 is the invoice create: it lands, then the worker dies before linking it.
      await publish(deps(w, "dying", dyingAfterWrite(w.stripe, 1)), {
        month: "2026-10",
        tenants: [tenant],
      }, BUDGET);
      assert.equal(await storedInvoice(w.sql, "manual", bill), null);
      assert.equal((await liveInvoices(w, customer.id)).length, 1, "the orphan draft");
      await w.sql`update internal.manual_bills set usd_cents = 10 where id = ${bill}`;
      const r = await run(w, "2026-10", [tenant]);
      assert.equal(r.items[0].outcome, "skipped", JSON.stringify(r.items));
      assert.match(r.items[0].detail ?? "", /deletes the draft in_\w+ an interrupted run left/);
      assert.equal((await liveInvoices(w, customer.id)).length, 0, "nothing left to send");
    } finally {
      await w.close();
    }
  },
});

Deno.test({
  name: "a replayed success is recognised (Idempotent-Replayed), a first answer is not",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const c = await w.emu.control.createCustomer({ name: "replay" });
      const key = `replay-test-${crypto.randomUUID()}`;
      const params = { customer: c.id, auto_advance: false };
      const first = await w.stripe.invoices.create(params, { idempotencyKey: key });
      const second = await w.stripe.invoices.create(params, { idempotencyKey: key });
      assert.equal(second.id, first.id);
      assert.equal(wasReplayed(first), false);
      assert.equal(wasReplayed(second), true);
    } finally {
      await w.close();
    }
  },
});

Deno.test({
  name: "a crash between create and link, then the bill moves tenant: one invoice, on the new one",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const customerA = await w.emu.control.createCustomer({ name: "from" });
      const a = await makeTenant(w.sql, { customerId: customerA.id });
      const b = await makeTenant(w.sql);
      const bill = await manualBill(w.sql, a, 9_500, "2026-10-01", "2026-10-31");
      await publish(deps(w, "dying", dyingAfterWrite(w.stripe, 1)), {
        month: "2026-10",
        tenants: [a],
      }, BUDGET);
      assert.equal((await liveInvoices(w, customerA.id)).length, 1, "the orphan on A");
      await w.sql`update internal.manual_bills set tenant = ${b} where id = ${bill}`;
      const r = await run(w, "2026-10", [b]);
      assert.equal(r.items[0].outcome, "created", JSON.stringify(r.items));
      assert.equal((await liveInvoices(w, customerA.id)).length, 0, "nothing left on A");
      const id = await storedInvoice(w.sql, "manual", bill);
      const inv = await w.stripe.invoices.retrieve(id!);
      assert.equal(inv.customer, await customerOf(w.sql, b));
      assert.equal(inv.total, 9_500);
    } finally {
      await w.close();
    }
  },
});
