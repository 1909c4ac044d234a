// The publish engine against the local Postgres and the in-process Stripe emulator: the state
// table, multi-month manual bills, adoption, crash recovery, concurrency and call counts.
import assert from "node:assert/strict";
import { drainRun, publish } from "../_shared/publish.ts";
import type { Stripe } from "../_shared/stripe_client.ts";
import {
  BUDGET,
  customerOf,
  deps,
  finalBill,
  IO,
  items,
  liveInvoices,
  makeTenant,
  manualBill,
  openWorld,
  run,
  storedInvoice,
  type World,
} from "./publish_helpers.ts";

const LINES = [
  { description: "Data processing (at $0.50/GB)", count: 412.5, rate: 50 },
  { description: "Task usage (at $0.14/hour)", count: 100, rate: 14 },
  { description: "Free trial credit", count: 1, rate: -1000 },
];

function summary(w: World) {
  return w.emu.emulator.calls.summary();
}

Deno.test({
  name: "first publish creates one invoice per bill, links it, and verifies its total",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const tenant = await makeTenant(w.sql);
      const bill = await finalBill(w.sql, tenant, "2026-10", LINES);
      w.emu.emulator.calls.reset();
      const r = await run(w, "2026-10", [tenant]);
      assert.equal(r.items[0].outcome, "created", JSON.stringify(r.items));
      const invoiceId = await storedInvoice(w.sql, "final", bill);
      const customer = await customerOf(w.sql, tenant);
      assert.ok(invoiceId && customer);
      const inv = await w.stripe.invoices.retrieve(invoiceId);
      assert.equal(inv.status, "draft");
      assert.equal(inv.auto_advance, false);
      assert.equal(inv.collection_method, "charge_automatically");
      assert.equal(inv.metadata?.["estuary.dev/bill_id"], `final:${bill}`);
      assert.equal(inv.metadata?.["estuary.dev/period_end"], "2026-10-31");
      // What the bill says: 412.5 GB × 50¢ + 100 h × 14¢ − 1000, to the cent (no rounding up).
      assert.equal(inv.total, 20625 + 1400 - 1000);
      assert.ok(
        inv.lines.data.every((l) => !l.pricing?.price_details?.product),
        "amount-only lines: no Product is made per line",
      );
      assert.equal(inv.lines.data.length, 3);
      const s = summary(w);
      // New tenant: one customer Search (adoption), customer create, invoice create, add_lines.
      assert.equal(s.byRoute["GET /v1/customers/search"], 1);
      assert.equal(s.byRoute["POST /v1/customers"], 1);
      assert.equal(s.byRoute["POST /v1/invoices"], 1);
      assert.equal(s.byRoute["POST /v1/invoices/:id/add_lines"], 1);
      assert.equal(s.byRoute["GET /v1/invoices"] ?? 0, 0, "a customer made now has no invoices");
      const [scan] = await w.sql`select count(*)::int as n from internal.stripe_invoice_scan
        where account = ${deps(w).stripeAccount!}`;
      assert.equal(scan.n, 0, "nor does it need the invoice index");
      const [mirror] = await w.sql`select status, total from internal.stripe_invoice_state
        where stripe_invoice_id = ${invoiceId}`;
      assert.equal(mirror.status, "draft");
      assert.equal(Number(mirror.total), inv.total);
    } finally {
      await w.close();
    }
  },
});

Deno.test({
  name:
    "steady state: no Search, create + add_lines per invoice plus one shared scan page, and a rerun writes nothing",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const tenants: string[] = [];
      for (let i = 0; i < 3; i++) {
        const t = await makeTenant(w.sql);
        await finalBill(w.sql, t, "2026-09", LINES);
        await finalBill(w.sql, t, "2026-10", LINES);
        tenants.push(t);
      }
      await run(w, "2026-09", tenants); // brownfield: customers created and stored
      w.emu.emulator.calls.reset();
      const oct = await run(w, "2026-10", tenants);
      assert.deepEqual(oct.items.map((i) => i.outcome), ["created", "created", "created"]);
      const s = summary(w);
      assert.equal(s.searches, 0, "no Search once IDs are stored");
      console.log(`steady state, 3 invoices of 3 lines: ${JSON.stringify(s.byRoute)}`);
      assert.equal(s.total, 7, "create + add_lines per invoice, one index scan page for all");
      assert.equal(s.byRoute["GET /v1/invoices"], 1, "the scan page, no per-customer list");
      assert.equal(s.writes, 6, "create + add_lines per invoice");
      w.emu.emulator.calls.reset();
      const again = await run(w, "2026-10", tenants);
      assert.deepEqual(again.items.map((i) => i.outcome), ["unchanged", "unchanged", "unchanged"]);
      const s2 = summary(w);
      assert.equal(s2.writes, 0, "an immediate rerun writes nothing");
      assert.equal(s2.searches, 0);
      // Each draft was verified when written; one page of the account's events says none
      // changed since, so no draft is retrieved.
      assert.deepEqual(s2.byRoute, { "GET /v1/events": 1 });
    } finally {
      await w.close();
    }
  },
});

Deno.test({
  name: "a three-month manual bill over three monthly runs is one invoice, updated when edited",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const tenant = await makeTenant(w.sql);
      const bill = await manualBill(w.sql, tenant, 90_000, "2026-10-01", "2026-12-31");
      const oct = await run(w, "2026-10", [tenant]);
      assert.equal(oct.items[0].outcome, "created");
      const id = await storedInvoice(w.sql, "manual", bill);
      const first = await w.stripe.invoices.retrieve(id!);
      assert.equal(first.collection_method, "send_invoice");
      assert.ok(first.due_date);
      const nov = await run(w, "2026-11", [tenant]);
      assert.equal(nov.items[0].outcome, "unchanged");
      // The contract's dates are corrected between runs: same invoice, rewritten in place.
      await w.sql`update internal.manual_bills set date_end = '2027-01-31' where id = ${bill}`;
      const dec = await run(w, "2026-12", [tenant]);
      assert.equal(dec.items[0].outcome, "updated", JSON.stringify(dec.items));
      assert.equal(await storedInvoice(w.sql, "manual", bill), id);
      const edited = await w.stripe.invoices.retrieve(id!);
      assert.equal(edited.metadata?.["estuary.dev/period_end"], "2027-01-31");
      assert.match(edited.description ?? "", /January 31 2027/);
      assert.equal(edited.custom_fields?.[1].value, "January 31 2027");
      assert.equal(edited.total, 90_000);
      // Finalized by hand, then edited again: never recreated, and the difference is warned by ID.
      await w.emu.control.finalizeInvoice(id!);
      await w.sql`update internal.manual_bills set usd_cents = 95000 where id = ${bill}`;
      const jan = await run(w, "2027-01", [tenant], {}, "warned");
      assert.equal(jan.items[0].reason, "invoice_differs");
      assert.match(jan.items[0].detail ?? "", new RegExp(`${id} is open for 90000¢`));
      const customer = await customerOf(w.sql, tenant);
      assert.equal((await liveInvoices(w, customer!)).length, 1, "one invoice, ever");
    } finally {
      await w.close();
    }
  },
});

Deno.test({
  name: "the state table: open, paid, uncollectible skip; void and deleted warn; none recreated",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const cases = ["open", "paid", "uncollectible", "void", "deleted", "draft"] as const;
      const tenants: Record<string, string> = {};
      const bills: Record<string, number> = {};
      for (const c of cases) {
        tenants[c] = await makeTenant(w.sql);
        bills[c] = await finalBill(w.sql, tenants[c], "2026-10", LINES);
      }
      await run(w, "2026-10", Object.values(tenants));
      for (const c of cases) {
        const id = (await storedInvoice(w.sql, "final", bills[c]))!;
        if (c === "deleted") await w.emu.control.deleteInvoice(id);
        if (c === "draft") continue;
        if (c !== "deleted") await w.emu.control.finalizeInvoice(id);
        if (c === "paid") await w.emu.control.payInvoice(id, { paid_out_of_band: true });
        if (c === "uncollectible") await w.emu.control.markInvoiceUncollectible(id);
        if (c === "void") await w.emu.control.voidInvoice(id);
      }
      w.emu.emulator.calls.reset();
      const again = await run(w, "2026-10", Object.values(tenants), {}, "warned");
      const byTenant = new Map(
        again.items.map((i) => [i.bill, [i.outcome, i.reason]]),
      );
      const expect: Record<string, [string, string]> = {
        open: ["skipped", "already_processed"],
        paid: ["skipped", "already_processed"],
        uncollectible: ["skipped", "already_processed"],
        void: ["warned", "voided"],
        deleted: ["warned", "deleted"],
        draft: ["unchanged", "draft"],
      };
      for (const c of cases) {
        assert.deepEqual(byTenant.get(`final:${bills[c]}`), expect[c], c);
      }
      assert.equal(summary(w).writes, 0, "nothing recreated or rewritten");
      const [mirror] = await w.sql`select deleted from internal.stripe_invoice_state
        where stripe_invoice_id = ${(await storedInvoice(w.sql, "final", bills.deleted))!}`;
      assert.equal(mirror.deleted, true, "the deletion reached the mirror");
    } finally {
      await w.close();
    }
  },
});

Deno.test({
  name: "adoption: hand-made invoices with matching metadata are linked, not duplicated",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const customer = await w.emu.control.createCustomer({ name: "x" });
      const tBillId = await makeTenant(w.sql, { customerId: customer.id });
      const byBillId = await finalBill(w.sql, tBillId, "2026-10", LINES);
      const handMade = await w.emu.control.createInvoice({
        customer: customer.id,
        metadata: { "estuary.dev/bill_id": `final:${byBillId}` },
      });
      // A legacy invoice (upstream's four keys) for a second customer's bill.
      const c2 = await w.emu.control.createCustomer({ name: "y" });
      const tLegacy = await makeTenant(w.sql, { customerId: c2.id });
      const legacyBill = await manualBill(w.sql, tLegacy, 5000, "2026-10-01", "2026-10-31");
      const legacy = await w.emu.control.createInvoice({
        customer: c2.id,
        status: "open",
        collection_method: "send_invoice",
        days_until_due: 30,
        lines: [{ amount: 5000, description: "Contract" }],
        metadata: {
          "estuary.dev/tenant_name": tLegacy,
          "estuary.dev/invoice_type": "manual",
          "estuary.dev/period_start": "2026-10-01",
          "estuary.dev/period_end": "2026-10-31",
        },
      });
      // A bill whose dates were edited before IDs were stored: only an overlapping legacy one.
      const c3 = await w.emu.control.createCustomer({ name: "z" });
      const tEdited = await makeTenant(w.sql, { customerId: c3.id });
      const edited = await manualBill(w.sql, tEdited, 7000, "2026-10-01", "2026-12-31");
      const old = await w.emu.control.createInvoice({
        customer: c3.id,
        status: "open",
        collection_method: "send_invoice",
        days_until_due: 30,
        lines: [{ amount: 7000, description: "Contract" }],
        metadata: {
          "estuary.dev/tenant_name": tEdited,
          "estuary.dev/invoice_type": "manual",
          "estuary.dev/period_start": "2026-10-01",
          "estuary.dev/period_end": "2026-11-30",
        },
      });
      const r = await run(w, "2026-10", [tBillId, tLegacy, tEdited], {}, "warned");
      const got = new Map(r.items.map((i) => [i.bill, i]));
      assert.equal(
        got.get(`final:${byBillId}`)?.outcome,
        "updated",
        "adopted draft gets its lines",
      );
      assert.equal(await storedInvoice(w.sql, "final", byBillId), handMade.id);
      assert.equal(got.get(`manual:${legacyBill}`)?.reason, "already_processed");
      assert.equal(await storedInvoice(w.sql, "manual", legacyBill), legacy.id);
      const e = got.get(`manual:${edited}`)!;
      assert.deepEqual([e.outcome, e.reason], ["warned", "possible_legacy_match"]);
      assert.match(e.detail ?? "", new RegExp(old.id));
      assert.equal(await storedInvoice(w.sql, "manual", edited), null, "nothing linked");
      assert.equal((await liveInvoices(w, customer.id)).length, 1);
      assert.equal((await liveInvoices(w, c2.id)).length, 1);
      assert.equal((await liveInvoices(w, c3.id)).length, 1, "nothing created");
      const [audit] = await w.sql`select reason from internal.stripe_id_audit
        where object_kind = 'final' and object_key = ${String(byBillId)} and action = 'link'`;
      assert.equal(audit.reason, "adopted by bill_id");
    } finally {
      await w.close();
    }
  },
});

Deno.test({
  name: "duplicate legacy customers: the oldest is linked and the rest reported",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const tenant = await makeTenant(w.sql);
      const meta = { metadata: { "estuary.dev/tenant_name": tenant }, name: tenant };
      const oldest = await w.emu.control.createCustomer(meta);
      await w.emu.control.advanceClock(60);
      const newer = await w.emu.control.createCustomer(meta);
      await finalBill(w.sql, tenant, "2026-10", LINES);
      const r = await run(w, "2026-10", [tenant]);
      assert.equal(await customerOf(w.sql, tenant), oldest.id);
      assert.match(r.items[0].detail ?? "", new RegExp(newer.id));
      assert.equal((await liveInvoices(w, newer.id)).length, 0);
    } finally {
      await w.close();
    }
  },
});

/** A Stripe client whose invoice create succeeds in Stripe and then "crashes" the worker. */
function crashingAfterCreate(stripe: Stripe): Stripe {
  const invoices = new Proxy(stripe.invoices, {
    get(target, prop, recv) {
      if (prop !== "create") return Reflect.get(target, prop, recv);
      return async (...args: Parameters<typeof target.create>) => {
        await target.create(...args);
        throw new Error("worker killed after invoice create");
      };
    },
  });
  return new Proxy(stripe, {
    get: (t, p, r) => (p === "invoices" ? invoices : Reflect.get(t, p, r)),
  });
}

for (const window of ["inside", "past"] as const) {
  Deno.test({
    name: `a crash after create and before link, rerun ${window} the 24 h key window: no duplicate`,
    ...IO,
    async fn() {
      const w = await openWorld();
      try {
        const customer = await w.emu.control.createCustomer({ name: "crash" });
        const tenant = await makeTenant(w.sql, { customerId: customer.id });
        const bill = await finalBill(w.sql, tenant, "2026-10", LINES);
        const crashed = await publish(
          deps(w, "crasher", crashingAfterCreate(w.stripe)),
          { month: "2026-10", tenants: [tenant] },
          BUDGET,
        );
        // The stand-in crash fails the item, so the run does not call itself a success.
        assert.equal(crashed.status, "failed");
        assert.equal(await storedInvoice(w.sql, "final", bill), null, "the crash lost the link");
        assert.equal((await liveInvoices(w, customer.id)).length, 1);
        const [intent] = await w.sql`select idempotency_key from internal.publish_intents
          where bill_kind = 'final' and bill_id = ${bill} and step = 'create_invoice'`;
        const [{ inst }] = await w.sql`select internal.installation_id()::text as inst`;
        assert.match(intent.idempotency_key, new RegExp(`^flow:${inst}:final:${bill}:g0:create:`));
        if (window === "past") await w.emu.control.advanceClock(25 * 3600);
        const r = await run(w, "2026-10", [tenant]);
        assert.equal(r.items[0].outcome, "updated", JSON.stringify(r.items));
        const live = await liveInvoices(w, customer.id);
        assert.equal(live.length, 1, "still one invoice");
        assert.equal(await storedInvoice(w.sql, "final", bill), live[0].id);
        assert.equal(live[0].total, 20625 + 1400 - 1000);
      } finally {
        await w.close();
      }
    },
  });
}

Deno.test({
  name: "a lost create response is replayed under the same key: one invoice",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const customer = await w.emu.control.createCustomer({ name: "drop" });
      const tenant = await makeTenant(w.sql, { customerId: customer.id });
      const bill = await finalBill(w.sql, tenant, "2026-10", LINES);
      // The write is applied, then the connection drops after the headers (StripeConnectionError).
      await w.emu.control.addFault({
        route: "POST /v1/invoices",
        kind: "drop",
        mode: "after_headers",
        count: 1,
      });
      const r = await run(w, "2026-10", [tenant]);
      assert.equal(r.items[0].outcome, "created", JSON.stringify(r.items));
      assert.equal((await liveInvoices(w, customer.id)).length, 1);
      assert.ok(await storedInvoice(w.sql, "final", bill));
    } finally {
      await w.close();
    }
  },
});

Deno.test({
  name: "several workers draining one run create each invoice once",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const tenants: string[] = [];
      for (let i = 0; i < 8; i++) {
        const t = await makeTenant(w.sql);
        await finalBill(w.sql, t, "2026-10", LINES);
        await manualBill(w.sql, t, 10_000 + i, "2026-09-01", "2026-11-30");
        tenants.push(t);
      }
      const first = await publish(deps(w, "w0"), { month: "2026-10", tenants }, {
        ...BUDGET,
        budgetMs: 0,
      });
      assert.equal(first.status, "pending");
      const results = await Promise.all(
        ["w1", "w2", "w3", "w4"].map((name) =>
          drainRun(deps(w, name), first.run_id, { budgetMs: 60_000, batchSize: 2 })
        ),
      );
      assert.equal(results.reduce((n, r) => n + r.processed, 0), 16, "each item once");
      assert.ok(results.filter((r) => r.processed > 0).length > 1, "the work was shared");
      const its = await items(w.sql, first.run_id);
      assert.ok(its.every((i) => i.outcome === "created"), JSON.stringify(its));
      for (const t of tenants) {
        const customer = await customerOf(w.sql, t);
        assert.equal((await liveInvoices(w, customer!)).length, 2, t);
      }
      const [{ n }] = await w.sql`select count(distinct stripe_invoice_id)::int as n
        from internal.publish_run_items where run_id = ${first.run_id}::uuid`;
      assert.equal(n, 16);
    } finally {
      await w.close();
    }
  },
});

Deno.test({
  name: "recreate_existing replaces an open usage invoice (void + new, audited), not a manual one",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const tenant = await makeTenant(w.sql);
      const usage = await finalBill(w.sql, tenant, "2026-10", LINES);
      const manual = await manualBill(w.sql, tenant, 5000, "2026-10-01", "2026-10-31");
      await run(w, "2026-10", [tenant]);
      const oldUsage = (await storedInvoice(w.sql, "final", usage))!;
      const oldManual = (await storedInvoice(w.sql, "manual", manual))!;
      await w.emu.control.finalizeInvoice(oldUsage);
      await w.emu.control.finalizeInvoice(oldManual);
      const r = await run(w, "2026-10", [tenant], { recreate_existing: true });
      const byBill = new Map(r.items.map((i) => [i.bill, i]));
      assert.equal(byBill.get(`final:${usage}`)?.outcome, "replaced", JSON.stringify(r.items));
      assert.equal(byBill.get(`manual:${manual}`)?.reason, "already_processed");
      const newUsage = (await storedInvoice(w.sql, "final", usage))!;
      assert.notEqual(newUsage, oldUsage);
      assert.equal((await w.stripe.invoices.retrieve(oldUsage)).status, "void");
      const [audit] = await w.sql`select old_id, new_id from internal.stripe_id_audit
        where object_kind = 'final' and object_key = ${String(usage)} and action = 'replace'`;
      assert.deepEqual([audit.old_id, audit.new_id], [oldUsage, newUsage]);
      const again = await run(w, "2026-10", [tenant]);
      assert.equal(
        again.items.find((i) => i.bill === `final:${usage}`)?.outcome,
        "unchanged",
        "without the flag the replacement is just the bill's draft",
      );
    } finally {
      await w.close();
    }
  },
});

Deno.test({
  name: "skip reasons: free tier, trial after period, under 50¢, no data and no payment method",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const free = await makeTenant(w.sql, { trialStart: null });
      await finalBill(w.sql, free, "2026-10", LINES);
      const later = await makeTenant(w.sql, { trialStart: "2026-11-15" });
      await finalBill(w.sql, later, "2026-10", LINES);
      const tiny = await makeTenant(w.sql);
      await finalBill(w.sql, tiny, "2026-10", [{ description: "x", count: 1, rate: 49 }]);
      const c = await w.emu.control.createCustomer({ name: "nopm" });
      const idle = await makeTenant(w.sql, { customerId: c.id });
      await finalBill(w.sql, idle, "2026-10", LINES, 0);
      const c2 = await w.emu.control.createCustomer({ name: "pm" });
      await w.emu.control.createPaymentMethod({ customer: c2.id, default: true });
      const idleWithCard = await makeTenant(w.sql, { customerId: c2.id });
      await finalBill(w.sql, idleWithCard, "2026-10", LINES, 0);
      const r = await run(w, "2026-10", [free, later, tiny, idle, idleWithCard]);
      const reasons = new Map(r.items.map((i) => [i.bill, i.reason]));
      const byTenant = await w.sql<{ tenant: string; id: string }[]>`
        select tenant, id::text from internal.billing_historicals
        where tenant = any(${[free, later, tiny, idle, idleWithCard]})`;
      const reasonOf = (t: string) =>
        reasons.get(`final:${byTenant.find((b) => b.tenant === t)!.id}`);
      assert.equal(reasonOf(free), "free_tier");
      assert.equal(reasonOf(later), "trial_starts_after_period");
      assert.equal(reasonOf(tiny), "under_minimum");
      assert.equal(reasonOf(idle), "no_data_moved_no_payment_method");
      assert.equal(reasonOf(idleWithCard), "no_invoice", "billed: it has a payment method");
    } finally {
      await w.close();
    }
  },
});

// --- The account-wide invoice index ------------------------------------------------------------

/** A Stripe client that counts invoice lists: account-wide scan pages vs per-customer lists. */
function countingLists(stripe: Stripe) {
  const counts = { scan: 0, customer: 0 };
  const invoices = new Proxy(stripe.invoices, {
    get(target, prop, recv) {
      if (prop !== "list") return Reflect.get(target, prop, recv);
      return (params?: Stripe.InvoiceListParams, ...rest: unknown[]) => {
        if (params?.customer) counts.customer++;
        else counts.scan++;
        return (target.list as (...a: unknown[]) => unknown).call(target, params, ...rest);
      };
    },
  });
  return {
    counts,
    stripe: new Proxy(stripe, {
      get: (t, p, r) => (p === "invoices" ? invoices : Reflect.get(t, p, r)),
    }) as Stripe,
  };
}

async function runVia(
  w: World,
  stripe: Stripe,
  month: string,
  tenants: string[],
  status: "done" | "warned" = "done",
) {
  const r = await publish(deps(w, undefined, stripe), { month, tenants }, BUDGET);
  assert.equal(r.status, status);
  return { runId: r.run_id, items: await items(w.sql, r.run_id) };
}

async function scanState(w: World) {
  const [s] = await w.sql<{ complete_through: string | null; completed_passes: number }[]>`
    select complete_through::text, completed_passes::int from internal.stripe_invoice_scan
    where account = ${deps(w).stripeAccount!}`;
  return s;
}

Deno.test({
  name: "index, steady state: each invoice costs create + add_lines, one scan page is shared",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const tenants: string[] = [];
      for (let i = 0; i < 8; i++) {
        const c = await w.emu.control.createCustomer({ name: `steady${i}` });
        const t = await makeTenant(w.sql, { customerId: c.id });
        await finalBill(w.sql, t, "2026-09", LINES);
        await finalBill(w.sql, t, "2026-10", LINES);
        tenants.push(t);
      }
      const l = countingLists(w.stripe);
      const sep = await runVia(w, l.stripe, "2026-09", tenants);
      assert.ok(sep.items.every((i) => i.outcome === "created"), JSON.stringify(sep.items));
      assert.equal(l.counts.customer, 0, "the bootstrap scan answered for every customer");
      await w.emu.control.advanceClock(30 * 86_400);
      w.emu.emulator.calls.reset();
      l.counts.scan = 0;
      const oct = await runVia(w, l.stripe, "2026-10", tenants);
      assert.ok(oct.items.every((i) => i.outcome === "created"), JSON.stringify(oct.items));
      const s = summary(w);
      const created = tenants.length;
      const pages = l.counts.scan;
      assert.equal(pages, 1, "September's 8 invoices are all the scan had to read");
      assert.equal(l.counts.customer, 0, "no per-customer list");
      assert.equal(s.searches, 0, "no Search");
      assert.equal(s.byRoute["POST /v1/invoices"], created);
      assert.equal(s.byRoute["POST /v1/invoices/:id/add_lines"], created);
      assert.equal(s.byRoute["GET /v1/invoices"], pages);
      assert.equal(s.total, 2 * created + pages, JSON.stringify(s.byRoute));
      // Per bill: exactly create + add_lines; the scan is charged to the item that ran it.
      const perItem = await w.sql<{ calls: Record<string, number> }[]>`
        select stripe_calls as calls from internal.publish_run_items
        where run_id = ${oct.runId}::uuid`;
      let scanned = 0;
      for (const { calls } of perItem) {
        const { ["GET /v1/invoices (index scan)"]: scan = 0, ...own } = calls;
        scanned += scan;
        assert.deepEqual(own, { "POST /v1/invoices": 1, "POST /v1/invoices/:id/add_lines": 1 });
      }
      assert.equal(scanned, pages);
      console.log(
        `index steady state, ${created} invoices of 3 lines: ${
          (s.total / created).toFixed(3)
        } Stripe calls per created invoice (${JSON.stringify(s.byRoute)})`,
      );
    } finally {
      await w.close();
    }
  },
});

Deno.test({
  name: "index: a hand-made invoice carrying a new bill's ID, made after the last scan, is adopted",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const c = await w.emu.control.createCustomer({ name: "hand" });
      const tenant = await makeTenant(w.sql, { customerId: c.id });
      await finalBill(w.sql, tenant, "2026-09", LINES);
      const l = countingLists(w.stripe);
      await runVia(w, l.stripe, "2026-09", [tenant]);
      assert.ok((await scanState(w)).complete_through !== null, "the index was bootstrapped");
      const oct = await finalBill(w.sql, tenant, "2026-10", LINES);
      const handMade = await w.emu.control.createInvoice({
        customer: c.id,
        metadata: { "estuary.dev/bill_id": `final:${oct}` },
      });
      l.counts.scan = 0;
      l.counts.customer = 0;
      const r = await runVia(w, l.stripe, "2026-10", [tenant]);
      assert.equal(r.items[0].outcome, "updated", JSON.stringify(r.items));
      assert.equal(await storedInvoice(w.sql, "final", oct), handMade.id);
      assert.equal((await liveInvoices(w, c.id)).length, 2, "September's and the hand-made one");
      assert.ok(l.counts.scan >= 1, "the index was scanned again for this run");
      assert.equal(l.counts.customer, 1, "the index's candidate was confirmed by the live list");
      const [row] = await w.sql`select metadata from internal.stripe_invoice_index
        where stripe_invoice_id = ${handMade.id}`;
      assert.equal(row.metadata["estuary.dev/bill_id"], `final:${oct}`);
    } finally {
      await w.close();
    }
  },
});

Deno.test({
  name: "index: a legacy invoice made before the bootstrap still yields a possible legacy match",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const c = await w.emu.control.createCustomer({ name: "legacy" });
      const tenant = await makeTenant(w.sql, { customerId: c.id });
      const old = await w.emu.control.createInvoice({
        customer: c.id,
        status: "open",
        collection_method: "send_invoice",
        days_until_due: 30,
        lines: [{ amount: 7000, description: "Contract" }],
        metadata: {
          "estuary.dev/tenant_name": tenant,
          "estuary.dev/invoice_type": "manual",
          "estuary.dev/period_start": "2026-10-01",
          "estuary.dev/period_end": "2026-11-30",
          "estuary.dev/created_by_automation": "true",
        },
      });
      const edited = await manualBill(w.sql, tenant, 7000, "2026-10-01", "2026-12-31");
      const c2 = await w.emu.control.createCustomer({ name: "plain" });
      const plainTenant = await makeTenant(w.sql, { customerId: c2.id });
      const plain = await finalBill(w.sql, plainTenant, "2026-10", LINES);
      assert.equal(await scanState(w), undefined, "never bootstrapped");
      const l = countingLists(w.stripe);
      const r = await runVia(w, l.stripe, "2026-10", [tenant, plainTenant], "warned");
      const got = new Map(r.items.map((i) => [i.bill, i]));
      const e = got.get(`manual:${edited}`)!;
      assert.deepEqual([e.outcome, e.reason], ["warned", "possible_legacy_match"]);
      assert.match(e.detail ?? "", new RegExp(old.id));
      assert.equal(await storedInvoice(w.sql, "manual", edited), null);
      assert.equal((await liveInvoices(w, c.id)).length, 1, "nothing created");
      assert.equal(got.get(`final:${plain}`)?.outcome, "created");
      assert.equal((await scanState(w))?.completed_passes, 1, "one bootstrap pass");
      assert.equal(l.counts.customer, 1, "only the legacy candidate's customer was listed");
    } finally {
      await w.close();
    }
  },
});

Deno.test({
  name: "index: a crash after create and before link, rerun past 24 h with the index blind to it",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const customer = await w.emu.control.createCustomer({ name: "crash-index" });
      const tenant = await makeTenant(w.sql, { customerId: customer.id });
      const bill = await finalBill(w.sql, tenant, "2026-10", LINES);
      await publish(deps(w, "crasher", crashingAfterCreate(w.stripe)), {
        month: "2026-10",
        tenants: [tenant],
      }, BUDGET);
      assert.equal(await storedInvoice(w.sql, "final", bill), null, "the crash lost the link");
      assert.equal((await liveInvoices(w, customer.id)).length, 1);
      const clock = await w.emu.control.advanceClock(25 * 3600);
      // The worst case: the index never saw that invoice (and never will). The create intent
      // alone must send the rerun to the customer's live list.
      const account = deps(w).stripeAccount!;
      await w.sql`delete from internal.stripe_invoice_index where account = ${account}`;
      await w.sql`update internal.stripe_invoice_scan set complete_through = ${clock.now + 3600}
        where account = ${account}`;
      const l = countingLists(w.stripe);
      const r = await runVia(w, l.stripe, "2026-10", [tenant]);
      assert.equal(r.items[0].outcome, "updated", JSON.stringify(r.items));
      const live = await liveInvoices(w, customer.id);
      assert.equal(live.length, 1, "still exactly one invoice");
      assert.equal(await storedInvoice(w.sql, "final", bill), live[0].id);
      assert.equal(l.counts.customer, 1, "the intent sent it to the live list");
    } finally {
      await w.close();
    }
  },
});

Deno.test({
  name: "index: two workers starting a drain at once, exactly one scans",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const tenants: string[] = [];
      for (let i = 0; i < 6; i++) {
        const c = await w.emu.control.createCustomer({ name: `pair${i}` });
        const t = await makeTenant(w.sql, { customerId: c.id });
        await finalBill(w.sql, t, "2026-10", LINES);
        tenants.push(t);
      }
      const first = await publish(deps(w, "w0"), { month: "2026-10", tenants }, {
        ...BUDGET,
        budgetMs: 0,
      });
      assert.equal(first.status, "pending");
      const a = countingLists(w.stripe);
      const b = countingLists(w.stripe);
      // Slow enough that neither worker can drain all six before the other claims.
      await w.emu.control.setLatency({ fixedMs: 40 });
      const results = await Promise.all([
        drainRun(deps(w, "wa", a.stripe), first.run_id, { budgetMs: 60_000, batchSize: 2 }),
        drainRun(deps(w, "wb", b.stripe), first.run_id, { budgetMs: 60_000, batchSize: 2 }),
      ]);
      assert.ok(
        results.every((r) => r.processed > 0),
        `both workers drained: ${JSON.stringify(results.map((r) => r.processed))}`,
      );
      assert.equal([a, b].filter((x) => x.counts.scan > 0).length, 1, "exactly one scanned");
      assert.equal(a.counts.customer + b.counts.customer, 0, "the other waited for its index");
      assert.equal((await scanState(w))?.completed_passes, 1);
      const its = await items(w.sql, first.run_id);
      assert.ok(its.every((i) => i.outcome === "created"), JSON.stringify(its));
      for (const t of tenants) {
        assert.equal((await liveInvoices(w, (await customerOf(w.sql, t))!)).length, 1, t);
      }
    } finally {
      await w.close();
    }
  },
});
