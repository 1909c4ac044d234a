// The publish-invoices handler, called directly: who may call it, what bad input gets, dry runs
// and the time budget. Real Postgres (dev/stack.sh start) and the in-process emulator.
import assert from "node:assert/strict";
import { envFromRecord } from "../_shared/http.ts";
import { createPublishApp, secretEquals } from "../publish-invoices/handler.ts";
import { runItemsPage } from "../_shared/runs.ts";
import { startStripeEmulator } from "../../../dev/stripe-emulator/server.ts";
import { emulatorClient } from "../../../dev/stripe-emulator/test_support.ts";
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
      assert.equal(out.report, undefined, "the response carries counts, not every item");
      const its = await runItemsPage(w.sql, out.run_id);
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
      assert.equal(done.counters.outcomes.created, 1);
      assert.ok(await storedInvoice(w.sql, "final", bill));
    } finally {
      await slow.close();
      await app.close();
      await w.close();
    }
  },
});

Deno.test({
  name:
    "a run with warned bills answers warned with counts and the first problems, never every item",
  ...IO,
  async fn() {
    const w = await openWorld();
    const app = createPublishApp(ENV, { sql: w.sql, stripe: w.stripe, budgetMs: 30_000 });
    try {
      const customer = await w.stripe.customers.create({ name: "warned" });
      const tenants = [];
      for (let i = 0; i < 3; i++) {
        tenants.push(await makeTenant(w.sql, { customerId: customer.id }));
      }
      const bills = [];
      for (const t of tenants) {
        bills.push(
          await finalBill(w.sql, t, "2031-03", [{ description: "Data", count: 10, rate: 500 }]),
        );
      }
      // The last bill's stored invoice is void in Stripe: warned (left unbilled), not recreated.
      const voided = await w.emu.control.createInvoice({
        customer: customer.id,
        status: "void",
        collection_method: "send_invoice",
        days_until_due: 30,
        lines: [{ amount: 5000, description: "old" }],
      });
      await w.sql`select internal.link_bill_invoice('final', ${bills[2]}, ${voided.id as string},
        'test')`;
      const res = await app.fetch(post({ month: "2031-03", tenants }, SERVICE));
      const out = await res.json();
      assert.equal(res.status, 200, JSON.stringify(out));
      assert.equal(out.status, "warned");
      assert.equal(out.warned, 1);
      assert.equal(out.failed, 0);
      assert.equal(out.counters.items, 3);
      assert.equal(out.report, undefined);
      assert.deepEqual(out.problems.map((p: { bill: string }) => p.bill), [`final:${bills[2]}`]);
      assert.equal(out.problems[0].reason, "voided");
      assert.equal(out.problems_truncated, false);
      // The stored report pages every item, by state.
      const warned = await runItemsPage(w.sql, out.run_id, { state: "warned" });
      assert.deepEqual(warned.map((i) => i.bill), [`final:${bills[2]}`]);
    } finally {
      await app.close();
      await w.close();
    }
  },
});

Deno.test({
  name:
    "unknown tenants are a 400 naming them; an overlapping active run is a 409 naming it; the same request joins",
  ...IO,
  async fn() {
    const w = await openWorld();
    const app = createPublishApp(ENV, { sql: w.sql, stripe: w.stripe, budgetMs: 30_000 });
    try {
      const tenant = await makeTenant(w.sql);
      await finalBill(w.sql, tenant, "2031-04", [{ description: "Data", count: 10, rate: 500 }]);
      let res = await app.fetch(
        post({ month: "2031-04", tenants: [tenant, "nosuch9x/"] }, SERVICE),
      );
      let out = await res.json();
      assert.equal(res.status, 400);
      assert.equal(out.error.field, "tenants");
      assert.equal(out.error.message, "no such tenant: nosuch9x/");
      const runs = await w.sql`select 1 from internal.publish_runs where ${tenant} = any(tenants)`;
      assert.equal(runs.length, 0, "nothing enqueued");

      const [{ id }] = await w.sql<{ id: string }[]>`
        select internal.enqueue_publish_run('2031-04-01', ${[tenant]}::text[],
          '{"recreate_existing": true}', 'other-operator')::text as id`;
      res = await app.fetch(post({ month: "2031-04", tenants: [tenant] }, SERVICE));
      out = await res.json();
      assert.equal(res.status, 409);
      assert.equal(out.error.code, "run_in_progress");
      assert.match(out.error.message, new RegExp(`run ${id} \\(by other-operator.*run_id ${id}`));

      res = await app.fetch(
        post({ month: "2031-04", tenants: [tenant], recreate_existing: true }, SERVICE),
      );
      out = await res.json();
      assert.equal(res.status, 200, JSON.stringify(out));
      assert.equal(out.run_id, id);
      assert.equal(out.joined, true);
    } finally {
      await app.close();
      await w.close();
    }
  },
});

Deno.test({
  name: "a key of another Stripe account gets a 503 naming both accounts and enqueues nothing",
  ...IO,
  async fn() {
    const w = await openWorld();
    const other = await startStripeEmulator({ port: 0, accountId: "acct_notthisone" });
    const right = createPublishApp(ENV, { sql: w.sql, stripe: w.stripe, budgetMs: 30_000 });
    const wrong = createPublishApp(ENV, {
      sql: w.sql,
      stripe: emulatorClient(other.port),
      budgetMs: 30_000,
    });
    try {
      const tenant = await makeTenant(w.sql);
      await finalBill(w.sql, tenant, "2031-05", [{ description: "Data", count: 10, rate: 500 }]);
      // The right account binds (or matches) first.
      let res = await right.fetch(
        post({ month: "2031-05", tenants: [tenant], dry_run: true }, SERVICE),
      );
      assert.equal(res.status, 200);
      await res.body?.cancel();
      const runsBefore = await w
        .sql`select 1 from internal.publish_runs where ${tenant} = any(tenants)`;
      res = await wrong.fetch(post({ month: "2031-05", tenants: [tenant] }, SERVICE));
      const out = await res.json();
      assert.equal(res.status, 503);
      assert.equal(out.error.code, "stripe_account_mismatch");
      assert.match(
        out.error.message,
        /acct_notthisone \(test mode\), but this database is bound to acct_/,
      );
      const runsAfter = await w
        .sql`select 1 from internal.publish_runs where ${tenant} = any(tenants)`;
      assert.equal(runsAfter.length, runsBefore.length, "nothing enqueued");
      assert.deepEqual(Object.keys(other.emulator.calls.summary().byRoute), ["GET /v1/account"]);
    } finally {
      await right.close();
      await wrong.close();
      await other.close();
      await w.close();
    }
  },
});

Deno.test({
  name: "the function's runs reserve at nearly Stripe's limit for the key's mode, not 20/s",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const rateOf = async (env: typeof ENV, month: string) => {
        const app = createPublishApp(env, { sql: w.sql, stripe: w.stripe });
        try {
          const tenant = await makeTenant(w.sql);
          await finalBill(w.sql, tenant, month, [{ description: "Data", count: 10, rate: 500 }]);
          const res = await app.fetch(post({ month, tenants: [tenant], dry_run: true }, SERVICE));
          const out = await res.json();
          assert.equal(res.status, 200, JSON.stringify(out));
          const [run] = await w.sql<{ rate: number }[]>`
            select (options ->> 'rate_per_second')::float8 as rate from internal.publish_runs
            where id = ${out.run_id}::uuid`;
          return run.rate;
        } finally {
          await app.close();
        }
      };
      // A test-mode key: Stripe allows 25 requests/s; 98% of it.
      assert.equal(await rateOf(ENV, "2031-08"), 24.5);
      const configured = envFromRecord({
        SUPABASE_SERVICE_ROLE_KEY: "service-role-jwt-for-tests",
        STRIPE_RATE_LIMIT: "10",
      });
      assert.equal(await rateOf(configured, "2031-09"), 10, "STRIPE_RATE_LIMIT wins");
    } finally {
      await w.close();
    }
  },
});
