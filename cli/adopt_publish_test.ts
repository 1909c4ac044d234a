// adopt, publish and runs through the CLI process, on a brownfield Stripe: customers and invoices
// made by the old automation, no IDs stored. Needs `bash dev/stack.sh start`.
import assert from "node:assert/strict";
import { cliFixture } from "./cli_test_helpers.ts";
import {
  INVOICE_TYPE_KEY,
  PERIOD_END_KEY,
  PERIOD_START_KEY,
  TENANT_NAME_KEY,
} from "../supabase/functions/_shared/metadata.ts";

const legacy = (tenant: string, type: string, start: string, end: string) => ({
  [TENANT_NAME_KEY]: tenant,
  [INVOICE_TYPE_KEY]: type,
  [PERIOD_START_KEY]: start,
  [PERIOD_END_KEY]: end,
});

Deno.test("adopt --dry-run reports, adopt links, publish creates the rest, a rerun writes nothing", async () => {
  const f = await cliFixture();
  const control = f.emulator.control;
  try {
    const tenant = f.tenant("brown");
    const fresh = f.tenant("fresh");
    await f.sql`insert into public.tenants (tenant, trial_start, billing_email)
      values (${tenant}, '2030-01-01', 'a@example.test'), (${fresh}, '2030-01-01', 'b@example.test')`;
    const report = (cents: number) => ({
      subtotal: cents,
      processed_data_gb: 10,
      line_items: [{ description: "Data processing", count: 1, rate: cents, subtotal: cents }],
    });
    const [{ id: sept }] = await f.sql<{ id: number }[]>`
      insert into internal.billing_historicals (tenant, billed_month, report)
      values (${tenant}, '2030-09-01', ${f.sql.json(report(5000))}) returning id::int`;
    const [{ id: oct }] = await f.sql<{ id: number }[]>`
      insert into internal.billing_historicals (tenant, billed_month, report)
      values (${tenant}, '2030-10-01', ${f.sql.json(report(6000))}) returning id::int`;
    const [{ id: edited }] = await f.sql<{ id: number }[]>`
      insert into internal.manual_bills (tenant, usd_cents, description, date_start, date_end)
      values (${tenant}, 90000, 'Contract', '2030-10-05', '2030-12-31') returning id::int`;
    await f.sql`insert into internal.billing_historicals (tenant, billed_month, report)
      values (${fresh}, '2030-10-01', ${f.sql.json(report(7000))})`;

    // The old automation's objects: a customer, September's paid invoice, a legacy invoice for
    // the contract made before its dates were edited, and one for no bill at all.
    const customer = await control.createCustomer({
      name: tenant,
      metadata: { [TENANT_NAME_KEY]: tenant },
    });
    const septInvoice = await control.createInvoice({
      customer: customer.id,
      status: "paid",
      metadata: legacy(tenant, "final", "2030-09-01", "2030-09-30"),
      lines: [{ amount: 5000, description: "Data processing" }],
    });
    const contract = await control.createInvoice({
      customer: customer.id,
      status: "open",
      metadata: legacy(tenant, "manual", "2030-10-01", "2030-12-31"),
      lines: [{ amount: 90000, description: "Contract" }],
    });
    const orphan = await control.createInvoice({
      customer: customer.id,
      status: "open",
      metadata: legacy(tenant, "final", "2030-06-01", "2030-06-30"),
      lines: [{ amount: 100 }],
    });
    await control.resetCalls();

    let r = await f.run(["adopt", "--dry-run", "--tenants", `${tenant},${fresh}`, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    let out = JSON.parse(r.stdout);
    const byBill = (o: { bills: { bill: string; result: string; invoices: string[] }[] }) =>
      Object.fromEntries(
        o.bills.map((b) => [b.bill, `${b.result} ${b.invoices.join(",")}`.trim()]),
      );
    assert.deepEqual(
      out.customers.map((c: { tenant: string; result: string }) => `${c.tenant} ${c.result}`)
        .sort(),
      [`${fresh} missing`, `${tenant} would_adopt`].sort(),
    );
    assert.equal(byBill(out)[`final:${sept}`], `would_link ${septInvoice.id}`);
    assert.equal(byBill(out)[`final:${oct}`], "miss");
    assert.equal(byBill(out)[`manual:${edited}`], `possible_legacy_match ${contract.id}`);
    assert.deepEqual(out.orphans.map((o: { invoice: string }) => o.invoice), [orphan.id]);
    let calls = await control.callSummary();
    assert.equal(calls.writes, 0, "a dry run writes nothing to Stripe");
    const [{ n: storedAfterDry }] = await f.sql<{ n: number }[]>`
      select count(*)::int as n from public.tenants where tenant in (${tenant}, ${fresh})
        and stripe_customer_id is not null`;
    assert.equal(storedAfterDry, 0, "a dry run stores nothing");

    r = await f.run(["adopt", "--tenants", `${tenant},${fresh}`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Customers \(2 tenants\): .*adopted 1/);
    assert.match(r.stdout, /possible_legacy_match/);
    out = JSON.parse((await f.run(["adopt", "--dry-run", "--tenants", tenant, "--json"])).stdout);
    assert.equal(byBill(out)[`final:${sept}`], `already_linked ${septInvoice.id}`);

    // The operator confirms the legacy contract invoice, then publishes October.
    r = await f.run([
      "link",
      "--bill",
      `manual:${edited}`,
      "--invoice",
      contract.id,
      "--reason",
      "dates were edited",
    ]);
    assert.equal(r.code, 0, r.stdout + r.stderr);

    await control.resetCalls();
    r = await f.run([
      "publish",
      "--month",
      "2030-10",
      "--tenants",
      `${tenant},${fresh}`,
      "--dry-run",
    ]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /would create \(2 bills, \$130\.00\)/);
    assert.match(r.stdout, /would skip \(1 bill, \$900\.00\)/);
    calls = await control.callSummary();
    assert.equal(calls.writes, 0, "publish --dry-run writes nothing to Stripe");

    r = await f.run(["publish", "--month", "2030-10", "--tenants", `${tenant},${fresh}`]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /^created \(2 bills, \$130\.00\)/m);
    assert.match(r.stdout, /Created 2, updated 0, unchanged 0, skipped 1, warned 0, failed 0/);
    const [octRow] = await f.sql<{ stripe_invoice_id: string }[]>`
      select stripe_invoice_id from internal.billing_historicals where id = ${oct}`;
    assert.match(octRow.stripe_invoice_id, /^in_/);

    await control.resetCalls();
    r = await f.run(["publish", "--month", "2030-10", "--tenants", `${tenant},${fresh}`, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    out = JSON.parse(r.stdout);
    calls = await control.callSummary();
    assert.equal(calls.writes, 0, "an immediate rerun makes no Stripe write");
    assert.equal(calls.searches, 0, "and no Search");
    assert.equal(out.stripe_calls.writes, 0);

    const state = await control.state();
    const octInvoices = state.invoices.filter((i) =>
      !i.deleted && i.metadata?.[TENANT_NAME_KEY] === tenant &&
      i.metadata?.[PERIOD_START_KEY] === "2030-10-01" &&
      i.metadata?.[INVOICE_TYPE_KEY] === "final"
    );
    assert.equal(octInvoices.length, 1, "one invoice for October's bill");

    r = await f.run(["runs", "--id", out.run_id]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`final:${oct}`));
    r = await f.run(["runs", "--json", "--limit", "50"]);
    assert.ok(JSON.parse(r.stdout).some((x: { id: string }) => x.id === out.run_id));
  } finally {
    await f.close();
  }
});

Deno.test("publish exits 1 and says so when a bill fails", async () => {
  const f = await cliFixture();
  try {
    const tenant = f.tenant("failing");
    await f.sql`insert into public.tenants (tenant, trial_start) values (${tenant}, '2030-01-01')`;
    // 251 lines: Stripe caps an invoice at 250 items, so adding them is refused (400).
    const lines = Array.from({ length: 251 }, (_, i) => ({
      description: `line ${i}`,
      count: 1,
      rate: 100,
      subtotal: 100,
    }));
    const report = { subtotal: 25100, processed_data_gb: 1, line_items: lines };
    await f.sql`insert into internal.billing_historicals (tenant, billed_month, report)
      values (${tenant}, '2030-11-01', ${f.sql.json(report)})`;
    const r = await f.run(["publish", "--month", "2030-11", "--tenants", tenant]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /failed 1/);
  } finally {
    await f.close();
  }
});
