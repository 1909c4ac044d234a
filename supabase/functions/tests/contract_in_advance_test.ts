// Contract bills in advance (opt-in): a manual bill starting next month is published with this
// month's run, finalize's month window matches, and it is not published again in its own month,
// nor after its dates are edited. Real Postgres and the in-process emulator.
import assert from "node:assert/strict";
import { publish } from "../_shared/publish.ts";
import { loadMonthBills } from "../../../cli/bills.ts";
import { IO, items, makeTenant, manualBill, openWorld, storedInvoice } from "./publish_helpers.ts";
import type { World } from "./publish_helpers.ts";

const BUDGET = { budgetMs: 60_000, actor: "test" };

async function run(w: World, account: string, month: string, tenants: string[]) {
  const r = await publish({ ...w.deps(), stripeAccount: account }, { month, tenants }, BUDGET);
  assert.equal(r.status, "done", JSON.stringify(r));
  return await items(w.sql, r.run_id);
}

Deno.test({
  name: "a contract starting next month is published once, in advance, when the tenant opts in",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const account = `test:${crypto.randomUUID()}`;
      const optedIn = await makeTenant(w.sql, { prefix: "advin" });
      const regular = await makeTenant(w.sql, { prefix: "advno" });
      await w.sql`insert into internal.tenant_billing_settings (tenant, contract_bills_in_advance)
        values (${optedIn}, true)`;
      const current = await manualBill(w.sql, optedIn, 30000, "2033-01-01", "2033-01-31", "Jan");
      const ahead = await manualBill(w.sql, optedIn, 90000, "2033-02-01", "2033-04-30", "Q1");
      const later = await manualBill(w.sql, optedIn, 10000, "2033-03-01", "2033-03-31", "Mar");
      const notOptedIn = await manualBill(w.sql, regular, 50000, "2033-02-01", "2033-02-28");

      // January's run: this month's contract and February's, not March's.
      const jan = await run(w, account, "2033-01", [optedIn, regular]);
      assert.deepEqual(
        jan.map((i) => [i.bill, i.outcome]).sort(),
        [[`manual:${current}`, "created"], [`manual:${ahead}`, "created"]].sort(),
        JSON.stringify(jan),
      );
      const aheadInvoice = await storedInvoice(w.sql, "manual", ahead);
      assert.ok(aheadInvoice, "the contract starting next month has its invoice");
      assert.equal(
        await storedInvoice(w.sql, "manual", notOptedIn),
        null,
        "a tenant that did not opt in is billed in its own month",
      );

      // finalize (and drift) read the month through the same window.
      const janBills = (await loadMonthBills(w.sql, "2033-01-01", [optedIn, regular]))
        .map((b) => b.bill_id).sort();
      assert.deepEqual(janBills, [`manual:${current}`, `manual:${ahead}`].sort());

      // February: the advance-published contract is not selected again; the other tenant's is.
      const feb = await run(w, account, "2033-02", [optedIn, regular]);
      assert.deepEqual(
        feb.map((i) => i.bill).sort(),
        [`manual:${notOptedIn}`, `manual:${later}`].sort(),
        JSON.stringify(feb),
      );
      const febBills = (await loadMonthBills(w.sql, "2033-02-01", [optedIn]))
        .map((b) => b.bill_id);
      assert.ok(!febBills.includes(`manual:${ahead}`), "finalize skips it in February too");

      // Its dates corrected afterwards: still never selected by another month's run.
      await w
        .sql`update internal.manual_bills set date_start = '2033-02-15', date_end = '2033-03-31'
        where id = ${ahead}`;
      const febAgain = await run(w, account, "2033-02", [optedIn]);
      assert.ok(!febAgain.some((i) => i.bill === `manual:${ahead}`), JSON.stringify(febAgain));
      const mar = await run(w, account, "2033-03", [optedIn]);
      assert.ok(!mar.some((i) => i.bill === `manual:${ahead}`), JSON.stringify(mar));
      assert.equal(await storedInvoice(w.sql, "manual", ahead), aheadInvoice, "one invoice, ever");
      const state = await w.emu.control.state();
      const forAhead = state.invoices.filter((i) =>
        i.metadata?.["estuary.dev/bill_id"] === `manual:${ahead}` && !i.deleted
      );
      assert.equal(forAhead.length, 1, "Stripe holds one invoice for the contract");
    } finally {
      await w.close();
    }
  },
});
