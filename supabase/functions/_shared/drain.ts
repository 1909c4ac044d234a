/**
 * The drain loop: claim items of a run, and for each load the bill, learn what is known, plan
 * (pure) and execute, until the run is empty or the time budget is spent.
 */
import { loadBill, loadBillHistory } from "./bills.ts";
import { describeStripeError } from "./stripe_errors.ts";
import type { EngineDeps } from "./engine.ts";
import { execute, StaleReplayError } from "./executor.ts";
import { installationId } from "./idempotency.ts";
import { IndexGate, type ItemContext, learn } from "./knowledge.ts";
import { stripeAccountOf } from "./engine.ts";
import { DEFAULT_OPERATION_RATE, SharedRequestBudget, stripeModeOf } from "./rate_budget.ts";
import { EventFeedGate, eventPosition, recordVerification, wantedHash } from "./verification.ts";
import { ItemLease } from "./lease.ts";
import { classify, decide } from "./planner.ts";
import type { Action, PlanContext } from "./plan_types.ts";
import { type Claim, claimItems, completeItem, loadRun, releaseItems } from "./runs.ts";
import {
  addStats,
  emptyStats,
  isRetryableStripeError,
  StripeCaller,
  type StripeCallStats,
  StripeReplayedError,
  StripeThrottledError,
} from "./stripe_calls.ts";

/** What one drain did. */
export interface DrainResult {
  runId: string;
  processed: number;
  remaining: boolean;
  stats: StripeCallStats;
}

const LEASE_LOST = "55P03";

function pgCode(err: unknown): string | undefined {
  return typeof err === "object" && err !== null && "code" in err
    ? String((err as { code: unknown }).code)
    : undefined;
}

function diffStats(after: StripeCallStats, before: StripeCallStats): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after.byEndpoint)) {
    const d = v - (before.byEndpoint[k] ?? 0);
    if (d > 0) out[k] = d;
  }
  return out;
}

function reasonOf(a: Action): string {
  switch (a.kind) {
    case "create":
    case "update":
    case "discard":
    case "skip":
    case "warn":
    case "refuse":
      return a.reason;
  }
}

function describe(a: Action): string {
  switch (a.kind) {
    case "create":
      return a.replaces
        ? `would replace ${a.replaces.invoiceId} with a new invoice (${
          plural(a.lines.length, "line")
        }, ${a.replaces.why})`
        : `would create an invoice with ${plural(a.lines.length, "line")} for ${a.expectedTotal}¢`;
    case "update":
      return a.fields || a.lines
        ? `would update draft ${a.invoiceId}${a.adopt ? ` (adopted by ${a.adopt.via})` : ""}`
        : `draft ${a.invoiceId} is up to date${a.adopt ? ` (adopted by ${a.adopt.via})` : ""}`;
    case "discard":
    case "skip":
    case "warn":
    case "refuse":
      return a.detail;
  }
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/** Bills whose item failed for one of these are tried again (up to the run's max_attempts). */
function isRetryable(err: unknown): boolean {
  const code = pgCode(err);
  return err instanceof StripeThrottledError || err instanceof StripeReplayedError ||
    err instanceof StaleReplayError || isRetryableStripeError(err) ||
    code?.startsWith("08") === true || code === "40001" || code === "40P01";
}

/** Plans and (unless dry run) performs one claimed item, then completes it. */
async function processItem(ic: ItemContext, claim: Claim): Promise<void> {
  const { deps, run, caller } = ic;
  const now = deps.now ?? (() => new Date());
  const before = caller.stats();
  const beforeScan = ic.index.caller.stats();
  let plan: Action | null = null;
  const notes: string[] = [];
  let verifyAfter: {
    position: { generation: number; seenSeq: number };
    customerId: string | null;
    watchCustomerUpdates: boolean;
  } | null = null;
  // An index scan this item triggered is charged to it.
  const complete = (c: Omit<Parameters<typeof completeItem>[3], "stripeCalls" | "plan">) =>
    completeItem(deps.sql, claim, deps.worker, {
      ...c,
      stripeCalls: {
        ...diffStats(caller.stats(), before),
        ...diffStats(ic.index.caller.stats(), beforeScan),
      },
      plan,
    });
  const lease = new ItemLease({
    sql: deps.sql,
    runId: run.id,
    itemNo: claim.item_no,
    worker: deps.worker,
    expiresAt: claim.lease_expires_at,
    leaseSeconds: run.options.lease_seconds,
  });
  try {
    // Items later in a batch waited: make sure the lease still has room before starting.
    await lease.ensure();
    const loaded = await loadBill(deps.sql, claim.bill_kind, claim.bill_id);
    if (!loaded) {
      await complete({
        outcome: "warned",
        action: "warn",
        reason: "bill_missing",
        detail: `bill ${claim.bill_kind}:${claim.bill_id} no longer exists`,
        invoiceId: null,
        error: null,
        retry: false,
      });
      return;
    }
    const { bill, tenantCustomerId } = loaded;
    const ctx: PlanContext = {
      runId: run.id,
      now: now(),
      recreateExisting: run.options.recreate_existing,
      usageCollectionMethod: run.options.usage_collection_method,
      installation: ic.installation,
    };
    const c = classify(bill);
    if (c.kind === "settled") {
      plan = c.action;
    } else if (
      c.kind === "check_stored" && !bill.storedInvoiceId &&
      (await loadBillHistory(deps.sql, claim.bill_kind, claim.bill_id, run.id)).priorCreate === null
    ) {
      // Skippable, nothing stored and never created: nothing in Stripe to look at.
      plan = c.skip;
    } else {
      // Where the change log stands before this item reads Stripe: a verification recorded
      // below is void if anything is recorded later (but for its own writes' events).
      // It needs no fresh read of the log: later reads record whatever happens from now on.
      const position = run.options.dry_run || !ic.events.enabled
        ? null
        : await eventPosition(deps.sql, ic.events.account) ??
          (await ic.events.isReady() ? await eventPosition(deps.sql, ic.events.account) : null);
      const learned = await learn(
        ic,
        bill,
        tenantCustomerId,
        c.kind === "needs_stripe" && c.needsPaymentMethod,
        c.kind === "check_stored",
      );
      notes.push(...learned.notes);
      plan = decide(bill, learned.knowledge, ctx);
      if (position && !learned.verified) {
        verifyAfter = {
          position,
          customerId: learned.knowledge.customerId,
          watchCustomerUpdates: c.kind === "needs_stripe" && c.needsPaymentMethod,
        };
      }
    }
    const detail = [describe(plan), ...notes].join("; ");
    if (run.options.dry_run) {
      await complete({
        outcome: "planned",
        action: plan.kind,
        reason: reasonOf(plan),
        detail,
        invoiceId: "invoiceId" in plan ? plan.invoiceId ?? null : null,
        error: null,
        retry: false,
      });
      return;
    }
    const sentKeys: string[] = [];
    const result = await execute({
      sql: deps.sql,
      caller,
      runId: run.id,
      itemNo: claim.item_no,
      worker: deps.worker,
      now,
      lease,
      sentKeys,
    }, plan);
    // The draft is now what the bill wants, checked against Stripe's answer: remember that.
    if (
      verifyAfter && verifyAfter.customerId && result.invoiceId &&
      (plan.kind === "create" || plan.kind === "update") &&
      ["created", "updated", "unchanged", "replaced"].includes(result.outcome)
    ) {
      await lease.ensure();
      await recordVerification(deps.sql, {
        account: ic.events.account,
        bill,
        invoiceId: result.invoiceId,
        customerId: verifyAfter.customerId,
        hash: await wantedHash(bill, ctx, verifyAfter.customerId),
        watchCustomerUpdates: verifyAfter.watchCustomerUpdates,
        position: verifyAfter.position,
        ownKeys: sentKeys,
      });
    }
    await complete({
      outcome: result.outcome,
      action: plan.kind,
      reason: result.reason ?? reasonOf(plan),
      detail: [result.detail, ...notes].join("; "),
      invoiceId: result.invoiceId,
      error: result.outcome === "failed" ? result.detail : null,
      retry: false,
    });
  } catch (err) {
    // Another worker holds the item now (our lease ran out): leave it to them.
    if (pgCode(err) === LEASE_LOST) return;
    if (err instanceof StripeReplayedError) {
      // Durable: the bill's writes move on to fresh keys (learn() reads the count).
      await deps.sql`select internal.record_publish_intent(${run.id}::uuid, ${claim.item_no},
        ${deps.worker}, 'replayed', ${err.idempotencyKey}, null,
        ${deps.sql.json({ endpoint: err.endpoint, error: err.message } as never)})`
        .catch(() => {});
    }
    const retry = isRetryable(err);
    await complete({
      outcome: null,
      action: plan?.kind ?? null,
      reason: plan ? reasonOf(plan) : null,
      detail: notes.join("; ") || null,
      invoiceId: null,
      error: describeStripeError(undefined, err),
      retry,
    }).catch((failure) => {
      // Lost the lease meanwhile: the item is someone else's now.
      if (pgCode(failure) !== LEASE_LOST) throw failure;
    });
  }
}

/** Stripe's Search limit for the account (all Search endpoints together). */
const SEARCH_RATE_PER_SECOND = 20;

/** The shared request and Search budgets of the deps' Stripe account and mode. */
function sharedBudgets(
  deps: EngineDeps,
  run: { options: { rate_per_second: number } },
  search: number,
) {
  const bucket = `${stripeAccountOf(deps)}:${stripeModeOf(deps.stripe)}`;
  const o = deps.rateBudget ?? {};
  return {
    budget: new SharedRequestBudget(
      deps.sql,
      bucket,
      o.ratePerSecond ?? run.options.rate_per_second,
      o.burst ?? 1,
      undefined,
      o.operationRatePerSecond === undefined ? DEFAULT_OPERATION_RATE : o.operationRatePerSecond,
    ),
    searchBudget: new SharedRequestBudget(deps.sql, `${bucket}:search`, search, 1),
  };
}

/**
 * How many items to claim: the batch, or near the end of the run an equal share of what is left
 * among the workers seen, so no worker is left with a full batch while the others stand idle
 * (the run's last seconds would run at a fraction of the rate). `plenty` says whether enough is
 * left for a full batch each: only then is a read of the event log worth its time.
 */
export async function claimPlan(
  deps: Pick<EngineDeps, "sql">,
  runId: string,
  batchSize: number,
  workers: number,
): Promise<{ size: number; plenty: boolean }> {
  const w = Math.max(1, workers);
  const enough = batchSize * w;
  const [{ n }] = await deps.sql<{ n: number }[]>`
    select count(*)::int as n from (select 1 from internal.publish_run_items
      where run_id = ${runId}::uuid and state = 'pending' limit ${enough}) p`;
  if (n >= enough) return { size: batchSize, plenty: true };
  return { size: Math.max(1, Math.min(batchSize, Math.ceil(n / w))), plenty: false };
}

/** Drains a run until it is empty or the budget is spent; items not started go back. */
export async function drainRun(
  engineDeps: EngineDeps,
  runId: string,
  options: { budgetMs: number; batchSize?: number },
): Promise<DrainResult> {
  let deps = engineDeps;
  const started = performance.now();
  const run = await loadRun(deps.sql, runId);
  if (!run) throw new Error(`run ${runId} does not exist`);
  let stats = emptyStats();
  let processed = 0;
  const spent = () => performance.now() - started >= options.budgetMs;
  const searchRate = deps.callerOptions?.searchRatePerSecond ?? SEARCH_RATE_PER_SECOND;
  // The account's budget is shared through Postgres by every worker of every run and process;
  // without it (turned off) each worker takes an equal share of the run's rate.
  const shared = deps.rateBudget?.enabled === false ? null : sharedBudgets(deps, run, searchRate);
  deps = shared ? { ...deps, callerOptions: { ...deps.callerOptions, ...shared } } : deps;
  const index = new IndexGate(deps, run, spent);
  const events = new EventFeedGate(
    deps,
    run.created_at,
    index.caller,
    stripeAccountOf(deps),
    spent,
  );
  // One caller for the whole drain, so a slowdown after 429s is not forgotten between batches.
  const caller = new StripeCaller(deps.stripe, {
    ...deps.callerOptions,
    ratePerSecond: run.options.rate_per_second,
  });
  const installation = await installationId(deps.sql);
  const batchSize = options.batchSize ?? 10;
  let workersSeen = 1;
  try {
    outer: while (!spent()) {
      const plan = await claimPlan(deps, runId, batchSize, workersSeen);
      // Holding no item's lease: a good moment to read the account's recent events, unless the
      // run is nearly done (a long read then would only delay its end; the next run reads them).
      if (plan.plenty) await events.keepUp();
      const claims = await claimItems(deps.sql, runId, deps.worker, plan.size);
      if (claims.length === 0) break;
      workersSeen = Math.max(1, claims[0].active_workers);
      // The limits are the account's: each live worker takes an equal share of both.
      const workers = shared ? 1 : Math.max(1, claims[0].active_workers);
      caller.setShare(run.options.rate_per_second / workers, searchRate / workers);
      const ic: ItemContext = {
        deps,
        run,
        caller,
        lists: new Map(),
        index,
        events,
        installation,
      };
      for (let i = 0; i < claims.length; i++) {
        if (spent()) {
          await releaseItems(deps.sql, runId, deps.worker, claims.slice(i).map((c) => c.item_no));
          break outer;
        }
        await processItem(ic, claims[i]);
        processed++;
      }
    }
  } finally {
    stats = addStats(addStats(stats, caller.stats()), index.caller.stats());
  }
  const [{ remaining }] = await deps.sql<{ remaining: boolean }[]>`
    select exists (select 1 from internal.publish_run_items
      where run_id = ${runId}::uuid and state in ('pending', 'running')) as remaining`;
  return { runId, processed, remaining, stats };
}
