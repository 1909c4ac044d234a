/**
 * Reruns without a retrieve per bill. Publishing records a verification when it confirms a
 * bill's stored draft is what the bill wants; a per-account cursor over Stripe's Events API
 * records which invoices and customers changed since. A bill whose verification holds is
 * planned from what it wants, with no call about its invoice. The trust is in Stripe's own event
 * log (read with skew, so events still being written when a page was read are read again), not
 * in webhooks: a late or lost webhook changes nothing here.
 */
import { invoiceSpecFor, linesFor } from "./bill_invoice.ts";
import type { Sql } from "./db.ts";
import type { EngineDeps } from "./engine.ts";
import { expectedInvoiceTotal } from "./money.ts";
import type { Bill, InvoiceSnapshot, PlanContext } from "./plan_types.ts";
import { isRetryableStripeError, type StripeCaller } from "./stripe_calls.ts";
import type { Stripe } from "./stripe_client.ts";

/**
 * Events that can change a stored invoice, its lines or its customer (Stripe allows 20).
 * `invoiceitem.created` is left out: our own `add_lines` emit one per line (most of a month's
 * events), and a line added by hand changes the invoice's total, which `invoice.updated`
 * reports; only a zero-amount line added by hand goes unnoticed until the draft is next read.
 */
export const WATCHED_EVENT_TYPES = [
  "invoice.updated",
  "invoice.deleted",
  "invoice.finalized",
  "invoice.finalization_failed",
  "invoice.voided",
  "invoice.paid",
  "invoice.payment_succeeded",
  "invoice.payment_failed",
  "invoice.payment_action_required",
  "invoice.marked_uncollectible",
  "invoice.sent",
  "invoiceitem.updated",
  "invoiceitem.deleted",
  "customer.updated",
  "customer.deleted",
];

const PAGE = 100;

type ChangeKind = "invoice" | "customer_deleted" | "customer_updated";

/** What the change log keeps of an event (null: the event concerns no invoice we track). */
export function changeOf(e: Stripe.Event): {
  id: string;
  type: string;
  created: number;
  kind: ChangeKind;
  object_id: string;
  idempotency_key: string | null;
} | null {
  const obj = e.data.object as unknown as Record<string, unknown>;
  let kind: ChangeKind;
  let objectId: unknown;
  if (e.type.startsWith("invoice.")) {
    kind = "invoice";
    objectId = obj.id;
  } else if (e.type.startsWith("invoiceitem.")) {
    kind = "invoice";
    const inv = obj.invoice;
    objectId = typeof inv === "object" && inv !== null ? (inv as { id?: unknown }).id : inv;
  } else if (e.type === "customer.deleted") {
    kind = "customer_deleted";
    objectId = obj.id;
  } else if (e.type === "customer.updated") {
    kind = "customer_updated";
    objectId = obj.id;
  } else {
    return null;
  }
  if (typeof objectId !== "string" || objectId === "") return null;
  return {
    id: e.id,
    type: e.type,
    created: e.created,
    kind,
    object_id: objectId,
    idempotency_key: e.request?.idempotency_key ?? null,
  };
}

/** Hex SHA-256 of what the bill wants Stripe to hold: customer, fields, lines and total. */
export async function wantedHash(
  bill: Bill,
  ctx: Pick<PlanContext, "now" | "usageCollectionMethod" | "installation">,
  customerId: string,
): Promise<string> {
  const l = linesFor(bill);
  if ("error" in l) throw new Error(`bill ${bill.kind}:${bill.id} is inconsistent: ${l.error}`);
  // The due date is left out: it depends on when the draft was made, and a draft that has
  // one keeps it (only a missing one is written).
  const { dueDate: _due, ...fields } = invoiceSpecFor(bill, ctx);
  const body = JSON.stringify({
    customer: customerId,
    fields,
    lines: l.lines,
    total: expectedInvoiceTotal(bill),
  });
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(body));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The draft a holding verification stands for: the bill's wanted fields and lines on the
 * tenant's customer, at the bill's total (line IDs unknown; nothing is removed from it unless
 * it differs, and it does not).
 */
export function verifiedDraft(
  bill: Bill,
  ctx: Pick<PlanContext, "now" | "usageCollectionMethod" | "installation">,
  invoiceId: string,
  customerId: string,
): InvoiceSnapshot {
  const spec = invoiceSpecFor(bill, ctx);
  const l = linesFor(bill);
  if ("error" in l) throw new Error(`bill ${bill.kind}:${bill.id} is inconsistent: ${l.error}`);
  return {
    id: invoiceId,
    status: "draft",
    customer: customerId,
    created: 0,
    collectionMethod: spec.collectionMethod,
    dueDate: spec.dueDate,
    description: spec.description,
    customFields: spec.customFields,
    metadata: { ...spec.metadata },
    total: expectedInvoiceTotal(bill),
    lines: l.lines.map((x) => ({
      id: "",
      description: x.description,
      amount: x.amount,
      quantity: 1,
      periodStart: x.periodStart,
      periodEnd: x.periodEnd,
    })),
  };
}

/** The change log's position: null until the cursor has completed a pass. */
export async function eventPosition(
  sql: Sql,
  account: string,
): Promise<{ generation: number; seenSeq: number } | null> {
  const rows = await sql<{ generation: string; seen_seq: string }[]>`
    select generation::text, seen_seq::text from internal.stripe_event_position(${account})`;
  if (rows.length === 0) return null;
  return { generation: Number(rows[0].generation), seenSeq: Number(rows[0].seen_seq) };
}

export async function verificationHolds(
  sql: Sql,
  account: string,
  bill: Pick<Bill, "kind" | "id">,
  invoiceId: string,
  customerId: string,
  hash: string,
): Promise<boolean> {
  const [row] = await sql<{ holds: boolean }[]>`
    select internal.invoice_verification_holds(${account}, ${bill.kind}, ${bill.id},
      ${invoiceId}, ${customerId}, ${hash}) as holds`;
  return row.holds;
}

export async function recordVerification(
  sql: Sql,
  v: {
    account: string;
    bill: Pick<Bill, "kind" | "id">;
    invoiceId: string;
    customerId: string;
    hash: string;
    watchCustomerUpdates: boolean;
    position: { generation: number; seenSeq: number };
    ownKeys: string[];
  },
): Promise<void> {
  await sql`select internal.record_invoice_verification(${v.account}, ${v.bill.kind},
    ${v.bill.id}, ${v.invoiceId}, ${v.customerId}, ${v.hash}, ${v.watchCustomerUpdates},
    ${v.position.generation}, ${v.position.seenSeq}, ${v.ownKeys}::text[])`;
}

export interface EventScanOptions {
  account: string;
  owner: string;
  /** A timestamptz literal: the cursor must have completed a pass started since then. */
  freshAfter: string;
  maxAgeSeconds?: number;
  leaseSeconds?: number;
  skewSeconds?: number;
  outOfTime?: () => boolean;
}

export type EventScanOutcome =
  | { state: "fresh"; pages: number }
  | { state: "busy"; pages: number }
  | { state: "incomplete"; pages: number }
  | { state: "failed"; pages: number; error: unknown };

/**
 * Brings the account's change log up to date: fresh already, busy (another worker reads), or
 * take the lease and page `GET /v1/events?created[gte]=watermark - skew` for the watched types.
 */
export async function refreshEventCursor(
  deps: { sql: Sql; caller: StripeCaller },
  o: EventScanOptions,
): Promise<EventScanOutcome> {
  const lease = `${o.leaseSeconds ?? 60} seconds`;
  let pages = 0;
  for (let attempt = 0; attempt < 3; attempt++) {
    const [t] = await deps.sql<
      { outcome: "fresh" | "busy" | "leased"; pass_from: string | null; pass_cursor: string }[]
    >`select outcome, pass_from::text, pass_cursor
      from internal.take_stripe_event_scan(${o.account}, ${o.owner}, ${o.freshAfter}::timestamptz,
        ${`${o.maxAgeSeconds ?? 900} seconds`}::interval, ${lease}::interval,
        ${o.skewSeconds ?? 300})`;
    if (t.outcome !== "leased") return { state: t.outcome, pages };
    let cursor = t.pass_cursor ?? undefined;
    try {
      if (t.pass_from === null) {
        // A new generation: only where Stripe's clock stands (its newest event) is needed.
        const newest = await deps.caller.call("GET /v1/events", (s) => s.events.list({ limit: 1 }));
        pages++;
        await deps.sql`select internal.finish_stripe_event_scan(${o.account}, ${o.owner},
          ${newest.data[0]?.created ?? 0})`;
        return { state: "fresh", pages };
      }
      const from = Number(t.pass_from);
      for (;;) {
        if (o.outOfTime?.()) {
          await deps.sql`select internal.release_stripe_event_scan(${o.account}, ${o.owner}, true)`;
          return { state: "incomplete", pages };
        }
        const page = await deps.caller.call(
          "GET /v1/events",
          (s) =>
            s.events.list({
              limit: PAGE,
              created: { gte: from },
              types: WATCHED_EVENT_TYPES,
              ...(cursor ? { starting_after: cursor } : {}),
            }),
        );
        pages++;
        const next = page.has_more && page.data.length > 0
          ? page.data[page.data.length - 1].id
          : null;
        const changes = page.data.map(changeOf).filter((c) => c !== null);
        const high = page.data.reduce<number | null>(
          (m, e) => (m === null || e.created > m ? e.created : m),
          null,
        );
        await deps.sql`select internal.record_stripe_event_page(${o.account}, ${o.owner},
          ${deps.sql.json(changes as never)}, ${high}, ${next}, ${lease}::interval)`;
        if (next === null) break;
        cursor = next;
      }
      await deps.sql`select internal.finish_stripe_event_scan(${o.account}, ${o.owner})`;
      return { state: "fresh", pages };
    } catch (error) {
      const keep = cursor === undefined || isRetryableStripeError(error) ||
        !(typeof error === "object" && error !== null && "statusCode" in error);
      await deps.sql`select internal.release_stripe_event_scan(${o.account}, ${o.owner}, ${keep})`
        .catch(() => {});
      return { state: "failed", pages, error };
    }
  }
  return { state: "incomplete", pages };
}

/**
 * Whether the change log may vouch for verifications in this drain: a pass completed since the
 * run was enqueued (and within maxAge). Reads lazily; waits briefly for another worker's pass;
 * otherwise says no and bills are retrieved as before. Answers are cached for 30 s.
 */
export class EventFeedGate {
  private until = 0;
  private ready = false;

  constructor(
    private readonly deps: EngineDeps,
    private readonly runCreatedAt: string,
    /** The index scan's caller: the feed's calls are charged like the index's. */
    readonly caller: StripeCaller,
    readonly account: string,
    private readonly outOfTime: () => boolean,
  ) {}

  private lastKeepUp = Number.NEGATIVE_INFINITY;

  /**
   * Reads the log if no pass started in the last `keepUpSeconds` (default 20) and nobody else is
   * reading: between batches, so a run reads its own writes' events as it goes and the next
   * run's read is short. Never waits for another worker.
   */
  async keepUp(): Promise<void> {
    const o = this.deps.eventFeed ?? {};
    if (o.enabled === false) return;
    const everyMs = (o.keepUpSeconds ?? 20) * 1000;
    if (performance.now() - this.lastKeepUp < everyMs) return;
    this.lastKeepUp = performance.now();
    const r = await refreshEventCursor({ sql: this.deps.sql, caller: this.caller }, {
      account: this.account,
      owner: this.deps.worker,
      freshAfter: new Date(Date.now() - everyMs).toISOString(),
      maxAgeSeconds: everyMs / 1000,
      outOfTime: this.outOfTime,
    });
    if (r.state === "failed") console.warn(`event cursor read failed: ${String(r.error)}`);
  }

  get enabled(): boolean {
    return this.deps.eventFeed?.enabled !== false;
  }

  async isReady(): Promise<boolean> {
    const o = this.deps.eventFeed ?? {};
    if (o.enabled === false) return false;
    if (performance.now() < this.until) return this.ready;
    const waitUntil = performance.now() + (o.waitMs ?? 60_000);
    for (;;) {
      const r = await refreshEventCursor({ sql: this.deps.sql, caller: this.caller }, {
        account: this.account,
        owner: this.deps.worker,
        freshAfter: this.runCreatedAt,
        maxAgeSeconds: o.maxAgeSeconds,
        outOfTime: this.outOfTime,
      });
      if (r.state === "busy" && performance.now() < waitUntil && !this.outOfTime()) {
        await new Promise((resolve) => setTimeout(resolve, 200));
        continue;
      }
      if (r.state === "failed") console.warn(`event cursor read failed: ${String(r.error)}`);
      this.ready = r.state === "fresh";
      this.until = performance.now() + 30_000;
      return this.ready;
    }
  }
}
