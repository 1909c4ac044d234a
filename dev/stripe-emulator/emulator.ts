/**
 * The emulator core, independent of HTTP: state, clock, search indexes, events and the knobs.
 * Route handlers (routes/*.ts) mutate it; the server and the control API wrap it.
 */
import { CallLog } from "./calllog.ts";
import { Clock } from "./clock.ts";
import type { AmountRounding } from "./decimal.ts";
import { ApiError } from "./errors.ts";
import { Faults } from "./faults.ts";
import type { FormMap } from "./form.ts";
import { newId, randomBase62 } from "./ids.ts";
import { IdempotencyStore } from "./idempotency.ts";
import type { JsonObject } from "./json.ts";
import type { CustomerRecord, InvoiceRecord } from "./model.ts";
import { Params } from "./params.ts";
import { type MatchedRoute, Router } from "./router.ts";
import { registerRoutes } from "./routes/index.ts";
import {
  CUSTOMER_SEARCH_FIELDS,
  INVOICE_SEARCH_FIELDS,
  type SearchDoc,
  SearchIndex,
} from "./search.ts";
import { Store } from "./store.ts";
import { WebhookDispatcher } from "./webhooks.ts";

/** The API version the emulated account renders events in (the one stripe@23.1.0 pins). */
export const DEFAULT_API_VERSION = "2026-10-28.endive";

/**
 * Behaviours Stripe does not document (unverified): configurable, with the defaults documented
 * in README.md. The publisher must not depend on them.
 */
export interface Behaviour {
  /** Account API version used for event payloads. */
  apiVersion: string;
  /** `pay`/`send` on a draft: finalize first (believed real) or fail with 400. */
  draftPayOrSend: "finalize" | "error";
  /** Invoice fields `POST /v1/invoices/:id` may change once finalized. */
  finalizedEditableFields: string[];
  /** Error code for other edits of finalized invoices. */
  finalizedEditCode: "invoice_not_editable" | "invoice_already_finalized";
  /** Also emit `invoice.updated` alongside finalize/pay/void/mark_uncollectible events. */
  updatedEventOnTransitions: boolean;
  /** Lines embedded in an invoice's `lines` (the rest via the lines endpoint). */
  embeddedLines: number;
  /** Search result order (undocumented by Stripe). */
  searchOrder: "newest_first" | "oldest_first";
  /** Rounding of unit_amount_decimal × quantity to minor units (Stripe's is not pinned). */
  amountRounding: AmountRounding;
}

export function defaultBehaviour(): Behaviour {
  return {
    apiVersion: DEFAULT_API_VERSION,
    draftPayOrSend: "finalize",
    finalizedEditableFields: ["metadata", "auto_advance"],
    finalizedEditCode: "invoice_not_editable",
    updatedEventOnTransitions: false,
    embeddedLines: 10,
    searchOrder: "newest_first",
    amountRounding: "half_away_from_zero",
  };
}

export interface SearchKnobs {
  /** Seconds before a write becomes visible to Search (emulator clock). */
  lagSeconds: number;
  /** Probability that a visible match is left out of one search response. */
  dropProbability: number;
}

/** Who caused a change: an API request, or a person in the dashboard (ids null). */
export interface RequestInfo {
  id: string | null;
  idempotencyKey: string | null;
  /** Made with a live-mode key (`sk_live_`/`rk_live_`); dashboard changes are test mode. */
  livemode?: boolean;
}

const ACCOUNT_ID = /^acct_[A-Za-z0-9]{1,250}$/;

/** A Stripe-shaped account id, new for each emulator instance unless one is configured. */
export function newAccountId(): string {
  return `acct_1${randomBase62(15)}`;
}

export const DASHBOARD: RequestInfo = { id: null, idempotencyKey: null };

export class Emulator {
  /** The account every key of this instance belongs to (`GET /v1/account`). */
  readonly accountId: string;
  /** When the account was created (instance start, seconds). */
  readonly accountCreated: number;
  readonly clock = new Clock();
  store = new Store();
  behaviour: Behaviour = defaultBehaviour();
  readonly searchKnobs: SearchKnobs = { lagSeconds: 0, dropProbability: 0 };
  readonly customerSearch = new SearchIndex(CUSTOMER_SEARCH_FIELDS, []);
  readonly invoiceSearch = new SearchIndex(INVOICE_SEARCH_FIELDS, ["customer", "currency"]);
  readonly idempotency = new IdempotencyStore(this.clock);
  readonly faults = new Faults();
  readonly calls = new CallLog();
  readonly router = new Router();
  readonly webhooks: WebhookDispatcher;

  constructor(opts: { accountId?: string } = {}) {
    const accountId = opts.accountId ?? newAccountId();
    if (!ACCOUNT_ID.test(accountId)) {
      throw new Error(`accountId must look like acct_ followed by letters and digits`);
    }
    this.accountId = accountId;
    this.accountCreated = this.clock.nowSeconds();
    registerRoutes(this.router);
    this.webhooks = new WebhookDispatcher((id) => {
      const rec = this.store.events.get(id);
      if (!rec) return undefined;
      return {
        id,
        type: rec.type,
        payload: () => JSON.stringify(rec.body, null, 2),
        delivered: (ok) => {
          if (ok) rec.body.pending_webhooks = 0;
        },
      };
    });
  }

  /** Records an event and queues it for webhook delivery. */
  emit(type: string, object: JsonObject, request: RequestInfo, previous?: JsonObject): void {
    const id = newId("evt");
    const data: JsonObject = { object };
    if (previous && Object.keys(previous).length > 0) data.previous_attributes = previous;
    const body: JsonObject = {
      id,
      object: "event",
      api_version: this.behaviour.apiVersion,
      created: this.clock.created(),
      data,
      livemode: request.livemode ?? false,
      pending_webhooks: this.webhooks.enabled ? 1 : 0,
      request: { id: request.id, idempotency_key: request.idempotencyKey },
      type,
    };
    this.store.addEvent({
      id,
      created: body.created as number,
      seq: this.store.nextSeq(),
      type,
      body,
    });
    this.webhooks.enqueue(id);
  }

  private searchVisibleAt(): number {
    return this.clock.nowMs() + this.searchKnobs.lagSeconds * 1000;
  }

  /** Pushes a customer's searchable fields to the (possibly lagging) index. */
  indexCustomer(c: CustomerRecord): void {
    const doc: SearchDoc | null = c.deleted ? null : {
      id: c.id,
      created: c.created,
      seq: c.seq,
      fields: { created: c.created, email: c.email, name: c.name, phone: c.phone },
      metadata: { ...c.metadata },
    };
    this.customerSearch.write(c.id, doc, this.searchVisibleAt(), this.clock.nowMs());
  }

  indexInvoice(inv: InvoiceRecord, total: number): void {
    const doc: SearchDoc | null = inv.deleted ? null : {
      id: inv.id,
      created: inv.created,
      seq: inv.seq,
      fields: {
        created: inv.created,
        currency: inv.currency,
        customer: inv.customer,
        number: inv.number,
        receipt_number: null,
        status: inv.status,
        subscription: null,
        total,
      },
      metadata: { ...inv.metadata },
    };
    this.invoiceSearch.write(inv.id, doc, this.searchVisibleAt(), this.clock.nowMs());
  }

  /**
   * Runs an API operation without HTTP (no auth, limits, faults or call log): how the control
   * API makes "dashboard" changes that emit exactly the events the API would.
   */
  invoke(method: string, path: string, params: FormMap, request = DASHBOARD): JsonObject {
    const match: MatchedRoute | undefined = this.router.match(method, path);
    if (!match) throw new ApiError({ status: 404, type: "invalid_request_error", message: path });
    return match.route.handler({
      emu: this,
      params: new Params(params),
      path: match.params,
      request,
    });
  }

  /** Forgets all objects, events, keys, calls and knobs (webhook endpoint config is kept). */
  reset(): void {
    this.store = new Store();
    this.behaviour = defaultBehaviour();
    this.searchKnobs.lagSeconds = 0;
    this.searchKnobs.dropProbability = 0;
    this.customerSearch.clear();
    this.invoiceSearch.clear();
    this.idempotency.clear();
    this.idempotency.ttlSeconds = 24 * 60 * 60;
    this.faults.reset();
    this.calls.reset();
    this.webhooks.reset();
    this.clock.reset();
  }
}
