/**
 * Database at scale, on a dedicated cluster:
 *
 * 1. Dashboard reads: T tenants × M months of usage bills plus manual bills (default 100,000 ×
 *    24 + 10,000), a fifth invoiced with mirrored state, U users each admin of one tenant. The
 *    reads PostgREST sends for `public.invoices_ext` as `authenticated` (tenant-filtered,
 *    unfiltered, count=exact): p50/p95 beside the targets, each user's rows checked to be
 *    exactly theirs, and the EXPLAIN (ANALYZE, BUFFERS) plans.
 * 2. The publish queue on those tables: enqueue a month of N bills (default 100,000) three times,
 *    then drain it with several workers through internal.claim_publish_items /
 *    complete_publish_item. Timings per phase and per progress decile (flat = indexes do their
 *    job), and the plans of the hot statements, captured with auto_explain.
 *
 *   deno task bench:db [--tenants 100000] [--months 24] [--manual 10000] [--users 50]
 *                      [--reads 200] [--bills 100000] [--workers 4] [--batch 25]
 *                      [--skip-reads] [--skip-queue] [--port N] [--keep]
 */
import { parseArgs } from "node:util";
import { createDb, type Sql } from "../supabase/functions/_shared/db.ts";
import {
  checkVisibility,
  explainReads,
  loadReadWorld,
  type ReadWorld,
  timeReads,
} from "./lib/invoice_reads.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    tenants: { type: "string", default: "100000" },
    months: { type: "string", default: "24" },
    manual: { type: "string", default: "10000" },
    users: { type: "string", default: "50" },
    reads: { type: "string", default: "200" },
    "skip-reads": { type: "boolean", default: false },
    "skip-queue": { type: "boolean", default: false },
    bills: { type: "string", default: "100000" },
    workers: { type: "string", default: "4" },
    batch: { type: "string", default: "25" },
    port: { type: "string", default: "54362" },
    keep: { type: "boolean", default: false },
  },
});
const BILLS = Number(values.bills);
const WORKERS = Number(values.workers);
const BATCH = Number(values.batch);
const PORT = Number(values.port);
const TENANTS = Number(values.tenants);
const WORLD: ReadWorld = {
  tenants: TENANTS,
  months: Number(values.months),
  // Contracts go to tenants 10, 20, ...: at most a tenth of them.
  manualBills: Math.min(Number(values.manual), Math.floor(TENANTS / 10)),
  users: Math.min(Number(values.users), Math.floor(TENANTS / 10)),
};
const READ_REPS = Number(values.reads);
/** The targets (issue: the database at scale), in ms at p95; the tenants read has none. */
const READ_TARGETS = { filtered: 10, unfiltered: 50, count: 50 } as const;
const repo = new URL("../", import.meta.url).pathname;
const stackEnv = { STACK_PORT: String(PORT), STACK_DIR: `/tmp/billing-bench-db-${PORT}` };

async function stack(command: string): Promise<void> {
  const out = await new Deno.Command("bash", {
    args: [`${repo}dev/stack.sh`, command],
    env: stackEnv,
    stdout: "null",
    stderr: "piped",
  }).output();
  if (out.code !== 0) {
    throw new Error(`stack ${command} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function summary(ms: number[]) {
  const s = [...ms].sort((a, b) => a - b);
  return {
    n: s.length,
    p50: round(percentile(s, 50)),
    p95: round(percentile(s, 95)),
    max: round(s.at(-1) ?? 0),
  };
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

/** Runs `fn` with auto_explain on, returning the plans Postgres reported as notices. */
async function explained(admin: Sql, fn: (sql: Sql) => Promise<unknown>): Promise<string[]> {
  const plans: string[] = [];
  const seen = new Set<string>();
  const url = `postgresql://supabase_admin@127.0.0.1:${PORT}/postgres?sslmode=disable`;
  const { postgres } = await import("../supabase/functions/_shared/db.ts");
  const sql = postgres(url, {
    max: 1,
    prepare: false,
    onnotice: (n: { message?: string }) => {
      const m = n.message ?? "";
      // Foreign-key checks repeat once per inserted row; keep each distinct statement once.
      if (!m.includes("Query Text") || m.includes("FOR KEY SHARE OF x")) return;
      const key = m.slice(0, m.indexOf("\n", m.indexOf("Query Text")) + 1 || 300);
      if (seen.has(key)) return;
      seen.add(key);
      plans.push(m);
    },
  }) as unknown as Sql;
  try {
    await sql`load 'auto_explain'`;
    await sql`set auto_explain.log_min_duration = 0`;
    await sql`set auto_explain.log_analyze = on`;
    await sql`set auto_explain.log_buffers = on`;
    await sql`set auto_explain.log_nested_statements = on`;
    await sql`set auto_explain.log_level = 'notice'`;
    await sql`set client_min_messages = 'notice'`;
    await sql`set role postgres`;
    await fn(sql);
  } finally {
    await sql.end();
  }
  void admin;
  return plans;
}

async function seedBills(sql: Sql, month: string, n: number): Promise<void> {
  // Usage bills for n tenants, plus manual bills for a tenth of them (overlapping the month).
  await sql`
    insert into internal.billing_historicals (tenant, billed_month, report)
    select 'bench' || lpad(g::text, 7, '0') || '/', ${month}::timestamptz,
      '{"subtotal": 1000, "line_items": [{"description": "x", "count": 1, "rate": 1000, "subtotal": 1000}]}'
    from generate_series(1, ${n}) g`;
  await sql`
    insert into internal.manual_bills (tenant, usd_cents, description, date_start, date_end)
    select 'bench' || lpad(g::text, 7, '0') || '/', 5000, 'contract', ${month}::date,
      (${month}::date + interval '3 months' - interval '1 day')::date
    from generate_series(1, ${Math.floor(n / 10)}) g`;
  await sql`analyze internal.billing_historicals`;
  await sql`analyze internal.manual_bills`;
}

async function readsPhase(sql: Sql, results: Record<string, unknown>): Promise<string[]> {
  const admin = createDb(`postgresql://supabase_admin@127.0.0.1:${PORT}/postgres?sslmode=disable`, {
    max: 1,
    applicationName: "bench-db-load",
  });
  try {
    const bills = WORLD.tenants * WORLD.months + WORLD.manualBills;
    console.error(
      `[bench:db] loading ${WORLD.tenants} tenants × ${WORLD.months} months + ${WORLD.manualBills} manual bills (${bills} bills)`,
    );
    const load = await loadReadWorld(admin, WORLD);
    console.error(`[bench:db] loaded in ${load.total_s} s`);
    const [size] = await admin<{ heap: string; total: string }[]>`
      select pg_size_pretty(pg_relation_size('internal.billing_historicals')) as heap,
        pg_size_pretty(pg_total_relation_size('internal.billing_historicals')) as total`;
    results.read_world = { ...WORLD, bills, load, billing_historicals_size: size };
  } finally {
    await admin.end();
  }
  const failures = await checkVisibility(sql, WORLD);
  // One untimed round warms the caches, as a live dashboard's would be.
  await timeReads(sql, WORLD.users, WORLD.users);
  const reads = await timeReads(sql, WORLD.users, READ_REPS);
  results.reads = reads;
  results.read_failures = failures;
  results.read_plans = await explainReads(sql);
  return failures;
}

async function queuePhase(sql: Sql, results: Record<string, unknown>): Promise<void> {
  // History first: earlier months make the tables big, as in production.
  const months = ["2031-01-01", "2031-02-01", "2031-03-01"];
  const enqueue: { month: string; bills_in_table: number; items: number; ms: number }[] = [];
  let runId = "";
  for (const month of months) {
    await seedBills(sql, month, BILLS);
    const t0 = performance.now();
    const [{ id }] = await sql<{ id: string }[]>`
      select internal.enqueue_publish_run(${month}::date, null, '{}', 'bench') as id`;
    const ms = performance.now() - t0;
    const [{ n }] = await sql<
      { n: number }[]
    >`select item_count as n from internal.publish_runs where id = ${id}`;
    const [{ total }] = await sql<{ total: number }[]>`
      select (select count(*) from internal.billing_historicals) + (select count(*) from internal.manual_bills) as total`;
    enqueue.push({ month, bills_in_table: Number(total), items: n, ms: round(ms) });
    console.error(
      `[bench:db] enqueued ${month}: ${n} items in ${round(ms)} ms (${total} bills in tables)`,
    );
    runId = id;
  }
  results.enqueue = enqueue;
  await sql`analyze internal.publish_run_items`;

  // Drain the last month's run with WORKERS workers; latencies per decile of progress.
  const [{ n: items }] = await sql<
    { n: number }[]
  >`select item_count as n from internal.publish_runs where id = ${runId}`;
  const claimMs: number[][] = Array.from({ length: 10 }, () => []);
  const completeMs: number[][] = Array.from({ length: 10 }, () => []);
  let done = 0;
  const started = performance.now();
  const worker = async (w: number) => {
    for (;;) {
      const t0 = performance.now();
      const claimed = await sql<{ item_no: number }[]>`
        select item_no from internal.claim_publish_items(${runId}, ${"w" + w}, ${BATCH})`;
      const decile = Math.min(9, Math.floor((done / items) * 10));
      claimMs[decile].push(performance.now() - t0);
      if (claimed.length === 0) return;
      for (const c of claimed) {
        const t1 = performance.now();
        await sql`select internal.complete_publish_item(${runId}, ${c.item_no}, ${"w" + w},
          'unchanged', 'skip', 'bench', null, null, '{"total": 0}', null, null)`;
        completeMs[Math.min(9, Math.floor((done / items) * 10))].push(performance.now() - t1);
        done++;
      }
    }
  };
  await Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w)));
  const drainS = (performance.now() - started) / 1000;
  results.drain = {
    items,
    seconds: round(drainS),
    items_per_second: round(items / drainS),
    claim_ms_by_decile: claimMs.map(summary),
    complete_ms_by_decile: completeMs.map(summary),
  };
  const [{ status }] = await sql<
    { status: string }[]
  >`select status from internal.publish_runs where id = ${runId}`;
  results.run_status = status;

  // Plans of the hot statements on the full tables: enqueue (a fresh month), claim, complete.
  await seedBills(sql, "2031-04-01", BILLS);
  const plans: Record<string, string[]> = {};
  plans.enqueue = await explained(
    sql,
    (s) => s`select internal.enqueue_publish_run('2031-04-01', null, '{}', 'bench')`,
  );
  const [{ id: planRun }] = await sql<{ id: string }[]>`
    select id from internal.publish_runs where month = '2031-04-01'`;
  plans.claim = await explained(
    sql,
    (s) => s`select * from internal.claim_publish_items(${planRun}, 'explain', ${BATCH})`,
  );
  const [{ item_no }] = await sql<{ item_no: number }[]>`
    select item_no from internal.publish_run_items where run_id = ${planRun} and lease_owner = 'explain' limit 1`;
  plans.complete = await explained(
    sql,
    (s) =>
      s`select internal.complete_publish_item(${planRun}, ${item_no}, 'explain', 'unchanged', 'skip', 'bench', null, null, '{}', null, null)`,
  );
  results.plans = plans;
}

function printReads(results: Record<string, unknown>): void {
  const world = results.read_world as ReadWorld & {
    bills: number;
    load: { total_s: number };
    billing_historicals_size: { heap: string; total: string };
  };
  const reads = results.reads as Awaited<ReturnType<typeof timeReads>>;
  const failures = results.read_failures as string[];
  console.log(
    `\npublic.invoices_ext as authenticated: ${world.tenants} tenants × ${world.months} months + ${world.manualBills} manual = ${world.bills} bills (billing_historicals ${world.billing_historicals_size.total}), ${world.users} users; loaded in ${world.load.total_s} s\n`,
  );
  console.log("read                      n   p50 ms   p95 ms   max ms   target p95   met?");
  for (const [kind, r] of Object.entries(reads)) {
    const target: number | undefined = READ_TARGETS[kind as keyof typeof READ_TARGETS];
    const verdict = target === undefined ? "–" : r.p95_ms <= target ? "met" : "MISSED";
    console.log(
      `${kind.padEnd(22)} ${String(r.n).padStart(4)} ${String(r.p50_ms).padStart(8)} ${
        String(r.p95_ms).padStart(8)
      } ${String(r.max_ms).padStart(8)}   ${
        (target === undefined ? "–" : `≤ ${target} ms`).padStart(10)
      }   ${verdict}`,
    );
  }
  console.log(
    failures.length === 0
      ? `rows: each of ${world.users} users sees exactly their tenant's bills (count, pages, another tenant by name)`
      : `rows: ${failures.length} VISIBILITY FAILURES:\n  ${failures.join("\n  ")}`,
  );
}

function printQueue(results: Record<string, unknown>): void {
  const enqueue = results.enqueue as {
    month: string;
    bills_in_table: number;
    items: number;
    ms: number;
  }[];
  const drain = results.drain as {
    items: number;
    seconds: number;
    items_per_second: number;
    claim_ms_by_decile: ReturnType<typeof summary>[];
    complete_ms_by_decile: ReturnType<typeof summary>[];
  };
  console.log(`\nDatabase at scale (${BILLS} usage + ${BILLS / 10} manual bills per month)\n`);
  console.log("enqueue  month       bills in tables  items    ms");
  for (const e of enqueue) {
    console.log(
      `         ${e.month}  ${String(e.bills_in_table).padStart(15)}  ${
        String(e.items).padStart(6)
      }  ${String(e.ms).padStart(8)}`,
    );
  }
  console.log(
    `\ndrain: ${drain.items} items, ${WORKERS} workers, batch ${BATCH}: ${drain.seconds} s (${drain.items_per_second} items/s)`,
  );
  console.log("decile  claim p50/p95 ms   complete p50/p95 ms");
  drain.claim_ms_by_decile.forEach((c, i) => {
    const d = drain.complete_ms_by_decile[i];
    console.log(
      `${String(i * 10).padStart(5)}%  ${`${c.p50} / ${c.p95}`.padStart(16)}  ${
        `${d.p50} / ${d.p95}`.padStart(19)
      }`,
    );
  });
  console.log(`\nrun status after drain: ${results.run_status}`);
}

async function main() {
  console.error(`[bench:db] dedicated cluster on 127.0.0.1:${PORT}`);
  await stack("reset");
  const sql = createDb(`postgresql://postgres@127.0.0.1:${PORT}/postgres?sslmode=disable`, {
    max: WORKERS + 2,
    applicationName: "bench-db",
  });
  const results: Record<string, unknown> = { bills: BILLS, workers: WORKERS, batch: BATCH };
  let failures: string[] = [];
  try {
    if (!values["skip-reads"]) failures = await readsPhase(sql, results);
    if (!values["skip-queue"]) await queuePhase(sql, results);
  } finally {
    await sql.end();
    if (!values.keep) await stack("stop");
  }

  const outDir = `${repo}bench/results`;
  await Deno.mkdir(outDir, { recursive: true });
  await Deno.writeTextFile(`${outDir}/db_scale.json`, JSON.stringify(results, null, 2));
  const readPlans = Object.entries((results.read_plans ?? {}) as Record<string, string>)
    .map(([k, v]) => `### invoices_ext ${k} (as authenticated, user 1)\n\n${v}`);
  const queuePlans = Object.entries((results.plans ?? {}) as Record<string, string[]>)
    .map(([k, v]) => `### ${k}\n\n${v.join("\n\n")}`);
  await Deno.writeTextFile(
    `${outDir}/db_scale_plans.txt`,
    [...readPlans, ...queuePlans].join("\n\n"),
  );

  if (results.reads) {
    printReads(results);
    for (const [kind, plan] of Object.entries(results.read_plans as Record<string, string>)) {
      console.log(`\nplan, ${kind} read as authenticated (user 1), EXPLAIN (ANALYZE, BUFFERS):\n`);
      console.log(plan);
    }
  }
  if (results.enqueue) printQueue(results);
  console.log(`plans: bench/results/db_scale_plans.txt; figures: bench/results/db_scale.json`);
  if (failures.length > 0) Deno.exit(1);
}

await main();
