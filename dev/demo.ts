/**
 * The whole story on the local stack, step by step, each with the Stripe calls it cost:
 * a brownfield Stripe (the old automation's customers and invoices, no IDs stored) → adopt
 * (dry run, then for real) → publish a month → rerun (no writes) → a manual bill's dates are
 * edited → publish updates the same invoice → finalize → Stripe's webhooks update the mirror →
 * pg_cron publishes the next month through pg_net (the local stand-in) → the invoices a
 * signed-in tenant admin sees in the dashboard.
 *
 * Runs the operator CLI as a subprocess, an in-process Stripe emulator and the functions gateway.
 */
import { startStripeEmulator } from "./stripe-emulator/server.ts";
import { startFunctionsGateway } from "./functions-gateway/gateway.ts";
import { dashboardClient } from "./functions-gateway/supabase_client.ts";
import { mintUserJwt } from "./functions-gateway/tokens.ts";
import { createDb, localDbUrl } from "../supabase/functions/_shared/db.ts";
import {
  INVOICE_TYPE_KEY,
  PERIOD_END_KEY,
  PERIOD_START_KEY,
  TENANT_NAME_KEY,
} from "../supabase/functions/_shared/metadata.ts";
import { TEST_STRIPE_ACCOUNT } from "./test_account.ts";

const REPO = new URL("../", import.meta.url).pathname;
const MONTH = "2026-10";
const ALICE = "a11ce000-0000-4000-8000-000000000001";
const bold = (s: string) => (Deno.stdout.isTerminal() ? `\x1b[1m${s}\x1b[0m` : s);
const dim = (s: string) => (Deno.stdout.isTerminal() ? `\x1b[2m${s}\x1b[0m` : s);

async function sh(args: string[]): Promise<void> {
  const out = await new Deno.Command("bash", { args, cwd: REPO, stdout: "null", stderr: "piped" })
    .output();
  if (out.code !== 0) throw new Error(new TextDecoder().decode(out.stderr));
}

const emulator = await startStripeEmulator({ port: 0, accountId: TEST_STRIPE_ACCOUNT });
const webhookSecret = `whsec_demo${crypto.randomUUID().replaceAll("-", "")}`;
const schedulerSecret = crypto.randomUUID().replaceAll("-", "");
const gateway = await startFunctionsGateway({
  port: 0,
  dbUrl: localDbUrl(Deno.env),
  secrets: {
    STRIPE_SECRET_KEY: "sk_test_demo",
    STRIPE_API_BASE: emulator.url,
    STRIPE_WEBHOOK_SECRET: webhookSecret,
    PUBLISH_INVOICES_SECRET: schedulerSecret,
  },
});
const control = emulator.control;
// Always the local stack the demo just reset (STACK_PORT), never a SUPABASE_DB_URL elsewhere.
const DB_URL = localDbUrl(Deno.env);
const sql = createDb(DB_URL, { max: 2, applicationName: "demo" });
const cliEnv = {
  STRIPE_SECRET_KEY: "sk_test_demo",
  STRIPE_API_BASE: emulator.url,
  SUPABASE_DB_URL: DB_URL,
  BILLING_ACTOR: "demo-operator",
};
let stepNo = 0;

async function costOf(fn: () => Promise<void>): Promise<void> {
  await control.resetCalls();
  await fn();
  const s = await control.callSummary();
  const routes = Object.entries(s.byRoute).map(([r, n]) => `${r} ${n}`).join(", ");
  console.log(dim(
    `   -> Stripe: ${s.total} calls, ${s.writes} writes, ${s.searches} searches` +
      (routes ? ` (${routes})` : ""),
  ));
}

async function step(title: string, args: string[] | null, fn?: () => Promise<void>) {
  stepNo++;
  console.log(`\n${bold(`${stepNo}. ${title}`)}`);
  await costOf(async () => {
    if (args) {
      console.log(dim(`   $ deno task billing ${args.join(" ")}`));
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-all", `${REPO}cli/main.ts`, ...args],
        env: cliEnv,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout).trimEnd();
      console.log(text.split("\n").map((l) => `   ${l}`).join("\n"));
      if (out.code !== 0) {
        throw new Error(`exit ${out.code}: ${new TextDecoder().decode(out.stderr)}`);
      }
    }
    if (fn) await fn();
  });
}

try {
  console.log(
    bold("Local stack: fresh cluster, migrations, demo tenants and bills (supabase/seed.sql)"),
  );
  await sh(["dev/stack.sh", "reset"]);
  await sh(["dev/stack.sh", "seed"]);
  await control.configureWebhooks({
    url: `${gateway.url}/functions/v1/stripe-webhook`,
    secret: webhookSecret,
  });
  console.log(`   Stripe emulator ${emulator.url}, functions gateway ${gateway.url}`);

  await step("A brownfield Stripe: the old automation's objects, no IDs stored", null, async () => {
    const legacy = (tenant: string, type: string, start: string, end: string) => ({
      [TENANT_NAME_KEY]: tenant,
      [INVOICE_TYPE_KEY]: type,
      [PERIOD_START_KEY]: start,
      [PERIOD_END_KEY]: end,
    });
    const acme = await control.createCustomer({
      name: "acmeCo/",
      email: "billing@acme.example",
      metadata: { [TENANT_NAME_KEY]: "acmeCo/", "estuary.dev/created_by_automation": "true" },
    });
    await control.createPaymentMethod({
      customer: acme.id,
      default: true,
      brand: "visa",
      last4: "4242",
    });
    const sept = await control.createInvoice({
      customer: acme.id,
      status: "paid",
      metadata: legacy("acmeCo/", "final", "2026-09-01", "2026-09-30"),
      lines: [{ amount: 41482, description: "September usage" }],
    });
    const globex = await control.createCustomer({
      name: "globex/",
      metadata: { [TENANT_NAME_KEY]: "globex/", "estuary.dev/created_by_automation": "true" },
    });
    console.log(
      `   customers acmeCo/ ${acme.id} (with a card), globex/ ${globex.id};` +
        ` acmeCo/'s September invoice ${sept.id} (paid)`,
    );
  });

  await step("adopt --dry-run: what the one-time backfill would store", ["adopt", "--dry-run"]);
  await step("adopt: store the IDs it found", ["adopt"]);
  await step(`publish ${MONTH}: one invoice per bill`, ["publish", "--month", MONTH]);
  await step("publish again: nothing changed, so no Stripe writes", ["publish", "--month", MONTH]);

  let globexInvoice = "";
  await step("Someone corrects globex/'s contract dates in the database", null, async () => {
    const [row] = await sql<{ id: number; stripe_invoice_id: string }[]>`
      update internal.manual_bills set date_start = '2026-10-03'
      where tenant = 'globex/' returning id::int, stripe_invoice_id`;
    globexInvoice = row.stripe_invoice_id;
    console.log(`   manual:${row.id} now runs 2026-10-03..2026-12-31 (invoice ${globexInvoice})`);
  });
  await step("publish again: the same draft is updated, no second invoice", [
    "publish",
    "--month",
    MONTH,
  ]);

  await step(`finalize ${MONTH}: the drafts go out (auto_advance: Stripe charges or sends them)`, [
    "finalize",
    "--month",
    MONTH,
    "--yes",
  ]);

  await step(
    "Stripe charges acmeCo/'s card; its webhooks update the invoice state mirror",
    null,
    async () => {
      const [acmeOct] = await sql<{ stripe_invoice_id: string }[]>`
      select stripe_invoice_id from internal.billing_historicals
      where tenant = 'acmeCo/' and billed_month = '2026-10-01'`;
      await control.payInvoice(acmeOct.stripe_invoice_id, { paid_out_of_band: false });
      const { pending } = await control.flushWebhooks();
      const events = await sql<{ type: string; n: number }[]>`
      select type, count(*)::int as n from internal.stripe_events group by type order by type`;
      console.log(
        `   delivered and applied: ${events.map((e) => `${e.type} ${e.n}`).join(", ")}` +
          (pending.length ? ` (${pending.length} still pending)` : ""),
      );
    },
  );

  const [{ lastMonth }] = await sql<{ lastMonth: string }[]>`
    select to_char(now() - interval '1 month', 'YYYY-MM') as "lastMonth"`;
  await step(
    `The 2nd, 06:00 UTC: pg_cron's monthly job publishes ${lastMonth} (no CLI)`,
    null,
    async () => {
      // Last month's statements are frozen (here: October's usage again), as upstream's job does.
      // In a UTC session, as upstream's job runs (the table's month check truncates in the
      // session's zone, and the month starts at midnight UTC).
      const frozen = await sql.begin(async (tx) => {
        await tx`set local timezone = 'UTC'`;
        return await tx`
          insert into internal.billing_historicals (tenant, billed_month, report)
          select tenant, ${lastMonth + "-01"}::timestamptz,
            jsonb_set(report, '{billed_month}', to_jsonb(${lastMonth + "-01"}::timestamptz))
          from internal.billing_historicals
          where tenant = 'acmeCo/'
            and billed_month >= '2026-10-01 00:00+00' and billed_month < '2026-11-01 00:00+00'
          on conflict (tenant, billed_month) do nothing returning tenant`;
      });
      // Vault as a project holds it (README, "Deploying"): where pg_cron's calls go, and how.
      await sql`delete from vault.secrets where name in ('project_url', 'publish_invoices_secret')`;
      await sql`select vault.create_secret(${gateway.url}, 'project_url')`;
      await sql`select vault.create_secret(${schedulerSecret}, 'publish_invoices_secret')`;
      const [job] = await sql<{ command: string }[]>`
        select command from cron.job where jobname = 'publish-invoices-monthly'`;
      console.log(
        `   ${frozen.length} usage statement(s) frozen for ${lastMonth}; Vault holds the gateway's URL` +
          ` and the scheduler secret`,
      );
      console.log(
        dim(`   cron job publish-invoices-monthly ('0 6 2 * *'), run now: ${job.command}`),
      );
      await sql.unsafe(job.command);
      // Done, and pg_net has recorded the function's answer to every call.
      const calls = async () =>
        await sql<{ id: string; status: number | null; body: string | null; run: string }[]>`
          select s.request_id::text as id, r.status_code as status, r.content as body,
            p.status as run
          from internal.publish_schedule_requests s
          join internal.publish_runs p on p.id = s.run_id
          left join net._http_response r on r.id = s.request_id
          where p.created_by = 'pg_cron' order by s.sent_at, s.request_id`;
      const until = Date.now() + 90_000;
      let answered = await calls();
      while (!answered.length || answered.some((c) => c.run !== "done" || c.status === null)) {
        if (Date.now() > until) throw new Error(`the scheduled run: ${JSON.stringify(answered)}`);
        await new Promise((r) => setTimeout(r, 200));
        answered = await calls();
      }
      for (const c of answered) {
        const answer = c.body ? JSON.parse(c.body) : {};
        console.log(
          `   pg_net request ${c.id}: POST ${gateway.url}/functions/v1/publish-invoices -> ` +
            `${c.status ?? "no answer"} ${answer.status ?? ""}`,
        );
      }
      const outcomes = await sql<{ outcome: string; n: number }[]>`
        select i.outcome, count(*)::int as n from internal.publish_run_items i
        join internal.publish_runs p on p.id = i.run_id
        where p.created_by = 'pg_cron' group by 1 order by 1`;
      console.log(`   the run: ${outcomes.map((o) => `${o.outcome} ${o.n}`).join(", ")}`);
    },
  );

  await step(
    "The invoices alice@acme.example (admin of acmeCo/) sees in the dashboard",
    null,
    async () => {
      const token = await mintUserJwt({ sub: ALICE, email: "alice@acme.example" });
      const client = dashboardClient(gateway.url, gateway.publishableKey, { accessToken: token });
      const { data, error } = await client.functions.invoke("billing", {
        body: { operation: "list-tenant-invoices", tenant: "acmeCo/" },
      });
      if (error) throw error;
      const rows = (data as { invoices: Record<string, string | number | null>[] }).invoices;
      console.log("   supabase.functions.invoke('billing', {operation: 'list-tenant-invoices'}):");
      for (const r of rows) {
        console.log(
          `   ${r.invoice_type}  ${r.date_start}..${r.date_end}  ` +
            `$${(Number(r.subtotal) / 100).toFixed(2).padStart(8)}  ${
              r.stripe_invoice_id ?? "-"
            }  ` +
            `${r.invoice_status ?? "not published"}${
              r.hosted_invoice_url ? `  ${r.hosted_invoice_url}` : ""
            }`,
        );
      }
      console.log("   (listed from Postgres with the mirrored state: no Stripe call per row)");
    },
  );

  const state = await control.state();
  const live = state.invoices.filter((i) => !i.deleted && i.status !== "void");
  const [{ linked }] = await sql<{ linked: number }[]>`
    select count(*)::int as linked from internal.bill_invoice_links`;
  if (linked !== live.length) {
    throw new Error(`${live.length} live invoices in Stripe but ${linked} stored IDs`);
  }
  console.log(
    `\n${bold("Done.")} Stripe holds ${live.length} live invoices for ` +
      `${
        new Set(live.map((i) =>
          `${i.metadata?.[TENANT_NAME_KEY]}|${i.metadata?.[INVOICE_TYPE_KEY]}|${
            i.metadata?.[PERIOD_START_KEY]
          }`
        )).size
      } bills. ` +
      `Every one is stored (${linked} IDs). The run history stays: deno task billing runs`,
  );
} finally {
  // This gateway goes away: the per-minute job must not keep calling its address.
  await sql`delete from vault.secrets where name in ('project_url', 'publish_invoices_secret')`
    .catch(() => {});
  await sql.end();
  await gateway.close();
  await emulator.close();
}
