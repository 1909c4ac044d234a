// Operator safety through the CLI process: the Stripe account binding, honest exit codes and
// statuses, unknown tenants, two operators on one month, resuming, and errors that say what to
// do. Needs the local stack (bash dev/stack.sh start); each test makes its own tenants.
import { insertUsageBill } from "../supabase/functions/tests/publish_helpers.ts";
import assert from "node:assert/strict";
import { type CliFixture, cliFixture } from "./cli_test_helpers.ts";
import { startStripeEmulator } from "../dev/stripe-emulator/server.ts";
import { TENANT_NAME_KEY } from "../supabase/functions/_shared/metadata.ts";

/** A tenant with a stored customer and a usage bill of `month` worth `cents`. */
async function tenantWithBill(f: CliFixture, prefix: string, month: string, cents: number) {
  const tenant = f.tenant(prefix);
  await f.sql`insert into public.tenants (tenant, trial_start) values (${tenant}, '2030-01-01')`;
  const customer = await f.stripe.customers.create({
    name: tenant,
    metadata: { [TENANT_NAME_KEY]: tenant },
  });
  await f.sql`select internal.link_tenant_customer(${tenant}, ${customer.id}, 'test')`;
  const report = {
    subtotal: cents,
    processed_data_gb: 2,
    line_items: [{ description: "Usage", count: 1, rate: cents, subtotal: cents }],
  };
  const id = await insertUsageBill(f.sql, tenant, month.slice(0, 7), report);
  return { tenant, customer: customer.id, bill: id };
}

Deno.test("a key of another Stripe account is refused before anything is read or recorded", async () => {
  const f = await cliFixture();
  const other = await startStripeEmulator({ port: 0, accountId: "acct_someoneelse" });
  try {
    const a = await tenantWithBill(f, "bind", "2030-02", 4200);
    let r = await f.run(["publish", "--month", "2030-02", "--tenants", a.tenant]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    // The banner names the database and the account before anything happens.
    assert.match(r.stderr, /database 127\.0\.0\.1:\d+\/postgres · Stripe acct_\w+ \(test mode\)/);
    const [{ stripe_invoice_id: invoiceId }] = await f.sql<{ stripe_invoice_id: string }[]>`
      select stripe_invoice_id from internal.billing_historicals where id = ${a.bill}`;
    assert.match(invoiceId, /^in_/);
    const invoice = await f.stripe.invoices.finalizeInvoice(invoiceId);
    assert.equal(invoice.status, "open");
    r = await f.run(["drift", "--month", "2030-02", "--record"]);
    assert.equal(
      await f.sql`select 1 from internal.stripe_invoice_state
      where stripe_invoice_id = ${invoiceId} and status = 'open'`.then((x) => x.length),
      1,
    );

    // The same commands with a key of another (empty) account: every stored ID would 404 there.
    other.emulator.calls.reset();
    const wrong = { STRIPE_API_BASE: other.url };
    for (
      const args of [
        ["drift", "--month", "2030-02", "--record"],
        ["release", "--bill", `final:${a.bill}`, "--reason", "gone", "--yes"],
        ["publish", "--month", "2030-02", "--tenants", a.tenant],
        ["finalize", "--month", "2030-02", "--tenants", a.tenant, "--yes"],
      ]
    ) {
      r = await f.run(args, { env: wrong });
      assert.equal(r.code, 4, `${args[0]}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, /refused: the Stripe key is for acct_someoneelse \(test mode\)/);
      assert.match(r.stderr, /this database is bound to acct_\w+ \(test mode\)/);
      assert.doesNotMatch(r.stdout, /invoice_deleted|released/);
    }
    // Only the account question was asked of the wrong account; nothing was written here.
    const routes = Object.keys(other.emulator.calls.summary().byRoute);
    assert.deepEqual(routes, ["GET /v1/account"]);
    const [state] = await f.sql<{ status: string; deleted: boolean }[]>`
      select status, deleted from internal.stripe_invoice_state
      where stripe_invoice_id = ${invoiceId}`;
    assert.deepEqual({ ...state }, { status: "open", deleted: false });
    const deletedCustomers = await f.sql`select 1 from internal.stripe_deleted_customers
      where customer_id = ${a.customer}`;
    assert.equal(deletedCustomers.length, 0);
    const [bill] = await f.sql<{ stripe_invoice_id: string }[]>`
      select stripe_invoice_id from internal.billing_historicals where id = ${a.bill}`;
    assert.equal(bill.stripe_invoice_id, invoiceId, "the open invoice is still the bill's");
  } finally {
    await other.close();
    await f.close();
  }
});

Deno.test("a malformed key is refused locally; runs needs no key; a down or unmigrated database says what to do", async () => {
  const f = await cliFixture();
  const dbName = `unmigrated_${crypto.randomUUID().slice(0, 8)}`;
  try {
    f.emulator.emulator.calls.reset();
    let r = await f.run(["drift"], { env: { STRIPE_SECRET_KEY: "pk_test_publishablekey" } });
    assert.equal(r.code, 4, r.stdout + r.stderr);
    assert.match(r.stderr, /STRIPE_SECRET_KEY must be a Stripe secret key \(sk_test_/);
    assert.doesNotMatch(r.stderr, /pk_test_publishablekey/);
    assert.equal(f.emulator.emulator.calls.summary().total, 0, "nothing was sent to Stripe");

    r = await f.run(["runs", "--limit", "1"], { env: { STRIPE_SECRET_KEY: "" } });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stderr, /Stripe not used/);

    const down = "postgresql://postgres:hunter2secret@127.0.0.1:1/postgres?sslmode=disable";
    r = await f.run(["runs"], { env: { SUPABASE_DB_URL: down } });
    assert.equal(r.code, 4, r.stdout + r.stderr);
    assert.match(r.stderr, /cannot connect to the database at 127\.0\.0\.1:1\/postgres/);
    assert.match(r.stderr, /SUPABASE_DB_URL/);
    assert.doesNotMatch(r.stderr + r.stdout, /hunter2secret|^\s+at /m);

    await f.sql.unsafe(`create database ${dbName}`);
    const url = new URL(f.env.SUPABASE_DB_URL);
    url.pathname = `/${dbName}`;
    r = await f.run(["runs"], { env: { SUPABASE_DB_URL: url.toString() } });
    assert.equal(r.code, 4, r.stdout + r.stderr);
    assert.match(r.stderr, /is not migrated .*run the migrations/);
  } finally {
    await f.sql.unsafe(`drop database if exists ${dbName}`);
    await f.close();
  }
});

Deno.test("warned bills end the run warned with exit 3, listed by runs --state warned", async () => {
  const f = await cliFixture();
  try {
    const good = await tenantWithBill(f, "okay", "2030-06", 1500);
    const voided = await tenantWithBill(f, "void", "2030-06", 16200);
    // The second bill's stored invoice was voided in Stripe: warned, never recreated.
    const inv = await f.stripe.invoices.create({
      customer: voided.customer,
      auto_advance: false,
      collection_method: "send_invoice",
      days_until_due: 30,
    });
    await f.stripe.invoices.addLines(inv.id, { lines: [{ amount: 16200, description: "Usage" }] });
    await f.stripe.invoices.finalizeInvoice(inv.id);
    await f.stripe.invoices.voidInvoice(inv.id);
    await f.sql`select internal.link_bill_invoice('final', ${voided.bill}, ${inv.id}, 'test')`;

    let r = await f.run([
      "publish",
      "--month",
      "2030-06",
      "--tenants",
      `${good.tenant},${voided.tenant}`,
    ]);
    assert.equal(r.code, 3, r.stdout + r.stderr);
    assert.match(r.stdout, /^warned \(1 bill, \$162\.00\)/m);
    assert.match(r.stdout, /Run [0-9a-f-]{36}: warned\./);
    assert.match(r.stdout, /1 bill was warned and not invoiced: deno task billing runs --id /);
    const runId = /^Run ([0-9a-f-]{36}):/m.exec(r.stdout)![1];
    assert.ok(r.stdout.startsWith(`Run ${runId}: publishing 2030-06`), "the run ID comes first");

    r = await f.run(["runs", "--id", runId, "--state", "warned", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.status, "warned");
    assert.deepEqual(out.items.map((i: { bill: string }) => i.bill), [`final:${voided.bill}`]);

    r = await f.run(["runs", "--limit", "50", "--json"]);
    const listed = JSON.parse(r.stdout).find((x: { id: string }) => x.id === runId);
    assert.equal(listed.status, "warned");
    // create + add_lines for one bill, a retrieve for the other, plus what the lookups cost.
    assert.ok(listed.stripe_calls >= 3, JSON.stringify(listed));
    const [{ n }] = await f.sql<{ n: number }[]>`
      select count(*)::int as n from internal.publish_run_items where run_id = ${runId}::uuid
        and stripe_calls is not null and stripe_calls <> '{}'::jsonb`;
    assert.equal(n, 2);
  } finally {
    await f.close();
  }
});

Deno.test("an unknown tenant is an error naming it, for publish and finalize", async () => {
  const f = await cliFixture();
  try {
    const real = await tenantWithBill(f, "known", "2030-07", 1000);
    for (const command of ["publish", "finalize"]) {
      const r = await f.run([
        command,
        "--month",
        "2030-07",
        "--tenants",
        `${real.tenant},nosuch${real.tenant}`,
      ]);
      assert.equal(r.code, 2, `${command}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, new RegExp(`--tenants: no such tenant: nosuch${real.tenant}`));
    }
    const runs = await f
      .sql`select 1 from internal.publish_runs where ${real.tenant} = any(tenants)`;
    assert.equal(runs.length, 0, "nothing was enqueued");
  } finally {
    await f.close();
  }
});

Deno.test("a second operator joins the month's active run and waits on its lease, saying until when", async () => {
  const f = await cliFixture();
  try {
    const a = await tenantWithBill(f, "joinA", "2030-03", 1100);
    const b = await tenantWithBill(f, "joinB", "2030-03", 2200);
    const tenants = [a.tenant, b.tenant].sort();
    // The first operator's run: one bill leased by a worker that then died (3 s lease).
    const [{ id: runId }] = await f.sql<{ id: string }[]>`
      select internal.enqueue_publish_run('2030-03-01', ${tenants}::text[], '{}', 'first-operator')::text as id`;
    const claimed = await f.sql`select * from internal.claim_publish_items(${runId}::uuid,
      'first-operator:w0', 1, interval '3 seconds')`;
    assert.equal(claimed.length, 1);

    const r = await f.run(["publish", "--month", "2030-03", "--tenants", tenants.join(",")]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`^Run ${runId}: joining the active run of 2030-03`));
    assert.match(
      r.stderr,
      /waiting: 1 bill leased by first-operator:w0 until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC/,
    );
    assert.match(r.stdout, /^created \(2 bills, \$33\.00\)/m);
    const runs = await f.sql`select 1 from internal.publish_runs where ${a.tenant} = any(tenants)`;
    assert.equal(runs.length, 1, "no second run");
  } finally {
    await f.close();
  }
});

Deno.test("an active run with other options is named with the command to follow it; --run-id needs no --month", async () => {
  const f = await cliFixture();
  try {
    const a = await tenantWithBill(f, "held", "2030-04", 1100);
    const [{ id: runId }] = await f.sql<{ id: string }[]>`
      select internal.enqueue_publish_run('2030-04-01', ${[a.tenant]}::text[],
        '{"usage_collection_method": "send_invoice"}', 'first-operator')::text as id`;
    let r = await f.run(["publish", "--month", "2030-04", "--tenants", a.tenant]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(
      r.stdout,
      new RegExp(`Run ${runId} \\(by first-operator.*is still publishing 2030-04`),
    );
    assert.match(
      r.stdout,
      new RegExp(`Follow it with: deno task billing publish --run-id ${runId}`),
    );

    r = await f.run(["publish", "--run-id", runId]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`^Run ${runId}: continuing 2030-04`));
    assert.match(r.stdout, /^created \(1 bill, \$11\.00\)/m);
    r = await f.run(["publish", "--run-id", runId, "--month", "2030-05"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--month 2030-05 does not match run/);
  } finally {
    await f.close();
  }
});

Deno.test("finalize's question names the count, the total and the Stripe account", async () => {
  const f = await cliFixture();
  try {
    const a = await tenantWithBill(f, "finA", "2030-08", 1500);
    const b = await tenantWithBill(f, "finB", "2030-08", 2500);
    const tenants = `${a.tenant},${b.tenant}`;
    let r = await f.run(["publish", "--month", "2030-08", "--tenants", tenants]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const account = await f.stripe.accounts.retrieveCurrent();
    r = await f.run(["finalize", "--month", "2030-08", "--tenants", tenants], {
      prompt: { before: () => Promise.resolve(), answer: "n" },
    });
    assert.match(
      r.stdout,
      new RegExp(
        `Finalize 2 draft invoices totalling \\$40\\.00 on ${account.id} \\(test mode\\)\\?`,
      ),
    );
    assert.match(r.stdout, /Nothing finalized/);
  } finally {
    await f.close();
  }
});

Deno.test("without SUPABASE_DB_URL the CLI uses the local stack on STACK_PORT", async () => {
  const f = await cliFixture();
  try {
    const port = new URL(f.env.SUPABASE_DB_URL).port;
    const r = await f.run(["runs", "--limit", "1"], {
      env: { SUPABASE_DB_URL: "", STACK_PORT: port },
    });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stderr, new RegExp(`database 127\\.0\\.0\\.1:${port}/postgres`));
  } finally {
    await f.close();
  }
});
