// The audited identity commands (link, release), finalize and drift, through the CLI process,
// against the local stack and an in-process Stripe emulator. Needs `bash dev/stack.sh start`.
import assert from "node:assert/strict";
import { type CliFixture, cliFixture } from "./cli_test_helpers.ts";
import {
  BILL_ID_KEY,
  INVOICE_TYPE_KEY,
  PERIOD_END_KEY,
  PERIOD_START_KEY,
  TENANT_NAME_KEY,
} from "../supabase/functions/_shared/metadata.ts";

interface Arranged {
  tenant: string;
  customer: string;
  manualBill: number;
  finalBill: number;
}

async function arrange(f: CliFixture, prefix: string): Promise<Arranged> {
  const tenant = f.tenant(prefix);
  await f.sql`insert into public.tenants (tenant, trial_start, billing_email)
    values (${tenant}, '2030-01-01', 'ops@example.test')`;
  const [{ id: manualBill }] = await f.sql<{ id: number }[]>`
    insert into internal.manual_bills (tenant, usd_cents, description, date_start, date_end)
    values (${tenant}, 120000, 'Contract', '2030-05-01', '2030-05-31') returning id::int`;
  const [{ id: finalBill }] = await f.sql<{ id: number }[]>`
    insert into internal.billing_historicals (tenant, billed_month, report)
    values (${tenant}, '2030-05-01', '{"subtotal": 4200, "line_items": [], "processed_data_gb": 3}')
    returning id::int`;
  const customer = await f.stripe.customers.create({
    name: tenant,
    metadata: { [TENANT_NAME_KEY]: tenant },
  });
  return { tenant, customer: customer.id, manualBill, finalBill };
}

async function draftInvoice(
  f: CliFixture,
  a: Arranged,
  kind: "manual" | "final",
  amount: number,
  collection: "send_invoice" | "charge_automatically",
) {
  const invoice = await f.stripe.invoices.create({
    customer: a.customer,
    auto_advance: false,
    collection_method: collection,
    ...(collection === "send_invoice" ? { days_until_due: 30 } : {}),
    metadata: {
      [TENANT_NAME_KEY]: a.tenant,
      [INVOICE_TYPE_KEY]: kind,
      [PERIOD_START_KEY]: "2030-05-01",
      [PERIOD_END_KEY]: "2030-05-31",
      [BILL_ID_KEY]: `${kind}:${kind === "manual" ? a.manualBill : a.finalBill}`,
    },
  });
  await f.stripe.invoices.addLines(invoice.id, { lines: [{ amount, description: "Usage" }] });
  return invoice.id;
}

Deno.test("link --tenant and --bill store IDs after checking Stripe; refusals name the reason", async () => {
  const f = await cliFixture();
  try {
    const a = await arrange(f, "cliLink");
    let r = await f.run([
      "link",
      "--tenant",
      a.tenant,
      "--customer",
      a.customer,
      "--reason",
      "adopt",
    ]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /is customer cus_\w+ \(linked\)/);

    const other = await f.stripe.customers.create({
      metadata: { [TENANT_NAME_KEY]: "someoneElse/" },
    });
    r = await f.run(["link", "--tenant", a.tenant, "--customer", other.id, "--reason", "x"]);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /belongs to tenant someoneElse\//);

    const invoiceId = await draftInvoice(f, a, "manual", 120000, "send_invoice");
    r = await f.run([
      "link",
      "--bill",
      `manual:${a.manualBill}`,
      "--invoice",
      invoiceId,
      "--reason",
      "legacy match",
      "--json",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const json = JSON.parse(r.stdout);
    assert.equal(json.ok, true);
    assert.equal(json.stored_id, invoiceId);

    // The same invoice cannot be linked to the tenant's other bill.
    r = await f.run([
      "link",
      "--bill",
      `final:${a.finalBill}`,
      "--invoice",
      invoiceId,
      "--reason",
      "oops",
    ]);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /belongs to bill manual:/);

    // An invoice billed to another customer is refused.
    const foreign = await f.stripe.invoices.create({ customer: other.id, auto_advance: false });
    r = await f.run([
      "link",
      "--bill",
      `final:${a.finalBill}`,
      "--invoice",
      foreign.id,
      "--reason",
      "x",
    ]);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /is billed to cus_\w+, but/);

    // Bad input: exit 2, names the flag, writes nothing.
    r = await f.run(["link", "--bill", "weekly:1", "--invoice", invoiceId, "--reason", "x"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--bill must be KIND:ID/);
    r = await f.run(["link", "--tenant", a.tenant, "--customer", a.customer]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--reason is required/);

    const audit = await f.sql<{ action: string }[]>`
      select action from internal.stripe_id_audit
      where (object_kind = 'tenant' and object_key = ${a.tenant})
         or (object_kind = 'manual' and object_key = ${String(a.manualBill)})
         or (object_kind = 'final' and object_key = ${String(a.finalBill)})
      order by id`;
    // The refused duplicate is audited too.
    assert.deepEqual(audit.map((x) => x.action), ["link", "link", "duplicate"]);
  } finally {
    await f.close();
  }
});

Deno.test("finalize fixes collection, finalizes drafts by stored ID, and makes no Search", async () => {
  const f = await cliFixture();
  try {
    const a = await arrange(f, "cliFin");
    await f.sql`select internal.link_tenant_customer(${a.tenant}, ${a.customer}, 'test')`;
    const manualInvoice = await draftInvoice(f, a, "manual", 120000, "send_invoice");
    const finalInvoice = await draftInvoice(f, a, "final", 4200, "charge_automatically");
    await f
      .sql`select internal.link_bill_invoice('manual', ${a.manualBill}, ${manualInvoice}, 'test')`;
    await f
      .sql`select internal.link_bill_invoice('final', ${a.finalBill}, ${finalInvoice}, 'test')`;

    // Without --yes and without a terminal, nothing is finalized.
    let r = await f.run(["finalize", "--month", "2030-05", "--tenants", a.tenant]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stdout, /Nothing finalized/);
    assert.equal((await f.stripe.invoices.retrieve(manualInvoice)).status, "draft");

    r = await f.run(["finalize", "--month", "2030-05", "--tenants", a.tenant, "--yes", "--json"]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const out = JSON.parse(r.stdout);
    assert.equal(out.finalized, 2);
    assert.equal(out.stripe_calls.search, 0);
    const byId = Object.fromEntries(
      out.invoices.map((
        i: { stripe_invoice_id: string; action: string },
      ) => [i.stripe_invoice_id, i.action]),
    );
    assert.equal(byId[manualInvoice], "finalize");
    assert.equal(byId[finalInvoice], "switch_and_finalize");
    const usage = await f.stripe.invoices.retrieve(finalInvoice);
    assert.equal(usage.status, "open");
    assert.equal(usage.collection_method, "send_invoice");
    assert.equal(usage.auto_advance, true);
    assert.equal((await f.stripe.invoices.retrieve(manualInvoice)).status, "open");
    const [mirror] = await f.sql<{ status: string }[]>`
      select status from internal.stripe_invoice_state where stripe_invoice_id = ${finalInvoice}`;
    assert.equal(mirror.status, "open");

    // A second run finds nothing to do.
    r = await f.run(["finalize", "--month", "2030-05", "--tenants", a.tenant, "--yes"]);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /Finalized 0, failed 0, skipped 2/);
  } finally {
    await f.close();
  }
});

Deno.test("finalize refuses a draft whose total or customer is not the bill's", async () => {
  const f = await cliFixture();
  try {
    const a = await arrange(f, "cliMis");
    await f.sql`select internal.link_tenant_customer(${a.tenant}, ${a.customer}, 'test')`;
    // The bill says 1200.00; the draft was edited by hand to 1209.99 before finalize ran.
    const invoiceId = await draftInvoice(f, a, "manual", 120000, "send_invoice");
    await f.stripe.invoices.addLines(invoiceId, { lines: [{ amount: 999, description: "x" }] });
    await f.sql`select internal.link_bill_invoice('manual', ${a.manualBill}, ${invoiceId}, 'test')`;
    const r = await f.run(["finalize", "--month", "2030-05", "--tenants", a.tenant, "--yes"]);
    assert.equal(r.code, 1, r.stderr + r.stdout);
    assert.match(
      r.stdout,
      new RegExp(`refused: .*${invoiceId}: draft totals 120999¢, the bill 120000¢`),
    );
    assert.equal((await f.stripe.invoices.retrieve(invoiceId)).status, "draft", "not finalized");
  } finally {
    await f.close();
  }
});

Deno.test("finalize refuses a draft that changed after it was listed", async () => {
  const f = await cliFixture();
  try {
    const a = await arrange(f, "cliChg");
    await f.sql`select internal.link_tenant_customer(${a.tenant}, ${a.customer}, 'test')`;
    const invoiceId = await draftInvoice(f, a, "manual", 120000, "send_invoice");
    await f.sql`select internal.link_bill_invoice('manual', ${a.manualBill}, ${invoiceId}, 'test')`;
    const r = await f.run(["finalize", "--month", "2030-05", "--tenants", a.tenant], {
      prompt: {
        // Someone adds a line in the dashboard while the operator reads the table.
        before: async () => {
          await f.stripe.invoices.addLines(invoiceId, {
            lines: [{ amount: 999, description: "late" }],
          });
        },
        answer: "y",
      },
    });
    assert.equal(r.code, 1, r.stderr + r.stdout);
    assert.match(r.stdout, /refused: .* changed since it was listed/);
    assert.equal((await f.stripe.invoices.retrieve(invoiceId)).status, "draft");
  } finally {
    await f.close();
  }
});

Deno.test("drift reports voided, paid and unlinked invoices; release frees only void/deleted ones", async () => {
  const f = await cliFixture();
  try {
    const a = await arrange(f, "cliDrift");
    await f.sql`select internal.link_tenant_customer(${a.tenant}, ${a.customer}, 'test')`;
    const manualInvoice = await draftInvoice(f, a, "manual", 120000, "send_invoice");
    const finalInvoice = await draftInvoice(f, a, "final", 4200, "send_invoice");
    await f
      .sql`select internal.link_bill_invoice('manual', ${a.manualBill}, ${manualInvoice}, 'test')`;
    await f
      .sql`select internal.link_bill_invoice('final', ${a.finalBill}, ${finalInvoice}, 'test')`;
    await f.stripe.invoices.finalizeInvoice(manualInvoice);
    await f.stripe.invoices.finalizeInvoice(finalInvoice);
    await f.stripe.invoices.voidInvoice(manualInvoice);
    await f.stripe.invoices.pay(finalInvoice, { paid_out_of_band: true });
    const stray = await draftInvoice(f, a, "final", 100, "send_invoice");

    let r = await f.run(["drift", "--month", "2030-05", "--json"]);
    assert.equal(r.code, 1, r.stderr);
    const findings = JSON.parse(r.stdout).findings.filter((x: { tenant: string }) =>
      x.tenant === a.tenant
    );
    const kinds = findings.map((x: { kind: string; stripe_id: string }) =>
      `${x.kind} ${x.stripe_id}`
    ).sort();
    assert.deepEqual(
      kinds,
      [
        `invoice_paid ${finalInvoice}`,
        `invoice_void ${manualInvoice}`,
        `unlinked_automation_invoice ${stray}`,
      ].sort(),
    );

    // Release refuses a paid invoice and frees a voided one, with an audit row.
    r = await f.run(["release", "--bill", `final:${a.finalBill}`, "--reason", "try"]);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /is paid; only a void or deleted invoice may be released/);
    r = await f.run([
      "release",
      "--bill",
      `manual:${a.manualBill}`,
      "--reason",
      "voided by finance",
    ]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const [bill] = await f.sql<{ stripe_invoice_id: string | null }[]>`
      select stripe_invoice_id from internal.manual_bills where id = ${a.manualBill}`;
    assert.equal(bill.stripe_invoice_id, null);
    const [audit] = await f.sql<{ old_id: string; reason: string; actor: string }[]>`
      select old_id, reason, actor from internal.stripe_id_audit
      where object_kind = 'manual' and object_key = ${String(a.manualBill)} and action = 'release'`;
    assert.deepEqual(audit, {
      old_id: manualInvoice,
      reason: "voided by finance",
      actor: "cli-test",
    });
  } finally {
    await f.close();
  }
});

Deno.test("every command has --help, and unknown flags exit 2 naming the flag", async () => {
  const f = await cliFixture();
  try {
    for (const command of ["finalize", "drift", "runs", "release", "link"]) {
      const r = await f.run([command, "--help"]);
      assert.equal(r.code, 0, command);
      assert.match(r.stdout, new RegExp(`Usage: deno task billing ${command}`));
    }
    const r = await f.run(["finalize", "--month", "2030-13"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--month must be YYYY-MM/);
    const u = await f.run(["drift", "--bogus"]);
    assert.equal(u.code, 2);
    assert.match(u.stderr, /bogus/);
  } finally {
    await f.close();
  }
});
