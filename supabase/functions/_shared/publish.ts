/**
 * The publish engine's entry, shared by the publish-invoices function and the CLI: enqueue a
 * month's run (or continue one, or join the month's active run of the same bills), then drain it
 * within a time budget (drain.ts).
 */
import { drainRun } from "./drain.ts";
import type { EngineDeps } from "./engine.ts";
import {
  type ActiveRun,
  decideActiveRun,
  enqueueRun,
  runItemsPage,
  type RunOptions,
  runReport,
  unknownTenants,
} from "./runs.ts";

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

/** A bill that was warned (left unbilled) or failed, as the bounded response lists it. */
export interface ProblemItem {
  item_no: number;
  bill: string;
  tenant: string;
  state: string;
  outcome: string | null;
  reason: string | null;
  error: string | null;
  detail: string | null;
}

/** At most this many warned/failed items ride along in a response; the rest are paged. */
export const MAX_PROBLEMS_IN_RESPONSE = 20;

/**
 * The outcome of a publish call, bounded whatever the run's size: pending (call again with
 * the run ID), or the result with counters and the first warned/failed bills. "failed" when any
 * bill failed (e.g. Stripe throttled it past its attempts), "warned" when bills were left
 * unbilled for an operator (possible legacy match, customer deleted, ...), so no caller mistakes
 * either for a success. Every item is in the stored report (paged: publish_run_items_page).
 */
export type PublishResult =
  | { status: "pending"; run_id: string; processed: number; joined: boolean }
  | {
    status: "done" | "warned" | "failed";
    run_id: string;
    joined: boolean;
    failed: number;
    warned: number;
    counters: Record<string, unknown>;
    problems: ProblemItem[];
    problems_truncated: boolean;
  };

/** The month already has an active run that overlaps this request with other options. */
export class RunConflictError extends Error {
  constructor(readonly run: ActiveRun) {
    super(
      `run ${run.id} (by ${run.created_by}, ${
        run.tenants ? `tenants ${run.tenants.join(",")}` : "all tenants"
      }${run.options.dry_run ? ", dry run" : ""}${
        run.options.recreate_existing ? ", recreate_existing" : ""
      }) is still publishing ${run.month}; wait for it or continue it with run_id ${run.id}`,
    );
    this.name = "RunConflictError";
  }
}

/** Some requested tenants do not exist; nothing was enqueued. */
export class UnknownTenantsError extends Error {
  constructor(readonly tenants: string[]) {
    super(`no such tenant${tenants.length === 1 ? "" : "s"}: ${tenants.join(", ")}`);
    this.name = "UnknownTenantsError";
  }
}

/**
 * Enqueues (or continues, or joins the month's active run of the same bills) a run and drains
 * it within `budgetMs`.
 */
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
  let runId = req.run_id ?? null;
  let joined = false;
  if (!runId) {
    const unknown = await unknownTenants(deps.sql, req.tenants ?? null);
    if (unknown.length > 0) throw new UnknownTenantsError(unknown);
    const active = await decideActiveRun(deps.sql, {
      month: req.month,
      tenants: req.tenants ?? null,
      options: opts,
    });
    if (active.kind === "conflict") throw new RunConflictError(active.run);
    if (active.kind === "join") {
      runId = active.run.id;
      joined = true;
    }
  }
  runId = await enqueueRun(deps.sql, {
    month: req.month,
    tenants: req.tenants ?? null,
    options: opts,
    actor: options.actor,
    runId,
  });
  const d = await drainRun(deps, runId, {
    budgetMs: options.budgetMs,
    batchSize: options.batchSize,
  });
  if (d.remaining) return { status: "pending", run_id: runId, processed: d.processed, joined };
  const report = await runReport(deps.sql, runId, false);
  const counters = (report.counters ?? {}) as Record<string, unknown>;
  const failed = Number(counters.failed ?? 0);
  const warned = Number(counters.warned ?? 0);
  const problems = [
    ...await runItemsPage(deps.sql, runId, { state: "failed", limit: MAX_PROBLEMS_IN_RESPONSE }),
    ...await runItemsPage(deps.sql, runId, { state: "warned", limit: MAX_PROBLEMS_IN_RESPONSE }),
  ].slice(0, MAX_PROBLEMS_IN_RESPONSE).map((i) => ({
    item_no: Number(i.item_no),
    bill: String(i.bill),
    tenant: String(i.tenant),
    state: String(i.state),
    outcome: (i.outcome as string | null) ?? null,
    reason: (i.reason as string | null) ?? null,
    error: (i.error as string | null) ?? null,
    detail: (i.detail as string | null) ?? null,
  }));
  return {
    status: failed > 0 ? "failed" : warned > 0 ? "warned" : "done",
    run_id: runId,
    joined,
    failed,
    warned,
    counters,
    problems,
    problems_truncated: failed + warned > problems.length,
  };
}
