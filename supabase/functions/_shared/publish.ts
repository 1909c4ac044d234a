/**
 * The publish engine's entry, shared by the publish-invoices function and the CLI: enqueue a
 * month's run (or continue one), then drain it within a time budget (drain.ts).
 */
import { drainRun } from "./drain.ts";
import type { EngineDeps } from "./engine.ts";
import { enqueueRun, type RunOptions, runReport } from "./runs.ts";

export { type DrainResult, drainRun } from "./drain.ts";
export { type EngineDeps, type InvoiceIndexOptions, stripeAccountOf } from "./engine.ts";

/** A publish request (the function's body, the CLI's flags). */
export interface PublishRequest {
  month: string;
  tenants?: string[] | null;
  dry_run?: boolean;
  recreate_existing?: boolean;
  run_id?: string | null;
  usage_collection_method?: RunOptions["usage_collection_method"];
  rate_per_second?: number;
}

/**
 * The outcome of a publish call: pending (call again with the run ID), or the report — "failed"
 * when any bill failed (e.g. Stripe throttled it past its attempts), so no caller mistakes a
 * partial run for a success.
 */
export type PublishResult =
  | { status: "pending"; run_id: string; processed: number }
  | { status: "done" | "failed"; run_id: string; failed: number; report: Record<string, unknown> };

/** Enqueues (or continues) a run and drains it within `budgetMs`. */
export async function publish(
  deps: EngineDeps,
  req: PublishRequest,
  options: { budgetMs: number; actor: string; batchSize?: number },
): Promise<PublishResult> {
  const opts: Partial<RunOptions> = {};
  if (req.dry_run !== undefined) opts.dry_run = req.dry_run;
  if (req.recreate_existing !== undefined) opts.recreate_existing = req.recreate_existing;
  if (req.usage_collection_method) opts.usage_collection_method = req.usage_collection_method;
  if (req.rate_per_second) opts.rate_per_second = req.rate_per_second;
  const runId = await enqueueRun(deps.sql, {
    month: req.month,
    tenants: req.tenants ?? null,
    options: opts,
    actor: options.actor,
    runId: req.run_id ?? null,
  });
  const d = await drainRun(deps, runId, {
    budgetMs: options.budgetMs,
    batchSize: options.batchSize,
  });
  if (d.remaining) return { status: "pending", run_id: runId, processed: d.processed };
  const report = await runReport(deps.sql, runId);
  const failed = Number((report.counters as { failed?: number } | null)?.failed ?? 0);
  return { status: failed > 0 ? "failed" : "done", run_id: runId, failed, report };
}
