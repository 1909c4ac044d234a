/** `runs`: recent publish runs, or one run's items with outcomes and Stripe calls. */
import { type CommandSpec, type Flags, UsageError } from "../args.ts";
import type { CliContext } from "../context.ts";
import { count, table } from "../format.ts";
import { runItemsPage, runReport } from "../../supabase/functions/_shared/runs.ts";

export const runsSpec: CommandSpec = {
  name: "runs",
  summary: "Show recent publish runs, or one run's items with outcomes and Stripe calls.",
  usage: "runs [--id RUN_ID [--state warned|failed|pending|running|done] [--after N]] [--limit N]",
  flags: {
    id: { type: "string", placeholder: "RUN_ID", description: "show this run's items" },
    state: {
      type: "string",
      placeholder: "STATE",
      description: "with --id: only items that are warned, failed, pending, running or done",
    },
    after: {
      type: "string",
      placeholder: "N",
      description: "with --id: items after item number N (the next page)",
    },
    limit: {
      type: "string",
      placeholder: "N",
      description: "how many runs (default 20), or items per page with --id (default 200)",
    },
  },
  details: "Needs no Stripe key: it reads the database only.",
};

const STATES = ["warned", "failed", "pending", "running", "done"];

function wholeNumber(flags: Flags, name: string, fallback: number, max: number): number {
  const n = flags[name] === undefined ? fallback : Number(flags[name]);
  if (!Number.isInteger(n) || n < 0 || n > max) {
    throw new UsageError(`--${name} must be a whole number from 0 to ${max}, got "${flags[name]}"`);
  }
  return n;
}

interface Counters {
  items?: number;
  pending?: number;
  running?: number;
  failed?: number;
  outcomes?: Record<string, number>;
}

interface RunListRow {
  id: string;
  month: string;
  status: string;
  created_at: Date;
  created_by: string;
  dry_run: boolean;
  item_count: number;
  counters: Counters;
  stripe_calls: number | null;
}

interface ReportItem {
  item_no: number;
  bill: string;
  tenant: string;
  state: string;
  attempts: number;
  outcome: string | null;
  action: string | null;
  reason: string | null;
  detail: string | null;
  stripe_invoice_id: string | null;
  stripe_calls: Record<string, number> | null;
  error: string | null;
}

function outcomes(c: Counters): string {
  const parts = Object.entries(c.outcomes ?? {}).map(([k, v]) => `${k} ${v}`);
  if (c.pending) parts.push(`pending ${c.pending}`);
  if (c.running) parts.push(`running ${c.running}`);
  return parts.join(", ") || "-";
}

/** An item's Stripe calls are stored per endpoint (`{"POST /v1/invoices": 1, ...}`). */
function totalCalls(calls: Record<string, number> | null): number {
  if (!calls) return 0;
  return Object.values(calls).reduce((a, b) => a + (typeof b === "number" ? b : 0), 0);
}

/** A run ID, or the first 8 or more characters of one (as the list shows them). */
async function resolveRunId(ctx: CliContext, given: string): Promise<string> {
  if (!/^[0-9a-f][0-9a-f-]{7,35}$/i.test(given)) {
    throw new UsageError(
      `--id must be a run ID (a UUID, or its first 8 characters), got "${given}"`,
    );
  }
  const rows = await ctx.sql<{ id: string }[]>`
    select id::text from internal.publish_runs where id::text like ${given.toLowerCase() + "%"}
    limit 2`;
  if (rows.length === 0) throw new UsageError(`--id: run ${given} does not exist (see: runs)`);
  if (rows.length > 1) throw new UsageError(`--id: ${given} matches several runs; give more of it`);
  return rows[0].id;
}

/** `runs`. */
export async function runRuns(ctx: CliContext, flags: Flags): Promise<number> {
  if (typeof flags.id === "string") {
    const runId = await resolveRunId(ctx, flags.id);
    const state = typeof flags.state === "string" ? flags.state : null;
    if (state !== null && !STATES.includes(state)) {
      throw new UsageError(`--state must be one of ${STATES.join(", ")}, got "${state}"`);
    }
    const after = wholeNumber(flags, "after", 0, 2_000_000_000);
    const pageSize = Math.max(1, wholeNumber(flags, "limit", 200, 1000));
    const report = await runReport(ctx.sql, runId, false);
    const items = await runItemsPage(ctx.sql, runId, {
      state,
      afterItemNo: after,
      limit: pageSize + 1,
    }) as unknown as ReportItem[];
    const more = items.length > pageSize;
    const page = items.slice(0, pageSize);
    const next = more ? page[page.length - 1].item_no : null;
    if (ctx.json) {
      console.log(JSON.stringify({ ...report, items: page, next_after: next }, null, 2));
      return 0;
    }
    ctx.say(`Run ${report.run_id}: ${report.month}, ${report.status}, by ${report.created_by}`);
    ctx.say(`Outcomes: ${outcomes(report.counters as Counters)}`);
    if (page.length === 0) {
      ctx.say(state ? `No ${state} items.` : "No items.");
      return 0;
    }
    ctx.say(table(page, [
      { header: "#", value: (i) => i.item_no, align: "right" },
      { header: "Bill", value: (i) => i.bill },
      { header: "Tenant", value: (i) => i.tenant },
      { header: "State", value: (i) => i.state },
      { header: "Outcome", value: (i) => i.outcome },
      { header: "Reason", value: (i) => i.reason ?? i.action },
      { header: "Invoice", value: (i) => i.stripe_invoice_id },
      { header: "Calls", value: (i) => totalCalls(i.stripe_calls), align: "right" },
      { header: "Note", value: (i) => i.error ?? i.detail ?? "", below: true },
    ]));
    if (next !== null) {
      ctx.say(
        `More: deno task billing runs --id ${report.run_id}${state ? ` --state ${state}` : ""} ` +
          `--after ${next}`,
      );
    } else {
      ctx.say(count(page.length, state ? `${state} item` : "item"));
    }
    return 0;
  }
  for (const flag of ["state", "after"]) {
    if (flags[flag] !== undefined) throw new UsageError(`--${flag} needs --id RUN_ID`);
  }
  const limit = Math.max(1, wholeNumber(flags, "limit", 20, 1000));
  const rows = await ctx.sql<RunListRow[]>`
    select r.id::text, to_char(r.month, 'YYYY-MM') as month,
      internal.publish_run_result(r.status,
        coalesce(r.counters, internal.publish_run_counters(r.id))) as status,
      r.created_at, r.created_by,
      coalesce((r.options ->> 'dry_run')::boolean, false) as dry_run, r.item_count,
      coalesce(r.counters, internal.publish_run_counters(r.id)) as counters,
      (select coalesce(sum(c.value::numeric), 0)::int
       from internal.publish_run_items i, jsonb_each_text(coalesce(i.stripe_calls, '{}')) c
       where i.run_id = r.id) as stripe_calls
    from internal.publish_runs r
    order by r.created_at desc
    limit ${limit}`;
  if (ctx.json) {
    console.log(JSON.stringify(rows, null, 2));
    return 0;
  }
  if (rows.length === 0) {
    ctx.say("No publish runs yet.");
    return 0;
  }
  // Short IDs (runs --id takes them) and a wrapping outcomes column keep it within 100 columns.
  ctx.say(table(rows, [
    { header: "Run", value: (r) => r.id.slice(0, 8) },
    { header: "Month", value: (r) => r.month },
    {
      header: "Created (UTC)",
      value: (r) => r.created_at.toISOString().slice(5, 16).replace("T", " "),
    },
    { header: "Status", value: (r) => r.status + (r.dry_run ? " (dry run)" : "") },
    { header: "Bills", value: (r) => r.item_count, align: "right" },
    { header: "Calls", value: (r) => r.stripe_calls ?? 0, align: "right" },
    { header: "By", value: (r) => r.created_by, wrap: true },
    { header: "Outcomes", value: (r) => outcomes(r.counters), wrap: true },
  ]));
  return 0;
}
