// The dashboard in steady state, through the gateway: a tenant without a Stripe customer (every
// free-tier tenant) costs one Search the first time its payment methods are read, then none.
import assert from "node:assert/strict";
import { client, HARNESS_TEST, invoke, makeTenantAdmin, withHarness } from "./billing_fixtures.ts";

Deno.test({
  name: "payment methods of a tenant with no customer cost no Search once one Search found none",
  ...HARNESS_TEST,
  fn: withHarness(async (h) => {
    const a = await makeTenantAdmin(h, "ns");
    const c = client(h, a.token);
    const read = () =>
      invoke(c, "billing", { operation: "get-tenant-payment-methods", tenant: a.tenant });
    await h.emu.control.resetCalls();
    const first = await read();
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.deepEqual(first.body, { primary: null, payment_methods: [] });
    assert.equal((await h.emu.control.callSummary()).searches, 1, "the first read searches once");

    await h.emu.control.resetCalls();
    for (let i = 0; i < 3; i++) {
      const again = await read();
      assert.deepEqual(again.body, { primary: null, payment_methods: [] });
    }
    const later = await h.emu.control.callSummary();
    assert.equal(later.searches, 0, "page loads after that make no Search");
    assert.equal((await h.emu.control.state()).customers.length, 0, "and create no customer");

    // A setup intent still adopts or creates the customer, which is then stored and used.
    const setup = await invoke(c, "billing", { operation: "setup-intent", tenant: a.tenant });
    assert.equal(setup.status, 200, JSON.stringify(setup.body));
    const [row] = await h.sql<{ stripe_customer_id: string }[]>`
      select stripe_customer_id from public.tenants where tenant = ${a.tenant}`;
    assert.match(row.stripe_customer_id, /^cus_/);
  }),
});
