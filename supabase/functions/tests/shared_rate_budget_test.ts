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
