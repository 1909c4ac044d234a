// What the billing function does with its input: malformed bodies get a 400 naming the field
// and touch nothing; payment methods must be the tenant's own; deleting the primary falls back
// to the first remaining method; the customer comes from the shared resolution (stored, else
// adopted by one Search, else created once with the shared idempotency key).
import assert from "node:assert/strict";
import { resolveCustomer } from "../_shared/customers.ts";
import { StripeCaller } from "../_shared/stripe_calls.ts";
import {
  client,
  type Harness,
  HARNESS_TEST,
  invoke,
  makeFinalBill,
  makeManualBill,
  makeTenantAdmin,
  storedCustomer,
  withHarness,
} from "./billing_fixtures.ts";

async function rawPost(h: Harness, token: string, body: string) {
  const res = await fetch(`${h.gateway.url}/functions/v1/billing`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body,
  });
  return { status: res.status, body: await res.json() };
}

Deno.test({
  name: "malformed bodies get 400 naming the field, and nothing reaches Stripe or the database",
  ...HARNESS_TEST,
  fn: withHarness(async (h) => {
    const a = await makeTenantAdmin(h, "rq");
    const c = client(h, a.token);
    const t = a.tenant;
    const cases: [unknown, string][] = [
      [{}, "operation"],
      [{ operation: "drop-tables", tenant: t }, "operation"],
      [{ operation: 7, tenant: t }, "operation"],
      [{ operation: "setup-intent" }, "tenant"],
      [{ operation: "setup-intent", tenant: "no-slash" }, "tenant"],
      [{ operation: "setup-intent", tenant: "a/b/" }, "tenant"],
      [{ operation: "setup-intent", tenant: ["x/"] }, "tenant"],
      [{ operation: "set-tenant-primary-payment-method", tenant: t }, "payment_method_id"],
      [
        { operation: "set-tenant-primary-payment-method", tenant: t, payment_method_id: "card_1" },
        "payment_method_id",
      ],
      [
        { operation: "delete-tenant-payment-method", tenant: t, payment_method_id: "" },
        "payment_method_id",
      ],
      [
        { operation: "delete-tenant-payment-method", tenant: t, payment_method_id: 12 },
        "payment_method_id",
      ],
      [{ operation: "get-tenant-invoice", tenant: t }, "bill_id"],
      [{ operation: "get-tenant-invoice", tenant: t, bill_id: "manual:0" }, "bill_id"],
      [{ operation: "get-tenant-invoice", tenant: t, bill_id: "42" }, "bill_id"],
      [
        { operation: "get-tenant-invoice", tenant: t, date_start: "2030-01-01", type: "final" },
        "date_end",
      ],
      [{
        operation: "get-tenant-invoice",
        tenant: t,
        date_start: "2030-13-01",
        date_end: "2030-01-31",
        type: "final",
      }, "date_start"],
      [{
        operation: "get-tenant-invoice",
        tenant: t,
        date_start: "2030-01-01",
        date_end: "2030-01-31",
        type: "preview",
      }, "type"],
      [{ operation: "list-tenant-invoices", tenant: t, limit: 0 }, "limit"],
      [{ operation: "list-tenant-invoices", tenant: t, limit: "10" }, "limit"],
    ];
    for (const [body, field] of cases) {
      const res = await invoke(c, "billing", body);
      assert.equal(res.status, 400, `${JSON.stringify(body)}: ${JSON.stringify(res.body)}`);
      const error = res.body.error as { code: string; field: string; message: string };
      assert.equal(error.field, field, JSON.stringify(body));
      assert.match(error.message, new RegExp(field.replace(".", "\\.")), JSON.stringify(body));
    }
    for (const body of ["not json", "[1,2]", '"a string"', "null"]) {
      const res = await rawPost(h, a.token, body);
      assert.equal(res.status, 400, body);
      assert.equal(res.body.error.field, "body", body);
    }
    assert.equal((await h.emu.control.callSummary()).total, 0, "no Stripe call was made");
    const [row] = await h.sql`select stripe_customer_id from public.tenants where tenant = ${t}`;
    assert.equal(row.stripe_customer_id, null, "no customer was stored");
  }),
});

Deno.test({
  name: "a payment method must belong to the tenant's customer; deleting the primary falls back",
  ...HARNESS_TEST,
  fn: withHarness(async (h) => {
    const a = await makeTenantAdmin(h, "pm");
    const b = await makeTenantAdmin(h, "pmo");
    const cusA = await storedCustomer(h, a.tenant);
    const cusB = await storedCustomer(h, b.tenant);
    const card = async (customer: string | undefined, primary = false) =>
      (await h.emu.control.createPaymentMethod({ customer, default: primary })).id as string;
    const a1 = await card(cusA, true);
    const a2 = await card(cusA);
    const a3 = await card(cusA);
    const b1 = await card(cusB, true);
    const loose = await card(undefined);
    const c = client(h, a.token);
    const op = (operation: string, payment_method_id: string) =>
      invoke(c, "billing", { operation, tenant: a.tenant, payment_method_id });

    for (const foreign of [b1, loose, "pm_doesNotExist123"]) {
      for (
        const operation of ["set-tenant-primary-payment-method", "delete-tenant-payment-method"]
      ) {
        const res = await op(operation, foreign);
        assert.equal(res.status, 404, `${operation} ${foreign}`);
        assert.equal((res.body.error as { field: string }).field, "payment_method_id");
      }
    }
    const bState = await h.emu.control.state();
    const b1Now = bState.payment_methods.find((p) => p.id === b1)!;
    assert.equal(b1Now.customer, cusB, "another tenant's method was not detached");

    assert.deepEqual((await op("set-tenant-primary-payment-method", a2)).body, { primary: a2 });
    // Deleting a method that is not primary keeps the primary.
    assert.deepEqual((await op("delete-tenant-payment-method", a1)).body, {
      deleted: a1,
      primary: a2,
    });
    // Deleting the primary makes the first remaining method primary, as upstream.
    assert.deepEqual((await op("delete-tenant-payment-method", a2)).body, {
      deleted: a2,
      primary: a3,
    });
    const listed = await invoke(c, "billing", {
      operation: "get-tenant-payment-methods",
      tenant: a.tenant,
    });
    assert.equal(listed.body.primary, a3);
    assert.deepEqual((listed.body.payment_methods as { id: string }[]).map((m) => m.id), [a3]);
    // Deleting the last one leaves no primary.
    assert.deepEqual((await op("delete-tenant-payment-method", a3)).body, {
      deleted: a3,
      primary: null,
    });
    const summary = await h.emu.control.callSummary();
    assert.equal(summary.searches, 0, "stored customers need no Search");
  }),
});

Deno.test({
  name: "the customer comes from the shared resolution: created once, then stored; or adopted",
  ...HARNESS_TEST,
  fn: withHarness(async (h) => {
    // No customer anywhere: reading methods creates nothing; a setup intent creates it once.
    const a = await makeTenantAdmin(h, "cr");
    const c = client(h, a.token);
    const methods = await invoke(c, "billing", {
      operation: "get-tenant-payment-methods",
      tenant: a.tenant,
    });
    assert.deepEqual(methods.body, { primary: null, payment_methods: [] });
    assert.equal((await h.emu.control.state()).customers.length, 0, "reading created nothing");

    const first = await invoke(c, "billing", { operation: "setup-intent", tenant: a.tenant });
    assert.equal(first.status, 200);
    const setup = first.body.setup_intent as { id: string; client_secret: string };
    assert.match(setup.client_secret, /^seti_.+_secret_/);
    const [row] = await h.sql`select stripe_customer_id from public.tenants
      where tenant = ${a.tenant}`;
    assert.match(row.stripe_customer_id, /^cus_/);
    const creates = (await h.emu.control.calls()).filter((x) => x.route === "POST /v1/customers");
    assert.equal(creates.length, 1);
    const [{ inst }] = await h.sql`select internal.installation_id()::text as inst`;
    assert.equal(creates[0].idempotencyKey, `flow:${inst}:customer-create:${a.tenant}`);

    await h.emu.control.resetCalls();
    const second = await invoke(c, "billing", { operation: "setup-intent", tenant: a.tenant });
    assert.equal(second.status, 200);
    const after = await h.emu.control.callSummary();
    assert.deepEqual(after.byRoute, { "POST /v1/setup_intents": 1 }, "stored ID: no lookup");
    const state = await h.emu.control.state();
    assert.equal(state.customers.length, 1, "one tenant, one customer");
    const intent = state.setup_intents.find((s) => s.id === setup.id)!;
    assert.equal(intent.customer, row.stripe_customer_id);
    assert.equal(intent.metadata["estuary.dev/tenant_name"], a.tenant);

    // A customer made before IDs were stored is adopted by one Search and then stored.
    const legacy = await makeTenantAdmin(h, "ad");
    const old = await h.emu.control.createCustomer({
      name: legacy.tenant,
      metadata: { "estuary.dev/tenant_name": legacy.tenant },
    });
    await h.emu.control.resetCalls();
    const adopted = await invoke(client(h, legacy.token), "billing", {
      operation: "get-tenant-payment-methods",
      tenant: legacy.tenant,
    });
    assert.equal(adopted.status, 200);
    const [legacyRow] = await h.sql`select stripe_customer_id from public.tenants
      where tenant = ${legacy.tenant}`;
    assert.equal(legacyRow.stripe_customer_id, old.id, "the adopted customer is stored");
    assert.equal(
      (await h.emu.control.calls()).filter((x) => x.route === "POST /v1/customers")
        .length,
      0,
      "adoption creates nothing",
    );
  }),
});

Deno.test({
  name: "get-tenant-invoice: by bill_id or upstream's key; null without an issued invoice",
  ...HARNESS_TEST,
  fn: withHarness(async (h) => {
    const a = await makeTenantAdmin(h, "gi");
    const customer = await storedCustomer(h, a.tenant);
    const open = await h.emu.control.createInvoice({
      customer,
      status: "open",
      collection_method: "send_invoice",
      days_until_due: 30,
      lines: [{ amount: 4_200, description: "usage" }],
    });
    const draft = await h.emu.control.createInvoice({
      customer,
      lines: [{ amount: 100, description: "draft" }],
    });
    const gone = await h.emu.control.createInvoice({ customer, lines: [{ amount: 5 }] });
    const finalBill = await makeFinalBill(h.sql, a.tenant, {
      cents: 4_200,
      month: "2030-04-01",
      invoiceId: open.id as string,
    });
    const draftBill = await makeManualBill(h.sql, a.tenant, {
      cents: 100,
      start: "2030-05-01",
      end: "2030-05-31",
      invoiceId: draft.id as string,
    });
    const goneBill = await makeManualBill(h.sql, a.tenant, {
      cents: 5,
      start: "2030-06-01",
      end: "2030-06-30",
      invoiceId: gone.id as string,
    });
    await h.emu.control.deleteInvoice(gone.id as string);
    const unpublished = await makeManualBill(h.sql, a.tenant, {
      cents: 9,
      start: "2030-07-01",
      end: "2030-07-31",
    });
    const c = client(h, a.token);
    const get = (extra: Record<string, unknown>) =>
      invoke(c, "billing", { operation: "get-tenant-invoice", tenant: a.tenant, ...extra });

    const byId = await get({ bill_id: finalBill });
    assert.equal(byId.status, 200);
    assert.deepEqual(byId.body.invoice, {
      id: open.id,
      status: "open",
      amount_due: 4_200,
      currency: "usd",
      hosted_invoice_url: open.hosted_invoice_url,
      invoice_pdf: open.invoice_pdf,
    });
    const byKey = await get({ type: "final", date_start: "2030-04-01", date_end: "2030-04-30" });
    assert.deepEqual(byKey.body, byId.body, "upstream's (type, period) key finds the same bill");

    assert.deepEqual((await get({ bill_id: draftBill })).body.invoice, null, "drafts are hidden");
    assert.deepEqual((await get({ bill_id: goneBill })).body.invoice, null, "deleted: null");
    assert.deepEqual((await get({ bill_id: unpublished })).body.invoice, null, "no invoice: null");
    const missing = await get({ bill_id: "manual:999999999" });
    assert.equal(missing.status, 404);
    assert.equal((missing.body.error as { field: string }).field, "bill_id");

    // What it learned is in the mirror, so the list shows it without asking Stripe.
    const list = await invoke(c, "billing", {
      operation: "list-tenant-invoices",
      tenant: a.tenant,
    });
    const byBill = new Map(
      (list.body.invoices as { bill_id: string; invoice_status: string | null }[])
        .map((r) => [r.bill_id, r.invoice_status]),
    );
    assert.equal(byBill.get(finalBill), "open");
    assert.equal(byBill.get(draftBill), "draft");
    assert.equal(byBill.get(goneBill), "deleted");
    assert.equal(byBill.get(unpublished), null);
    assert.equal((await h.emu.control.callSummary()).searches, 0);
  }),
});

Deno.test({
  name: "Stripe trouble is a 503 to retry or a 409 that says what happened, never a 200",
  ...HARNESS_TEST,
  fn: withHarness(async (h) => {
    const a = await makeTenantAdmin(h, "st");
    const customer = await storedCustomer(h, a.tenant);
    const c = client(h, a.token);
    const op = (operation: string) => invoke(c, "billing", { operation, tenant: a.tenant });

    await h.emu.control.addFault({
      route: "GET /v1/customers/:id/payment_methods",
      kind: "rate_limit",
      count: "always",
    });
    const throttled = await op("get-tenant-payment-methods");
    assert.equal(throttled.status, 503);
    assert.equal((throttled.body.error as { code: string }).code, "stripe_unavailable");
    await h.emu.control.clearFaults();

    // The stored customer was deleted in Stripe: say so instead of making another one.
    await h.emu.control.deleteCustomer(customer);
    const deleted = await op("get-tenant-payment-methods");
    assert.equal(deleted.status, 409);
    assert.equal((deleted.body.error as { code: string }).code, "customer_deleted");
    const setup = await op("setup-intent");
    assert.equal(setup.status, 409);
    assert.equal((setup.body.error as { code: string }).code, "customer_deleted");
    const state = await h.emu.control.state();
    assert.equal(state.customers.filter((x) => !x.deleted).length, 0, "no second customer");
  }),
});

Deno.test({
  name: "concurrent dashboard setup intents and a publishing run make one customer per tenant",
  ...HARNESS_TEST,
  fn: withHarness(async (h) => {
    const a = await makeTenantAdmin(h, "cc");
    const c = client(h, a.token);
    const publisher = new StripeCaller(h.stripe, { maxAttempts: 6, baseDelayMs: 50 });
    // Boot the function first, so the dashboard and the publisher really race.
    await invoke(c, "billing", { operation: "list-tenant-invoices", tenant: a.tenant });
    await h.emu.control.setLatency({ fixedMs: 150 });
    const results = await Promise.all([
      ...Array.from(
        { length: 4 },
        () => invoke(c, "billing", { operation: "setup-intent", tenant: a.tenant }),
      ),
      ...Array.from(
        { length: 2 },
        () => resolveCustomer({ sql: h.sql, caller: publisher, actor: "publish-test" }, a.tenant),
      ),
    ]);
    const [row] = await h.sql`select stripe_customer_id from public.tenants
      where tenant = ${a.tenant}`;
    const state = await h.emu.control.state();
    const mine = state.customers.filter((x) => x.name === a.tenant);
    assert.equal(mine.length, 1, "one customer in Stripe");
    assert.equal(mine[0].id, row.stripe_customer_id, "and it is the stored one");
    for (const r of results) {
      if ("status" in r) assert.equal(r.status, 200, JSON.stringify(r.body));
      else assert.equal(r.customerId, row.stripe_customer_id);
    }
    const calls = (await h.emu.control.callSummary()).byRoute;
    assert.ok(calls["GET /v1/customers/search"] > 2, `a real race: ${JSON.stringify(calls)}`);
    console.log(`racing resolutions, Stripe calls: ${JSON.stringify(calls)}`);
    const intents = state.setup_intents.filter((s) => s.customer === row.stripe_customer_id);
    assert.equal(intents.length, 4);
  }),
});
