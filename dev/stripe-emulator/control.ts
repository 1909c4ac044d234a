/**
 * Typed client for the emulator's control API (`/_emulator/...`), for tests and benchmarks.
 * The Stripe SDK never sees these endpoints.
 *
 * ```ts
 * const ctl = new EmulatorControl("http://127.0.0.1:12111");
 * await ctl.reset();
 * await ctl.addFault({ route: "POST /v1/invoices/:id/finalize", kind: "drop" });
 * ```
 */
import type { CallRecord, CallSummary } from "./calllog.ts";
import type { Behaviour, SearchKnobs } from "./emulator.ts";
import type { ActiveFault, FaultSpec, LatencyConfig, RateLimitConfig } from "./faults.ts";
import type { DeliveryRecord, DeliveryResult, WebhookConfig } from "./webhooks.ts";

export type { ActiveFault, Behaviour, CallRecord, CallSummary, FaultSpec, SearchKnobs };

/** Any JSON object (Stripe-shaped objects come back as plain JSON). */
// deno-lint-ignore no-explicit-any
export type StripeJson = Record<string, any>;

export interface StateDump {
  customers: (StripeJson & { deleted: boolean })[];
  invoices: (StripeJson & { deleted: boolean; line_ids: string[] })[];
  invoice_items: (StripeJson & { deleted: boolean })[];
  payment_methods: StripeJson[];
  setup_intents: StripeJson[];
  // Optional only so dumps assembled elsewhere (bench/lib/checks.ts) still type-check; the
  // emulator always sends both.
  /** Every Product, with `origin`: `api` (POST /v1/products) or `product_data` (a line's). */
  products?: (StripeJson & { origin: "api" | "product_data" })[];
  /** How many Products exist, to assert "no Product per line". */
  product_count?: number;
  event_count: number;
}

export interface HandMadeLine {
  amount?: number;
  description?: string;
  metadata?: Record<string, string>;
  period?: { start: number; end: number };
  price_data?: StripeJson;
  quantity?: number;
}

export interface HandMadeInvoice {
  customer: string;
  /** Final status after creation (default draft). `paid` = paid out of band. */
  status?: "draft" | "open" | "paid" | "void" | "uncollectible";
  lines?: HandMadeLine[];
  metadata?: Record<string, string>;
  currency?: string;
  description?: string;
  collection_method?: "charge_automatically" | "send_invoice";
  days_until_due?: number;
  auto_advance?: boolean;
  [param: string]: unknown;
}

export interface HandMadeCard {
  /** Attach to this customer. */
  customer?: string;
  /** Also make it the customer's default (`invoice_settings.default_payment_method`). */
  default?: boolean;
  brand?: string;
  last4?: string;
  exp_month?: number;
  exp_year?: number;
  funding?: string;
  country?: string;
  /** Every charge on this card fails with 402 card_declined. */
  declines?: boolean;
  metadata?: Record<string, string>;
}

export class ControlApiError extends Error {
  constructor(readonly status: number, readonly body: unknown) {
    super(`emulator control API ${status}: ${JSON.stringify(body)}`);
  }
}

export class EmulatorControl {
  private readonly base: string;

  /** `baseUrl` is the emulator's root, e.g. `http://127.0.0.1:12111`. */
  constructor(baseUrl: string) {
    this.base = baseUrl.replace(/\/$/, "");
  }

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await fetch(`${this.base}/_emulator${path}`, {
      method,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    const parsed = text ? JSON.parse(text) : null;
    if (!res.ok) throw new ControlApiError(res.status, parsed);
    return parsed as T;
  }

  // --- lifecycle -------------------------------------------------------------------------

  health(): Promise<{ ok: boolean }> {
    return this.call("GET", "/health");
  }

  /** Forgets every object, event, idempotency key and call, and resets all knobs and the clock. */
  async reset(): Promise<void> {
    await this.call("POST", "/reset");
  }

  config(): Promise<StripeJson> {
    return this.call("GET", "/config");
  }

  // --- knobs -----------------------------------------------------------------------------

  /** Fixed latency (`{fixedMs}`) or uniform in [minMs, maxMs]; `{}` removes it. */
  setLatency(cfg: { fixedMs?: number; minMs?: number; maxMs?: number }): Promise<LatencyConfig> {
    return this.call("POST", "/latency", cfg);
  }

  /** Token buckets answered with 429 `rate_limit`; null disables a limiter. */
  setRateLimits(cfg: Partial<RateLimitConfig>): Promise<RateLimitConfig> {
    return this.call("POST", "/rate_limits", cfg);
  }

  /** Search index lag (seconds, emulator clock) and the chance a match is left out. */
  setSearch(cfg: Partial<SearchKnobs>): Promise<SearchKnobs> {
    return this.call("POST", "/search", cfg);
  }

  /** How long idempotency keys live (default 86400 s, on the emulator clock). */
  setIdempotencyTtl(ttlSeconds: number): Promise<{ ttlSeconds: number }> {
    return this.call("POST", "/idempotency", { ttlSeconds });
  }

  /** The [U] behaviours (see README). */
  setBehaviour(patch: Partial<Behaviour>): Promise<Behaviour> {
    return this.call("POST", "/behaviour", patch);
  }

  // --- faults ----------------------------------------------------------------------------

  /** Injects a fault on matching requests; see FaultSpec for kinds and options. */
  addFault(spec: FaultSpec): Promise<ActiveFault> {
    return this.call("POST", "/faults", spec);
  }

  faults(): Promise<ActiveFault[]> {
    return this.call("GET", "/faults");
  }

  async removeFault(id: string): Promise<boolean> {
    return (await this.call<{ removed: boolean }>("DELETE", `/faults/${id}`)).removed;
  }

  async clearFaults(): Promise<void> {
    await this.call("DELETE", "/faults");
  }

  // --- clock -----------------------------------------------------------------------------

  clock(): Promise<{ now: number; offsetSeconds: number }> {
    return this.call("GET", "/clock");
  }

  /** Moves the emulator clock forward instantly (idempotency expiry, Search lag). */
  advanceClock(seconds: number): Promise<{ now: number; offsetSeconds: number }> {
    return this.call("POST", "/clock/advance", { seconds });
  }

  // --- call log --------------------------------------------------------------------------

  /** Calls the SDK made (optionally only those after sequence number `since`). */
  calls(since = 0): Promise<CallRecord[]> {
    return this.call("GET", `/calls?since=${since}`);
  }

  /** Totals: all calls, Search calls, writes (POST/DELETE), per route template and status. */
  callSummary(): Promise<CallSummary> {
    return this.call("GET", "/calls/summary");
  }

  /** Clears the call log and its counters only. */
  async resetCalls(): Promise<void> {
    await this.call("DELETE", "/calls");
  }

  // --- state -----------------------------------------------------------------------------

  /** Every customer and invoice, deleted ones included and flagged, for invariant checks. */
  state(): Promise<StateDump> {
    return this.call("GET", "/state");
  }

  /** Every event, oldest first (optionally of one type). */
  events(type?: string): Promise<StripeJson[]> {
    return this.call("GET", `/events${type ? `?type=${encodeURIComponent(type)}` : ""}`);
  }

  // --- webhooks --------------------------------------------------------------------------

  /** Sets the endpoint (url + whsec_ secret) and delivery options. */
  configureWebhooks(cfg: Partial<WebhookConfig>): Promise<WebhookConfig> {
    return this.call("POST", "/webhooks", cfg);
  }

  webhooks(): Promise<{ config: WebhookConfig; pending: string[]; deliveries: DeliveryRecord[] }> {
    return this.call("GET", "/webhooks");
  }

  /** Stops automatic delivery; events queue up until flush() or deliver(). */
  pauseWebhooks(): Promise<WebhookConfig> {
    return this.call("POST", "/webhooks/pause");
  }

  resumeWebhooks(): Promise<WebhookConfig> {
    return this.call("POST", "/webhooks/resume");
  }

  /** Delivers everything queued (even when paused); resolves once the queue is empty. */
  flushWebhooks(): Promise<{ pending: string[] }> {
    return this.call("POST", "/webhooks/flush");
  }

  /**
   * Delivers these events now, in this order (e.g. reversed, for out-of-order tests). With
   * `dequeue` (default) they leave the automatic queue; pass false to send duplicates.
   */
  deliverEvents(eventIds: string[], dequeue = true): Promise<DeliveryResult[]> {
    return this.call("POST", "/webhooks/deliver", { eventIds, dequeue });
  }

  /** Sends one event again (a duplicate delivery, as Stripe may do). */
  async redeliverEvent(eventId: string): Promise<DeliveryResult> {
    return (await this.deliverEvents([eventId], false))[0];
  }

  // --- dashboard ("by hand") changes: same validation and events as the API ----------------

  createCustomer(params: StripeJson = {}): Promise<StripeJson> {
    return this.call("POST", "/dashboard/customers", params);
  }

  updateCustomer(id: string, params: StripeJson): Promise<StripeJson> {
    return this.call("POST", `/dashboard/customers/${id}`, params);
  }

  deleteCustomer(id: string): Promise<StripeJson> {
    return this.call("DELETE", `/dashboard/customers/${id}`);
  }

  /** Creates a card PaymentMethod (attached to `customer` if given). */
  createPaymentMethod(card: HandMadeCard = {}): Promise<StripeJson> {
    return this.call("POST", "/dashboard/payment_methods", card);
  }

  attachPaymentMethod(id: string, customer: string): Promise<StripeJson> {
    return this.call("POST", `/dashboard/payment_methods/${id}/attach`, { customer });
  }

  detachPaymentMethod(id: string): Promise<StripeJson> {
    return this.call("POST", `/dashboard/payment_methods/${id}/detach`);
  }

  setDefaultPaymentMethod(customer: string, paymentMethod: string | null): Promise<StripeJson> {
    return this.call("POST", `/dashboard/customers/${customer}/default_payment_method`, {
      payment_method: paymentMethod,
    });
  }

  /** An invoice with arbitrary metadata and lines, moved to `status` with the usual events. */
  createInvoice(input: HandMadeInvoice): Promise<StripeJson> {
    return this.call("POST", "/dashboard/invoices", input);
  }

  updateInvoice(id: string, params: StripeJson): Promise<StripeJson> {
    return this.call("POST", `/dashboard/invoices/${id}`, params);
  }

  addInvoiceLines(id: string, lines: HandMadeLine[]): Promise<StripeJson> {
    return this.call("POST", `/dashboard/invoices/${id}/lines`, { lines });
  }

  deleteInvoice(id: string): Promise<StripeJson> {
    return this.call("DELETE", `/dashboard/invoices/${id}`);
  }

  finalizeInvoice(id: string): Promise<StripeJson> {
    return this.call("POST", `/dashboard/invoices/${id}/finalize`, {});
  }

  voidInvoice(id: string): Promise<StripeJson> {
    return this.call("POST", `/dashboard/invoices/${id}/void`, {});
  }

  /** Marks paid out of band by default; pass `{payment_method}` to charge a card instead. */
  payInvoice(id: string, params: StripeJson = {}): Promise<StripeJson> {
    return this.call("POST", `/dashboard/invoices/${id}/pay`, params);
  }

  markInvoiceUncollectible(id: string): Promise<StripeJson> {
    return this.call("POST", `/dashboard/invoices/${id}/mark_uncollectible`, {});
  }

  sendInvoice(id: string): Promise<StripeJson> {
    return this.call("POST", `/dashboard/invoices/${id}/send`, {});
  }

  /** A pending (or, with `invoice`, attached) invoice item. */
  createInvoiceItem(params: StripeJson): Promise<StripeJson> {
    return this.call("POST", "/dashboard/invoiceitems", params);
  }

  /** Completes a SetupIntent as the customer would in the browser, attaching a card. */
  succeedSetupIntent(
    id: string,
    opts: { payment_method?: string; card?: HandMadeCard } = {},
  ): Promise<StripeJson> {
    return this.call("POST", `/dashboard/setup_intents/${id}/succeed`, opts);
  }
}
