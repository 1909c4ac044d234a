/**
 * Reruns without a retrieve per bill: a draft verified by an earlier run, with no Stripe event
 * about it since, costs nothing; a draft changed by hand (fields, lines), finalized, voided or
 * deleted, or whose customer was deleted, is still read and handled per the state table.
 * Counts come from the emulator's call log.
 */
import assert from "node:assert/strict";
import {
  customerOf,
  finalBill,
  IO,
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
// 412.5 GB × 50¢ + 100 h × 14¢ − $10, worked out by hand.
const TOTAL = 20625 + 1400 - 1000;

function calls(w: World) {
  return w.emu.emulator.calls.summary();
}

async function tenantsWithBills(w: World, n: number, month: string) {
  const out: { tenant: string; bill: number }[] = [];
  for (let i = 0; i < n; i++) {
    const tenant = await makeTenant(w.sql, { prefix: "rv" });
    out.push({ tenant, bill: await finalBill(w.sql, tenant, month, LINES) });
  }
  return out;
}

Deno.test({
  name: "an unchanged month's rerun costs at most 0.05 Stripe calls per bill, twice over",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const bills = await tenantsWithBills(w, 20, "2026-10");
      const tenants = bills.map((b) => b.tenant);
      const first = await run(w, "2026-10", tenants);
      assert.ok(first.items.every((i) => i.outcome === "created"), JSON.stringify(first.items));
      for (const attempt of [1, 2]) {
        w.emu.emulator.calls.reset();
        const again = await run(w, "2026-10", tenants);
        assert.ok(
          again.items.every((i) => i.outcome === "unchanged"),
          JSON.stringify(again.items),
        );
        const s = calls(w);
        assert.equal(s.byRoute["GET /v1/invoices/:id"] ?? 0, 0, `rerun ${attempt}: no retrieve`);
        assert.ok(s.total <= 0.05 * bills.length, `rerun ${attempt}: ${JSON.stringify(s)}`);
      }
      for (const b of bills) {
        const inv = await w.stripe.invoices.retrieve(
          (await storedInvoice(w.sql, "final", b.bill))!,
        );
        assert.equal(inv.total, TOTAL);
      }
    } finally {
      await w.close();
    }
  },
});

Deno.test({
  name: "drafts edited by hand between runs are found and rewritten; untouched ones are not read",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const [fields, addedLine, editedLine, untouched] = await tenantsWithBills(w, 4, "2026-10");
      const manualTenant = await makeTenant(w.sql, { prefix: "rv" });
      const manual = await manualBill(w.sql, manualTenant, 120_000, "2026-10-01", "2026-10-31");
      const tenants = [fields, addedLine, editedLine, untouched].map((b) => b.tenant);
      tenants.push(manualTenant);
      await run(w, "2026-10", tenants);
      const id = async (bill: number, kind: "final" | "manual" = "final") =>
        (await storedInvoice(w.sql, kind, bill))!;
      await w.emu.control.updateInvoice(await id(fields.bill), { description: "edited by hand" });
      await w.emu.control.addInvoiceLines(await id(addedLine.bill), [
        { description: "goodwill", amount: -500 },
      ]);
      const inv = await w.stripe.invoices.retrieve(await id(editedLine.bill));
      const line = inv.lines.data[0];
      const itemId = typeof line.parent?.invoice_item_details?.invoice_item === "string"
        ? line.parent.invoice_item_details.invoice_item
        : null;
      assert.ok(itemId, JSON.stringify(line));
      await w.stripe.invoiceItems.update(itemId, { amount: 1 });
      // The contract's price changes: its verification is for other lines.
      await w.sql`update internal.manual_bills set usd_cents = 130000 where id = ${manual}`;
      w.emu.emulator.calls.reset();
      const again = await run(w, "2026-10", tenants);
      const outcome = (bill: string) => again.items.find((i) => i.bill === bill)?.outcome;
      assert.equal(outcome(`final:${fields.bill}`), "updated", JSON.stringify(again.items));
      assert.equal(outcome(`final:${addedLine.bill}`), "updated");
      assert.equal(outcome(`final:${editedLine.bill}`), "updated");
      assert.equal(outcome(`final:${untouched.bill}`), "unchanged");
      assert.equal(outcome(`manual:${manual}`), "updated");
      // Four changed drafts read again, the untouched one not.
      assert.equal(calls(w).byRoute["GET /v1/invoices/:id"], 4, JSON.stringify(calls(w)));
      for (const b of [fields, addedLine, editedLine, untouched]) {
        const now = await w.stripe.invoices.retrieve(await id(b.bill));
        assert.equal(now.total, TOTAL);
        assert.notEqual(now.description, "edited by hand");
        assert.equal(now.lines.data.length, 3);
      }
      assert.equal((await w.stripe.invoices.retrieve(await id(manual, "manual"))).total, 130000);
    } finally {
      await w.close();
    }
  },
});

Deno.test({
  name:
    "verified drafts finalized, voided, deleted or losing their customer by hand follow the state table",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const [finalized, voided, deleted, lostCustomer, untouched] = await tenantsWithBills(
        w,
        5,
        "2026-10",
      );
      const all = [finalized, voided, deleted, lostCustomer, untouched];
      const tenants = all.map((b) => b.tenant);
      await run(w, "2026-10", tenants);
      // The second run proves each draft is verified (no retrieve) before the hand changes.
      w.emu.emulator.calls.reset();
      await run(w, "2026-10", tenants);
      assert.equal(calls(w).byRoute["GET /v1/invoices/:id"] ?? 0, 0);
      const id = async (bill: number) => (await storedInvoice(w.sql, "final", bill))!;
      await w.emu.control.finalizeInvoice(await id(finalized.bill));
      await w.emu.control.finalizeInvoice(await id(voided.bill));
      await w.emu.control.voidInvoice(await id(voided.bill));
      await w.emu.control.deleteInvoice(await id(deleted.bill));
      await w.emu.control.deleteCustomer((await customerOf(w.sql, lostCustomer.tenant))!);
      // Three bills end warned, so the run does.
      const again = await run(w, "2026-10", tenants, {}, "warned");
      const item = (b: { bill: number }) => again.items.find((i) => i.bill === `final:${b.bill}`)!;
      assert.deepEqual(
        all.map((b) => [item(b).outcome, item(b).reason]),
        [
          ["skipped", "already_processed"],
          ["warned", "voided"],
          ["warned", "deleted"],
          ["warned", "customer_deleted"],
          ["unchanged", "draft"],
        ],
        JSON.stringify(again.items),
      );
    } finally {
      await w.close();
    }
  },
});

Deno.test({
  name: "with the event feed off every stored draft is retrieved, as before",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const bills = await tenantsWithBills(w, 3, "2026-10");
      const tenants = bills.map((b) => b.tenant);
      const { publish } = await import("../_shared/publish.ts");
      const { deps, BUDGET } = await import("./publish_helpers.ts");
      const off = { ...deps(w), eventFeed: { enabled: false } };
      await publish(off, { month: "2026-10", tenants }, BUDGET);
      w.emu.emulator.calls.reset();
      const r = await publish(off, { month: "2026-10", tenants }, BUDGET);
      assert.equal(r.status, "done");
      assert.equal(calls(w).byRoute["GET /v1/invoices/:id"], 3);
      assert.equal(calls(w).byRoute["GET /v1/events"] ?? 0, 0);
    } finally {
      await w.close();
    }
  },
});

Deno.test({
  name: "a line whose description alone is edited (total unchanged) is still found and rewritten",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const [b] = await tenantsWithBills(w, 1, "2026-10");
      await run(w, "2026-10", [b.tenant]);
      const id = (await storedInvoice(w.sql, "final", b.bill))!;
      const line = (await w.stripe.invoices.retrieve(id)).lines.data[0];
      const itemId = line.parent?.invoice_item_details?.invoice_item;
      assert.ok(typeof itemId === "string", JSON.stringify(line));
      await w.stripe.invoiceItems.update(itemId, { description: "renamed by hand" });
      const again = await run(w, "2026-10", [b.tenant]);
      assert.equal(again.items[0].outcome, "updated", JSON.stringify(again.items));
      const now = await w.stripe.invoices.retrieve(id);
      assert.equal(now.total, TOTAL);
      assert.ok(now.lines.data.every((l) => l.description !== "renamed by hand"));
    } finally {
      await w.close();
    }
  },
});
