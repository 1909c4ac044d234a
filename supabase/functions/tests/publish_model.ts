/**
 * A model-based test of publishing (fast-check's `fc.commands` + `fc.asyncModelRun`): random
 * sequences of publish runs (with faults, crashes and concurrent workers), bill edits (amounts,
 * dates, tenant), tenant changes and hand actions in Stripe (finalize, void, delete, pay, edit
 * lines or metadata), with an operator release. After every step the invariants are checked
 * against the emulator's and the database's own state, never through the engine:
 *  1. at most one live invoice per bill;
 *  2. after a publish that finished, every live invoice of a bill is the one stored for it;
 *  3. after a publish that finished, every stored draft is on the tenant's stored customer and
 *     totals the bill's subtotal (read from the bill row), or the bill was warned or failed
 *     naming that invoice.
 * Shared by the test command (a fixed sample) and bench/publish_model.ts (thousands).
 */
import fc from "npm:fast-check@4.10.2";
import assert from "node:assert/strict";
import { drainRun, publish } from "../_shared/publish.ts";
import type { Stripe } from "../_shared/stripe_client.ts";
import {
  BUDGET,
  deps,
  insertUsageBill,
  items,
  makeTenant,
  manualBill,
  type World,
} from "./publish_helpers.ts";

const MONTH = "2026-10";
const BILL_ID = "estuary.dev/bill_id";
const INSTALLATION = "estuary.dev/installation";

/** The system under test for one sequence: two tenants, a manual and a usage bill of tenant A. */
export interface Real {
  w: World;
  installation: string;
  a: string;
  b: string;
  manual: number;
  final: number;
  /** Whether the last step was a publish that finished (invariants 2 and 3 apply). */
  settled: boolean;
  lastRun: string | null;
  trace: string[];
}

/** The model: only what the commands need to choose sensibly. */
export interface Model {
  steps: number;
}

type Cmd = fc.AsyncCommand<Model, Real, boolean>;

async function finalReport(r: Real, lines: { count: number; rate: number }[]) {
  // Half-cent line subtotals, as legacy reports keep them; the subtotal is their sum rounded.
  const items = lines.map((l, i) => ({
    description: `Usage ${i}`,
    count: l.count,
    rate: l.rate,
    subtotal: Math.round(l.count * l.rate * 2) / 2,
  }));
  const sum = items.reduce((s, l) => s + l.subtotal, 0);
  const report = { line_items: items, subtotal: Math.floor(sum + 0.5), processed_data_gb: 5 };
  // In a UTC session, as upstream edits its statements (the row's check truncates in the session's
  // zone).
  await r.w.sql.begin(async (tx) => {
    await tx`set local timezone = 'UTC'`;
    await tx`update internal.billing_historicals set report = ${tx.json(report)}
      where id = ${r.final}`;
  });
}

/** Opens one sequence's world: fresh tenants and bills on the shared database and emulator. */
export async function openReal(w: World): Promise<Real> {
  const [{ inst }] = await w.sql`select internal.installation_id()::text as inst`;
  const a = await makeTenant(w.sql, { prefix: "mdl" });
  const b = await makeTenant(w.sql, { prefix: "mdl" });
  const manual = await manualBill(w.sql, a, 12_000, "2026-10-01", "2026-10-31");
  const final = await insertUsageBill(w.sql, a, MONTH, {
    line_items: [],
    subtotal: 0,
    processed_data_gb: 5,
  });
  const r: Real = {
    w,
    installation: inst,
    a,
    b,
    manual,
    final,
    settled: false,
    lastRun: null,
    trace: [],
  };
  await finalReport(r, [{ count: 100.25, rate: 14 }, { count: 1, rate: 5000 }]);
  return r;
}

function ref(kind: "manual" | "final", id: number) {
  return `${kind}:${id}`;
}

interface BillRow {
  tenant: string;
  subtotal: number;
  stored: string | null;
  customer: string | null;
}

async function billRow(r: Real, kind: "manual" | "final"): Promise<BillRow> {
  const [row] = kind === "manual"
    ? await r.w.sql<BillRow[]>`select m.tenant::text, m.usd_cents as subtotal,
        m.stripe_invoice_id as stored, t.stripe_customer_id as customer
      from internal.manual_bills m join public.tenants t on t.tenant = m.tenant
      where m.id = ${r.manual}`
    : await r.w.sql<BillRow[]>`select h.tenant::text, (h.report ->> 'subtotal')::int as subtotal,
        h.stripe_invoice_id as stored, t.stripe_customer_id as customer
      from internal.billing_historicals h join public.tenants t on t.tenant = h.tenant
      where h.id = ${r.final}`;
  return row;
}

/** This installation's invoices of a bill, as the emulator holds them. */
function invoicesOf(r: Real, billRef: string) {
  return [...r.w.emu.emulator.store.invoices.values()].filter((i) =>
    i.metadata[BILL_ID] === billRef && i.metadata[INSTALLATION] === r.installation
  );
}

const live = (s: string) => s === "draft" || s === "open" || s === "paid" || s === "uncollectible";

/** Checks the invariants; throws with the sequence's trace when one breaks. */
export async function checkInvariants(r: Real): Promise<void> {
  const fail = (msg: string) => {
    throw new Error(`${msg}\n  after: ${r.trace.join(" → ")}`);
  };
  const runItems = r.lastRun ? await items(r.w.sql, r.lastRun) : [];
  for (const kind of ["manual", "final"] as const) {
    const id = kind === "manual" ? r.manual : r.final;
    const billRef = ref(kind, id);
    const all = invoicesOf(r, billRef);
    const alive = all.filter((i) => !i.deleted && live(i.status));
    if (alive.length > 1) fail(`${billRef} has ${alive.length} live invoices`);
    if (!r.settled) continue;
    const row = await billRow(r, kind);
    for (const i of alive) {
      if (i.id !== row.stored) {
        fail(`${billRef}: live invoice ${i.id} is not stored (${row.stored})`);
      }
    }
    if (!row.stored) continue;
    const stored = r.w.emu.emulator.store.invoices.get(row.stored);
    if (!stored || stored.deleted || stored.status !== "draft") continue;
    const inv = await r.w.stripe.invoices.retrieve(row.stored);
    const item = runItems.find((i) => i.bill === billRef);
    const warnedById = item && (item.outcome === "warned" || item.outcome === "failed") &&
      `${item.detail ?? ""} ${item.error ?? ""}`.includes(row.stored);
    if (inv.customer !== row.customer && !warnedById) {
      fail(`${billRef}: draft ${inv.id} is on ${inv.customer}, the tenant's is ${row.customer}`);
    }
    if (inv.total !== row.subtotal && !warnedById) {
      fail(`${billRef}: draft ${inv.id} totals ${inv.total}, the bill ${row.subtotal}`);
    }
  }
}

/** A client whose `n`th write is performed and then fails, as if the worker died right after. */
export function dyingAfterWrite(stripe: Stripe, n: number): Stripe {
  let writes = 0;
  const wrap = <T extends object>(target: T): T =>
    new Proxy(target, {
      get(t, prop, recv) {
        const v = Reflect.get(t, prop, recv);
        if (typeof v !== "function") return v;
        return async (...args: unknown[]) => {
          const out = await (v as (...a: unknown[]) => Promise<unknown>).apply(t, args);
          const name = String(prop);
          if (!/^(retrieve|list|listLineItems|search)$/.test(name) && ++writes === n) {
            throw new Error(`worker killed after write ${n} (${name})`);
          }
          return out;
        };
      },
    });
  const invoices = wrap(stripe.invoices);
  const customers = wrap(stripe.customers);
  return new Proxy(stripe, {
    get: (t, p, rcv) =>
      p === "invoices" ? invoices : p === "customers" ? customers : Reflect.get(t, p, rcv),
  });
}

type Fault =
  | "none"
  | "lock_timeout_create"
  | "error_add_lines"
  | "drop_add_lines"
  | "rate_limit"
  | "slow_update";

async function withFault(r: Real, fault: Fault): Promise<void> {
  const c = r.w.emu.control;
  switch (fault) {
    case "none":
      return;
    case "lock_timeout_create":
      await c.addFault({ route: "POST /v1/invoices", kind: "lock_timeout" });
      return;
    case "error_add_lines":
      await c.addFault({ route: "POST /v1/invoices/:id/add_lines", kind: "error", status: 500 });
      return;
    case "drop_add_lines":
      await c.addFault({ route: "POST /v1/invoices/:id/add_lines", kind: "drop" });
      return;
    case "rate_limit":
      await c.addFault({ route: "* /v1/*", kind: "rate_limit", count: 2 });
      return;
    case "slow_update":
      await c.addFault({
        route: "POST /v1/invoices/:id",
        kind: "slow",
        delayMs: 50,
        writeAt: "after_delay",
      });
      return;
  }
}

/** Publishes the month for both tenants until the run is done (a fault may fail one attempt). */
async function publishUntilDone(r: Real, workers: number): Promise<void> {
  const tenants = [r.a, r.b];
  for (let attempt = 0; attempt < 4; attempt++) {
    const first = await publish(deps(r.w), { month: MONTH, tenants }, { ...BUDGET, budgetMs: 0 });
    await Promise.all(
      Array.from(
        { length: workers },
        (_, i) =>
          drainRun(deps(r.w, `mdl-${i}-${crypto.randomUUID().slice(0, 6)}`), first.run_id, {
            budgetMs: 60_000,
            batchSize: 1,
          }),
      ),
    );
    await r.w.emu.control.clearFaults();
    r.lastRun = first.run_id;
    const its = await items(r.w.sql, first.run_id);
    if (its.every((i) => i.state === "done")) return;
  }
}

class PublishCmd implements Cmd {
  constructor(readonly fault: Fault, readonly workers: number) {}
  check = () => true;
  async run(m: Model, r: Real) {
    m.steps++;
    r.trace.push(this.toString());
    await withFault(r, this.fault);
    await publishUntilDone(r, this.workers);
    const its = r.lastRun ? await items(r.w.sql, r.lastRun) : [];
    r.settled = its.every((i) => i.state === "done");
    await checkInvariants(r);
  }
  toString = () => `publish(${this.fault}, ${this.workers} worker(s))`;
}

class CrashCmd implements Cmd {
  constructor(readonly afterWrite: number) {}
  check = () => true;
  async run(m: Model, r: Real) {
    m.steps++;
    r.trace.push(this.toString());
    const stripe = dyingAfterWrite(r.w.stripe, this.afterWrite);
    const res = await publish(deps(r.w, "dying", stripe), {
      month: MONTH,
      tenants: [r.a, r.b],
    }, BUDGET);
    r.lastRun = res.run_id;
    r.settled = false;
    await checkInvariants(r);
  }
  toString = () => `crash-after-write(${this.afterWrite})`;
}

class EditCmd implements Cmd {
  constructor(readonly what: string, readonly value: number) {}
  check = () => true;
  async run(m: Model, r: Real) {
    m.steps++;
    r.trace.push(this.toString());
    const sql = r.w.sql;
    switch (this.what) {
      case "manual_amount":
        await sql`update internal.manual_bills set usd_cents = ${this.value} where id = ${r.manual}`;
        break;
      case "manual_dates": {
        const [start, end] = [
          ["2026-09-01", "2026-10-31"],
          ["2026-10-01", "2026-10-31"],
          ["2026-10-15", "2026-12-31"],
          ["2026-10-01", "2026-11-30"],
        ][this.value % 4];
        await sql`update internal.manual_bills set date_start = ${start}, date_end = ${end}
          where id = ${r.manual}`;
        break;
      }
      case "manual_tenant": {
        const [row] =
          await sql`select tenant::text from internal.manual_bills where id = ${r.manual}`;
        const to = row.tenant === r.a ? r.b : r.a;
        await sql`update internal.manual_bills set tenant = ${to} where id = ${r.manual}`;
        break;
      }
      case "final_lines":
        await finalReport(r, [
          { count: (this.value % 400) + 0.25, rate: 14 },
          { count: (this.value % 7) + 0.5, rate: 50 },
          { count: 1, rate: -((this.value % 3) * 100) },
        ]);
        break;
      case "free_tier":
        await sql`update public.tenants set trial_start = ${
          this.value % 2 === 0 ? null : "2026-01-01"
        } where tenant = ${r.a}`;
        break;
    }
    r.settled = false;
    await checkInvariants(r);
  }
  toString = () => `edit(${this.what}=${this.value})`;
}

class HandCmd implements Cmd {
  constructor(readonly kind: "manual" | "final", readonly action: string) {}
  check = () => true;
  async run(m: Model, r: Real) {
    m.steps++;
    r.trace.push(this.toString());
    const row = await billRow(r, this.kind);
    const inv = row.stored ? r.w.emu.emulator.store.invoices.get(row.stored) : undefined;
    if (row.stored && inv && !inv.deleted) {
      const c = r.w.emu.control;
      const id = row.stored;
      const s = inv.status;
      if (this.action === "finalize" && s === "draft") await c.finalizeInvoice(id);
      if (this.action === "void" && s === "open") await c.voidInvoice(id);
      if (this.action === "delete" && s === "draft") await c.deleteInvoice(id);
      if (this.action === "pay" && s === "open") {
        await c.payInvoice(id, { paid_out_of_band: true });
      }
      if (this.action === "add_line" && s === "draft") {
        await r.w.stripe.invoices.addLines(id, { lines: [{ amount: 777, description: "hand" }] });
      }
      if (this.action === "metadata" && s === "draft") {
        await r.w.stripe.invoices.update(id, {
          metadata: { "estuary.dev/period_end": "2026-10-30" },
          description: "edited by hand",
        });
      }
    }
    if (this.action === "release" && row.stored) {
      const gone = !inv || inv.deleted || inv.status === "void";
      if (gone) {
        await r.w.sql`select internal.release_bill_invoice(${this.kind},
          ${this.kind === "manual" ? r.manual : r.final}, ${row.stored}, 'operator',
          'voided or deleted: reissue')`;
      }
    }
    r.settled = false;
    await checkInvariants(r);
  }
  toString = () => `hand(${this.kind} ${this.action})`;
}

/** Every command, weighted towards publishing so sequences reach settled states often. */
export function commandArbitraries(): fc.Arbitrary<Cmd>[] {
  const faults: Fault[] = [
    "none",
    "lock_timeout_create",
    "error_add_lines",
    "drop_add_lines",
    "rate_limit",
    "slow_update",
  ];
  return [
    fc.tuple(fc.constantFrom(...faults), fc.constantFrom(1, 2)).map(([f, n]) =>
      new PublishCmd(f, n)
    ),
    fc.constant(new PublishCmd("none", 1)),
    fc.integer({ min: 1, max: 4 }).map((n) => new CrashCmd(n)),
    fc.tuple(
      fc.constantFrom("manual_amount", "manual_dates", "manual_tenant", "final_lines", "free_tier"),
      fc.constantFrom(30, 4_000, 12_000, 99_999, 1, 2, 3),
    ).map(([w, v]) => new EditCmd(w, v)),
    fc.tuple(
      fc.constantFrom("manual" as const, "final" as const),
      fc.constantFrom("finalize", "void", "delete", "pay", "add_line", "metadata", "release"),
    ).map(([k, a]) => new HandCmd(k, a)),
  ];
}

/** Runs `numRuns` sequences from `seed`; resolves with how many ran, throws on a violation. */
export async function runModel(
  w: World,
  o: { seed: number; numRuns: number; maxCommands?: number },
): Promise<number> {
  let ran = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.commands(commandArbitraries(), { maxCommands: o.maxCommands ?? 8 }),
      async (cmds) => {
        ran++;
        const real = await openReal(w);
        // Every sequence ends with a clean publish, after which all invariants must hold.
        await fc.asyncModelRun(() => ({ model: { steps: 0 }, real }), [
          ...cmds,
          new PublishCmd("none", 1),
        ]);
        assert.ok(real.settled, `the final publish did not finish: ${real.trace.join(" → ")}`);
      },
    ),
    { seed: o.seed, numRuns: o.numRuns, endOnFailure: true },
  );
  return ran;
}
