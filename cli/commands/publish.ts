/**
 * `publish`: the month's bills to Stripe, through the same engine as the publish-invoices
 * function, in-process and without its time limit. Several workers drain the run in parallel and
 * share the Stripe budget; the outcome is printed grouped by action with amounts.
 */
import { defaultOperationRate } from "../../supabase/functions/_shared/rate_budget.ts";
import {
  type CommandSpec,
  type Flags,
  parseMonth,
  parseTenants,
  TENANTS_FLAG,
  UsageError,
} from "../args.ts";
import type { CliContext } from "../context.ts";
import { EXIT } from "../exit_codes.ts";
import { callsLine, count, money, Progress, table } from "../format.ts";
import { drainRun } from "../../supabase/functions/_shared/publish.ts";
import {
  decideActiveRun,
  enqueueRun,
  loadRun,
  type RunBlockers,
  runBlockers,
  type RunOptions,
  runReport,
} from "../../supabase/functions/_shared/runs.ts";
import { requireKnownTenants } from "../bills.ts";
import {
  addStats,
  emptyStats,
  type StripeCallStats,
} from "../../supabase/functions/_shared/stripe_calls.ts";

export const publishSpec: CommandSpec = {
  name: "publish",
  summary: "Publish a month's bills to Stripe: one invoice per bill, by stored ID.",
  usage: "publish (--month YYYY-MM | --run-id RUN_ID) [--tenants a/,b/] [--dry-run] " +
    "[--recreate-existing]",
  flags: {
    month: {
      type: "string",
      placeholder: "YYYY-MM",
      description: "the billed month (not needed with --run-id)",
    },
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
    "When the month already has an active run of the same bills and options (another\n" +
    "operator, the scheduler), publish joins it; one with other options is named, with the\n" +
    "command to follow it. The run ID is printed first: --run-id continues it later.\n" +
    "Exits 1 when any bill failed or the run could not finish, 3 when bills were warned\n" +
    "(left unbilled: act on them, see runs --id RUN --state warned).",
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

/** Every row of a group is printed up to this many; the rest are counted (runs --id pages). */
const MAX_ROWS_PER_GROUP = 50;

function blockersLine(b: RunBlockers, worker: (w: string) => boolean): string | null {
  const parts = [
    ...b.leased.filter((l) => !worker(l.worker)).map((l) =>
      `${count(l.items, "bill")} leased by ${l.worker} until ${l.lease_expires_at}`
    ),
    ...b.otherRuns.map((o) =>
      `${count(o.items, "bill")} held by run ${o.run_id} until ${o.lease_expires_at}`
    ),
  ];
  return parts.length ? `waiting: ${parts.join("; ")} (a dead worker's lease expires then)` : null;
}

/** `2026-10-01..10-31` within a year, `2026-12-01..2027-02-28` across years. */
function period(start: string | null, end: string | null): string {
  if (!start || !end) return "-";
  return `${start}..${end.slice(0, 4) === start.slice(0, 4) ? end.slice(5) : end}`;
}

/** `publish`. */
export async function runPublish(ctx: CliContext, flags: Flags): Promise<number> {
  const workers = flags.workers === undefined ? 8 : Number(flags.workers);
  if (!Number.isInteger(workers) || workers < 1 || workers > 64) {
    throw new UsageError(`--workers must be a whole number from 1 to 64, got "${flags.workers}"`);
  }
  const runIdFlag = typeof flags["run-id"] === "string" ? flags["run-id"] : null;
  if (
    runIdFlag !== null &&
    !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(runIdFlag)
  ) {
    throw new UsageError(`--run-id must be a run ID (a UUID), got "${runIdFlag}"`);
  }
  let month: string;
  let runId: string | null = runIdFlag;
  let joined = false;
  const dryRunFlag = Boolean(flags["dry-run"]);
  const options: Partial<RunOptions> = {
    dry_run: dryRunFlag,
    recreate_existing: Boolean(flags["recreate-existing"]),
    usage_collection_method: flags["send-invoice"] ? "send_invoice" : "charge_automatically",
    rate_per_second: ctx.stripeRate,
  };
  if (runIdFlag !== null) {
    const run = await loadRun(ctx.sql, runIdFlag);
    if (!run) throw new UsageError(`--run-id: run ${runIdFlag} does not exist (see: runs)`);
    if (flags.month !== undefined && parseMonth(flags.month).slice(0, 7) !== run.month) {
      throw new UsageError(`--month ${flags.month} does not match run ${run.id} (${run.month})`);
    }
    for (const flag of ["tenants", "dry-run", "recreate-existing", "send-invoice"]) {
      if (flags[flag] !== undefined) {
        throw new UsageError(`--${flag} cannot be used with --run-id (the run keeps its own)`);
      }
    }
    month = run.month;
  } else {
    if (flags.month === undefined) {
      throw new UsageError("publish: --month is required (YYYY-MM), or --run-id to continue a run");
    }
    month = parseMonth(flags.month).slice(0, 7);
    const tenants = parseTenants(flags.tenants) ?? null;
    await requireKnownTenants(ctx.sql, tenants);
    const active = await decideActiveRun(ctx.sql, { month, tenants, options });
    if (active.kind === "conflict") {
      const r = active.run;
      ctx.say(
        `Run ${r.id} (by ${r.created_by}, started ${r.created_at.slice(0, 19)}, ` +
          `${r.tenants ? `tenants ${r.tenants.join(",")}` : "all tenants"}` +
          `${r.options.dry_run ? ", dry run" : ""}${
            r.options.recreate_existing ? ", recreate existing" : ""
          }) is still publishing ${month} with other options.\n` +
          `Follow it with: deno task billing publish --run-id ${r.id}\n` +
          `Or watch it: deno task billing runs --id ${r.id}`,
      );
      return EXIT.failed;
    }
    if (active.kind === "join") {
      runId = active.run.id;
      joined = true;
    }
    runId = await enqueueRun(ctx.sql, {
      month,
      tenants,
      options,
      actor: ctx.actor,
      runId,
    });
  }
  const run = (await loadRun(ctx.sql, runId!))!;
  runId = run.id;
  const dryRun = run.options.dry_run;
  const [{ items }] = await ctx.sql<{ items: number }[]>`
    select item_count as items from internal.publish_runs where id = ${runId}::uuid`;
  ctx.say(
    `Run ${runId}: ${
      joined ? "joining the active run of" : runIdFlag ? "continuing" : "publishing"
    } ` +
      `${month}${dryRun ? " (dry run)" : ""}, ${count(items, "bill")}.\n` +
      `Continue it later with: deno task billing publish --run-id ${runId}`,
  );

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
  const prefix = `cli:${host}:${Deno.pid}:`;
  let stats: StripeCallStats = emptyStats();
  try {
    for (;;) {
      const results = await Promise.all(
        Array.from({ length: workers }, (_, i) =>
          drainRun(
            {
              sql: ctx.sql,
              stripe: ctx.caller.stripe,
              worker: `${prefix}${i}`,
              rateBudget: { operationRatePerSecond: defaultOperationRate(Deno.env) },
            },
            runId!,
            { budgetMs: Number.POSITIVE_INFINITY },
          )),
      );
      for (const r of results) stats = addStats(stats, r.stats);
      if (results.every((r) => !r.remaining)) break;
      // Items another worker holds (a live one, or a dead one until its lease expires).
      const line = blockersLine(await runBlockers(ctx.sql, runId!), (w) => w.startsWith(prefix));
      if (line === null) continue;
      progress.done();
      console.error(line);
      await new Promise((r) => setTimeout(r, 2_000));
    }
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
  const counters = report.counters as { failed?: number; warned?: number };
  const failed = Number(counters.failed ?? 0);
  const warned = Number(counters.warned ?? 0);
  const unfinished = rows.filter((r) => r.state === "pending" || r.state === "running").length;

  if (ctx.json) {
    console.log(JSON.stringify({ ...report, joined, items: rows, stripe_calls: stats }, null, 2));
  } else {
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
      ctx.say(`\n${key} (${count(group.length, "bill")}, ${money(sum)})`);
      const shown = group.slice(0, MAX_ROWS_PER_GROUP);
      ctx.say(table(shown, [
        { header: "Tenant", value: (r) => r.tenant },
        { header: "Bill", value: (r) => r.bill },
        { header: "Period", value: (r) => period(r.date_start, r.date_end) },
        { header: "Amount", value: (r) => money(r.subtotal), align: "right" },
        { header: "Invoice", value: (r) => r.stripe_invoice_id },
        { header: "Reason", value: (r) => r.reason },
        {
          header: "Detail",
          value: (r) => r.error ?? r.detail,
          below: true,
        },
      ]));
      if (group.length > shown.length) {
        ctx.say(`… and ${group.length - shown.length} more (deno task billing runs --id ${runId})`);
      }
    }
    const n = (k: string) => groups.get(k)?.length ?? 0;
    ctx.say(
      `\n${dryRun ? "Would create" : "Created"} ${n(dryRun ? "would create" : "created")}, ` +
        `updated ${n(dryRun ? "would update" : "updated")}, unchanged ${n("unchanged")}, ` +
        `skipped ${n(dryRun ? "would skip" : "skipped")}, warned ${warned}, failed ${failed}` +
        `${unfinished ? `, unfinished ${unfinished}` : ""}.\n${callsLine(stats)}`,
    );
    ctx.say(`Run ${runId}: ${report.status}.`);
    if (warned > 0) {
      ctx.say(
        `${count(warned, "bill")} ${warned === 1 ? "was" : "were"} warned and not invoiced: ` +
          `deno task billing runs --id ${runId} --state warned (what to do: docs/runbook.md).`,
      );
    }
  }
  if (stats.throttled > 0 && !ctx.json) {
    ctx.say(`Stripe answered 429 ${stats.throttled} time(s); the client slowed down and retried.`);
  }
  if (failed > 0 || unfinished > 0) return EXIT.failed;
  return warned > 0 ? EXIT.warned : EXIT.ok;
}
