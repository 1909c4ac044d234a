/**
 * Invoice identity: retrieve by stored ID, or (no stored ID) list the customer's invoices, every
 * page, with consistent reads, never Search. Converts Stripe objects to the planner's snapshots
 * and records what it sees in the invoice state mirror. The account-wide invoice index (one
 * incremental scan shared by every bill) answers "this customer has nothing to adopt" without a
 * per-customer list.
 */
import type { Sql } from "./db.ts";
import type { InvoiceSnapshot, InvoiceStatus, LineSnapshot, ListedInvoices } from "./planner.ts";
import { isRetryableStripeError, isStripeNotFound, type StripeCaller } from "./stripe_calls.ts";
import type { Stripe } from "./stripe_client.ts";
import { afterPage, pageParams, type ScanRange, wholeScan } from "./scan_ranges.ts";
import { invoiceStateTime } from "./tenant_invoices.ts";

/** Stripe list page size (the maximum). */
const PAGE = 100;

function toLine(l: Stripe.InvoiceLineItem): LineSnapshot {
  return {
    id: l.id,
    description: l.description ?? null,
    amount: l.amount,
    quantity: l.quantity ?? null,
    periodStart: l.period?.start ?? 0,
    periodEnd: l.period?.end ?? 0,
  };
}

/** The planner's view of an invoice; `lines` are the given ones (null: not read). */
export function toSnapshot(inv: Stripe.Invoice, lines: LineSnapshot[] | null): InvoiceSnapshot {
  const customer = typeof inv.customer === "string" ? inv.customer : inv.customer?.id ?? null;
  return {
    id: inv.id!,
    status: (inv.status ?? null) as InvoiceStatus | null,
    customer,
    created: inv.created,
    collectionMethod: inv.collection_method === "send_invoice"
      ? "send_invoice"
      : "charge_automatically",
    dueDate: inv.due_date ?? null,
    description: inv.description ?? null,
    customFields: (inv.custom_fields ?? []).map((f) => ({ name: f.name, value: f.value })),
    metadata: { ...(inv.metadata ?? {}) },
    total: inv.total,
    lines,
  };
}

/** Every line of an invoice: the embedded first page, then the lines endpoint while has_more. */
export async function readAllLines(
  caller: StripeCaller,
  inv: Stripe.Invoice,
): Promise<LineSnapshot[]> {
  const lines = (inv.lines?.data ?? []).map(toLine);
  let more = inv.lines?.has_more ?? false;
  while (more) {
    const after = lines.length > 0 ? lines[lines.length - 1].id : undefined;
    const page = await caller.call(
      "GET /v1/invoices/:id/lines",
      (s) => s.invoices.listLineItems(inv.id!, { limit: PAGE, starting_after: after }),
    );
    lines.push(...page.data.map(toLine));
    more = page.has_more && page.data.length > 0;
  }
  return lines;
}

/**
 * Records an invoice (or its deletion) in the state mirror; older news never wins. A retrieved
 * state is stamped with Stripe's own transition time (so a later webhook event still wins); a
 * deletion, which carries no time, with ours.
 */
export async function recordInvoiceState(
  sql: Sql,
  invoice: Stripe.Invoice | { id: string; deleted: true },
  observedAt: Date,
  source = "publish",
): Promise<void> {
  const at = "deleted" in invoice && invoice.deleted === true
    ? observedAt
    : invoiceStateTime(invoice as Stripe.Invoice);
  await sql`select internal.record_invoice_state(${sql.json(invoice as never)},
    ${at.toISOString()}::timestamptz, ${source})`;
}

/**
 * Retrieves an invoice by ID; null when Stripe answers 404 (deleted). Draft lines are read in
 * full. The customer comes expanded in the same call, so a customer deleted by hand is noticed
 * without another request.
 */
export async function retrieveInvoice(
  deps: { sql: Sql; caller: StripeCaller; now: () => Date },
  id: string,
): Promise<
  { invoice: Stripe.Invoice; snapshot: InvoiceSnapshot; customerDeleted: boolean } | null
> {
  let inv: Stripe.Invoice;
  try {
    inv = await deps.caller.call(
      "GET /v1/invoices/:id",
      (s) => s.invoices.retrieve(id, { expand: ["customer"] }),
    );
  } catch (err) {
    if (!isStripeNotFound(err)) throw err;
    await recordInvoiceState(deps.sql, { id, deleted: true }, deps.now());
    return null;
  }
  let customerDeleted = false;
  if (inv.customer !== null && typeof inv.customer === "object") {
    customerDeleted = "deleted" in inv.customer && inv.customer.deleted === true;
    // Everything downstream (the mirror, snapshots) keeps the customer as its ID.
    inv = { ...inv, customer: inv.customer.id } as Stripe.Invoice;
  }
  await recordInvoiceState(deps.sql, inv, deps.now());
  const lines = inv.status === "draft" ? await readAllLines(deps.caller, inv) : null;
  return { invoice: inv, snapshot: toSnapshot(inv, lines), customerDeleted };
}

/** Every invoice of a customer (all pages, newest first), plus which bills hold them. */
export async function listCustomerInvoices(
  deps: { sql: Sql; caller: StripeCaller },
  customerId: string,
): Promise<{ raw: Map<string, Stripe.Invoice>; listed: ListedInvoices }> {
  const raw = new Map<string, Stripe.Invoice>();
  let after: string | undefined;
  for (;;) {
    const page = await deps.caller.call(
      "GET /v1/invoices",
      (s) => s.invoices.list({ customer: customerId, limit: PAGE, starting_after: after }),
    );
    for (const inv of page.data) raw.set(inv.id!, inv);
    if (!page.has_more || page.data.length === 0) break;
    after = page.data[page.data.length - 1].id;
  }
  const ids = [...raw.keys()];
  const linkedTo: Record<string, string> = {};
  if (ids.length > 0) {
    const rows = await deps.sql<{ stripe_invoice_id: string; bill: string }[]>`
      select stripe_invoice_id, bill_kind || ':' || bill_id as bill
      from internal.bill_invoice_links where stripe_invoice_id = any(${ids}::text[])`;
    for (const r of rows) linkedTo[r.stripe_invoice_id] = r.bill;
  }
  // Lines are read in full only for a draft that gets adopted (see withDraftLines).
  const invoices = [...raw.values()].map((inv) =>
    toSnapshot(
      inv,
      inv.status === "draft" && !inv.lines?.has_more ? (inv.lines?.data ?? []).map(toLine) : null,
    )
  );
  return { raw, listed: { invoices, linkedTo } };
}

/** Fills in the full lines of one listed draft (when its embedded page was not all of them). */
export async function withDraftLines(
  caller: StripeCaller,
  listed: ListedInvoices,
  raw: Map<string, Stripe.Invoice>,
  id: string,
): Promise<ListedInvoices> {
  const snap = listed.invoices.find((i) => i.id === id);
  const inv = raw.get(id);
  if (!snap || !inv || snap.status !== "draft" || snap.lines !== null) return listed;
  const lines = await readAllLines(caller, inv);
  return {
    ...listed,
    invoices: listed.invoices.map((i) => (i.id === id ? { ...i, lines } : i)),
  };
}

/** Where an index scan runs and how far it may go. */
export interface IndexScanOptions {
  /** The Stripe account the index belongs to. */
  account: string;
  /** Who holds the scan lease (the worker). */
  owner: string;
  /** A timestamptz literal: the index must have been scanned since then (the run's creation). */
  freshAfter: string;
  /** An index older than this is scanned again (long runs meet invoices made meanwhile). */
  maxAgeSeconds?: number;
  leaseSeconds?: number;
  /** How far behind the watermark a pass starts, for invoices still being written when read. */
  skewSeconds?: number;
  /** True once paging must stop; the pass is kept for the next scanner to resume. */
  outOfTime?: () => boolean;
  /** Pages read at once (default {@link DEFAULT_SCAN_CONCURRENCY}). */
  concurrency?: number;
}

/** Index pages in flight at once: a 29-page bootstrap takes about 5 round trips, not 29. */
export const DEFAULT_SCAN_CONCURRENCY = 16;

/** What a refresh came to: fresh (usable), or why not. */
export type IndexScanOutcome =
  | { state: "fresh"; pages: number }
  | { state: "busy"; pages: number }
  | { state: "incomplete"; pages: number }
  | { state: "failed"; pages: number; error: unknown };

interface TakeRow {
  outcome: "fresh" | "leased" | "busy";
  pass_from: string | null;
  pass_cursor: string | null;
}

/** What the index keeps of an invoice. */
function indexEntry(inv: Stripe.Invoice) {
  return {
    id: inv.id,
    customer: typeof inv.customer === "string" ? inv.customer : inv.customer?.id ?? null,
    status: inv.status,
    created: inv.created,
    total: inv.total,
    metadata: inv.metadata ?? {},
  };
}

/**
 * Makes the account's invoice index fresh: nothing to do, someone else is scanning (busy), or
 * take the lease and read `GET /v1/invoices?created[gte]=watermark - skew` (the whole account
 * the first time), newest first, upserting each page, then advance the watermark. The pass is
 * split into `created` ranges read `concurrency` pages at a time (scan_ranges.ts).
 */
export async function refreshInvoiceIndex(
  deps: { sql: Sql; caller: StripeCaller },
  o: IndexScanOptions,
): Promise<IndexScanOutcome> {
  const lease = `${o.leaseSeconds ?? 60} seconds`;
  let pages = 0;
  // A resumed pass that began before freshAfter is followed by a short one: three at most.
  for (let attempt = 0; attempt < 3; attempt++) {
    const [t] = await deps.sql<TakeRow[]>`
      select outcome, pass_from::text, pass_cursor
      from internal.take_stripe_invoice_scan(${o.account}, ${o.owner}, ${o.freshAfter}::timestamptz,
        ${`${o.maxAgeSeconds ?? 900} seconds`}::interval, ${lease}::interval, ${
      o.skewSeconds ?? 300
    })`;
    if (t.outcome !== "leased") return { state: t.outcome, pages };
    const [{ pass_ranges: saved }] = await deps.sql<{ pass_ranges: ScanRange[] | null }[]>`
      select pass_ranges from internal.stripe_invoice_scan where account = ${o.account}`;
    const from = t.pass_from === null ? null : Number(t.pass_from);
    const ranges = saved ?? [{ ...wholeScan(from), cursor: t.pass_cursor }];
    const r = await scanRanges(deps, o, lease, ranges);
    pages += r.pages;
    if (r.state === "failed") {
      // A cursor Stripe refuses (its invoice was deleted) cannot be resumed: drop that pass.
      const e = r.error;
      const keep = isRetryableStripeError(e) ||
        !(typeof e === "object" && e !== null && "statusCode" in e);
      await deps.sql`select internal.release_stripe_invoice_scan(${o.account}, ${o.owner}, ${keep})`
        .catch(() => {});
      return { state: "failed", pages, error: e };
    }
    if (r.state === "incomplete") {
      await deps.sql`select internal.release_stripe_invoice_scan(${o.account}, ${o.owner}, true)`;
      return { state: "incomplete", pages };
    }
    await deps.sql`select internal.finish_stripe_invoice_scan(${o.account}, ${o.owner})`;
  }
  return { state: "incomplete", pages };
}

/**
 * Reads the ranges until none is left, up to `concurrency` pages in flight, each page saved with
 * the ranges still to read (one save at a time, in order, so the saved state never runs ahead
 * of a page that was not kept).
 */
async function scanRanges(
  deps: { sql: Sql; caller: StripeCaller },
  o: IndexScanOptions,
  lease: string,
  initial: ScanRange[],
): Promise<{ state: "done" | "incomplete" | "failed"; pages: number; error?: unknown }> {
  const concurrency = Math.max(1, o.concurrency ?? DEFAULT_SCAN_CONCURRENCY);
  const queue = [...initial];
  const inFlight = new Set<ScanRange>();
  let pages = 0;
  // Set by the fetchers (an object, so the narrowing below sees their writes).
  const end: { failure: { error: unknown } | null; outOfTime: boolean } = {
    failure: null,
    outOfTime: false,
  };
  let saved: Promise<unknown> = Promise.resolve();
  let wake = () => {};
  const changed = () => new Promise<void>((resolve) => (wake = resolve));
  let next = changed();
  const signal = () => {
    const w = wake;
    next = changed();
    w();
  };
  const fetcher = async () => {
    for (;;) {
      if (end.failure) return;
      if (o.outOfTime?.()) {
        end.outOfTime = true;
        return;
      }
      const r = queue.shift();
      if (!r) {
        if (inFlight.size === 0) return;
        await next;
        continue;
      }
      inFlight.add(r);
      try {
        // Counted apart from per-customer lists, so run reports show what the index cost.
        const page = await deps.caller.call(
          "GET /v1/invoices (index scan)",
          (s) => s.invoices.list({ limit: PAGE, ...pageParams(r) }),
        );
        pages++;
        inFlight.delete(r);
        const spare = Math.max(0, concurrency - 1 - inFlight.size - queue.length);
        queue.push(...afterPage(r, {
          created: page.data.map((i) => i.created),
          lastId: page.data.length > 0 ? page.data[page.data.length - 1].id! : null,
          hasMore: page.has_more,
        }, spare));
        signal();
        const left = [...inFlight, ...queue];
        const entries = page.data.map(indexEntry);
        // The newest page (the open-ended range's first): every invoice created before Stripe
        // answered it is read by this pass, so the watermark may reach Stripe's clock then.
        const listedThrough = r.lte === null && r.cursor === null
          ? stripeDateSeconds(page.lastResponse?.headers)
          : null;
        saved = saved.then(() =>
          deps.sql`select internal.record_stripe_invoice_ranges(${o.account}, ${o.owner},
            ${deps.sql.json(entries as never)}, ${deps.sql.json(left as never)},
            ${lease}::interval, now(), ${listedThrough})`
        );
        await saved;
      } catch (error) {
        inFlight.delete(r);
        end.failure ??= { error };
        return;
      } finally {
        signal();
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, fetcher));
  await saved.catch(() => {});
  if (end.failure) return { state: "failed", pages, error: end.failure.error };
  if (end.outOfTime && (queue.length > 0 || inFlight.size > 0)) {
    return { state: "incomplete", pages };
  }
  return { state: "done", pages };
}

/** Stripe's clock from a response's Date header, in Unix seconds (null if absent or unreadable). */
function stripeDateSeconds(headers: unknown): number | null {
  // The SDK's fetch client hands over a Headers object; its Node client a plain record.
  const raw = headers instanceof Headers
    ? headers.get("date")
    : typeof headers === "object" && headers !== null
    ? (headers as Record<string, string>).date ?? (headers as Record<string, string>).Date
    : null;
  if (!raw) return null;
  const ms = Date.parse(raw);
  return Number.isFinite(ms) ? Math.floor(ms / 1000) : null;
}

interface IndexRow {
  stripe_invoice_id: string;
  customer_id: string | null;
  status: string | null;
  created: string;
  total: string | null;
  metadata: Record<string, string>;
  bill: string | null;
}

/**
 * The customer's invoices as the index last saw them, and which bills hold them. Only what
 * matching reads is known (ID, status, created, metadata); lines, dates and fields are not, so
 * a caller that finds any candidate here must confirm it with the customer's live list.
 */
export async function indexedCustomerInvoices(
  sql: Sql,
  account: string,
  customerId: string,
): Promise<ListedInvoices> {
  const rows = await sql<IndexRow[]>`
    select i.stripe_invoice_id, i.customer_id, i.status, i.created::text, i.total::text,
      i.metadata, l.bill_kind || ':' || l.bill_id as bill
    from internal.stripe_invoice_index i
    left join internal.bill_invoice_links l on l.stripe_invoice_id = i.stripe_invoice_id
    where i.account = ${account} and i.customer_id = ${customerId}`;
  const linkedTo: Record<string, string> = {};
  for (const r of rows) if (r.bill) linkedTo[r.stripe_invoice_id] = r.bill;
  return {
    linkedTo,
    invoices: rows.map((r) => ({
      id: r.stripe_invoice_id,
      status: r.status as InvoiceStatus | null,
      customer: r.customer_id,
      created: Number(r.created),
      collectionMethod: "charge_automatically",
      dueDate: null,
      description: null,
      customFields: [],
      metadata: r.metadata ?? {},
      total: Number(r.total ?? 0),
      lines: null,
    })),
  };
}
