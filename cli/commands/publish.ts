/**
 * `publish`: the month's bills to Stripe, through the same engine as the publish-invoices
 * function, in-process and without its time limit. Several workers drain the run in parallel and
 * share the Stripe budget; the outcome is printed grouped by action with amounts.
 */
import {
  type CommandSpec,
  type Flags,
  MONTH_FLAG,
  parseMonth,
  parseTenants,
  TENANTS_FLAG,
  UsageError,
} from "../args.ts";
import type { CliContext } from "../context.ts";
import { callsLine, money, Progress, table } from "../format.ts";
import { drainRun } from "../../supabase/functions/_shared/publish.ts";
import { enqueueRun, runReport } from "../../supabase/functions/_shared/runs.ts";
import {
  addStats,
  emptyStats,
  type StripeCallStats,
} from "../../supabase/functions/_shared/stripe_calls.ts";

export const publishSpec: CommandSpec = {
  name: "publish",
  summary: "Publish a month's bills to Stripe: one invoice per bill, by stored ID.",
  usage: "publish --month YYYY-MM [--tenants a/,b/] [--dry-run] [--recreate-existing]",
  flags: {
    month: MONTH_FLAG,
    tenants: TENANTS_FLAG,
    "dry-run": { type: "boolean", description: "plan only: no Stripe write, no ID stored" },
    "recreate-existing": {
      type: "boolean",
      description: "replace usage invoices already issued (void/delete and recreate, audited)",
    },
    "send-invoice": {
      type: "boolean",
      description: "usage invoices as send_invoice (default: charge automatically)",
    },
    "run-id": { type: "string", placeholder: "RUN_ID", description: "continue this run" },
    workers: { type: "string", placeholder: "N", description: "parallel workers (default 8)" },
  },
  details: "Final (usage) bills of the month and manual bills overlapping it are selected.\n" +
    "Exits 1 when any bill failed or the run could not finish (e.g. throttled by Stripe).",
};

interface ItemRow {
  bill: string;
  tenant: string;
  state: string;
  outcome: string | null;
  action: string | null;
  reason: string | null;
  detail: string | null;
  error: string | null;
  stripe_invoice_id: string | null;
  subtotal: number | null;
  date_start: string | null;
  date_end: string | null;
}

const GROUP_ORDER = [
  "would create",
  "would update",
  "would skip",
  "would warn",
  "would refuse",
  "created",
  "replaced",
  "updated",
  "unchanged",
  "planned",
  "skipped",
  "warned",
  "failed",
  "pending",
];

/** `publish`. */
export async function runPublish(ctx: CliContext, flags: Flags): Promise<number> {
  const month = parseMonth(flags.month).slice(0, 7);
  const tenants = parseTenants(flags.tenants);
  const workers = flags.workers === undefined ? 8 : Number(flags.workers);
  if (!Number.isInteger(workers) || workers < 1 || workers > 64) {
    throw new UsageError(`--workers must be a whole number from 1 to 64, got "${flags.workers}"`);
  }
  const runIdFlag = typeof flags["run-id"] === "string" ? flags["run-id"] : null;
  if (runIdFlag !== null && !/^[0-9a-f-]{36}$/i.test(runIdFlag)) {
    throw new UsageError(`--run-id must be a run ID (a UUID), got "${runIdFlag}"`);
  }
  const dryRun = Boolean(flags["dry-run"]);
  const runId = await enqueueRun(ctx.sql, {
    month,
    tenants: tenants ?? null,
    options: {
      dry_run: dryRun,
      recreate_existing: Boolean(flags["recreate-existing"]),
      usage_collection_method: flags["send-invoice"] ? "send_invoice" : "charge_automatically",
      rate_per_second: ctx.stripeRate,
    },
    actor: ctx.actor,
    runId: runIdFlag,
  });

  const [{ items }] = await ctx.sql<{ items: number }[]>`
    select item_count as items from internal.publish_runs where id = ${runId}::uuid`;
  const progress = new Progress(dryRun ? "planning" : "publishing", items);
  let finished = false;
  const poll = (async () => {
    while (!finished) {
      const [c] = await ctx.sql<{ done: number }[]>`
        select count(*) filter (where state in ('done', 'failed'))::int as done
        from internal.publish_run_items where run_id = ${runId}::uuid`;
      progress.update(c.done);
      await new Promise((r) => setTimeout(r, 250));
    }
  })();
  const host = Deno.hostname();
  let stats: StripeCallStats = emptyStats();
  try {
    const results = await Promise.all(
      Array.from({ length: workers }, (_, i) =>
        drainRun(
          { sql: ctx.sql, stripe: ctx.caller.stripe, worker: `cli:${host}:${Deno.pid}:${i}` },
          runId,
          { budgetMs: Number.POSITIVE_INFINITY },
        )),
    );
    for (const r of results) stats = addStats(stats, r.stats);
  } finally {
    finished = true;
    await poll;
    progress.done();
  }

  const report = await runReport(ctx.sql, runId, false);
  const rows = await ctx.sql<ItemRow[]>`
    select i.bill_kind || ':' || i.bill_id as bill, i.tenant, i.state, i.outcome, i.action,
      i.reason, i.detail, i.error, i.stripe_invoice_id, x.subtotal,
      to_char(x.date_start, 'YYYY-MM-DD') as date_start, to_char(x.date_end, 'YYYY-MM-DD') as date_end
    from internal.publish_run_items i
    left join internal.invoices_ext x on x.bill_id = i.bill_kind || ':' || i.bill_id
    where i.run_id = ${runId}::uuid
    order by i.item_no`;
  const failed = rows.filter((r) => r.state === "failed").length;
  const unfinished = rows.filter((r) => r.state === "pending" || r.state === "running").length;

  if (ctx.json) {
    console.log(JSON.stringify({ ...report, items: rows, stripe_calls: stats }, null, 2));
  } else {
    ctx.say(`Run ${runId}: ${month}${dryRun ? " (dry run)" : ""}, ${rows.length} bills`);
    const groups = new Map<string, ItemRow[]>();
    for (const r of rows) {
      const key = r.state === "failed"
        ? "failed"
        : r.outcome === "planned"
        ? `would ${r.action}`
        : r.outcome ?? r.state;
      groups.set(key, [...(groups.get(key) ?? []), r]);
    }
    for (
      const key of [...groups.keys()].sort((a, b) =>
        GROUP_ORDER.indexOf(a) - GROUP_ORDER.indexOf(b)
      )
    ) {
      const group = groups.get(key)!;
      const sum = group.reduce((a, r) => a + (r.subtotal ?? 0), 0);
      ctx.say(`\n${key} (${group.length}, ${money(sum)})`);
      ctx.say(table(group, [
        { header: "Tenant", value: (r) => r.tenant },
        { header: "Bill", value: (r) => r.bill },
        { header: "Period", value: (r) => (r.date_start ? `${r.date_start}..${r.date_end}` : "-") },
        { header: "Amount", value: (r) => money(r.subtotal), align: "right" },
        { header: "Invoice", value: (r) => r.stripe_invoice_id },
        { header: "Reason", value: (r) => r.reason },
        { header: "Detail", value: (r) => r.error ?? r.detail },
      ]));
    }
    const count = (k: string) => groups.get(k)?.length ?? 0;
    ctx.say(
      `\n${dryRun ? "Would create" : "Created"} ${count(dryRun ? "planned" : "created")}, ` +
        `updated ${count("updated")}, unchanged ${count("unchanged")}, skipped ${
          count("skipped")
        }, ` +
        `warned ${count("warned")}, failed ${failed}${
          unfinished ? `, unfinished ${unfinished}` : ""
        }. ` +
        callsLine(stats),
    );
  }
  if (stats.throttled > 0 && !ctx.json) {
    ctx.say(`Stripe answered 429 ${stats.throttled} time(s); the client slowed down and retried.`);
  }
  return failed > 0 || unfinished > 0 ? 1 : 0;
}
