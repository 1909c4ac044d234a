/**
 * The reliability matrix (issue 7.3): crashes at every Stripe call, concurrent workers and runs,
 * fault storms, edits between runs, and malformed/unauthorized requests to every function. One
 * line per scenario and a total; exits 1 when any invariant breaks (bench/lib/checks.ts: at most
 * one live invoice per bill and one customer per tenant, every created invoice's ID stored,
 * stored IDs audited and never overwritten, totals right), or a scenario's own expectation fails.
 *
 *   deno task reliability            the full matrix (every kill position, both kill modes, ...)
 *   deno task reliability --reduced  the sample dev/test.sh runs (under 3 minutes)
 *   options: [--port N] [--keep] [--only name-substring] [--verbose]
 *
 * Runs on its own cluster (default STACK_PORT + 80, reset at start, stopped at the end) and an
 * in-process Stripe emulator; crash tests run the worker as a separate OS process
 * (bench/lib/worker.ts) and SIGKILL it around its k-th Stripe call.
 */
import { parseArgs } from "node:util";
import type { FaultSpec } from "../dev/stripe-emulator/control.ts";
import { type RunningEmulator, startStripeEmulator } from "../dev/stripe-emulator/server.ts";
import { signPayload } from "../dev/stripe-emulator/webhooks.ts";
import { startFunctionsGateway } from "../dev/functions-gateway/gateway.ts";
import { mintUserJwt } from "../dev/functions-gateway/tokens.ts";
import type { Sql } from "../supabase/functions/_shared/db.ts";
import { enqueueRun } from "../supabase/functions/_shared/runs.ts";
import type { Stripe } from "../supabase/functions/_shared/stripe_client.ts";
import { checkFailures, checkInvariants, type CheckReport, snapshotIds } from "./lib/checks.ts";
import { runMonth } from "./lib/engine.ts";
import { Cluster, defaultPort, DENO, emulatorStripe, REPO, round } from "./lib/infra.ts";
import {
  invoiceFor,
  legacyCustomer,
  makeFinalBills,
  makeManualBills,
  makeTenants,
  type SeededBill,
  usageLines,
} from "./lib/world.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    reduced: { type: "boolean", default: false },
    port: { type: "string" },
    keep: { type: "boolean", default: false },
    only: { type: "string" },
    verbose: { type: "boolean", default: false },
  },
});
const REDUCED = values.reduced;
const PORT = values.port ? Number(values.port) : defaultPort(80);
const MONTH = "2026-10";
/** Short backoff: the invariants do not depend on the delays, the matrix's duration does. */
const FAST = { baseDelayMs: 10, maxDelayMs: 80 };

interface Ctx {
  sql: Sql;
  emu: RunningEmulator;
  stripe: Stripe;
  cluster: Cluster;
}

interface Line {
  name: string;
  ok: boolean;
  ms: number;
  note: string;
  duplicates: number;
  lost: number;
  failures: string[];
}

const lines: Line[] = [];
let seq = 0;

function tag(prefix: string): string {
  return `${prefix}${(++seq).toString(36)}${crypto.randomUUID().slice(0, 4)}`;
}

/** Whether --only selects scenarios of this group (a substring either way). */
function selected(group: string): boolean {
  return !values.only || group.includes(values.only) || values.only.includes(group);
}

async function scenario(
  name: string,
  fn: () => Promise<{ note: string; failures: string[]; check?: CheckReport }>,
  msOverride?: number,
) {
  if (values.only && !name.includes(values.only)) return;
  const t0 = performance.now();
  let line: Line;
  try {
    const r = await fn();
    line = {
      name,
      ok: r.failures.length === 0,
      ms: msOverride ?? performance.now() - t0,
      note: r.note,
      duplicates: r.check ? r.check.duplicates.length + r.check.duplicateCustomers.length : 0,
      lost: r.check ? r.check.lostIds.length : 0,
      failures: r.failures,
    };
  } catch (err) {
    line = {
      name,
      ok: false,
      ms: performance.now() - t0,
      note: "",
      duplicates: 0,
      lost: 0,
      failures: [`threw: ${(err as Error).stack ?? err}`],
    };
  }
  lines.push(line);
  const secs = `${round(line.ms / 1000, 1)}s`.padStart(6);
  console.log(
    `${line.ok ? "  ok  " : " FAIL "} ${
      line.name.padEnd(44)
    } ${secs}  dups ${line.duplicates} lost ${line.lost}  ${line.note}`,
  );
  for (const f of line.failures) {
    console.log(`         ! ${f.split("\n").slice(0, 6).join("\n           ")}`);
  }
}

// --- worlds ------------------------------------------------------------------------------

interface World {
  tenants: string[];
  /** Bills that must end with a live stored invoice. */
  expect: string[];
  bills: SeededBill[];
}

/**
 * Three tenants, four bills, every identity path: A has the old automation's customer and draft
 * (Search adoption, list adoption by upstream key, metadata update); B is new (Search miss,
 * customer create, invoice create + lines, then a manual bill: list, create + lines); C has a
 * stored customer and a stored draft whose bill's amounts changed (retrieve, replace lines).
 */
async function smallWorld(ctx: Ctx, prefix: string): Promise<World> {
  const [a, b, c] = ["a", "b", "c"].map((s) => `${prefix}${s}/`);
  await makeTenants(ctx.sql, [a, b, c]);
  const [fa, fb, fc] = await makeFinalBills(ctx.sql, [
    { tenant: a, index: 2 },
    { tenant: b, index: 3 },
    { tenant: c, index: 4 },
  ], MONTH);
  const [mb] = await makeManualBills(ctx.sql, [{ tenant: b, index: 5 }], MONTH);
  const ctl = ctx.emu.control;
  const ca = await legacyCustomer(ctl, a);
  await invoiceFor(ctl, ca.id as string, fa, { status: "draft" });
  const cc = await legacyCustomer(ctl, c);
  await ctx.sql`select internal.link_tenant_customer(${c}, ${cc.id as string}, 'bench-seed')`;
  const ic = await invoiceFor(ctl, cc.id as string, fc, { status: "draft", withBillId: true });
  await ctx.sql`select internal.link_bill_invoice('final', ${fc.id}, ${ic
    .id as string}, 'bench-seed', 'seed')`;
  const changed = usageLines(4, 3);
  const report = {
    line_items: changed,
    subtotal: changed.reduce((s, l) => s + l.subtotal, 0),
    processed_data_gb: 10,
  };
  await ctx
    .sql`update internal.billing_historicals set report = ${report as unknown as string}::jsonb where id = ${fc.id}`;
  return {
    tenants: [a, b, c],
    expect: [`final:${fa.id}`, `final:${fb.id}`, `manual:${mb.id}`, `final:${fc.id}`],
    bills: [fa, fb, mb, { ...fc, lineItems: changed, subtotal: report.subtotal }],
  };
}

async function worlds(ctx: Ctx, prefix: string, n: number): Promise<World> {
  const all: World = { tenants: [], expect: [], bills: [] };
  for (let i = 0; i < n; i++) {
    const w = await smallWorld(ctx, `${prefix}${i}`);
    all.tenants.push(...w.tenants);
    all.expect.push(...w.expect);
    all.bills.push(...w.bills);
  }
  return all;
}

// --- processes ---------------------------------------------------------------------------

interface WorkerExit {
  killed: boolean;
  code: number;
  calls: number | null;
  stderr: string;
}

async function spawnWorker(
  ctx: Ctx,
  runId: string,
  opts: { killAfter?: number; killBefore?: number; batch?: number; name?: string } = {},
): Promise<WorkerExit> {
  const args = [
    "run",
    "--allow-all",
    `${REPO}bench/lib/worker.ts`,
    "--db",
    ctx.cluster.url,
    "--stripe-port",
    String(ctx.emu.port),
    "--run",
    runId,
    "--batch",
    String(opts.batch ?? 10),
  ];
  if (opts.killAfter) args.push("--kill-after", String(opts.killAfter));
  if (opts.killBefore) args.push("--kill-before", String(opts.killBefore));
  if (opts.name) args.push("--worker", opts.name);
  const out = await new Deno.Command(DENO, {
    args,
    cwd: REPO,
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(120_000),
  }).output();
  const stdout = new TextDecoder().decode(out.stdout).trim();
  let calls: number | null = null;
  try {
    calls = JSON.parse(stdout.split("\n").at(-1) ?? "").calls ?? null;
  } catch {
    calls = null;
  }
  return {
    killed: out.signal === "SIGKILL",
    code: out.code,
    calls,
    stderr: new TextDecoder().decode(out.stderr).slice(-2000),
  };
}

/**
 * What waiting out the leases would do: the dead worker's items become claimable again, and an
 * invoice-index scan or event-log read it was in the middle of can be taken over (nobody else
 * runs meanwhile).
 */
async function expireLeases(ctx: Ctx, runId: string): Promise<void> {
  await ctx.sql`update internal.publish_run_items
    set lease_expires_at = now() - interval '1 second'
    where run_id = ${runId}::uuid and state = 'running'`;
  await ctx.sql`update internal.stripe_invoice_scan
    set lease_expires_at = now() - interval '1 second'
    where lease_owner is not null and lease_expires_at > now()`;
  await ctx.sql`update internal.stripe_event_cursor
    set lease_expires_at = now() - interval '1 second'
    where lease_owner is not null and lease_expires_at > now()`;
}

async function writesSince<T>(
  ctx: Ctx,
  fn: () => Promise<T>,
): Promise<{ value: T; writes: number }> {
  const before = ctx.emu.emulator.calls.summary().writes;
  const value = await fn();
  return { value, writes: ctx.emu.emulator.calls.summary().writes - before };
}

function finish(
  check: CheckReport,
  extra: string[],
  note: string,
): { note: string; failures: string[]; check: CheckReport } {
  return { note, failures: [...checkFailures(check), ...extra], check };
}

// --- kill at every Stripe call ---------------------------------------------------------

async function calibrate(ctx: Ctx): Promise<number> {
  const w = await smallWorld(ctx, tag("cal"));
  const runId = await enqueueRun(ctx.sql, {
    month: MONTH,
    tenants: w.tenants,
    actor: "reliability",
  });
  const exit = await spawnWorker(ctx, runId);
  if (exit.calls === null) throw new Error(`calibration worker failed: ${exit.stderr}`);
  return exit.calls;
}

async function killCase(
  ctx: Ctx,
  k: number,
  total: number,
  mode: "after" | "before",
  opts: { lag?: number; realLease?: boolean } = {},
) {
  // The old automation's objects are old: made before the lag is switched on.
  const w = await smallWorld(ctx, tag(`k${mode[0]}`));
  if (opts.lag) await ctx.emu.control.setSearch({ lagSeconds: opts.lag });
  try {
    const before = await snapshotIds(ctx.sql, w.tenants);
    const runId = await enqueueRun(ctx.sql, {
      month: MONTH,
      tenants: w.tenants,
      options: opts.realLease ? { lease_seconds: 10 } : {},
      actor: "reliability",
    });
    const exit = await spawnWorker(
      ctx,
      runId,
      mode === "after" ? { killAfter: k } : { killBefore: k },
    );
    const extra: string[] = [];
    if (!exit.killed) extra.push(`worker was not killed (exit ${exit.code}): ${exit.stderr}`);
    if (opts.realLease) await new Promise((r) => setTimeout(r, 11_000));
    else await expireLeases(ctx, runId);
    const rec = await runMonth({
      sql: ctx.sql,
      stripe: ctx.stripe,
      month: MONTH,
      runId,
      workers: 1,
      callerOptions: FAST,
    });
    if (!rec.success) extra.push(`recovery run not a success: ${JSON.stringify(rec.counters)}`);
    const again = await writesSince(ctx, () =>
      runMonth({
        sql: ctx.sql,
        stripe: ctx.stripe,
        month: MONTH,
        tenants: w.tenants,
        workers: 1,
        callerOptions: FAST,
      }));
    if (again.writes > 0) extra.push(`a rerun after recovery made ${again.writes} Stripe writes`);
    const check = await checkInvariants(ctx.sql, ctx.emu.control, {
      tenants: w.tenants,
      before,
      expectPublished: w.expect,
    });
    const o = rec.counters.outcomes;
    return finish(
      check,
      extra,
      `killed at ${k}/${total}; recovered: ${
        Object.entries(o).map(([a, n]) => `${a} ${n}`).join(", ")
      }`,
    );
  } finally {
    if (opts.lag) await ctx.emu.control.setSearch({ lagSeconds: 0 });
  }
}

// --- concurrency -------------------------------------------------------------------------

async function fourWorkers(ctx: Ctx) {
  const w = await worlds(ctx, tag("cw"), 6);
  const before = await snapshotIds(ctx.sql, w.tenants);
  const runId = await enqueueRun(ctx.sql, {
    month: MONTH,
    tenants: w.tenants,
    actor: "reliability",
  });
  await ctx.emu.control.setLatency({ minMs: 10, maxMs: 40 });
  let exits: WorkerExit[];
  try {
    exits = await Promise.all(
      [0, 1, 2, 3].map((i) => spawnWorker(ctx, runId, { batch: 2, name: `four-${i}` })),
    );
  } finally {
    await ctx.emu.control.setLatency({});
  }
  const extra: string[] = [];
  for (const e of exits) if (e.code !== 0) extra.push(`a worker exited ${e.code}: ${e.stderr}`);
  const rec = await runMonth({
    sql: ctx.sql,
    stripe: ctx.stripe,
    month: MONTH,
    runId,
    workers: 1,
    callerOptions: FAST,
  });
  if (!rec.success) extra.push(`run not a success: ${JSON.stringify(rec.counters)}`);
  const [{ owners }] = await ctx.sql<{ owners: number }[]>`
    select count(distinct worker)::int as owners from internal.publish_intents
    where run_id = ${runId}::uuid`;
  const check = await checkInvariants(ctx.sql, ctx.emu.control, {
    tenants: w.tenants,
    before,
    expectPublished: w.expect,
  });
  return finish(
    check,
    extra,
    `${w.expect.length} bills, ${
      exits.reduce((s, e) => s + (e.calls ?? 0), 0)
    } calls by 4 processes, ` +
      `${owners} wrote intents`,
  );
}

async function fourRuns(ctx: Ctx) {
  const w = await worlds(ctx, tag("cr"), 4);
  const before = await snapshotIds(ctx.sql, w.tenants);
  const runs = await Promise.all(
    [0, 1, 2, 3].map(() =>
      enqueueRun(ctx.sql, { month: MONTH, tenants: w.tenants, actor: "reliability" })
    ),
  );
  await ctx.emu.control.setLatency({ minMs: 10, maxMs: 40 });
  let exits: WorkerExit[];
  try {
    exits = await Promise.all(
      runs.map((r, i) => spawnWorker(ctx, r, { batch: 2, name: `run-${i}` })),
    );
  } finally {
    await ctx.emu.control.setLatency({});
  }
  const extra: string[] = [];
  for (const e of exits) if (e.code !== 0) extra.push(`a worker exited ${e.code}: ${e.stderr}`);
  for (const r of runs) {
    const rec = await runMonth({
      sql: ctx.sql,
      stripe: ctx.stripe,
      month: MONTH,
      runId: r,
      workers: 1,
      callerOptions: FAST,
    });
    if (!rec.success) extra.push(`run ${r} not a success: ${JSON.stringify(rec.counters)}`);
  }
  const check = await checkInvariants(ctx.sql, ctx.emu.control, {
    tenants: w.tenants,
    before,
    expectPublished: w.expect,
  });
  return finish(check, extra, `${w.expect.length} bills, 4 runs of ${MONTH} drained at once`);
}

// --- storms ------------------------------------------------------------------------------

async function storm(ctx: Ctx, prefix: string, faults: FaultSpec[], stripe = ctx.stripe) {
  const w = await worlds(ctx, tag(prefix), 3);
  const before = await snapshotIds(ctx.sql, w.tenants);
  const ids = [];
  for (const f of faults) ids.push((await ctx.emu.control.addFault(f)).id);
  const extra: string[] = [];
  let hits = 0;
  let runs = 0;
  let first;
  try {
    first = await runMonth({
      sql: ctx.sql,
      stripe,
      month: MONTH,
      tenants: w.tenants,
      workers: 2,
      batchSize: 2,
      callerOptions: FAST,
    });
    runs++;
  } finally {
    for (const f of await ctx.emu.control.faults()) if (ids.includes(f.id)) hits += f.hits;
    await ctx.emu.control.clearFaults();
  }
  // Items that used up their attempts during the storm are picked up by the next run.
  let last = first;
  while (!last.success && runs < 4) {
    last = await runMonth({
      sql: ctx.sql,
      stripe,
      month: MONTH,
      tenants: w.tenants,
      workers: 1,
      callerOptions: FAST,
    });
    runs++;
  }
  if (!last.success) {
    extra.push(`not converged after ${runs} runs: ${JSON.stringify(last.counters)}`);
  }
  if (hits === 0) extra.push("no fault fired");
  const check = await checkInvariants(ctx.sql, ctx.emu.control, {
    tenants: w.tenants,
    before,
    expectPublished: w.expect,
  });
  const fo = first.counters;
  return finish(
    check,
    extra,
    `${hits} faults hit; first run ${fo.done} done/${fo.failed} failed` +
      `${Object.keys(first.errors).length ? ` (${Object.keys(first.errors).join(", ")})` : ""}; ` +
      `${runs} run(s) to converge; ${first.stats.retries} retries`,
  );
}

const WRITES = [
  "POST /v1/invoices",
  "POST /v1/invoices/:id/add_lines",
  "POST /v1/invoices/:id/remove_lines",
  "POST /v1/invoices/:id",
  "POST /v1/customers",
];

const STORMS: Record<string, FaultSpec[]> = {
  "429s (limiter and lock_timeout)": [
    { route: "* /v1/*", kind: "rate_limit", count: 40 },
    { route: "POST /v1/invoices/:id/add_lines", kind: "lock_timeout", count: 3 },
  ],
  "5xx (500 after applying, 502/503 before)": [
    { route: "POST /v1/invoices", kind: "error", status: 500, applyWrite: true, count: 3 },
    { route: "POST /v1/invoices/:id/add_lines", kind: "error", status: 503, count: 3 },
    { route: "POST /v1/customers", kind: "error", status: 502, count: 2 },
    { route: "GET /v1/invoices", kind: "error", status: 500, count: 2 },
    { route: "POST /v1/invoices/:id", kind: "error", status: 500, applyWrite: true, count: 2 },
  ],
  "timeouts (write applied, no answer)": [
    { route: "POST /v1/invoices", kind: "timeout", applyWrite: true, holdMs: 1_500, count: 2 },
    {
      route: "POST /v1/invoices/:id/add_lines",
      kind: "timeout",
      applyWrite: true,
      holdMs: 1_500,
      count: 2,
    },
    { route: "GET /v1/customers/search", kind: "timeout", holdMs: 1_500, count: 1 },
  ],
  "dropped connections after applied writes": WRITES.map((route) => ({
    route,
    kind: "drop" as const,
    mode: "after_headers" as const,
    count: 2,
  })),
  "dropped before a byte (fetch resends)": [
    { route: "POST /v1/invoices", kind: "drop", mode: "before_response", count: 3 },
    { route: "POST /v1/invoices/:id/add_lines", kind: "drop", mode: "before_response", count: 2 },
  ],
  "mixed: drops, 500s, 429s, timeouts": [
    { route: "POST /v1/invoices", kind: "drop", mode: "after_headers", count: 2 },
    { route: "POST /v1/invoices/:id/add_lines", kind: "error", status: 500, applyWrite: true },
    { route: "POST /v1/customers", kind: "drop", mode: "after_headers", count: 1 },
    { route: "POST /v1/invoices/:id/remove_lines", kind: "drop", mode: "after_headers" },
    { route: "GET /v1/invoices/:id", kind: "error", status: 503, count: 2 },
    { route: "* /v1/*", kind: "rate_limit", count: 10, skip: 5 },
    { route: "POST /v1/invoices/:id", kind: "timeout", applyWrite: true, holdMs: 1_500 },
  ],
};

// --- edits between runs -------------------------------------------------------------------

async function edits(ctx: Ctx, reduced: boolean) {
  const p = tag("ed");
  const names = reduced ? ["dates", "amounts", "voided", "handmade-billid", "customer-deleted"] : [
    "dates",
    "amounts",
    "voided",
    "deleted",
    "paid",
    "handmade-billid",
    "handmade-upstream",
    "customer-deleted",
  ];
  const tenants = names.map((n, i) => `${p}${i}${n.replace(/[^a-z]/g, "").slice(0, 8)}/`);
  await makeTenants(ctx.sql, tenants);
  const t = Object.fromEntries(names.map((n, i) => [n, tenants[i]]));
  const finals = await makeFinalBills(
    ctx.sql,
    tenants.map((tenant, index) => ({ tenant, index: index + 1 })),
    MONTH,
  );
  const manual = await makeManualBills(ctx.sql, [{ tenant: t.dates, index: 1 }], MONTH);
  const fin = (n: string) => finals.find((b) => b.tenant === t[n])!;
  const ctl = ctx.emu.control;

  // Run 1 publishes everything.
  const r1 = await runMonth({
    sql: ctx.sql,
    stripe: ctx.stripe,
    month: MONTH,
    tenants,
    workers: 2,
    callerOptions: FAST,
  });
  const stored = async (kind: string, id: number) => {
    const rows = kind === "final"
      ? await ctx.sql<{ s: string | null }[]>`
        select stripe_invoice_id as s from internal.billing_historicals where id = ${id}`
      : await ctx.sql<{ s: string | null }[]>`
        select stripe_invoice_id as s from internal.manual_bills where id = ${id}`;
    return rows[0]?.s ?? null;
  };
  const customer = async (tenant: string) => {
    const [r] = await ctx.sql<{ c: string | null }[]>`
      select stripe_customer_id as c from public.tenants where tenant = ${tenant}`;
    return r.c;
  };
  const before = await snapshotIds(ctx.sql, tenants);
  const extra: Record<string, string[]> = Object.fromEntries(names.map((n) => [n, []]));
  if (!r1.success) extra[names[0]].push(`first run not a success: ${JSON.stringify(r1.counters)}`);
  const newBills: Record<string, SeededBill> = {};
  const handMade: Record<string, string> = {};
  const ids: Record<string, string | null> = {};
  for (const n of names) ids[n] = await stored("final", fin(n).id);
  ids.datesManual = await stored("manual", manual[0].id);

  // The edits.
  for (const n of names) {
    const inv = ids[n]!;
    switch (n) {
      case "dates":
        await ctx.sql`update internal.manual_bills set date_end = date_end - 2
          where id = ${manual[0].id}`;
        break;
      case "amounts": {
        const l = usageLines(fin(n).index, 9);
        const report = {
          line_items: l,
          subtotal: l.reduce((s, x) => s + x.subtotal, 0),
          processed_data_gb: 10,
        };
        await ctx
          .sql`update internal.billing_historicals set report = ${report as unknown as string}::jsonb where id = ${
          fin(n).id
        }`;
        break;
      }
      case "voided":
        await ctl.finalizeInvoice(inv);
        await ctl.voidInvoice(inv);
        break;
      case "deleted":
        await ctl.deleteInvoice(inv);
        break;
      case "paid":
        await ctl.finalizeInvoice(inv);
        await ctl.payInvoice(inv);
        break;
      case "handmade-billid":
      case "handmade-upstream": {
        const [mb] = await makeManualBills(ctx.sql, [{ tenant: t[n], index: 7 }], MONTH);
        newBills[n] = mb;
        const made = await invoiceFor(ctl, (await customer(t[n]))!, mb, {
          status: "draft",
          withBillId: n === "handmade-billid",
        });
        handMade[n] = made.id as string;
        break;
      }
      case "customer-deleted": {
        await ctl.deleteCustomer((await customer(t[n]))!);
        const [mb] = await makeManualBills(ctx.sql, [{ tenant: t[n], index: 8 }], MONTH);
        newBills[n] = mb;
        break;
      }
    }
  }

  const seq0 = ctx.emu.emulator.calls.list().at(-1)?.seq ?? 0;
  const r2 = await runMonth({
    sql: ctx.sql,
    stripe: ctx.stripe,
    month: MONTH,
    tenants,
    workers: 2,
    callerOptions: FAST,
  });
  // Objects the second run made (answered 200 and executed, not replays of earlier requests).
  const made = (route: string) =>
    ctx.emu.emulator.calls.list(seq0).filter((c) =>
      c.route === route && c.status === 200 && c.executed && !c.replayed
    ).length;
  const creates = made("POST /v1/invoices");
  const customersMade = made("POST /v1/customers");
  const items = new Map(
    (r2.report.items as { bill: string; outcome: string | null; reason: string | null }[]).map((
      i,
    ) => [i.bill, i]),
  );
  const expectPublished = [
    `manual:${manual[0].id}`,
    ...(t.amounts ? [`final:${fin("amounts").id}`] : []),
    ...Object.entries(newBills).filter(([n]) => n.startsWith("handmade")).map(([, b]) =>
      `manual:${b.id}`
    ),
  ];
  const check = await checkInvariants(ctx.sql, ctx.emu.control, {
    tenants,
    before,
    expectPublished,
  });
  const inv = (ref: string) => items.get(ref);
  const want = (n: string, ref: string, outcome: string, reason?: string) => {
    const i = inv(ref);
    if (!i || i.outcome !== outcome || (reason && i.reason !== reason)) {
      extra[n].push(
        `${ref}: expected ${outcome}${reason ? `/${reason}` : ""}, got ${i?.outcome}/${i?.reason}`,
      );
    }
  };
  const notes: Record<string, string> = {};
  const subject: Record<string, string> = {};
  for (const n of names) {
    subject[n] = n === "dates"
      ? `manual:${manual[0].id}`
      : newBills[n]
      ? `manual:${newBills[n].id}`
      : `final:${fin(n).id}`;
    const i = inv(subject[n]);
    notes[n] = `${subject[n]}: ${i?.outcome ?? "-"}/${i?.reason ?? "-"}`;
  }
  for (const n of names) {
    switch (n) {
      case "dates": {
        want(n, `manual:${manual[0].id}`, "updated");
        const now = await stored("manual", manual[0].id);
        if (now !== ids.datesManual) {
          extra[n].push(`stored ID changed ${ids.datesManual} -> ${now}`);
        }
        const st = (await ctl.state()).invoices.find((i) => i.id === now);
        const [{ end }] = await ctx.sql<{ end: string }[]>`
          select date_end::text as end from internal.manual_bills where id = ${manual[0].id}`;
        if (st?.metadata?.["estuary.dev/period_end"] !== end) {
          extra[n].push(
            `invoice period_end ${st?.metadata?.["estuary.dev/period_end"]}, bill ${end}`,
          );
        }
        break;
      }
      case "amounts":
        want(n, `final:${fin(n).id}`, "updated");
        break;
      case "voided":
        want(n, `final:${fin(n).id}`, "warned", "voided");
        break;
      case "deleted":
        want(n, `final:${fin(n).id}`, "warned", "deleted");
        break;
      case "paid":
        want(n, `final:${fin(n).id}`, "skipped", "already_processed");
        break;
      case "handmade-billid":
      case "handmade-upstream": {
        const ref = `manual:${newBills[n].id}`;
        const i = inv(ref);
        if (!i || !["updated", "unchanged"].includes(i.outcome ?? "")) {
          extra[n].push(
            `${ref}: expected adoption (updated/unchanged), got ${i?.outcome}/${i?.reason}`,
          );
        }
        const now = await stored("manual", newBills[n].id);
        if (now !== handMade[n]) extra[n].push(`stored ${now}, hand-made ${handMade[n]}`);
        break;
      }
      case "customer-deleted":
        want(n, `manual:${newBills[n].id}`, "warned", "customer_deleted");
        if (customersMade > 0) extra[n].push(`${customersMade} customers created`);
        break;
    }
    if (n !== "dates" && n !== "amounts" && n !== "handmade-billid" && n !== "handmade-upstream") {
      // Nothing here may be recreated.
      const now = await stored("final", fin(n).id);
      if (now !== ids[n]) extra[n].push(`stored ID changed ${ids[n]} -> ${now}`);
    }
  }
  if (creates > 0) {
    extra[names[0]].push(`${creates} invoices created by the second run (expected 0)`);
  }
  return { names, extra, check, notes };
}

// --- malformed and unauthorized requests to every function ---------------------------------

async function fingerprint(ctx: Ctx): Promise<string> {
  const tables = [
    "public.tenants",
    "public.user_grants",
    "internal.manual_bills",
    "internal.billing_historicals",
    "internal.bill_invoice_links",
    "internal.stripe_id_audit",
    "internal.publish_runs",
    "internal.publish_run_items",
    "internal.publish_intents",
    "internal.stripe_invoice_state",
    "internal.stripe_deleted_customers",
    "internal.stripe_events",
  ];
  const parts: string[] = [];
  for (const t of tables) {
    const [r] = await ctx.sql.unsafe(
      `select count(*)::text as n, coalesce(md5(string_agg(x::text, ',' order by x::text)), '-') as h from ${t} x`,
    );
    parts.push(`${t}:${r.n}:${r.h}`);
  }
  return parts.join("|");
}

async function functions(ctx: Ctx) {
  const webhookSecret = `whsec_${crypto.randomUUID().replaceAll("-", "")}`;
  const schedulerSecret = `sched_${crypto.randomUUID()}`;
  const gw = await startFunctionsGateway({
    port: 0,
    dbUrl: ctx.cluster.url,
    secrets: {
      STRIPE_SECRET_KEY: "sk_test_reliability",
      STRIPE_API_BASE: ctx.emu.url,
      STRIPE_WEBHOOK_SECRET: webhookSecret,
      PUBLISH_INVOICES_SECRET: schedulerSecret,
    },
  });
  try {
    // A tenant with a bill, an admin of it, and a user who is not.
    const p = tag("fn");
    const tenant = `${p}t/`;
    await makeTenants(ctx.sql, [tenant]);
    await makeFinalBills(ctx.sql, [{ tenant, index: 3 }], MONTH);
    const admin = crypto.randomUUID();
    const stranger = crypto.randomUUID();
    for (const id of [admin, stranger]) {
      await ctx.sql`insert into auth.users (id, aud, role, email)
        values (${id}, 'authenticated', 'authenticated', ${id + "@users.example"})`;
    }
    await ctx.sql`insert into public.user_grants (user_id, object_role, capability)
      values (${admin}, ${tenant}, 'admin')`;
    const adminJwt = await mintUserJwt({ sub: admin, projectUrl: gw.url });
    const strangerJwt = await mintUserJwt({ sub: stranger, projectUrl: gw.url });
    const expiredJwt = await mintUserJwt({ sub: admin, expiresIn: -600, projectUrl: gw.url });
    const forgedJwt = await mintUserJwt({
      sub: admin,
      projectUrl: gw.url,
      key: { alg: "HS256", secret: "not-the-project-secret-not-the-project-secret" },
    });
    const json = "application/json";
    type Req = {
      fn: string;
      what: string;
      method?: string;
      headers?: Record<string, string>;
      body?: string;
    };
    const svc = { authorization: `Bearer ${gw.serviceRoleKey}`, "content-type": json };
    const user = (jwt: string) => ({
      authorization: `Bearer ${jwt}`,
      apikey: gw.publishableKey,
      "content-type": json,
    });
    const body = (x: unknown) => JSON.stringify(x);
    const eventBody = body({
      id: `evt_${p}`,
      object: "event",
      type: "invoice.paid",
      created: Math.floor(Date.now() / 1000),
      data: { object: { id: "in_forged", object: "invoice", status: "paid" } },
    });
    const now = Math.floor(Date.now() / 1000);
    const reqs: Req[] = [
      // publish-invoices: service role or scheduler secret only; strict body.
      {
        fn: "publish-invoices",
        what: "no credentials",
        headers: { "content-type": json },
        body: body({ month: MONTH }),
      },
      {
        fn: "publish-invoices",
        what: "anon key as bearer",
        headers: { authorization: `Bearer ${gw.anonKey}`, "content-type": json },
        body: body({ month: MONTH }),
      },
      {
        fn: "publish-invoices",
        what: "user JWT (admin)",
        headers: user(adminJwt),
        body: body({ month: MONTH }),
      },
      {
        fn: "publish-invoices",
        what: "publishable key as apikey",
        headers: { apikey: gw.publishableKey, "content-type": json },
        body: body({ month: MONTH }),
      },
      {
        fn: "publish-invoices",
        what: "wrong scheduler secret",
        headers: { "x-scheduler-secret": "nope", "content-type": json },
        body: body({ month: MONTH }),
      },
      { fn: "publish-invoices", what: "GET", method: "GET", headers: svc },
      { fn: "publish-invoices", what: "not JSON", headers: svc, body: "month=2026-10" },
      { fn: "publish-invoices", what: "JSON array", headers: svc, body: "[]" },
      { fn: "publish-invoices", what: "month missing", headers: svc, body: body({}) },
      {
        fn: "publish-invoices",
        what: "month 2026-13",
        headers: svc,
        body: body({ month: "2026-13" }),
      },
      {
        fn: "publish-invoices",
        what: "month as number",
        headers: svc,
        body: body({ month: 202610 }),
      },
      {
        fn: "publish-invoices",
        what: "tenants empty",
        headers: svc,
        body: body({ month: MONTH, tenants: [] }),
      },
      {
        fn: "publish-invoices",
        what: "tenant without slash",
        headers: svc,
        body: body({ month: MONTH, tenants: ["acme"] }),
      },
      {
        fn: "publish-invoices",
        what: "dry_run as string",
        headers: svc,
        body: body({ month: MONTH, dry_run: "yes" }),
      },
      {
        fn: "publish-invoices",
        what: "unknown field",
        headers: svc,
        body: body({ month: MONTH, tenant: tenant }),
      },
      {
        fn: "publish-invoices",
        what: "run_id not a UUID",
        headers: svc,
        body: body({ month: MONTH, run_id: "run-1" }),
      },
      // billing: a signed-in admin of the tenant; strict per-operation bodies.
      {
        fn: "billing",
        what: "no credentials",
        headers: { "content-type": json },
        body: body({ operation: "setup-intent", tenant }),
      },
      {
        fn: "billing",
        what: "anon key as bearer",
        headers: user(gw.anonKey),
        body: body({ operation: "setup-intent", tenant }),
      },
      {
        fn: "billing",
        what: "service role key as bearer",
        headers: user(gw.serviceRoleKey),
        body: body({ operation: "setup-intent", tenant }),
      },
      {
        fn: "billing",
        what: "expired JWT",
        headers: user(expiredJwt),
        body: body({ operation: "setup-intent", tenant }),
      },
      {
        fn: "billing",
        what: "forged JWT",
        headers: user(forgedJwt),
        body: body({ operation: "setup-intent", tenant }),
      },
      {
        fn: "billing",
        what: "not an admin: setup-intent",
        headers: user(strangerJwt),
        body: body({ operation: "setup-intent", tenant }),
      },
      {
        fn: "billing",
        what: "not an admin: list invoices",
        headers: user(strangerJwt),
        body: body({ operation: "list-tenant-invoices", tenant }),
      },
      { fn: "billing", what: "GET", method: "GET", headers: user(adminJwt) },
      { fn: "billing", what: "not JSON", headers: user(adminJwt), body: "{" },
      {
        fn: "billing",
        what: "unknown operation",
        headers: user(adminJwt),
        body: body({ operation: "drop-tables", tenant }),
      },
      {
        fn: "billing",
        what: "tenant missing",
        headers: user(adminJwt),
        body: body({ operation: "setup-intent" }),
      },
      {
        fn: "billing",
        what: "tenant malformed",
        headers: user(adminJwt),
        body: body({ operation: "setup-intent", tenant: "../x" }),
      },
      {
        fn: "billing",
        what: "payment method id malformed",
        headers: user(adminJwt),
        body: body({
          operation: "set-tenant-primary-payment-method",
          tenant,
          payment_method_id: "card_1",
        }),
      },
      {
        fn: "billing",
        what: "delete pm without id",
        headers: user(adminJwt),
        body: body({ operation: "delete-tenant-payment-method", tenant }),
      },
      {
        fn: "billing",
        what: "bill_id malformed",
        headers: user(adminJwt),
        body: body({ operation: "get-tenant-invoice", tenant, bill_id: "final:x" }),
      },
      {
        fn: "billing",
        what: "invoice by dates, type missing",
        headers: user(adminJwt),
        body: body({
          operation: "get-tenant-invoice",
          tenant,
          date_start: "2026-10-01",
          date_end: "2026-10-31",
        }),
      },
      {
        fn: "billing",
        what: "impossible date",
        headers: user(adminJwt),
        body: body({
          operation: "get-tenant-invoice",
          tenant,
          type: "final",
          date_start: "2026-02-30",
          date_end: "2026-03-31",
        }),
      },
      {
        fn: "billing",
        what: "limit 0",
        headers: user(adminJwt),
        body: body({ operation: "list-tenant-invoices", tenant, limit: 0 }),
      },
      // stripe-webhook: the Stripe-Signature over the raw body is the only credential.
      {
        fn: "stripe-webhook",
        what: "no signature",
        headers: { "content-type": json },
        body: eventBody,
      },
      {
        fn: "stripe-webhook",
        what: "garbage signature",
        headers: { "content-type": json, "stripe-signature": "t=1,v1=00" },
        body: eventBody,
      },
      {
        fn: "stripe-webhook",
        what: "signed with another secret",
        headers: {
          "content-type": json,
          "stripe-signature": await signPayload(eventBody, "whsec_other", now),
        },
        body: eventBody,
      },
      {
        fn: "stripe-webhook",
        what: "stale signature (1 h old)",
        headers: {
          "content-type": json,
          "stripe-signature": await signPayload(eventBody, webhookSecret, now - 3600),
        },
        body: eventBody,
      },
      {
        fn: "stripe-webhook",
        what: "body changed after signing",
        headers: {
          "content-type": json,
          "stripe-signature": await signPayload(eventBody, webhookSecret, now),
        },
        body: eventBody.replace("paid", "void"),
      },
      {
        fn: "stripe-webhook",
        what: "re-serialized body",
        headers: {
          "content-type": json,
          "stripe-signature": await signPayload(eventBody, webhookSecret, now),
        },
        body: JSON.stringify(JSON.parse(eventBody), null, 2),
      },
      { fn: "stripe-webhook", what: "GET", method: "GET" },
      {
        fn: "no-such-function",
        what: "unknown function",
        headers: svc,
        body: body({ month: MONTH }),
      },
    ];
    const db0 = await fingerprint(ctx);
    const stripe0 = ctx.emu.emulator.calls.summary();
    const bad: Record<string, string[]> = {};
    const counts: Record<string, number> = {};
    for (const r of reqs) {
      const res = await fetch(`${gw.url}/functions/v1/${r.fn}`, {
        method: r.method ?? "POST",
        headers: r.headers ?? {},
        body: r.body,
      });
      const text = await res.text();
      counts[r.fn] = (counts[r.fn] ?? 0) + 1;
      if (res.status < 400 || res.status >= 500) {
        (bad[r.fn] ??= []).push(`${r.what}: ${res.status} ${text.slice(0, 160)}`);
      } else if (values.verbose) {
        console.log(`         ${r.fn} ${r.what}: ${res.status} ${text.slice(0, 100)}`);
      }
    }
    const db1 = await fingerprint(ctx);
    const stripe1 = ctx.emu.emulator.calls.summary();
    const extra: string[] = [];
    if (db0 !== db1) {
      const a = db0.split("|");
      const b = db1.split("|");
      extra.push(
        `database changed: ${
          a.filter((x, i) => x !== b[i]).map((x) => x.split(":")[0]).join(", ")
        }`,
      );
    }
    if (stripe1.writes !== stripe0.writes) {
      extra.push(`${stripe1.writes - stripe0.writes} Stripe writes`);
    }
    return { counts, bad, extra, stripeCalls: stripe1.total - stripe0.total };
  } finally {
    await gw.close();
  }
}

// --- the checks themselves ----------------------------------------------------------------

/** Plants a duplicate, a lost ID and an overwritten ID, and requires the checks to see each. */
async function checksSelfTest(ctx: Ctx) {
  const w = await smallWorld(ctx, tag("self"));
  await runMonth({
    sql: ctx.sql,
    stripe: ctx.stripe,
    month: MONTH,
    tenants: w.tenants,
    workers: 1,
    callerOptions: FAST,
  });
  const before = await snapshotIds(ctx.sql, w.tenants);
  const [fa, fb] = w.bills;
  const [{ c }] = await ctx.sql<{ c: string }[]>`
    select stripe_customer_id as c from public.tenants where tenant = ${fa.tenant}`;
  // A second live invoice carrying bill A's ID: a duplicate and a lost ID.
  await invoiceFor(ctx.emu.control, c, fa, { status: "draft", withBillId: true });
  // Bill B's stored ID replaced behind the engine's back (audited as a direct update).
  const other = await invoiceFor(ctx.emu.control, c, fb, { status: "draft" });
  await ctx.sql`update internal.billing_historicals set stripe_invoice_id = ${other.id as string}
    where id = ${fb.id}`;
  const check = await checkInvariants(ctx.sql, ctx.emu.control, {
    tenants: w.tenants,
    before,
    expectPublished: w.expect,
  });
  const missed: string[] = [];
  if (check.duplicates.length === 0) missed.push("the planted duplicate was not reported");
  if (check.lostIds.length === 0) missed.push("the planted lost ID was not reported");
  if (check.overwritten.length === 0) missed.push("the overwritten stored ID was not reported");
  if (check.wrongLinks.length === 0) missed.push("the wrong link was not reported");
  return {
    note: `planted faults reported: ${checkFailures(check).map((f) => f.split(":")[0]).join(", ")}`,
    failures: missed,
  };
}

// --- main ----------------------------------------------------------------------------------

async function main(): Promise<void> {
  const t0 = performance.now();
  const cluster = new Cluster(PORT);
  console.log(
    `reliability matrix (${REDUCED ? "reduced" : "full"}) on a dedicated cluster 127.0.0.1:${PORT}`,
  );
  await cluster.reset();
  const emu = await startStripeEmulator({ port: 0 });
  const sql = cluster.pool(12, "reliability");
  const ctx: Ctx = { sql, emu, stripe: emulatorStripe(emu.port, 5_000), cluster };
  try {
    await scenario("the checks catch planted violations", () => checksSelfTest(ctx));

    // Kill the worker process around each Stripe call of a small run.
    const total = selected("kill") ? await calibrate(ctx) : 0;
    const positions = Array.from({ length: total }, (_, i) => i + 1);
    const sample = REDUCED ? positions.filter((k) => k % 3 === 1) : positions;
    for (const k of sample) {
      await scenario(
        `kill after call ${k}/${total} returns`,
        () => killCase(ctx, k, total, "after"),
      );
    }
    if (!REDUCED) {
      for (const k of positions) {
        await scenario(
          `kill before call ${k}/${total} is sent`,
          () => killCase(ctx, k, total, "before"),
        );
      }
      for (const k of positions.filter((k) => k % 2 === 1)) {
        await scenario(
          `kill after call ${k}/${total}, Search lag 5 s`,
          () => killCase(ctx, k, total, "after", { lag: 5 }),
        );
      }
      await scenario(
        `kill after call 3/${total}, real lease expiry`,
        () => killCase(ctx, 3, total, "after", { realLease: true }),
      );
    }

    await scenario("4 worker processes on one run", () => fourWorkers(ctx));
    if (!REDUCED) await scenario("4 runs of one month at once", () => fourRuns(ctx));

    const quick = emulatorStripe(emu.port, 1_000);
    const storms = REDUCED ? ["mixed: drops, 500s, 429s, timeouts"] : Object.keys(STORMS);
    for (const s of storms) {
      await scenario(`storm: ${s}`, () => storm(ctx, "st", STORMS[s], quick));
    }

    if (selected("edit between runs")) {
      const t1 = performance.now();
      const e = await edits(ctx, REDUCED);
      const share = (performance.now() - t1) / e.names.length;
      const f = checkFailures(e.check);
      for (const n of e.names) {
        await scenario(
          `edit between runs: ${n}`,
          () =>
            Promise.resolve({
              note: e.notes[n] ?? "",
              failures: [...e.extra[n], ...(n === e.names[0] ? f : [])],
              check: n === e.names[0] ? e.check : undefined,
            }),
          share,
        );
      }
    }

    if (selected("malformed/unauthorized")) {
      const t1 = performance.now();
      const r = await functions(ctx);
      const fns = Object.keys(r.counts);
      const share = (performance.now() - t1) / fns.length;
      for (const fn of fns) {
        await scenario(
          `malformed/unauthorized: ${fn}`,
          () =>
            Promise.resolve({
              note: `${r.counts[fn]} requests, ${r.bad[fn] ? "NOT all" : "all"} 4xx; ` +
                (fn === fns[0]
                  ? `database unchanged: ${r.extra.length === 0}, Stripe calls ${r.stripeCalls}`
                  : ""),
              failures: [...(r.bad[fn] ?? []), ...(fn === fns[0] ? r.extra : [])],
            }),
          share,
        );
      }
    }
  } finally {
    await sql.end();
    await emu.close();
    if (!values.keep) await cluster.stop();
  }
  const failed = lines.filter((l) => !l.ok);
  const dups = lines.reduce((s, l) => s + l.duplicates, 0);
  const lost = lines.reduce((s, l) => s + l.lost, 0);
  const secs = round((performance.now() - t0) / 1000, 1);
  console.log(
    `\nTOTAL: ${lines.length} scenarios, ${
      lines.length - failed.length
    } passed, ${failed.length} failed; ` +
      `duplicates ${dups}, lost IDs ${lost}; ${secs} s`,
  );
  const dir = `${REPO}bench/results`;
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(
    `${dir}/reliability${REDUCED ? "_reduced" : ""}.json`,
    JSON.stringify(
      {
        date: new Date().toISOString(),
        mode: REDUCED ? "reduced" : "full",
        seconds: secs,
        scenarios: lines.map((l) => ({ ...l, ms: Math.round(l.ms) })),
        total: { scenarios: lines.length, failed: failed.length, duplicates: dups, lost_ids: lost },
      },
      null,
      2,
    ),
  );
  if (failed.length > 0 || lines.length === 0) Deno.exit(1);
}

await main();
