/**
 * Database at scale: enqueue a month of N bills (default 100,000), then drain it with several
 * workers through internal.claim_publish_items / complete_publish_item, on a dedicated cluster.
 * Prints timings per phase and per progress decile (flat = indexes do their job), and the
 * EXPLAIN (ANALYZE, BUFFERS) plans of the hot statements, captured with auto_explain.
 *
 *   deno task bench:db [--bills 100000] [--workers 4] [--batch 25]
 */
import { parseArgs } from "node:util";
import { createDb, type Sql } from "../supabase/functions/_shared/db.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
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

async function main() {
  console.error(`[bench:db] dedicated cluster on 127.0.0.1:${PORT}`);
  await stack("reset");
  const sql = createDb(`postgresql://postgres@127.0.0.1:${PORT}/postgres?sslmode=disable`, {
    max: WORKERS + 2,
    applicationName: "bench-db",
  });
  const results: Record<string, unknown> = { bills: BILLS, workers: WORKERS, batch: BATCH };
  try {
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
  } finally {
    await sql.end();
    if (!values.keep) await stack("stop");
  }

  const outDir = `${repo}bench/results`;
  await Deno.mkdir(outDir, { recursive: true });
  await Deno.writeTextFile(`${outDir}/db_scale.json`, JSON.stringify(results, null, 2));
  const plansText = Object.entries(results.plans as Record<string, string[]>)
    .map(([k, v]) => `### ${k}\n\n${v.join("\n\n")}`).join("\n\n");
  await Deno.writeTextFile(`${outDir}/db_scale_plans.txt`, plansText);

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
  console.log(`plans: bench/results/db_scale_plans.txt; figures: bench/results/db_scale.json`);
}

await main();
