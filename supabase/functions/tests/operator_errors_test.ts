// A failed item says what failed: the Stripe call, HTTP status, Stripe's code and message and
// the request ID, so an operator can act (or quote it to Stripe support).
import assert from "node:assert/strict";
import { publish } from "../_shared/publish.ts";
import { enqueueRun, runItemsPage } from "../_shared/runs.ts";
import { finalBill, IO, makeTenant, openWorld } from "./publish_helpers.ts";

Deno.test({
  name: "a bill that failed on a Stripe 500 names the call, status, message and request ID",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const customer = await w.stripe.customers.create({ name: "errors" });
      const tenant = await makeTenant(w.sql, { customerId: customer.id });
      await finalBill(w.sql, tenant, "2031-06", [{ description: "Data", count: 10, rate: 500 }]);
      await w.emu.control.addFault({ route: "GET /v1/invoices", kind: "error", count: "always" });
      const runId = await enqueueRun(w.sql, {
        month: "2031-06",
        tenants: [tenant],
        options: { max_attempts: 1 },
        actor: "test",
      });
      const r = await publish(w.deps(), { month: "2031-06", run_id: runId }, {
        budgetMs: 30_000,
        actor: "test",
      });
      assert.equal(r.status, "failed");
      const [item] = await runItemsPage(w.sql, runId, { state: "failed" });
      assert.match(
        String(item.error),
        /^GET \/v1\/invoices: HTTP 500 (api_error )?".+" \(request req_\w+\)$/,
        String(item.error),
      );
      assert.equal(r.status === "failed" && r.problems[0].error, item.error);
    } finally {
      await w.close();
    }
  },
});
