/**
 * The publish engine, shared by the publish-invoices function and the CLI: enqueue a month's run
 * (or continue one), then drain it within a time budget. Per item: load the bill, learn what
 * Stripe knows (stored ID → retrieve; none → the account-wide invoice index when it can vouch,
 * else the customer's invoice list), plan (pure), execute.
 */
import { loadBill, loadBillHistory } from "./bills.ts";
import { resolveCustomer } from "./customers.ts";
import type { Sql } from "./db.ts";
import { execute } from "./executor.ts";
import {
  indexedCustomerInvoices,
  listCustomerInvoices,
  refreshInvoiceIndex,
  retrieveInvoice,
  withDraftLines,
} from "./invoices.ts";
import {
  type Action,
  type Bill,
  classify,
  decide,
  type InvoiceKnowledge,
  type ListedInvoices,
  matchInvoice,
  type PlanContext,
  type StripeKnowledge,
} from "./planner.ts";
import {
  type Claim,
  claimItems,
  completeItem,
  enqueueRun,
  loadRun,
  releaseItems,
  type RunOptions,
  runReport,
  type RunRow,
} from "./runs.ts";
import {
  addStats,
  emptyStats,
  isRetryableStripeError,
  StripeCaller,
  type StripeCallerOptions,
  type StripeCallStats,
  StripeThrottledError,
} from "./stripe_calls.ts";
import type { Stripe } from "./stripe_client.ts";

/** What the engine runs on. */
export interface EngineDeps {
  sql: Sql;
  stripe: Stripe;
  /** This worker's name in leases and intents (unique per process/invocation). */
  worker: string;
  now?: () => Date;
  /** Overrides for the Stripe caller (tests shorten backoff). */
  callerOptions?: Omit<StripeCallerOptions, "ratePerSecond">;
  /**
   * The Stripe account the invoice index belongs to. Defaults to the API host the client talks
   * to: set it (e.g. to the acct_ ID) when one database publishes to more than one account.
   */
  stripeAccount?: string;
  /** Invoice index tuning (tests shorten waits); `enabled: false` always lists per customer. */
  invoiceIndex?: InvoiceIndexOptions;
}

/** How the drain uses the account-wide invoice index. */
export interface InvoiceIndexOptions {
  enabled?: boolean;
  /** How long to wait for another worker's scan before listing per customer (default 60 s). */
  waitMs?: number;
  /** Longest a scan may page in one go before handing its pass back (default 60 s). */
  sliceMs?: number;
  /** An index older than this is scanned again during a run (default 15 min). */
  maxAgeSeconds?: number;
}

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
        ? `would replace ${a.replaces.invoiceId} with a new invoice (${a.lines.length} lines)`
        : `would create an invoice with ${a.lines.length} lines for ${a.expectedTotal}¢`;
    case "update":
      return a.fields || a.lines
        ? `would update draft ${a.invoiceId}${a.adopt ? ` (adopted by ${a.adopt.via})` : ""}`
        : `draft ${a.invoiceId} is up to date${a.adopt ? ` (adopted by ${a.adopt.via})` : ""}`;
    case "skip":
    case "warn":
    case "refuse":
      return a.detail;
  }
}

interface ItemContext {
  deps: EngineDeps;
  run: RunRow;
  caller: StripeCaller;
  /** Customer invoice lists read in this batch. */
  lists: Map<string, Awaited<ReturnType<typeof listCustomerInvoices>>>;
  index: IndexGate;
}

/** The Stripe account label of the client: deps.stripeAccount, else its API host and port. */
export function stripeAccountOf(deps: Pick<EngineDeps, "stripe" | "stripeAccount">): string {
  if (deps.stripeAccount) return deps.stripeAccount;
  // stripe-node's accessor for its own configuration (host and port; the key is not there).
  const get = (deps.stripe as unknown as { getApiField?: (k: string) => unknown }).getApiField;
  const field = (k: string) => (typeof get === "function" ? get.call(deps.stripe, k) : undefined);
  return `stripe:${field("host") ?? "api.stripe.com"}:${field("port") ?? 443}`;
}

/**
 * Whether the account-wide invoice index may answer "this customer's invoices" in this drain:
 * complete, and scanned since the run was enqueued (and within maxAge). Scans lazily, when the
 * first bill needs it (a run of stored IDs never scans); waits briefly for another worker's
 * scan; otherwise says no and the caller lists per customer. Answers are cached for 30 s.
 */
class IndexGate {
  private until = 0;
  private ready = false;
  /**
   * Scans get the run's whole budget: while one worker scans, the others that need the index
   * wait for it rather than call Stripe.
   */
  readonly caller: StripeCaller;

  constructor(
    private readonly deps: EngineDeps,
    private readonly run: RunRow,
    private readonly outOfTime: () => boolean,
  ) {
    this.caller = new StripeCaller(deps.stripe, {
      ...deps.callerOptions,
      ratePerSecond: run.options.rate_per_second,
    });
  }

  async isReady(): Promise<boolean> {
    const o = this.deps.invoiceIndex ?? {};
    if (o.enabled === false) return false;
    if (performance.now() < this.until) return this.ready;
    const waitUntil = performance.now() + (o.waitMs ?? 60_000);
    for (;;) {
      const sliceEnd = performance.now() + (o.sliceMs ?? 60_000);
      const r = await refreshInvoiceIndex({ sql: this.deps.sql, caller: this.caller }, {
        account: stripeAccountOf(this.deps),
        owner: this.deps.worker,
        freshAfter: this.run.created_at,
        maxAgeSeconds: o.maxAgeSeconds,
        outOfTime: () => this.outOfTime() || performance.now() >= sliceEnd,
      });
      if (r.state === "busy" && performance.now() < waitUntil && !this.outOfTime()) {
        await new Promise((resolve) => setTimeout(resolve, 200));
        continue;
      }
      if (r.state === "failed" && pgCode(r.error) !== LEASE_LOST) {
        // Throttling or an outage: the per-customer lists that follow meet it too.
        console.warn(`invoice index scan failed: ${String(r.error)}`);
      }
      this.ready = r.state === "fresh";
      this.until = performance.now() + 30_000;
      return this.ready;
    }
  }
}

async function customerDeletedLocally(sql: Sql, customerId: string): Promise<boolean> {
  const rows = await sql`select 1 from internal.stripe_deleted_customers
    where customer_id = ${customerId}`;
  return rows.length > 0;
}

/** Asks Stripe (and the durable history) what the planner needs for one bill. */
async function learn(
  ic: ItemContext,
  bill: Bill,
  tenantCustomerId: string | null,
  needsPaymentMethod: boolean,
): Promise<{ knowledge: StripeKnowledge; notes: string[] }> {
  const { deps, run, caller } = ic;
  const now = deps.now ?? (() => new Date());
  const notes: string[] = [];
  const base: StripeKnowledge = {
    customerId: tenantCustomerId,
    customerSource: "stored",
    customerDeleted: false,
    hasDefaultPaymentMethod: null,
    invoice: { via: "none" },
    priorCreate: null,
    replacementStartedFor: null,
    createdThisRun: [],
  };
  if (tenantCustomerId && await customerDeletedLocally(deps.sql, tenantCustomerId)) {
    return { knowledge: { ...base, customerDeleted: true }, notes };
  }
  if (needsPaymentMethod) {
    // Only no-data usage bills need this: one customer retrieve (no stored customer = none).
    if (!tenantCustomerId) return { knowledge: base, notes };
    const cus = await caller.call(
      "GET /v1/customers/:id",
      (s) => s.customers.retrieve(tenantCustomerId),
    );
    if ("deleted" in cus && cus.deleted) {
      await deps.sql`select internal.record_customer_deleted(${tenantCustomerId},
        ${now().toISOString()}::timestamptz)`;
      return { knowledge: { ...base, customerDeleted: true }, notes };
    }
    const hasPm = !!(cus as Stripe.Customer).invoice_settings?.default_payment_method;
    if (!hasPm) return { knowledge: { ...base, hasDefaultPaymentMethod: false }, notes };
    base.hasDefaultPaymentMethod = true;
  }
  let customerId = tenantCustomerId;
  let customerSource: StripeKnowledge["customerSource"] = "stored";
  if (!customerId) {
    const r = await resolveCustomer(
      { sql: deps.sql, caller, actor: `publish:${deps.worker}`, runId: run.id },
      bill.tenant,
      { dryRun: run.options.dry_run },
    );
    customerId = r.customerId;
    customerSource = r.source;
    if (r.duplicates.length > 0) {
      notes.push(`other customers carry tenant ${bill.tenant}: ${r.duplicates.join(", ")}`);
    }
    if (r.conflict) notes.push(r.conflict);
  }
  const history = await loadBillHistory(deps.sql, bill.kind as "final" | "manual", bill.id, run.id);
  const listFor = async (cid: string) => {
    let l = ic.lists.get(cid);
    if (!l) {
      l = await listCustomerInvoices({ sql: deps.sql, caller }, cid);
      ic.lists.set(cid, l);
    }
    return l;
  };
  let invoice: InvoiceKnowledge;
  if (bill.storedInvoiceId) {
    const r = await retrieveInvoice({ sql: deps.sql, caller, now }, bill.storedInvoiceId);
    invoice = { via: "stored", invoice: r?.snapshot ?? null };
    if (
      customerId && run.options.recreate_existing &&
      history.replacementStartedFor === bill.storedInvoiceId
    ) {
      const l = await listFor(customerId);
      invoice.listed = await draftLinesOfMatch(caller, bill, l, [bill.storedInvoiceId]);
    }
  } else if (!customerId || customerSource === "created" || customerSource === "would_create") {
    // A customer made just now has no invoices to find.
    invoice = { via: "none" };
  } else {
    // The index vouches only for "nothing to adopt", and only when no earlier create of this
    // bill may have lost its ID (an intent without a stored ID): the live list decides the rest.
    const indexed = history.priorCreate === null && await ic.index.isReady()
      ? await indexedCustomerInvoices(deps.sql, stripeAccountOf(deps), customerId)
      : null;
    if (indexed && matchInvoice(bill, indexed).kind === "none") {
      invoice = { via: "listed", listed: indexed };
    } else {
      const l = await listFor(customerId);
      invoice = { via: "listed", listed: await draftLinesOfMatch(caller, bill, l, []) };
    }
  }
  return {
    knowledge: {
      ...base,
      customerId,
      customerSource,
      invoice,
      priorCreate: history.priorCreate,
      replacementStartedFor: history.replacementStartedFor,
      createdThisRun: history.createdThisRun,
    },
    notes,
  };
}

/** Reads every line of the draft the bill would adopt, when the list held only the first page. */
async function draftLinesOfMatch(
  caller: StripeCaller,
  bill: Bill,
  l: Awaited<ReturnType<typeof listCustomerInvoices>>,
  exclude: string[],
): Promise<ListedInvoices> {
  const m = matchInvoice(bill, l.listed, exclude);
  if (m.kind !== "found" || m.invoice.status !== "draft" || m.invoice.lines !== null) {
    return l.listed;
  }
  return await withDraftLines(caller, l.listed, l.raw, m.invoice.id);
}

/** Plans and (unless dry run) performs one claimed item, then completes it. */
async function processItem(ic: ItemContext, claim: Claim): Promise<void> {
  const { deps, run, caller } = ic;
  const now = deps.now ?? (() => new Date());
  const before = caller.stats();
  const beforeScan = ic.index.caller.stats();
  let plan: Action | null = null;
  const notes: string[] = [];
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
  try {
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
    };
    const c = classify(bill);
    if (c.kind === "settled") {
      plan = c.action;
    } else {
      const learned = await learn(ic, bill, tenantCustomerId, c.needsPaymentMethod);
      notes.push(...learned.notes);
      plan = decide(bill, learned.knowledge, ctx);
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
    const result = await execute({
      sql: deps.sql,
      caller,
      runId: run.id,
      itemNo: claim.item_no,
      worker: deps.worker,
      now,
    }, plan);
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
    const e = err instanceof Error ? err : new Error(String(err));
    const retry = err instanceof StripeThrottledError || isRetryableStripeError(err) ||
      pgCode(err)?.startsWith("08") === true || pgCode(err) === "40001" ||
      pgCode(err) === "40P01";
    await complete({
      outcome: null,
      action: plan?.kind ?? null,
      reason: plan ? reasonOf(plan) : null,
      detail: notes.join("; ") || null,
      invoiceId: null,
      error: `${e.name}: ${e.message}`,
      retry,
    }).catch((failure) => {
      // Lost the lease meanwhile: the item is someone else's now.
      if (pgCode(failure) !== LEASE_LOST) throw failure;
    });
  }
}

/** Stripe's Search limit for the account (all Search endpoints together). */
const SEARCH_RATE_PER_SECOND = 20;

/** Drains a run until it is empty or the budget is spent; items not started go back. */
export async function drainRun(
  deps: EngineDeps,
  runId: string,
  options: { budgetMs: number; batchSize?: number },
): Promise<DrainResult> {
  const started = performance.now();
  const run = await loadRun(deps.sql, runId);
  if (!run) throw new Error(`run ${runId} does not exist`);
  let stats = emptyStats();
  let processed = 0;
  const spent = () => performance.now() - started >= options.budgetMs;
  const index = new IndexGate(deps, run, spent);
  // One caller for the whole drain, so a slowdown after 429s is not forgotten between batches.
  const caller = new StripeCaller(deps.stripe, {
    ...deps.callerOptions,
    ratePerSecond: run.options.rate_per_second,
  });
  const searchRate = deps.callerOptions?.searchRatePerSecond ?? SEARCH_RATE_PER_SECOND;
  try {
    outer: while (!spent()) {
      const claims = await claimItems(deps.sql, runId, deps.worker, options.batchSize ?? 10);
      if (claims.length === 0) break;
      // The limits are the account's: each live worker takes an equal share of both.
      const workers = Math.max(1, claims[0].active_workers);
      caller.setShare(run.options.rate_per_second / workers, searchRate / workers);
      const ic: ItemContext = { deps, run, caller, lists: new Map(), index };
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
