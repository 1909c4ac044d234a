/**
 * Every Stripe call goes through a {@link StripeCaller}: a client-side rate limiter (the limit
 * belongs to the Stripe account, so each worker takes its share), backoff on 429, 5xx and lost
 * connections, and counts per endpoint so runs and benchmarks can report what they cost.
 */
import type { RequestBudget } from "./rate_budget.ts";
import type { Stripe } from "./stripe_client.ts";
import { tagStripeEndpoint } from "./stripe_errors.ts";

/** What a caller has spent so far. */
export interface StripeCallStats {
  /** Requests sent, retries included. */
  total: number;
  /** Requests per endpoint, e.g. `{"POST /v1/invoices": 3}`. */
  byEndpoint: Record<string, number>;
  /** Requests to any Search endpoint. */
  search: number;
  /** POST and DELETE requests. */
  writes: number;
  /** Requests that were retries of an earlier failure. */
  retries: number;
  /** 429 responses received. */
  throttled: number;
}

/** Options for {@link StripeCaller}. */
export interface StripeCallerOptions {
  /** Requests per second this caller may send (its share of the account's limit). */
  ratePerSecond?: number;
  /** Search requests per second (Stripe allows 20 for the account). */
  searchRatePerSecond?: number;
  /** Attempts per call before giving up, the first included. */
  maxAttempts?: number;
  /** First backoff delay; doubles per attempt up to maxDelayMs, with jitter. */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /**
   * The account's shared budget (every process calling the account reserves from it); the
   * local limiter then only keeps this caller's slowdown after 429s.
   */
  budget?: RequestBudget;
  /** The same for Search (its own limit). */
  searchBudget?: RequestBudget;
  /** Injectable clock and sleep, for tests. */
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
}

/** Raised when a call still got 429s after every attempt: the run was throttled, not done. */
export class StripeThrottledError extends Error {
  constructor(
    readonly endpoint: string,
    readonly attempts: number,
    override readonly cause: unknown,
  ) {
    super(`Stripe kept answering 429 to ${endpoint} after ${attempts} attempts`);
    this.name = "StripeThrottledError";
  }
}

interface StripeLikeError {
  type?: string;
  statusCode?: number;
  code?: string;
  param?: string;
  message?: string;
  headers?: Record<string, string>;
}

/**
 * Stripe answered a write with the error it saved for this idempotency key (a `lock_timeout`
 * 429 or a 500 from an earlier attempt, marked `Idempotent-Replayed`): the same key will get
 * the same error for 24 h, so retrying it is pointless. The caller checks nothing was created
 * and moves on to a fresh key.
 */
export class StripeReplayedError extends Error {
  constructor(
    readonly endpoint: string,
    readonly idempotencyKey: string,
    override readonly cause: unknown,
  ) {
    const e = cause as StripeLikeError;
    super(
      `Stripe replayed a saved error for ${endpoint} (key ${idempotencyKey}): ${
        e.statusCode ?? "?"
      } ${e.code ?? e.type ?? ""} ${e.message ?? ""}`.trim(),
    );
    this.name = "StripeReplayedError";
  }
}

/** True when an SDK error is a replay of a saved result (`Idempotent-Replayed: true`). */
export function isReplayedError(err: unknown): boolean {
  const h = asStripeError(err)?.headers;
  return !!h && String(h["idempotent-replayed"] ?? "").toLowerCase() === "true";
}

/** True when a successful SDK result was a replay of an earlier request's saved response. */
export function wasReplayed(result: unknown): boolean {
  const last = (result as { lastResponse?: { headers?: unknown } } | null)?.lastResponse;
  const h = last?.headers;
  if (h && typeof (h as Headers).get === "function") {
    return ((h as Headers).get("idempotent-replayed") ?? "").toLowerCase() === "true";
  }
  if (h && typeof h === "object") {
    return String((h as Record<string, unknown>)["idempotent-replayed"] ?? "").toLowerCase() ===
      "true";
  }
  return false;
}

function asStripeError(err: unknown): StripeLikeError | null {
  if (typeof err !== "object" || err === null) return null;
  const e = err as StripeLikeError;
  return typeof e.type === "string" && e.type.startsWith("Stripe") ? e : null;
}

/** The HTTP status of a Stripe SDK error, if it has one. */
export function stripeStatus(err: unknown): number | undefined {
  return asStripeError(err)?.statusCode;
}

/** The Stripe error code (`resource_missing`, `invoice_not_editable`, ...), if any. */
export function stripeCode(err: unknown): string | undefined {
  return asStripeError(err)?.code;
}

/** True for a 404 on the object in the URL (deleted or never existed). */
export function isStripeNotFound(err: unknown): boolean {
  return stripeStatus(err) === 404;
}

/** True when Stripe said the request can be sent again: 429, 409 (key in flight), 5xx, or no answer. */
export function isRetryableStripeError(err: unknown): boolean {
  const e = asStripeError(err);
  if (!e) return false;
  if (e.type === "StripeConnectionError") return true;
  const status = e.statusCode ?? 0;
  return status === 429 || status === 409 || status >= 500;
}

function isRateLimited(err: unknown): boolean {
  return stripeStatus(err) === 429 || asStripeError(err)?.type === "StripeRateLimitError";
}

/** Token bucket whose rate shrinks on 429 and recovers while requests succeed. */
class AdaptiveBucket {
  private tokens: number;
  private rate: number;
  private last: number;
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private maxRate: number,
    private readonly now: () => number,
    private readonly sleep: (ms: number) => Promise<void>,
  ) {
    this.rate = maxRate;
    this.tokens = 1;
    this.last = now();
  }

  currentRate(): number {
    return this.rate;
  }

  /** Waits for a token; callers are served in arrival order. */
  take(): Promise<void> {
    const turn = this.queue.then(() => this.waitForToken());
    this.queue = turn.catch(() => {});
    return turn;
  }

  private async waitForToken(): Promise<void> {
    for (;;) {
      const now = this.now();
      // Burst of one second's worth at most, so a quiet bucket cannot overshoot the account limit.
      this.tokens = Math.min(
        Math.max(1, this.rate),
        this.tokens + ((now - this.last) / 1000) * this.rate,
      );
      this.last = now;
      if (this.tokens >= 1) {
        this.tokens -= 1;
        return;
      }
      await this.sleep(Math.ceil(((1 - this.tokens) / this.rate) * 1000));
    }
  }

  /** A new ceiling (a worker's share changed); a rate slowed by 429s stays slowed. */
  setMaxRate(maxRate: number): void {
    this.maxRate = maxRate;
    this.rate = Math.min(this.rate, maxRate);
  }

  onThrottled(): void {
    this.rate = Math.max(this.maxRate * 0.1, this.rate * 0.7);
  }

  onSuccess(): void {
    if (this.rate < this.maxRate) {
      this.rate = Math.min(this.maxRate, this.rate + this.maxRate * 0.02);
    }
  }
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Sends Stripe requests within a rate budget, retrying what may be retried, counting everything. */
export class StripeCaller {
  private readonly global: AdaptiveBucket;
  private readonly searchBucket: AdaptiveBucket;
  private readonly counts: StripeCallStats = {
    total: 0,
    byEndpoint: {},
    search: 0,
    writes: 0,
    retries: 0,
    throttled: 0,
  };
  private readonly maxAttempts: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly random: () => number;

  constructor(readonly stripe: Stripe, private readonly options: StripeCallerOptions = {}) {
    const now = options.now ?? (() => performance.now());
    this.sleep = options.sleep ?? defaultSleep;
    this.random = options.random ?? Math.random;
    this.global = new AdaptiveBucket(options.ratePerSecond ?? 25, now, this.sleep);
    this.searchBucket = new AdaptiveBucket(options.searchRatePerSecond ?? 20, now, this.sleep);
    this.maxAttempts = options.maxAttempts ?? 6;
    this.baseDelayMs = options.baseDelayMs ?? 500;
    this.maxDelayMs = options.maxDelayMs ?? 8_000;
  }

  /**
   * Sends one logical request. `endpoint` names it for the counts ("POST /v1/invoices").
   * Writes get one idempotency key for all their attempts (the caller's, or a fresh one), so a
   * retry after a lost answer cannot apply the write twice.
   */
  async call<T>(
    endpoint: string,
    fn: (stripe: Stripe, requestOptions: Stripe.RequestOptions) => Promise<T>,
    options: {
      idempotencyKey?: string;
      /** Runs before every attempt (the executor's lease check); throwing stops the call. */
      beforeAttempt?: () => Promise<void>;
    } = {},
  ): Promise<T> {
    const method = endpoint.split(" ", 1)[0];
    const isSearch = endpoint.endsWith("/search");
    const isWrite = method === "POST" || method === "DELETE";
    const requestOptions: Stripe.RequestOptions = {};
    if (method === "POST") {
      requestOptions.idempotencyKey = options.idempotencyKey ?? `billing-${crypto.randomUUID()}`;
    }
    let lastError: unknown;
    for (let attempt = 1; attempt <= this.maxAttempts; attempt++) {
      if (isSearch) await this.searchBucket.take();
      await this.global.take();
      if (isSearch) await this.options.searchBudget?.reserve();
      // Search has a limit of its own (above); every other operation has its own too.
      await this.options.budget?.reserve(isSearch ? undefined : endpoint);
      if (options.beforeAttempt) await options.beforeAttempt();
      this.counts.total++;
      this.counts.byEndpoint[endpoint] = (this.counts.byEndpoint[endpoint] ?? 0) + 1;
      if (isSearch) this.counts.search++;
      if (isWrite) this.counts.writes++;
      if (attempt > 1) this.counts.retries++;
      try {
        const result = await fn(this.stripe, requestOptions);
        this.global.onSuccess();
        if (isSearch) this.searchBucket.onSuccess();
        return result;
      } catch (err) {
        lastError = err;
        tagStripeEndpoint(err, endpoint);
        if (isReplayedError(err) && isRetryableStripeError(err) && requestOptions.idempotencyKey) {
          throw new StripeReplayedError(endpoint, requestOptions.idempotencyKey, err);
        }
        if (!isRetryableStripeError(err)) throw err;
        if (isRateLimited(err)) {
          this.counts.throttled++;
          this.global.onThrottled();
          if (isSearch) this.searchBucket.onThrottled();
        }
        if (attempt === this.maxAttempts) break;
        const backoff = Math.min(this.baseDelayMs * 2 ** (attempt - 1), this.maxDelayMs);
        await this.sleep(backoff * (0.5 + this.random() / 2));
      }
    }
    if (isRateLimited(lastError)) {
      throw new StripeThrottledError(endpoint, this.maxAttempts, lastError);
    }
    throw lastError;
  }

  /**
   * Changes this caller's share of the account's limits (e.g. when the number of workers on a
   * run changes), keeping any slowdown that 429s caused.
   */
  setShare(ratePerSecond: number, searchRatePerSecond: number): void {
    this.global.setMaxRate(ratePerSecond);
    this.searchBucket.setMaxRate(searchRatePerSecond);
  }

  /** A snapshot of the counts. */
  stats(): StripeCallStats {
    return { ...this.counts, byEndpoint: { ...this.counts.byEndpoint } };
  }

  /** The rate the limiter currently allows (shrinks after 429s). */
  currentRate(): number {
    return this.global.currentRate();
  }
}

/** Adds `b` into `a` (for run totals across workers). */
export function addStats(a: StripeCallStats, b: StripeCallStats): StripeCallStats {
  const byEndpoint = { ...a.byEndpoint };
  for (const [k, v] of Object.entries(b.byEndpoint)) byEndpoint[k] = (byEndpoint[k] ?? 0) + v;
  return {
    total: a.total + b.total,
    byEndpoint,
    search: a.search + b.search,
    writes: a.writes + b.writes,
    retries: a.retries + b.retries,
    throttled: a.throttled + b.throttled,
  };
}

/** Counts with nothing in them. */
export function emptyStats(): StripeCallStats {
  return { total: 0, byEndpoint: {}, search: 0, writes: 0, retries: 0, throttled: 0 };
}
