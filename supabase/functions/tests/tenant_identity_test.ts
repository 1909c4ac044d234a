// A tenant's customer over its life, against the local Postgres and the in-process emulator:
// a tenant holding a customer is not deleted silently, a new tenant of the same name never
// re-adopts the old customer, a lost link race is a recorded `duplicate`, and a customer deleted
// by hand is noticed.
import assert from "node:assert/strict";
import { resolveCustomer } from "../_shared/customers.ts";
import { publish } from "../_shared/publish.ts";
import { StripeCaller } from "../_shared/stripe_calls.ts";
import {
  customerOf,
  IO,
  items,
  makeTenant,
  manualBill,
  openWorld,
  storedInvoice,
} from "./publish_helpers.ts";

Deno.test({
  name: "a tenant holding a customer cannot be deleted; its name never re-adopts that customer",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const caller = new StripeCaller(w.stripe, { baseDelayMs: 5 });
      const deps = { sql: w.sql, caller, actor: "identity-test" };
      const tenant = await makeTenant(w.sql, { prefix: "idlife" });
      const first = await resolveCustomer(deps, tenant);
      assert.equal(first.source, "created");
      const oldCustomer = first.customerId!;

      await assert.rejects(
        w.sql`delete from public.tenants where tenant = ${tenant}`,
        (err: { code?: string; message: string }) =>
          err.code === "23001" && err.message.includes(oldCustomer),
        "deleting a tenant that holds a customer is refused, naming the customer",
      );
      assert.equal(await customerOf(w.sql, tenant), oldCustomer);

      const [released] = await w.sql`select outcome from internal.release_tenant_customer(
        ${tenant}, ${oldCustomer}, 'ops', 'tenant closed')`;
      assert.equal(released.outcome, "released");
      await w.sql`delete from public.tenants where tenant = ${tenant}`;

      // A new tenant of the same name: Search still finds the old customer by metadata.
      await w.sql`insert into public.tenants (tenant, billing_email)
        values (${tenant}, 'new-owner@example.test')`;
      const second = await resolveCustomer(deps, tenant);
      assert.equal(second.source, "created", "the old customer is not adopted");
      assert.notEqual(second.customerId, oldCustomer);
      assert.equal(await customerOf(w.sql, tenant), second.customerId);
      const creates = (await w.emu.control.calls()).filter((c) => c.route === "POST /v1/customers");
      assert.equal(creates.length, 2, "a second create, not a replay of the first");
      assert.notEqual(creates[0].idempotencyKey, creates[1].idempotencyKey);

      const audit = await w.sql<{ action: string; old_id: string | null; reason: string }[]>`
        select action, old_id, reason from internal.stripe_id_audit
        where object_kind = 'tenant' and object_key = ${tenant} order by id`;
      assert.deepEqual(
        audit.map((a) => [a.action, a.old_id]),
        [["link", null], ["release", oldCustomer], ["link", null]],
      );
      assert.equal(audit[1].reason, "tenant closed");
    } finally {
      await w.close();
    }
  },
});

Deno.test({
  name: "two concurrent links of one Stripe ID: the loser is a recorded duplicate, not an error",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const winner = await makeTenant(w.sql, { prefix: "idrace" });
      const loser = await makeTenant(w.sql, { prefix: "idrace" });
      const customer = `cus_race${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
      const winnerBill = await manualBill(w.sql, winner, 100, "2030-01-01", "2030-01-31");
      const loserBill = await manualBill(w.sql, loser, 100, "2030-01-01", "2030-01-31");
      const invoice = `in_race${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;

      const race = async (
        first: () => Promise<unknown>,
        second: () => Promise<{ outcome: string; detail: string | null }[]>,
      ) => {
        let linked!: () => void;
        const firstLinked = new Promise<void>((resolve) => linked = resolve);
        let secondResult: Promise<{ outcome: string; detail: string | null }[]> | undefined;
        await w.sql.begin(async (tx) => {
          await first.call(tx);
          linked();
          // Sent now (postgres.js sends on then): it blocks on the uncommitted first link.
          secondResult = Promise.resolve(second());
          for (let i = 0; i < 100; i++) {
            const [{ waiting }] = await w.sql<{ waiting: number }[]>`
              select count(*)::int as waiting from pg_stat_activity
              where wait_event_type = 'Lock' and query like '%race-b%'
                and pid <> pg_backend_pid()`;
            if (waiting > 0) return;
            await new Promise((resolve) => setTimeout(resolve, 20));
          }
          throw new Error("the second link never waited for the first");
        });
        await firstLinked;
        return await secondResult!;
      };

      const [tenantLoss] = await race(
        function (this: unknown) {
          return (this as typeof w.sql)`select internal.link_tenant_customer(${winner},
            ${customer}, 'race-a')`;
        },
        () =>
          w.sql<{ outcome: string; detail: string | null }[]>`
            select outcome, detail from internal.link_tenant_customer(${loser}, ${customer},
              'race-b', 'lost race')`,
      );
      assert.equal(tenantLoss.outcome, "duplicate", JSON.stringify(tenantLoss));
      assert.equal(await customerOf(w.sql, loser), null);
      const [tenantAudit] = await w.sql`select action, new_id, actor from internal.stripe_id_audit
        where object_kind = 'tenant' and object_key = ${loser}`;
      assert.deepEqual({ ...tenantAudit }, {
        action: "duplicate",
        new_id: customer,
        actor: "race-b",
      });

      const [billLoss] = await race(
        function (this: unknown) {
          return (this as typeof w.sql)`select internal.link_bill_invoice('manual',
            ${winnerBill}, ${invoice}, 'race-a')`;
        },
        () =>
          w.sql<{ outcome: string; detail: string | null }[]>`
            select outcome, detail from internal.link_bill_invoice('manual', ${loserBill},
              ${invoice}, 'race-b')`,
      );
      assert.equal(billLoss.outcome, "duplicate", JSON.stringify(billLoss));
      assert.equal(await storedInvoice(w.sql, "manual", loserBill), null);
      assert.equal(await storedInvoice(w.sql, "manual", winnerBill), invoice);

      // A replacement racing a link for the same new invoice loses the same way.
      const replacement = `in_race${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
      const previous = `in_prev${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
      await w.sql`select internal.link_bill_invoice('manual', ${loserBill}, ${previous}, 'setup')`;
      const [replaceLoss] = await race(
        function (this: unknown) {
          return (this as typeof w.sql)`select internal.replace_bill_invoice('manual',
            ${winnerBill}, ${invoice}, ${replacement}, 'race-a', 'recreate')`;
        },
        () =>
          w.sql<{ outcome: string; detail: string | null }[]>`
            select outcome, detail from internal.replace_bill_invoice('manual', ${loserBill},
              ${previous}, ${replacement}, 'race-b', 'recreate')`,
      );
      assert.equal(replaceLoss.outcome, "duplicate", JSON.stringify(replaceLoss));
      assert.equal(await storedInvoice(w.sql, "manual", loserBill), previous);
    } finally {
      await w.close();
    }
  },
});

// A deleted customer is noticed before anything is called up to date: the stored invoice's
// retrieve expands its customer.
Deno.test({
  name: "a draft on a customer deleted by hand is warned, not up to date",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const tenant = await makeTenant(w.sql, { prefix: "iddel" });
      const bill = await manualBill(w.sql, tenant, 50000, "2026-10-01", "2026-10-31");
      const deps = { ...w.deps(), stripeAccount: `test:${crypto.randomUUID()}` };
      const budget = { budgetMs: 60_000, actor: "test" };
      const first = await publish(deps, { month: "2026-10", tenants: [tenant] }, budget);
      const [created] = await items(w.sql, first.run_id);
      assert.equal(created.outcome, "created", JSON.stringify(created));
      // Deleted by hand in the dashboard; no webhook reaches this database.
      await w.stripe.customers.del((await customerOf(w.sql, tenant))!);
      const second = await publish(deps, { month: "2026-10", tenants: [tenant] }, budget);
      const [again] = await items(w.sql, second.run_id);
      assert.equal(again.reason, "customer_deleted", JSON.stringify(again));
      assert.doesNotMatch(again.detail ?? "", /up to date/);
      assert.ok(await storedInvoice(w.sql, "manual", bill));
    } finally {
      await w.close();
    }
  },
});
