// With Stripe IDs stored, a dashboard session (setup intent, payment methods, list invoices,
// open one invoice) makes zero Search calls, counted by the emulator's call log; the list makes
// no Stripe call at all, however many invoices, and shows the state webhooks mirrored.
import assert from "node:assert/strict";
import {
  client,
  HARNESS_TEST,
  invoke,
  makeFinalBill,
  makeManualBill,
  makeTenantAdmin,
  storedCustomer,
  withHarness,
} from "./billing_fixtures.ts";

const INVOICES = 12;

Deno.test({
  name: "a dashboard session with stored IDs makes zero Search calls",
  ...HARNESS_TEST,
  fn: withHarness(async (h) => {
    const a = await makeTenantAdmin(h, "ds");
    const customer = await storedCustomer(h, a.tenant);
    await h.emu.control.createPaymentMethod({ customer, default: true });
    await h.emu.control.createPaymentMethod({ customer, last4: "1881" });

    // A year of usage invoices in every state, plus a contract; each bill stores its invoice.
    const statuses = ["paid", "open", "void", "uncollectible"] as const;
    const bills: { billId: string; invoiceId: string; status: string }[] = [];
    for (let m = 1; m <= INVOICES; m++) {
      const status = statuses[m % statuses.length];
      const inv = await h.emu.control.createInvoice({
        customer,
        status,
        collection_method: "send_invoice",
        days_until_due: 30,
        lines: [{ amount: 1_000 * m, description: `usage month ${m}` }],
      });
      const month = `2029-${String(m).padStart(2, "0")}-01`;
      const billId = await makeFinalBill(h.sql, a.tenant, {
        cents: 1_000 * m,
        month,
        invoiceId: inv.id as string,
      });
      bills.push({ billId, invoiceId: inv.id as string, status });
    }
    const contract = await h.emu.control.createInvoice({
      customer,
      status: "open",
      collection_method: "send_invoice",
      days_until_due: 30,
      lines: [{ amount: 99_000, description: "contract" }],
    });
    const contractBill = await makeManualBill(h.sql, a.tenant, {
      cents: 99_000,
      start: "2029-01-01",
      end: "2029-12-31",
      invoiceId: contract.id as string,
    });
    await h.emu.control.flushWebhooks();

    await h.emu.control.resetCalls();
    const c = client(h, a.token);
    const session: [string, Record<string, unknown>][] = [
      ["setup-intent", {}],
      ["get-tenant-payment-methods", {}],
      ["list-tenant-invoices", {}],
      ["get-tenant-invoice", { bill_id: contractBill }],
    ];
    const perStep: Record<string, Record<string, number>> = {};
    let listed: { bill_id: string; invoice_status: string; amount_due: number }[] = [];
    for (const [operation, extra] of session) {
      const before = await h.emu.control.callSummary();
      const res = await invoke(c, "billing", { operation, tenant: a.tenant, ...extra });
      assert.equal(res.status, 200, `${operation}: ${JSON.stringify(res.body)}`);
      if (operation === "list-tenant-invoices") listed = res.body.invoices as typeof listed;
      const after = await h.emu.control.callSummary();
      perStep[operation] = Object.fromEntries(
        Object.entries(after.byRoute)
          .map(([route, n]) => [route, n - (before.byRoute[route] ?? 0)])
          .filter(([, n]) => (n as number) > 0),
      );
    }
    const total = await h.emu.control.callSummary();
    console.log(`dashboard session, Stripe calls per step: ${JSON.stringify(perStep)}`);
    console.log(`total ${total.total} calls, ${total.searches} Search`);

    assert.equal(total.searches, 0, "zero Search calls");
    assert.deepEqual(perStep["list-tenant-invoices"], {}, "listing invoices calls no Stripe API");
    assert.deepEqual(perStep["get-tenant-invoice"], { "GET /v1/invoices/:id": 1 });
    // The instance's first Stripe-facing call asks which account the key is, once (start-up check).
    assert.deepEqual(perStep["setup-intent"], {
      "GET /v1/account": 1,
      "POST /v1/setup_intents": 1,
    });

    // The list carries the mirrored state of every invoice, fed by the webhooks.
    assert.equal(listed.length, INVOICES + 1);
    for (const b of bills) {
      const row = listed.find((r) => r.bill_id === b.billId);
      assert.equal(row?.invoice_status, b.status, b.billId);
    }
    assert.equal(listed.find((r) => r.bill_id === contractBill)?.amount_due, 99_000);
  }),
});
