// The publish-invoices handler, called directly: who may call it, what bad input gets, dry runs
// and the time budget. Real Postgres (dev/stack.sh start) and the in-process emulator.
import assert from "node:assert/strict";
import { envFromRecord } from "../_shared/http.ts";
import { createPublishApp, secretEquals } from "../publish-invoices/handler.ts";
import { finalBill, IO, makeTenant, openWorld, storedInvoice } from "./publish_helpers.ts";

const ENV = envFromRecord({
  SUPABASE_SERVICE_ROLE_KEY: "service-role-jwt-for-tests",
  SUPABASE_SECRET_KEYS: JSON.stringify({ default: "sb_secret_testkey" }),
  PUBLISH_INVOICES_SECRET: "scheduler-secret-for-tests",
});

function post(body: unknown, headers: Record<string, string> = {}): Request {
  return new Request("http://localhost/publish-invoices", {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
}

const SERVICE = { authorization: "Bearer service-role-jwt-for-tests" };

Deno.test("secretEquals() compares whole secrets", async () => {
  assert.equal(await secretEquals("abc", "abc"), true);
  assert.equal(await secretEquals("abc", "abd"), false);
  assert.equal(await secretEquals("abc", "abcd"), false);
  assert.equal(await secretEquals("", "x"), false);
});

Deno.test({
  name: "only the service role key, a secret key or the scheduler secret may call",
  ...IO,
  async fn() {
    const w = await openWorld();
    const app = createPublishApp(ENV, { sql: w.sql, stripe: w.stripe, budgetMs: 30_000 });
    try {
      const tenant = await makeTenant(w.sql);
      const body = { month: "2031-07", tenants: [tenant], dry_run: true };
      for (
        const headers of <Record<string, string>[]> [
          {},
          { authorization: "Bearer wrong" },
          { apikey: "sb_secret_wrong" },
          { "x-scheduler-secret": "nope" },
          { authorization: "Bearer sb_secret_testkey" },
        ]
      ) {
        const res = await app.fetch(post(body, headers));
        const text = await res.text();
        assert.equal(res.status, 401, JSON.stringify(headers));
        assert.ok(!text.includes("scheduler-secret-for-tests") && !text.includes("sb_secret_test"));
      }
      for (
        const headers of <Record<string, string>[]> [
          SERVICE,
          { apikey: "sb_secret_testkey" },
          { "x-scheduler-secret": "scheduler-secret-for-tests" },
        ]
      ) {
        const res = await app.fetch(post(body, headers));
        assert.equal(res.status, 200, JSON.stringify(headers));
        await res.body?.cancel();
      }
    } finally {
      await app.close();
      await w.close();
    }
  },
});

Deno.test({
  name: "bad input gets a 400 naming the field and writes nothing",
  ...IO,
  async fn() {
    const w = await openWorld();
    const app = createPublishApp(ENV, { sql: w.sql, stripe: w.stripe });
    try {
      // A month no other test uses: tests run in parallel on one database.
      const runsOfMonth = async () =>
        (await w.sql<{ n: number }[]>`
          select count(*)::int as n from internal.publish_runs where month = '2019-03-01'`)[0].n;
      const before = await runsOfMonth();
      const cases: [unknown, string][] = [
        [{}, "month"],
        [{ month: "2026-13" }, "month"],
        [{ month: "2026-10-01" }, "month"],
        [{ month: "2019-03", tenants: ["no-slash"] }, "tenants.0"],
        [{ month: "2019-03", tenants: [] }, "tenants"],
        [{ month: "2019-03", dry_run: "yes" }, "dry_run"],
        [{ month: "2019-03", recreate_existing: 1 }, "recreate_existing"],
        [{ month: "2019-03", run_id: "not-a-uuid" }, "run_id"],
        [{ month: "2019-03", tenant: ["a/"] }, "body"],
        [[1, 2], "body"],
      ];
      for (const [body, field] of cases) {
        const res = await app.fetch(post(body, SERVICE));
        const out = await res.json();
        assert.equal(res.status, 400, JSON.stringify(body));
        assert.equal(out.error.field, field, JSON.stringify(out));
      }
      const bad = await app.fetch(
        new Request("http://localhost/publish-invoices", {
          method: "POST",
          headers: SERVICE,
          body: "{not json",
        }),
      );
      assert.equal(bad.status, 400);
      await bad.body?.cancel();
      assert.equal(await runsOfMonth(), before, "no run was written");
      assert.equal(w.emu.emulator.calls.summary().total, 0, "Stripe was not called");
    } finally {
      await app.close();
      await w.close();
    }
  },
});

Deno.test({
  name: "dry_run returns the plan and makes no Stripe write",
  ...IO,
  async fn() {
    const w = await openWorld();
    const app = createPublishApp(ENV, { sql: w.sql, stripe: w.stripe });
    try {
      const tenant = await makeTenant(w.sql);
      const bill = await finalBill(w.sql, tenant, "2026-10", [
        { description: "Data", count: 10, rate: 500 },
      ]);
      const free = await makeTenant(w.sql, { trialStart: null });
      await finalBill(w.sql, free, "2026-10", [{ description: "Data", count: 10, rate: 500 }]);
      const res = await app.fetch(
        post({ month: "2026-10", tenants: [tenant, free], dry_run: true }, SERVICE),
      );
      const out = await res.json();
      assert.equal(res.status, 200);
      assert.equal(out.status, "done");
      const its = out.report.items as Record<string, unknown>[];
      const mine = its.find((i) => i.bill === `final:${bill}`)!;
      assert.equal(mine.outcome, "planned");
      assert.equal(mine.action, "create");
      assert.match(
        (mine.plan as { idempotencyKey: string }).idempotencyKey,
        new RegExp(`^flow:[0-9a-f-]{36}:final:${bill}:g0:create:[0-9a-f]{24}$`),
      );
      assert.equal(its.find((i) => i.tenant === free)?.reason, "free_tier");
      const s = w.emu.emulator.calls.summary();
      assert.equal(s.writes, 0, "no Stripe write");
      assert.equal(await storedInvoice(w.sql, "final", bill), null, "nothing linked");
    } finally {
      await app.close();
      await w.close();
    }
  },
});

Deno.test({
  name: "out of time it answers pending with the run ID; called again it finishes the run",
  ...IO,
  async fn() {
    const w = await openWorld();
    const slow = createPublishApp(ENV, { sql: w.sql, stripe: w.stripe, budgetMs: 0 });
    const app = createPublishApp(ENV, { sql: w.sql, stripe: w.stripe, budgetMs: 30_000 });
    try {
      const tenant = await makeTenant(w.sql);
      const bill = await finalBill(w.sql, tenant, "2026-10", [
        { description: "Data", count: 10, rate: 500 },
      ]);
      const first = await slow.fetch(post({ month: "2026-10", tenants: [tenant] }, SERVICE));
      const pending = await first.json();
      assert.equal(first.status, 202);
      assert.equal(pending.status, "pending");
      assert.match(pending.run_id, /^[0-9a-f-]{36}$/);
      const wrongMonth = await app.fetch(
        post({ month: "2026-11", run_id: pending.run_id }, SERVICE),
      );
      assert.equal(wrongMonth.status, 400, "a run belongs to its month");
      await wrongMonth.body?.cancel();
      const next = await app.fetch(
        post({ month: "2026-10", run_id: pending.run_id }, {
          "x-scheduler-secret": "scheduler-secret-for-tests",
        }),
      );
      const done = await next.json();
      assert.equal(next.status, 200);
      assert.equal(done.status, "done");
      assert.equal(done.report.counters.outcomes.created, 1);
      assert.ok(await storedInvoice(w.sql, "final", bill));
    } finally {
      await slow.close();
      await app.close();
      await w.close();
    }
  },
});
