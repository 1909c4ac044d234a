/**
 * Gathering what is known before planning a bill: its stored invoice (retrieved by ID), its
 * tenant's customer, the customer's invoices (from the account-wide index when it can vouch
 * that there is nothing to adopt, else the live list) and what earlier attempts recorded.
 */
import { loadBillHistory } from "./bills.ts";
import { resolveCustomer } from "./customers.ts";
import type { Sql } from "./db.ts";
import { type EngineDeps, stripeAccountOf } from "./engine.ts";
import {
  indexedCustomerInvoices,
  listCustomerInvoices,
  refreshInvoiceIndex,
  retrieveInvoice,
  withDraftLines,
} from "./invoices.ts";
import { billIdOf } from "./bill_invoice.ts";
import { fromOtherInstallation, matchInvoice } from "./matching.ts";
import { BILL_ID_KEY } from "./metadata.ts";
import type {
  Bill,
  InvoiceKnowledge,
  InvoiceSnapshot,
  ListedInvoices,
  StripeKnowledge,
} from "./plan_types.ts";
import type { RunRow } from "./runs.ts";
import { StripeCaller } from "./stripe_calls.ts";
import { describeStripeError } from "./stripe_errors.ts";
import type { Stripe } from "./stripe_client.ts";
import {
  type EventFeedGate,
  verificationHolds,
  verifiedDraft,
  wantedHash,
} from "./verification.ts";

const LEASE_LOST = "55P03";

function pgCode(err: unknown): string | undefined {
  return typeof err === "object" && err !== null && "code" in err
    ? String((err as { code: unknown }).code)
    : undefined;
}

export interface ItemContext {
  deps: EngineDeps;
  run: RunRow;
  caller: StripeCaller;
  /** Customer invoice lists read in this batch. */
  lists: Map<string, Awaited<ReturnType<typeof listCustomerInvoices>>>;
  index: IndexGate;
  events: EventFeedGate;
  installation: string;
}

/**
 * Whether the account-wide invoice index may answer "this customer's invoices" in this drain:
 * complete, and scanned since the run was enqueued (and within maxAge). Scans lazily, when the
 * first bill needs it (a run of stored IDs never scans); waits briefly for another worker's
 * scan; otherwise says no and the caller lists per customer. Answers are cached for 30 s.
 */
export class IndexGate {
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
        await new Promise((resolve) => setTimeout(resolve, 100));
        continue;
      }
      if (r.state === "failed" && pgCode(r.error) !== LEASE_LOST) {
        // Throttling or an outage: the per-customer lists that follow meet it too.
        console.warn(`invoice index scan failed: ${describeStripeError(undefined, r.error)}`);
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
export async function learn(
  ic: ItemContext,
  bill: Bill,
  tenantCustomerId: string | null,
  needsPaymentMethod: boolean,
  /** The bill will be skipped: only its stored invoice matters (no customer is resolved). */
  storedInvoiceOnly = false,
): Promise<{ knowledge: StripeKnowledge; notes: string[]; verified?: boolean }> {
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
    keySalt: 0,
    orphans: [],
  };
  const history = await loadBillHistory(deps.sql, bill.kind as "final" | "manual", bill.id, run.id);
  const listFor = async (cid: string) => {
    let l = ic.lists.get(cid);
    if (!l) {
      l = await listCustomerInvoices({ sql: deps.sql, caller }, cid);
      ic.lists.set(cid, l);
    }
    return l;
  };
  const withHistory = (k: StripeKnowledge): StripeKnowledge => ({ ...k, ...history });
  // A bill that will be skipped still has its stored invoice looked at (a stale draft).
  const storedOnly = async (k: StripeKnowledge) => {
    if (!bill.storedInvoiceId) return withHistory(k);
    const r = await retrieveInvoice({ sql: deps.sql, caller, now }, bill.storedInvoiceId);
    return withHistory({ ...k, invoice: { via: "stored", invoice: r?.snapshot ?? null } });
  };
  if (storedInvoiceOnly) {
    // No stored ID but an earlier create: an interrupted run may have left a draft to find.
    const priorCustomer = history.priorCreate?.customerId ?? tenantCustomerId;
    if (!bill.storedInvoiceId && history.priorCreate && priorCustomer) {
      const listed = (await listFor(priorCustomer)).listed;
      return { knowledge: withHistory({ ...base, invoice: { via: "listed", listed } }), notes };
    }
    return { knowledge: await storedOnly(base), notes };
  }
  if (tenantCustomerId && await customerDeletedLocally(deps.sql, tenantCustomerId)) {
    return { knowledge: withHistory({ ...base, customerDeleted: true }), notes };
  }
  // Verified since, and no event says anyone touched the draft (or its customer): no retrieve.
  if (
    bill.storedInvoiceId && tenantCustomerId && !run.options.recreate_existing &&
    history.replacementStartedFor === null && await ic.events.isReady()
  ) {
    const ctx = {
      now: now(),
      usageCollectionMethod: run.options.usage_collection_method,
      installation: ic.installation,
    };
    const hash = await wantedHash(bill, ctx, tenantCustomerId);
    if (
      await verificationHolds(
        deps.sql,
        ic.events.account,
        bill,
        bill.storedInvoiceId,
        tenantCustomerId,
        hash,
      )
    ) {
      const draft = verifiedDraft(bill, ctx, bill.storedInvoiceId, tenantCustomerId);
      notes.push("verified earlier; no Stripe event since");
      return {
        knowledge: withHistory({
          ...base,
          hasDefaultPaymentMethod: needsPaymentMethod ? true : null,
          invoice: { via: "stored", invoice: draft },
        }),
        notes,
        verified: true,
      };
    }
  }
  if (needsPaymentMethod) {
    // Only no-data usage bills need this: one customer retrieve (no stored customer = none).
    if (!tenantCustomerId) return { knowledge: await storedOnly(base), notes };
    const cus = await caller.call(
      "GET /v1/customers/:id",
      (s) => s.customers.retrieve(tenantCustomerId),
    );
    if ("deleted" in cus && cus.deleted) {
      await deps.sql`select internal.record_customer_deleted(${tenantCustomerId},
        ${now().toISOString()}::timestamptz)`;
      return { knowledge: withHistory({ ...base, customerDeleted: true }), notes };
    }
    const hasPm = !!(cus as Stripe.Customer).invoice_settings?.default_payment_method;
    if (!hasPm) {
      return { knowledge: await storedOnly({ ...base, hasDefaultPaymentMethod: false }), notes };
    }
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
  let invoice: InvoiceKnowledge;
  if (bill.storedInvoiceId) {
    const r = await retrieveInvoice({ sql: deps.sql, caller, now }, bill.storedInvoiceId);
    // The tenant's customer deleted by hand: its draft is not "up to date", it is warned.
    if (r?.customerDeleted && r.snapshot.customer === customerId) {
      await deps.sql`select internal.record_customer_deleted(${customerId},
        ${now().toISOString()}::timestamptz)`;
      return { knowledge: withHistory({ ...base, customerId, customerDeleted: true }), notes };
    }
    invoice = { via: "stored", invoice: r?.snapshot ?? null };
    // A replacement we started may have made its successor already: look for it by bill ID.
    if (customerId && history.replacementStartedFor === bill.storedInvoiceId) {
      const l = await listFor(customerId);
      invoice.listed = await draftLinesOfMatch(ic, bill, l, [bill.storedInvoiceId]);
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
    if (indexed && matchInvoice(bill, indexed, [], ic.installation).kind === "none") {
      invoice = { via: "listed", listed: indexed };
    } else {
      const l = await listFor(customerId);
      invoice = { via: "listed", listed: await draftLinesOfMatch(ic, bill, l, []) };
    }
  }
  // An interrupted create (no stored ID) may have left this bill's invoice on the customer it
  // was published to then: the bill has since moved to another tenant.
  const priorCustomer = history.priorCreate?.customerId;
  let orphans: InvoiceSnapshot[] = [];
  if (!bill.storedInvoiceId && priorCustomer && priorCustomer !== customerId) {
    const ref = billIdOf(bill);
    orphans = (await listFor(priorCustomer)).listed.invoices.filter((i) =>
      i.metadata[BILL_ID_KEY] === ref && i.status !== "void" &&
      !bill.releasedInvoiceIds.includes(i.id) && !fromOtherInstallation(i, ic.installation)
    );
  }
  return {
    knowledge: {
      ...base,
      customerId,
      customerSource,
      invoice,
      ...history,
      orphans,
    },
    notes,
  };
}

/** Reads every line of the draft the bill would adopt, when the list held only the first page. */
async function draftLinesOfMatch(
  ic: ItemContext,
  bill: Bill,
  l: Awaited<ReturnType<typeof listCustomerInvoices>>,
  exclude: string[],
): Promise<ListedInvoices> {
  const m = matchInvoice(bill, l.listed, exclude, ic.installation);
  if (m.kind !== "found" || m.invoice.status !== "draft" || m.invoice.lines !== null) {
    return l.listed;
  }
  return await withDraftLines(ic.caller, l.listed, l.raw, m.invoice.id);
}
