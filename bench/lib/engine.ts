/**
 * Drives the publish engine in-process as the CLI and the function do: enqueue a month's run,
 * then drain it with W concurrent workers (each its own lease owner, all reserving from the
 * account's shared request budget in Postgres), until nothing is pending.
 */
import type { Sql } from "../../supabase/functions/_shared/db.ts";
import { drainRun, type EngineDeps } from "../../supabase/functions/_shared/publish.ts";
import { enqueueRun, type RunOptions, runReport } from "../../supabase/functions/_shared/runs.ts";
import {
  addStats,
  emptyStats,
  type StripeCallerOptions,
  type StripeCallStats,
} from "../../supabase/functions/_shared/stripe_calls.ts";
import type { Stripe } from "../../supabase/functions/_shared/stripe_client.ts";

export interface RunInput {
  sql: Sql;
  stripe: Stripe;
  month: string;
  tenants?: string[] | null;
  workers: number;
  batchSize?: number;
  options?: Partial<RunOptions>;
  callerOptions?: Omit<StripeCallerOptions, "ratePerSecond">;
  /** The shared budget's settings (the engine's defaults when absent). */
  rateBudget?: EngineDeps["rateBudget"];
  /** The engine's clock (the bench moves the emulator's ahead). */
  now?: () => Date;
  /** Continue this run instead of enqueuing one. */
  runId?: string;
  /** Stop draining after this long (the run is then reported as it stands). */
  budgetMs?: number;
  workerPrefix?: string;
}

export interface RunCounters {
  items: number;
  pending: number;
  running: number;
  done: number;
  failed: number;
  outcomes: Record<string, number>;
}

export interface RunOutcome {
  runId: string;
  /** Epoch milliseconds when draining began (to place the emulator's call log on the run). */
  startedAtMs: number;
  wallMs: number;
  stats: StripeCallStats;
  status: string;
  counters: RunCounters;
  /** Done, every item done, none failed. */
  success: boolean;
  /** Errors of failed items, grouped by their first words. */
  errors: Record<string, number>;
  report: Record<string, unknown>;
}

/** Enqueues (or continues) a run and drains it with `workers` concurrent in-process workers. */
export async function runMonth(input: RunInput): Promise<RunOutcome> {
  const runId = input.runId ?? await enqueueRun(input.sql, {
    month: input.month,
    tenants: input.tenants ?? null,
    options: input.options ?? {},
    actor: "bench",
  });
  const started = performance.now();
  const startedAtMs = Date.now();
  const budgetMs = input.budgetMs ?? 3_600_000;
  let stats = emptyStats();
  const prefix = input.workerPrefix ?? `bench-${crypto.randomUUID().slice(0, 6)}`;
  // Bounded: each round drains until the queue is empty; items sent back for retry need another.
  for (let round = 0; round < 20; round++) {
    const left = budgetMs - (performance.now() - started);
    if (left <= 0) break;
    const results = await Promise.all(
      Array.from({ length: input.workers }, (_, w) =>
        drainRun(
          {
            sql: input.sql,
            stripe: input.stripe,
            worker: `${prefix}-w${w}-r${round}`,
            callerOptions: input.callerOptions,
            rateBudget: input.rateBudget,
            now: input.now,
          },
          runId,
          { budgetMs: left, batchSize: input.batchSize ?? 10 },
        )),
    );
    for (const r of results) stats = addStats(stats, r.stats);
    if (results.every((r) => !r.remaining)) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const wallMs = performance.now() - started;
  const report = await runReport(input.sql, runId, true);
  const counters = report.counters as RunCounters;
  const errors: Record<string, number> = {};
  for (const item of (report.items as { state: string; error: string | null }[]) ?? []) {
    if (item.state !== "failed") continue;
    const key = (item.error ?? "no error recorded").split(/[:(]/)[0].slice(0, 60);
    errors[key] = (errors[key] ?? 0) + 1;
  }
  const status = String(report.status);
  return {
    runId,
    startedAtMs,
    wallMs,
    stats,
    status,
    counters,
    // "warned" is a finished run whose warnings the scenario's own checks judge.
    success: (status === "done" || status === "warned") && counters.failed === 0 &&
      counters.pending === 0 &&
      counters.running === 0,
    errors,
    report,
  };
}
