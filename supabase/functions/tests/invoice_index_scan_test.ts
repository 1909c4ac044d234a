// The account-wide invoice index scan, paged as several `created` ranges at once: it reads every
// invoice, a pass handed back out of time resumes from its saved ranges under another owner, and
// one range at a time still reads one page per 100 invoices.
import assert from "node:assert/strict";
import { refreshInvoiceIndex } from "../_shared/invoices.ts";
import { StripeCaller } from "../_shared/stripe_calls.ts";
import { IO, openWorld, type World } from "./publish_helpers.ts";

/** `n` invoices for one customer, `perSecond` per second of Stripe's clock, oldest first. */
async function invoices(w: World, n: number, perSecond: number): Promise<Set<string>> {
  const c = await w.emu.control.createCustomer({ name: "scan" });
  const ids = new Set<string>();
  for (let i = 0; i < n; i += perSecond) {
    const made = await Promise.all(
      Array.from(
        { length: Math.min(perSecond, n - i) },
        () => w.emu.control.createInvoice({ customer: c.id as string }),
      ),
    );
    for (const inv of made) ids.add(inv.id as string);
    await w.emu.control.advanceClock(1);
  }
  return ids;
}

/** Every invoice of the account, by plain cursor paging (what the index must hold). */
async function listed(w: World): Promise<Set<string>> {
  const ids = new Set<string>();
  for await (const inv of w.stripe.invoices.list({ limit: 100 })) ids.add(inv.id!);
  return ids;
}

async function indexed(w: World, account: string): Promise<Set<string>> {
  const rows = await w.sql<{ id: string }[]>`select stripe_invoice_id as id
    from internal.stripe_invoice_index where account = ${account}`;
  return new Set(rows.map((r) => r.id));
}

const scanOptions = (account: string, owner: string) => ({
  account,
  owner,
  freshAfter: new Date(Date.now() - 1000).toISOString(),
});

Deno.test({
  name: "index scan: ranges read at once cover the account; a handed-back pass resumes",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      // An old month (bursts of 40 a second) and, 30 days later, a newer one.
      await invoices(w, 400, 40);
      await w.emu.control.advanceClock(30 * 86_400);
      await invoices(w, 350, 25);
      const all = await listed(w);
      assert.equal(all.size, 750);
      const account = `acct_scan${crypto.randomUUID().slice(0, 8)}`;
      const first = new StripeCaller(w.stripe);
      const r1 = await refreshInvoiceIndex({ sql: w.sql, caller: first }, {
        ...scanOptions(account, "w1"),
        concurrency: 4,
        outOfTime: () => first.stats().total >= 3,
      });
      assert.equal(r1.state, "incomplete");
      const [saved] = await w.sql<{ n: number; owner: string | null }[]>`
        select jsonb_array_length(pass_ranges)::int as n, lease_owner as owner
        from internal.stripe_invoice_scan where account = ${account}`;
      assert.ok(saved.n >= 1, "the ranges left are saved");
      assert.equal(saved.owner, null, "and the lease is handed back");
      const partly = await indexed(w, account);
      assert.ok(partly.size > 0 && partly.size < all.size, `${partly.size} indexed so far`);

      const second = new StripeCaller(w.stripe);
      const r2 = await refreshInvoiceIndex({ sql: w.sql, caller: second }, {
        ...scanOptions(account, "w2"),
        concurrency: 8,
      });
      assert.equal(r2.state, "fresh");
      assert.deepEqual(await indexed(w, account), all, "every invoice is in the index");
      const [done] = await w.sql<{ ranges: unknown; passes: number }[]>`
        select pass_ranges as ranges, completed_passes::int as passes
        from internal.stripe_invoice_scan where account = ${account}`;
      assert.equal(done.ranges, null);
      assert.equal(done.passes, 1);
      const pages = r1.pages + r2.pages;
      console.log(
        `750 invoices: ${r1.pages} + ${r2.pages} pages in two passes of 4 and 8 ranges at once`,
      );
      // Cut ranges may read an empty or a partial page; never more than a few per fetcher.
      assert.ok(pages <= 8 + 3 * 8, `${pages} pages`);
    } finally {
      await w.close();
    }
  },
});

Deno.test({
  name: "index scan: one range at a time reads one page per 100 invoices, as a cursor would",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      await invoices(w, 250, 25);
      const account = `acct_scan${crypto.randomUUID().slice(0, 8)}`;
      const caller = new StripeCaller(w.stripe);
      const r = await refreshInvoiceIndex({ sql: w.sql, caller }, {
        ...scanOptions(account, "w1"),
        concurrency: 1,
      });
      assert.equal(r.state, "fresh");
      assert.equal(r.pages, 3);
      assert.deepEqual(await indexed(w, account), await listed(w));
    } finally {
      await w.close();
    }
  },
});

Deno.test({
  name: "index scan: an account quiet for a month is not read again whole by the next pass",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      await invoices(w, 400, 25);
      // Nothing is created for 30 days; then the first pass runs, and five invoices follow it.
      await w.emu.control.advanceClock(30 * 86_400);
      const account = `acct_scan${crypto.randomUUID().slice(0, 8)}`;
      const caller = new StripeCaller(w.stripe);
      const first = await refreshInvoiceIndex({ sql: w.sql, caller }, scanOptions(account, "w1"));
      assert.equal(first.state, "fresh");
      const [{ through }] = await w.sql<{ through: string }[]>`
        select complete_through::text as through from internal.stripe_invoice_scan
        where account = ${account}`;
      const { now } = await w.emu.control.clock();
      assert.ok(
        Math.abs(Number(through) - now) <= 5,
        `the watermark is Stripe's clock at the pass (${through}), not the newest invoice`,
      );
      await w.emu.control.advanceClock(60);
      await invoices(w, 5, 5);
      const next = await refreshInvoiceIndex({ sql: w.sql, caller }, {
        ...scanOptions(account, "w2"),
        freshAfter: new Date().toISOString(),
      });
      assert.equal(next.state, "fresh");
      // Before, the watermark was the newest invoice of a month ago: all 400 were read again.
      assert.equal(next.pages, 1, "only what is newer than the last pass (less the skew)");
      assert.deepEqual(await indexed(w, account), await listed(w));
    } finally {
      await w.close();
    }
  },
});
