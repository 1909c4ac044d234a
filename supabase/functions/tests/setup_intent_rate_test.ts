// setup-intent is rate-limited per tenant, in Postgres, so several function instances share the
// limit: past it the dashboard gets 429 with Retry-After and Stripe is not called.
import assert from "node:assert/strict";
import { createApp } from "../billing/handler.ts";
import { envFromRecord } from "../_shared/http.ts";
import {
  client,
  HARNESS_TEST,
  invoke,
  makeTenantAdmin,
  storedCustomer,
  withHarness,
} from "./billing_fixtures.ts";

/** The default limit: setup intents per tenant per window. */
const LIMIT = 10;

Deno.test({
  name: "setup-intent: past the per-tenant limit, 429 with Retry-After, shared across instances",
  ...HARNESS_TEST,
  fn: withHarness(async (h) => {
    const a = await makeTenantAdmin(h, "rate");
    const b = await makeTenantAdmin(h, "rateother");
    await storedCustomer(h, a.tenant);
    await storedCustomer(h, b.tenant);
    const c = client(h, a.token);
    const setupIntentCalls = async () =>
      (await h.emu.control.calls()).filter((x) => x.route === "POST /v1/setup_intents").length;

    // A second instance of the function (another isolate), over the same database.
    const other = createApp(envFromRecord({ ...h.gateway.env }));
    const viaOther = async () => {
      const res = await other.fetch(
        new Request("http://localhost/billing", {
          method: "POST",
          headers: { authorization: `Bearer ${a.token}`, "content-type": "application/json" },
          body: JSON.stringify({ operation: "setup-intent", tenant: a.tenant }),
        }),
      );
      return {
        status: res.status,
        retryAfter: res.headers.get("retry-after"),
        body: await res.json(),
      };
    };
    try {
      for (let i = 0; i < LIMIT; i++) {
        const res = i % 2 === 0
          ? await invoke(c, "billing", { operation: "setup-intent", tenant: a.tenant })
          : await viaOther();
        assert.equal(res.status, 200, `call ${i + 1}: ${JSON.stringify(res.body)}`);
      }
      assert.equal(await setupIntentCalls(), LIMIT);

      const refused = await viaOther();
      assert.equal(refused.status, 429, JSON.stringify(refused.body));
      assert.equal(refused.body.error.code, "rate_limited");
      assert.equal(refused.body.error.field, "tenant");
      assert.ok(Number(refused.retryAfter) >= 1, `Retry-After: ${refused.retryAfter}`);
      const viaGateway = await invoke(c, "billing", {
        operation: "setup-intent",
        tenant: a.tenant,
      });
      assert.equal(viaGateway.status, 429, "the other instance shares the limit");
      assert.equal(await setupIntentCalls(), LIMIT, "no SetupIntent past the limit");

      // Another tenant, and other operations, are not limited by it.
      const otherTenant = await invoke(client(h, b.token), "billing", {
        operation: "setup-intent",
        tenant: b.tenant,
      });
      assert.equal(otherTenant.status, 200);
      const list = await invoke(c, "billing", {
        operation: "get-tenant-payment-methods",
        tenant: a.tenant,
      });
      assert.equal(list.status, 200);

      // After the window, the tenant may ask again.
      await h.sql`update internal.setup_intent_attempts
        set window_start = window_start - interval '1 day' where tenant = ${a.tenant}`;
      const again = await viaOther();
      assert.equal(again.status, 200, JSON.stringify(again.body));
    } finally {
      await other.close();
    }
  }),
});
