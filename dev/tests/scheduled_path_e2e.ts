// The scheduled path end to end, with the migrations' own pg_cron jobs: Vault holds the
// gateway's URL and the scheduler secret; the monthly job's command enqueues last month and
// calls publish-invoices through pg_net (the local stand-in and its worker); pg_cron itself then
// fires the per-minute job until the run is done, against the functions gateway and the Stripe
// emulator. First with a wrong secret (401: nothing published, the run left pending, the failure
// in the tick's result), then with the right one.
//
// Needs a stack of its own (the monthly job enqueues every bill of last month, and the
// per-minute job calls for every run with claimable items), so it is not a *_test.ts file:
// dev/test.sh runs it right after `dev/stack.sh reset`, before the other Deno tests. Waits for
// pg_cron's next minute once (at most ~60 s).
import assert from "node:assert/strict";
import { startFunctionsGateway } from "../functions-gateway/gateway.ts";
import {
  customerOf,
  finalBill,
  IO,
  liveInvoices,
  makeTenant,
  manualBill,
  openWorld,
  storedInvoice,
} from "../../supabase/functions/tests/publish_helpers.ts";

const SCHEDULER_SECRET = `sched-${crypto.randomUUID()}`;

interface Answer {
  request_id: string;
  sent_at: Date;
  status_code: number | null;
  content: string | null;
  timed_out: boolean | null;
  error_msg: string | null;
}

Deno.test({
  name:
    "pg_cron's jobs publish last month through pg_net and publish-invoices (wrong secret first)",
  ...IO,
  async fn() {
    const started = performance.now();
    const w = await openWorld();
    const sql = w.sql;
    const gateway = await startFunctionsGateway({
      port: 0,
      dbUrl: Deno.env.get("SUPABASE_DB_URL"),
      secrets: {
        STRIPE_SECRET_KEY: "sk_test_scheduled",
        STRIPE_API_BASE: w.emu.url,
        STRIPE_WEBHOOK_SECRET: `whsec_${crypto.randomUUID().replaceAll("-", "")}`,
        PUBLISH_INVOICES_SECRET: SCHEDULER_SECRET,
      },
    });
    /** Every pg_net answer to the scheduler's calls for `runId`, oldest first. */
    const answers = (runId: string) =>
      sql<Answer[]>`
        select s.request_id::text, s.sent_at, r.status_code, r.content, r.timed_out, r.error_msg
        from internal.publish_schedule_requests s
        left join net._http_response r on r.id = s.request_id
        where s.run_id = ${runId}::uuid order by s.sent_at, s.request_id`;
    /** Waits until every call for `runId` has been answered; returns the answers. */
    const settled = async (runId: string, timeoutMs = 10_000) => {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const rows = await answers(runId);
        if (rows.length > 0 && rows.every((r) => r.status_code !== null || r.error_msg !== null)) {
          return rows;
        }
        assert.ok(Date.now() < until, `calls for ${runId} unanswered: ${JSON.stringify(rows)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    try {
      const [{ month, monthStart, monthEnd }] = await sql`
        select to_char(m, 'YYYY-MM') as month, m::date::text as "monthStart",
          (m + interval '1 month - 1 day')::date::text as "monthEnd"
        from date_trunc('month', now() - interval '1 month') m`;
      const [clean] = await sql`
        select (select count(*)::int from internal.publish_runs
                where month = ${monthStart}::date and created_by = 'pg_cron') as cron_runs,
          (select count(*)::int from internal.publish_run_items
           where state in ('pending', 'running')) as open_items,
          (select count(*)::int from internal.billing_historicals
           where billed_month = ${monthStart}::timestamptz) as month_bills`;
      assert.deepEqual(
        clean,
        { cron_runs: 0, open_items: 0, month_bills: 0 },
        "this test needs a stack of its own: run it after `bash dev/stack.sh reset`",
      );
      const jobs = Object.fromEntries(
        (await sql<{ jobname: string; jobid: string; command: string }[]>`
          select jobname, jobid::text, command from cron.job
          where jobname in ('publish-invoices-monthly', 'publish-invoices-continue')`)
          .map((j) => [j.jobname, j]),
      );
      const monthly = jobs["publish-invoices-monthly"];
      const tick = jobs["publish-invoices-continue"];
      assert.ok(monthly && tick, "the migrations schedule both jobs");

      // Last month's bills: two usage statements and a contract covering the month.
      const acme = await makeTenant(sql, { prefix: "sched" });
      const globex = await makeTenant(sql, { prefix: "sched" });
      const bills = {
        acmeUsage: await finalBill(sql, acme, month, [
          { description: "Data processing", count: 12, rate: 150 },
          { description: "Task usage", count: 3, rate: 500 },
        ]),
        globexUsage: await finalBill(sql, globex, month, [
          { description: "Data processing", count: 40, rate: 50 },
        ]),
        globexContract: await manualBill(sql, globex, 90_000, monthStart, monthEnd),
      };

      // Vault as the README's deployment steps set it up, with a wrong scheduler secret.
      await sql`delete from vault.secrets
        where name in ('project_url', 'publish_invoices_secret')`;
      await sql`select vault.create_secret(${gateway.url}, 'project_url')`;
      const [{ id: secretId }] = await sql`
        select vault.create_secret('not-the-secret', 'publish_invoices_secret') as id`;

      // The monthly job, run by its own command (pg_cron runs it on the 2nd at 06:00).
      await sql.unsafe(monthly.command);
      const [run] = await sql<{ id: string; month: string }[]>`
        select id::text, month::text from internal.publish_runs
        where created_by = 'pg_cron' and month = ${monthStart}::date`;
      assert.ok(run, "the monthly job enqueued last month");
      const [{ n: itemCount }] = await sql`
        select count(*)::int as n from internal.publish_run_items where run_id = ${run.id}::uuid`;
      assert.equal(itemCount, 3, "one item per bill of the month");

      const refused = await settled(run.id);
      assert.equal(refused[0].status_code, 401, JSON.stringify(refused));
      assert.match(refused[0].content ?? "", /scheduler secret is required/);

      // The next tick (the per-minute job's command) reports the refusal.
      const [{ result }] = await sql.unsafe(`${tick.command} as result`);
      const entry = (result as Record<string, unknown>[]).find((e) => e.run_id === run.id);
      assert.ok(entry, JSON.stringify(result));
      const last = entry.last_response as Record<string, unknown>;
      assert.equal(last.status_code, 401);
      assert.equal(last.ok, false);
      assert.match(String(last.error), /scheduler secret is required/);
      assert.equal(entry.sent, true, "it keeps calling, so a fixed secret recovers");
      const afterRefusal = await settled(run.id);
      assert.ok(afterRefusal.every((a) => a.status_code === 401), JSON.stringify(afterRefusal));
      const [pending] = await sql`
        select r.status, count(*) filter (where i.state = 'pending')::int as pending
        from internal.publish_runs r join internal.publish_run_items i on i.run_id = r.id
        where r.id = ${run.id}::uuid group by r.status`;
      assert.deepEqual(pending, { status: "pending", pending: 3 }, "the run is left pending");
      assert.equal(w.emu.emulator.calls.summary().total, 0, "nothing reached Stripe");
      for (const t of [acme, globex]) assert.equal(await customerOf(sql, t), null);

      // The right secret; from here on only pg_cron calls.
      await sql`select vault.update_secret(${secretId}::uuid, ${SCHEDULER_SECRET})`;
      const [{ fixedAt }] = await sql`select now() as "fixedAt"`;
      const waitStarted = performance.now();
      const until = Date.now() + 75_000;
      for (;;) {
        const [r] = await sql`select status from internal.publish_runs where id = ${run.id}::uuid`;
        if (r.status === "done") break;
        assert.notEqual(r.status, "failed");
        assert.ok(Date.now() < until, `run still ${r.status} 75 s after the secret was fixed`);
        await new Promise((res) => setTimeout(res, 250));
      }
      const waitedS = (performance.now() - waitStarted) / 1000;

      const calls = (await settled(run.id)).filter((a) => a.sent_at >= fixedAt);
      assert.ok(calls.length >= 1, "pg_cron called after the secret was fixed");
      assert.ok(
        calls.every((a) => a.status_code === 200 || a.status_code === 202),
        JSON.stringify(calls),
      );
      const final = calls.at(-1)!;
      assert.equal(final.status_code, 200);
      assert.equal(JSON.parse(final.content ?? "{}").status, "done");
      // Each of those calls was made inside a run of the per-minute job by pg_cron.
      for (const call of calls) {
        const [fired] = await sql`
          select count(*)::int as n from cron.job_run_details
          where jobid = ${tick.jobid}::bigint and status = 'succeeded'
            and ${call.sent_at} between start_time - interval '1 second'
              and coalesce(end_time, now()) + interval '1 second'`;
        assert.equal(fired.n, 1, `request ${call.request_id} was sent by the per-minute job`);
      }

      // Every invoice created once, stored, with the bill's total.
      const expected: [string, "final" | "manual", number, number][] = [
        [acme, "final", bills.acmeUsage, 12 * 150 + 3 * 500],
        [globex, "final", bills.globexUsage, 40 * 50],
        [globex, "manual", bills.globexContract, 90_000],
      ];
      for (const [tenant, kind, bill, total] of expected) {
        const invoiceId = await storedInvoice(sql, kind, bill);
        assert.ok(invoiceId, `${kind}:${bill} has its invoice stored`);
        const inv = await w.stripe.invoices.retrieve(invoiceId);
        assert.equal(inv.customer, await customerOf(sql, tenant));
        assert.equal(inv.total, total);
        assert.equal(inv.metadata?.["estuary.dev/bill_id"], `${kind}:${bill}`);
      }
      assert.equal((await liveInvoices(w, (await customerOf(sql, acme))!)).length, 1);
      assert.equal((await liveInvoices(w, (await customerOf(sql, globex))!)).length, 2);
      const [{ n: idle }] = await sql`
        select count(*)::int as n from jsonb_array_elements(internal.publish_invoices_tick()) x
        where x ->> 'run_id' = ${run.id}`;
      assert.equal(idle, 0, "a done run is not called again");

      console.log(
        `scheduled path: ${((performance.now() - started) / 1000).toFixed(1)} s in all, ` +
          `${waitedS.toFixed(1)} s from the fixed secret to a done run (pg_cron's next minute), ` +
          `${afterRefusal.length} refused and ${calls.length} accepted ` +
          `call(s), ${w.emu.emulator.calls.summary().total} Stripe calls`,
      );
    } finally {
      // The per-minute job goes quiet again once Vault no longer points at this gateway.
      await sql`delete from vault.secrets
        where name in ('project_url', 'publish_invoices_secret')`;
      await gateway.close();
      await w.close();
    }
  },
});
