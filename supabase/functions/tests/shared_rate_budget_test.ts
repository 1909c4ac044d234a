/**
 * One request budget per Stripe account: two runs of two months at once (a CLI run and the
 * scheduled run, each with its own workers) plus dashboard calls, against an emulator that
 * answers 429 past the account's limit. Per-run budgets add up past the limit; one shared
 * budget does not.
 */
import assert from "node:assert/strict";
import { publish } from "../_shared/publish.ts";
import { SharedRequestBudget, stripeModeOf } from "../_shared/rate_budget.ts";
import { StripeCaller } from "../_shared/stripe_calls.ts";
import { stripeAccountOf } from "../_shared/engine.ts";
import { BUDGET, deps, finalBill, IO, makeTenant, openWorld } from "./publish_helpers.ts";

const LINES = [{ description: "Data processing (at $0.50/GB)", count: 412.5, rate: 50 }];
const LIMIT = 10;

Deno.test({
  name: "a CLI run, the scheduled run and the dashboard share the account's budget: no 429",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const tenants: string[] = [];
      for (let i = 0; i < 10; i++) {
        const c = await w.emu.control.createCustomer({ name: `shared${i}` });
        const t = await makeTenant(w.sql, { customerId: c.id });
        await finalBill(w.sql, t, "2026-09", LINES);
        await finalBill(w.sql, t, "2026-10", LINES);
        tenants.push(t);
      }
      await w.emu.control.setRateLimits({ globalPerSecond: LIMIT, burstSeconds: 1 });
      w.emu.emulator.calls.reset();
      const cli = deps(w, "cli");
      const scheduled = deps(w, "scheduled");
      const bucket = `${stripeAccountOf(cli)}:${stripeModeOf(cli.stripe)}`;
      // The dashboard: its own caller on the same account's budget.
      const dashboard = new StripeCaller(w.stripe, {
        budget: new SharedRequestBudget(w.sql, bucket, LIMIT),
        maxAttempts: 1,
      });
      const customers = await w.sql<{ c: string }[]>`select stripe_customer_id as c
        from public.tenants where tenant = any(${tenants}::text[])`;
      let dashboardCalls = 0;
      const dashboardErrors: string[] = [];
      let done = false;
      const browsing = (async () => {
        while (!done) {
          await dashboard.call(
            "GET /v1/customers/:id",
            (s) => s.customers.retrieve(customers[dashboardCalls % customers.length].c),
          ).catch((err) => dashboardErrors.push(String(err)));
          dashboardCalls++;
        }
      })();
      const opts = { tenants, rate_per_second: LIMIT };
      const [a, b] = await Promise.all([
        publish(cli, { month: "2026-09", ...opts }, BUDGET),
        publish(scheduled, { month: "2026-10", ...opts }, BUDGET),
      ]).finally(() => done = true);
      await browsing;
      assert.equal(a.status, "done", JSON.stringify(a));
      assert.equal(b.status, "done", JSON.stringify(b));
      const s = w.emu.emulator.calls.summary();
      assert.ok(dashboardCalls > 0);
      assert.deepEqual(dashboardErrors, [], "the dashboard was never throttled");
      assert.equal(s.byRoute["POST /v1/invoices"], 20, JSON.stringify(s));
      assert.equal(s.byStatus["429"] ?? 0, 0, JSON.stringify(s));
    } finally {
      await w.close();
    }
  },
});

Deno.test({
  name: "each named operation keeps to its own limit: no endpoint-rate 429 (and without, some)",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const tenants: string[] = [];
      for (let i = 0; i < 12; i++) {
        const c = await w.emu.control.createCustomer({ name: `op${i}` });
        const t = await makeTenant(w.sql, { customerId: c.id });
        await finalBill(w.sql, t, "2026-09", LINES);
        await finalBill(w.sql, t, "2026-10", LINES);
        tenants.push(t);
      }
      // The account's limit is far off; each operation is allowed 4 requests a second.
      await w.emu.control.setRateLimits({ endpointPerSecond: 4, burstSeconds: 1 });
      const throttled = async (month: string, operationRatePerSecond: number | null) => {
        w.emu.emulator.calls.reset();
        const d = { ...deps(w, `op-${month}`), rateBudget: { operationRatePerSecond } };
        const r = await publish(d, { month, tenants, rate_per_second: 50 }, {
          ...BUDGET,
          batchSize: 1,
        });
        assert.equal(r.status, "done", JSON.stringify(r));
        const s = w.emu.emulator.calls.summary();
        const throttledCalls = s.byStatus["429"] ?? 0;
        // Every create once, plus a retry for each create the limiter refused.
        assert.ok(s.byRoute["POST /v1/invoices"] >= tenants.length, JSON.stringify(s));
        if (throttledCalls === 0) {
          assert.equal(s.byRoute["POST /v1/invoices"], tenants.length, JSON.stringify(s));
        }
        return throttledCalls;
      };
      assert.equal(await throttled("2026-09", 4), 0, "the operation's budget keeps under it");
      // The same run without an operation budget meets Stripe's per-operation limiter.
      assert.ok(await throttled("2026-10", null) > 0, "the limiter answers past 4/s");
    } finally {
      await w.close();
    }
  },
});
