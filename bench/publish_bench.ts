/**
 * Publish benchmark against the rate-limit floor (issue 7.1): the publish engine, in-process with
 * W concurrent workers, against a Stripe emulator in its own process set to realistic conditions
 * (latency, a global and a Search limiter answering real 429s, Search lag), on a dedicated
 * Postgres cluster. Scenarios, in order (each builds on the previous one's state):
 *
 *   brownfield  the old automation's customers and invoices exist in Stripe, no ID is stored
 *   steady      the next month: IDs stored, every bill new
 *   rerun       the same month again at once: zero Stripe writes expected
 *   edited      5% of that month's bills edited (amounts; manual bills' dates), published again
 *   steady-next the month after (the invoice index already bootstrapped): every later month
 *   impossible  a small brownfield world whose Search limit cannot be met: must not report success
 *
 *   deno task bench [--tenants 1000] [--latency-ms 150-300] [--rate 100] [--search-rate 20]
 *                   [--endpoint-rate 25] [--search-lag-s 5] [--workers 32] [--batch 10]
 *                   [--search-share]
 *                   [--scenario brownfield,steady,rerun,edited,steady-next,impossible] [--port N] [--keep]
 *
 * Prints one table and writes bench/results/publish_bench.json (and publish_bench_<N>.json).
 */
import { parseArgs } from "node:util";
import type { CallRecord } from "../dev/stripe-emulator/control.ts";
import { checkFailures, checkInvariants, listedState, snapshotIds } from "./lib/checks.ts";
import { runMonth } from "./lib/engine.ts";
import { enqueueRun } from "../supabase/functions/_shared/runs.ts";
import { DEFAULT_LIMIT_SHARE } from "../supabase/functions/_shared/rate_budget.ts";
import {
  cell,
  Cluster,
  defaultPort,
  emulatorStripe,
  REPO,
  round,
  startEmulatorProcess,
} from "./lib/infra.ts";
import { figures, type Limits, type ScenarioFigures } from "./lib/measure.ts";
import {
  addMonths,
  invoiceFor,
  legacyCustomer,
  makeFinalBills,
  makeManualBills,
  makeTenants,
  pool,
  type SeededBill,
  tenantNames,
  usageLines,
} from "./lib/world.ts";

const ALL = ["brownfield", "steady", "rerun", "edited", "steady-next", "impossible"];

const { values } = parseArgs({
  args: Deno.args,
  options: {
    tenants: { type: "string", default: "1000" },
    "latency-ms": { type: "string", default: "150-300" },
    rate: { type: "string", default: "100" },
    "search-rate": { type: "string", default: "20" },
    "endpoint-rate": { type: "string", default: "25" },
    "search-lag-s": { type: "string", default: "5" },
    workers: { type: "string", default: "32" },
    batch: { type: "string", default: "10" },
    scenario: { type: "string", default: ALL.join(",") },
    "impossible-tenants": { type: "string", default: "20" },
    "search-share": { type: "boolean", default: false },
    port: { type: "string" },
    keep: { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
});
if (values.help) {
  console.log(
    "deno task bench [--tenants N] [--latency-ms MIN-MAX] [--rate R] [--search-rate S]\n" +
      "  [--endpoint-rate E (per operation; 0: none)] [--search-lag-s L] [--workers W]\n" +
      "  [--batch B] [--scenario a,b,...] [--port P] [--keep]",
  );
  Deno.exit(0);
}

const N = Number(values.tenants);
const [latMin, latMax] = values["latency-ms"].split("-").map(Number).concat([NaN]).slice(0, 2);
const LATENCY = { minMs: latMin, maxMs: Number.isNaN(latMax) ? latMin : latMax };
const LIMITS: Limits = {
  rate: Number(values.rate),
  searchRate: Number(values["search-rate"]),
  // Stripe's default for each named operation; 0 leaves operations to the account's limit only.
  endpointRate: Number(values["endpoint-rate"]) || null,
};
const LAG = Number(values["search-lag-s"]);
const WORKERS = Number(values.workers);
const BATCH = Number(values.batch);
const SCENARIOS = values.scenario.split(",").map((s) => s.trim()).filter(Boolean);
const PORT = values.port ? Number(values.port) : defaultPort(70);
for (const s of SCENARIOS) {
  if (!ALL.includes(s)) throw new Error(`unknown scenario ${s} (known: ${ALL.join(", ")})`);
}
if (!(N > 0 && WORKERS > 0 && BATCH > 0 && LIMITS.rate > 0 && LIMITS.searchRate > 0)) {
  throw new Error("tenants, workers, batch, rate and search-rate must be positive");
}

const M1 = "2026-09";
const M2 = "2026-10";
const M3 = "2026-11";
const log = (msg: string) => console.error(`[bench] ${msg}`);

async function main(): Promise<void> {
  const cluster = new Cluster(PORT);
  log(`dedicated cluster on 127.0.0.1:${PORT} (reset)`);
  await cluster.reset();
  const emu = await startEmulatorProcess();
  log(`stripe emulator (own process) at ${emu.url}`);
  const sql = cluster.pool(WORKERS + 6, "bench-publish");
  const stripe = emulatorStripe(emu.port);
  // The engine's clock follows the emulator's (due dates must be in Stripe's future).
  let clockAheadMs = 0;
  const advanceClock = async (seconds: number) => {
    await emu.control.advanceClock(seconds);
    clockAheadMs += seconds * 1000;
  };
  const engineNow = () => new Date(Date.now() + clockAheadMs);
  const results: ScenarioFigures[] = [];
  const started = new Date();
  try {
    const tenants = tenantNames("bt", N);
    const indexed = tenants.map((tenant, index) => ({ tenant, index }));
    const t0 = performance.now();
    await makeTenants(sql, tenants);
    const m1Final = await makeFinalBills(sql, indexed, M1);
    const m1Manual = await makeManualBills(sql, indexed.filter((t) => t.index % 10 === 5), M1);
    await seedBrownfield(emu.control, indexed, m1Final, m1Manual, advanceClock);
    // The old automation made them months ago (visible to Search, older than any scan window).
    await advanceClock(60 * 86_400);
    log(`seeded ${N} tenants in ${round((performance.now() - t0) / 1000)} s`);

    // Realistic conditions from here on.
    await emu.control.setLatency(LATENCY);
    await emu.control.setRateLimits({
      globalPerSecond: LIMITS.rate,
      searchPerSecond: LIMITS.searchRate,
      endpointPerSecond: LIMITS.endpointRate,
      burstSeconds: 1,
    });
    await emu.control.setSearch({ lagSeconds: LAG, dropProbability: 0 });

    const scenario = async (
      name: string,
      month: string,
      opts: {
        tenants?: string[];
        options?: Record<string, unknown>;
        workers?: number;
        batch?: number;
      } = {},
    ): Promise<ScenarioFigures> => {
      const before = await snapshotIds(sql, opts.tenants ?? null);
      await emu.control.resetCalls();
      log(`${name}: publishing ${month} with ${opts.workers ?? WORKERS} workers`);
      const run = await runMonth({
        sql,
        stripe,
        month,
        tenants: opts.tenants ?? null,
        workers: opts.workers ?? WORKERS,
        batchSize: opts.batch ?? BATCH,
        now: engineNow,
        // The engine's default share of the limits (what the function and the CLI reserve at).
        options: {
          rate_per_second: Math.min(100, LIMITS.rate * DEFAULT_LIMIT_SHARE),
          ...opts.options,
        },
        rateBudget: {
          operationRatePerSecond: LIMITS.endpointRate
            ? LIMITS.endpointRate * DEFAULT_LIMIT_SHARE
            : null,
        },
        // Bench-only what-if: each worker's caller gets 1/W of the Search budget (the engine
        // gives every caller the whole 20/s, so W workers can ask for W × 20/s).
        callerOptions: values["search-share"]
          ? { searchRatePerSecond: LIMITS.searchRate / (opts.workers ?? WORKERS) }
          : undefined,
      });
      const calls: CallRecord[] = await emu.control.calls();
      const dump = Deno.env.get("BENCH_DUMP_CALLS");
      if (dump) {
        await Deno.writeTextFile(
          `${dump}/${name}.tsv`,
          [`start\t${run.startedAtMs}\t${run.wallMs}`]
            .concat(calls.map((c) => `${c.at}\t${c.status}\t${c.route}`)).join("\n"),
        );
      }
      // Read through the API: at 10,000 tenants the state dump is too big for one JSON string.
      const check = await checkInvariants(sql, emu.control, {
        tenants: opts.tenants ?? null,
        before,
        state: await listedState(emu.control, stripe),
      });
      const f = figures(name, run, calls, LIMITS, check, checkFailures(check));
      log(
        `${name}: ${f.bills} bills, ${f.stripe_calls.total} calls in ${f.wall_s} s ` +
          `(floor ${f.rate_limit_floor_s} s, efficiency ${f.efficiency}), ` +
          `${f.reported_success ? "success" : `NOT success (${f.failed_items} failed)`}`,
      );
      log(
        `${name}: first write at ${f.timeline.first_write_s} s, last second at >= 80% of the ` +
          `limit ends at ${f.timeline.last_busy_second_s} s, ${f.timeline.slack_seconds} s ` +
          `below it between`,
      );
      results.push(f);
      return f;
    };

    if (SCENARIOS.includes("brownfield")) await scenario("brownfield", M1);
    if (SCENARIOS.some((s) => ["steady", "rerun", "edited"].includes(s))) {
      await makeFinalBills(sql, indexed, M2);
      await makeManualBills(sql, indexed.filter((t) => t.index % 10 === 5), M2);
    }
    // A month passes between the first run and the next month's (emulator clock).
    if (SCENARIOS.includes("brownfield")) await advanceClock(30 * 86_400);
    if (SCENARIOS.includes("steady")) await scenario("steady", M2);
    if (SCENARIOS.includes("rerun")) await scenario("rerun", M2);
    if (SCENARIOS.includes("edited")) {
      const edited = await editBills(sql, M2);
      log(`edited: ${edited} bills changed`);
      await scenario("edited", M2);
    }
    if (SCENARIOS.includes("steady-next")) {
      // The month after: the account-wide invoice index is already bootstrapped, so this is
      // what every later month costs.
      await makeFinalBills(sql, indexed, M3);
      await makeManualBills(sql, indexed.filter((t) => t.index % 10 === 5), M3);
      await advanceClock(30 * 86_400);
      await scenario("steady-next", M3);
    }
    if (SCENARIOS.includes("impossible")) {
      const n = Number(values["impossible-tenants"]);
      const small = tenantNames("bx", n).map((tenant, index) => ({ tenant, index }));
      await makeTenants(sql, small.map((t) => t.tenant));
      await makeFinalBills(sql, small, M1);
      // No latency or limits while the old automation's objects are made.
      await emu.control.setLatency({});
      await emu.control.setRateLimits({
        globalPerSecond: null,
        searchPerSecond: null,
        endpointPerSecond: null,
      });
      // Made long before the run: visible to Search (a lag-fresh customer would be missed).
      await emu.control.setSearch({ lagSeconds: 0 });
      await pool(small, 8, (t) => legacyCustomer(emu.control, t.tenant));
      await emu.control.setSearch({ lagSeconds: LAG });
      await emu.control.setLatency(LATENCY);
      // A Search budget no run can meet: one request per 1000 s.
      await emu.control.setRateLimits({
        globalPerSecond: LIMITS.rate,
        endpointPerSecond: LIMITS.endpointRate,
        searchPerSecond: 0.001,
        burstSeconds: 1,
      });
      const imp = await scenario("impossible", M1, {
        tenants: small.map((t) => t.tenant),
        options: { max_attempts: 2 },
        workers: n,
        batch: 1,
      });
      // The operator's view of the same: `deno task billing publish` on two more such tenants
      // (a run enqueued with one attempt per item, continued by the CLI) must exit non-zero.
      const two = tenantNames("by", 2).map((tenant, index) => ({ tenant, index }));
      await makeTenants(sql, two.map((t) => t.tenant));
      await makeFinalBills(sql, two, M1);
      await emu.control.setSearch({ lagSeconds: 0 });
      for (const t of two) await legacyCustomer(emu.control, t.tenant);
      await emu.control.setSearch({ lagSeconds: LAG });
      const runId = await enqueueRun(sql, {
        month: M1,
        tenants: two.map((t) => t.tenant),
        options: { max_attempts: 1 },
        actor: "bench",
      });
      const cli = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-all", "cli/main.ts", "publish", "--month", M1, "--run-id", runId],
        cwd: REPO,
        env: {
          SUPABASE_DB_URL: cluster.url,
          STRIPE_SECRET_KEY: "sk_test_bench",
          STRIPE_API_BASE: emu.url,
          NO_COLOR: "1",
        },
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(300_000),
      }).output();
      const said = new TextDecoder().decode(cli.stdout).trim().split("\n").filter((l) =>
        /failed|throttl|429/i.test(l)
      ).slice(-3).join(" / ");
      imp.cli_exit_code = cli.code;
      imp.cli_said = said;
      log(`impossible (CLI): exit ${cli.code}: ${said}`);
    }
  } finally {
    await sql.end();
    await emu.stop();
    if (!values.keep) await cluster.stop();
  }

  const out = {
    date: started.toISOString(),
    machine: machine(),
    config: {
      tenants: N,
      latency_ms: LATENCY,
      rate_per_second: LIMITS.rate,
      search_rate_per_second: LIMITS.searchRate,
      endpoint_rate_per_second: LIMITS.endpointRate,
      engine_share_of_limits: DEFAULT_LIMIT_SHARE,
      search_lag_s: LAG,
      workers: WORKERS,
      batch: BATCH,
      scenarios: SCENARIOS,
      search_share: values["search-share"],
    },
    scenarios: results,
    targets: targets(results),
  };
  const dir = `${REPO}bench/results`;
  await Deno.mkdir(dir, { recursive: true });
  const text = JSON.stringify(out, null, 2);
  await Deno.writeTextFile(`${dir}/publish_bench.json`, text);
  const suffix = `${N}${values["search-share"] ? "_search_share" : ""}`;
  await Deno.writeTextFile(`${dir}/publish_bench_${suffix}.json`, text);
  printTable(out.config, results, out.targets);
  console.log(`\nfigures: bench/results/publish_bench.json`);
  const broken = results.some((r) => r.invariant_failures.length > 0);
  if (broken) Deno.exitCode = 1;
}

/**
 * What the old automation left: customers for 90% of tenants (tenant i with i % 10 === 0 is
 * new), invoices for this month's usage bills for 80% (i % 10 in 2..9: drafts for 2-3, open for
 * 4-6, paid for 7-9), two older paid invoices per customer, and open invoices for half of the
 * manual bills. No bill ID anywhere, and nothing stored in Postgres. At most 50 invoices share a
 * second of `created`, as under Stripe's write limit.
 */
async function seedBrownfield(
  control: Awaited<ReturnType<typeof startEmulatorProcess>>["control"],
  tenants: { tenant: string; index: number }[],
  finals: SeededBill[],
  manuals: SeededBill[],
  advanceClock: (seconds: number) => Promise<void>,
): Promise<void> {
  const customers = new Map<string, string>();
  await pool(tenants.filter((t) => t.index % 10 !== 0), 16, async (t) => {
    const c = await legacyCustomer(control, t.tenant);
    customers.set(t.tenant, c.id as string);
  });
  const jobs: (() => Promise<unknown>)[] = [];
  for (const b of finals) {
    const cus = customers.get(b.tenant);
    if (!cus) continue;
    for (const back of [2, 1]) {
      const month = addMonths(b.dateStart.slice(0, 7), -back);
      const [y, m] = month.split("-").map(Number);
      const end = new Date(Date.UTC(y, m, 0)).toISOString().slice(0, 10);
      // An older month's lines, and the subtotal they add up to (not this month's).
      const lineItems = usageLines(b.index, back);
      const subtotal = lineItems.reduce((s, l) => s + l.subtotal, 0);
      jobs.push(() =>
        invoiceFor(control, cus, {
          ...b,
          id: 0,
          dateStart: `${month}-01`,
          dateEnd: end,
          lineItems,
          subtotal,
        }, { status: "paid" })
      );
    }
    const k = b.index % 10;
    if (k < 2) continue;
    const status = k <= 3 ? "draft" : k <= 6 ? "open" : "paid";
    jobs.push(() => invoiceFor(control, cus, b, { status }));
  }
  for (const b of manuals) {
    const cus = customers.get(b.tenant);
    if (cus && b.index % 20 === 5) jobs.push(() => invoiceFor(control, cus, b, { status: "open" }));
  }
  // Stripe's write limit (100 requests/s live, two or more per invoice) means the old automation
  // made at most about 50 invoices a second: their `created` seconds are spread the same way.
  for (let i = 0; i < jobs.length; i += 50) {
    await pool(jobs.slice(i, i + 50), 16, (j) => j());
    await advanceClock(1);
  }
}

/**
 * Edits 5% of the month's bills: usage bills of tenants i % 20 === 0 get other amounts; manual
 * bills of tenants i % 20 === 5 end three days earlier (dates, so description, custom fields,
 * metadata and line periods change too). Returns how many bills changed.
 */
async function editBills(sql: ReturnType<Cluster["pool"]>, month: string): Promise<number> {
  const rows = await sql<{ id: string; tenant: string }[]>`
    select id::text, tenant::text from internal.billing_historicals
    where billed_month = ${month + "-01"}::timestamptz and tenant like 'bt%'`;
  let n = 0;
  for (const r of rows) {
    const index = Number(r.tenant.slice(2, -1));
    if (index % 20 !== 0) continue;
    const lines = usageLines(index, 7);
    const report = {
      line_items: lines,
      subtotal: lines.reduce((s, l) => s + l.subtotal, 0),
      processed_data_gb: 10 + index % 7,
    };
    await sql`update internal.billing_historicals set report = ${report as unknown as string}::jsonb where id = ${r.id}`;
    n++;
  }
  const manual = await sql`
    update internal.manual_bills set date_end = date_end - 3
    where date_start = ${month + "-01"}::date and tenant like 'bt%'
      and (substring(tenant from 3 for 5))::int % 20 = 5
    returning id`;
  return n + manual.length;
}

interface Target {
  target: string;
  measured: string;
  met: boolean | null;
}

function targets(rs: ScenarioFigures[]): Target[] {
  const by = (s: string) => rs.find((r) => r.scenario === s);
  const out: Target[] = [];
  for (const name of ["steady", "steady-next"]) {
    const steady = by(name);
    if (!steady) continue;
    out.push({
      target: `${name}: <= 2 Stripe calls per created invoice (<= 10 lines)`,
      measured: `${steady.calls_per_created_invoice} calls per created invoice ` +
        `(${steady.stripe_calls.throttled_429} of them 429s)`,
      met: steady.calls_per_created_invoice !== null && steady.calls_per_created_invoice <= 2,
    });
    out.push({
      target: `${name}: zero Search calls`,
      measured: `${steady.stripe_calls.search} Search calls`,
      met: steady.stripe_calls.search === 0,
    });
  }
  const rerun = by("rerun");
  if (rerun) {
    out.push({
      target: "immediate rerun: zero Stripe writes",
      measured: `${rerun.stripe_calls.writes} writes`,
      met: rerun.stripe_calls.writes === 0,
    });
  }
  // The month at Stripe's limit: >= 0.9 at 1,000 tenants, >= 0.95 from 10,000.
  const wanted = N >= 10_000 ? 0.95 : 0.9;
  for (const s of ["brownfield", "steady", "rerun", "edited", "steady-next"]) {
    const r = by(s);
    if (!r) continue;
    const want = s === "steady" || s === "steady-next" ? wanted : 0.85;
    out.push({
      target: `${s}: efficiency >= ${want} (floor ${r.rate_limit_floor_s} s)`,
      measured: `${r.efficiency} (wall ${r.wall_s} s)`,
      met: r.efficiency >= want,
    });
    out.push({
      target: `${s}: 429s under 1% of calls`,
      measured: `${r.stripe_calls.throttled_429} of ${r.stripe_calls.total}`,
      met: r.stripe_calls.throttled_429 < 0.01 * Math.max(1, r.stripe_calls.total),
    });
  }
  const imp = by("impossible");
  if (imp) {
    out.push({
      target: "brownfield under an impossible Search limit: never reported as success",
      measured: `run ${imp.run_status}, ${imp.failed_items} of ${imp.bills} items failed ` +
        `(${Object.entries(imp.failed_errors).map(([k, v]) => `${v}× ${k}`).join(", ")})`,
      met: !imp.reported_success && (imp.cli_exit_code === undefined || imp.cli_exit_code !== 0),
    });
    if (imp.cli_exit_code !== undefined) {
      out.push({
        target: "the same through `deno task billing publish`: exits non-zero",
        measured: `exit ${imp.cli_exit_code}: ${imp.cli_said}`,
        met: imp.cli_exit_code !== 0,
      });
    }
  }
  const dup = rs.reduce((s, r) => s + r.duplicates, 0);
  const lost = rs.reduce((s, r) => s + r.lost_ids, 0);
  const broken = rs.flatMap((r) => r.invariant_failures.map((f) => `${r.scenario}: ${f}`));
  out.push({
    target: "zero duplicates, zero lost IDs, every invariant holds",
    measured: `${dup} duplicates, ${lost} lost IDs${
      broken.length ? `; ${broken.join(" | ")}` : ""
    }`,
    met: broken.length === 0,
  });
  return out;
}

function machine(): string {
  let cpus = "?";
  try {
    cpus = String(
      Deno.readTextFileSync("/proc/cpuinfo").split("\n").filter((l) => l.startsWith("processor"))
        .length,
    );
  } catch {
    // not Linux
  }
  const mem = Deno.systemMemoryInfo();
  return `${cpus} cores, ${round(mem.total / 2 ** 30, 1)} GiB`;
}

function printTable(
  config: Record<string, unknown>,
  rs: ScenarioFigures[],
  ts: Target[],
): void {
  console.log(
    `\nPublish benchmark: ${JSON.stringify(config)}\n${machine()}, ${new Date().toISOString()}\n`,
  );
  const cols: [string, number, (r: ScenarioFigures) => unknown][] = [
    ["scenario", 11, (r) => r.scenario],
    ["bills", 6, (r) => r.bills],
    ["created", 7, (r) => r.invoices.created],
    ["updated", 7, (r) => r.invoices.updated],
    ["unchgd", 6, (r) => r.invoices.unchanged],
    ["skipped", 7, (r) => r.invoices.skipped],
    ["warned", 6, (r) => r.invoices.warned],
    ["failed", 6, (r) => r.failed_items],
    ["calls", 6, (r) => r.stripe_calls.total],
    ["429s", 5, (r) => r.stripe_calls.throttled_429],
    ["writes", 6, (r) => r.stripe_calls.writes],
    ["search", 6, (r) => r.stripe_calls.search],
    ["c/created", 9, (r) => r.calls_per_created_invoice ?? "-"],
    ["wall s", 7, (r) => r.wall_s],
    ["floor s", 7, (r) => r.rate_limit_floor_s],
    ["effic.", 6, (r) => r.efficiency],
    ["dups", 4, (r) => r.duplicates],
    ["lost", 4, (r) => r.lost_ids],
    ["reported", 8, (r) => (r.reported_success ? "success" : "FAILED")],
  ];
  console.log(cols.map(([h, w]) => h.padStart(w)).join(" "));
  for (const r of rs) console.log(cols.map(([, w, f]) => cell(f(r), w).padStart(w)).join(" "));
  console.log("\nStripe calls by endpoint:");
  for (const r of rs) {
    console.log(
      `  ${r.scenario.padEnd(11)} ${
        Object.entries(r.stripe_calls.by_endpoint).map(([k, v]) => `${k}: ${v}`).join(", ") ||
        "-"
      }`,
    );
  }
  console.log("\nTargets:");
  for (const t of ts) {
    console.log(
      `  [${t.met === null ? "?" : t.met ? "met" : "MISSED"}] ${t.target}: ${t.measured}`,
    );
  }
}

await main();
