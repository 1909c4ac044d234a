/**
 * Fault knobs: latency, token-bucket rate limits per class, and injected faults by route.
 */
export type FaultKind = "error" | "rate_limit" | "lock_timeout" | "timeout" | "drop" | "slow";
export type DropMode = "before_response" | "after_headers";
/** `slow`: whether the write lands before the delay (answer late) or after it. */
export type SlowWriteAt = "before_delay" | "after_delay";

export interface FaultSpec {
  /** `METHOD /path`: method or `*`; path segments may be `:param` (any one) or a final `*`. */
  route: string;
  kind: FaultKind;
  /** How many matching requests to fault (default 1), or "always". */
  count?: number | "always";
  /** Let this many matching requests through before faulting. */
  skip?: number;
  /** `error`: 500, 502, 503 or 504 (default 500). */
  status?: number;
  /** Sets `Stripe-Should-Retry` (error, lock_timeout). Omitted = no header (lock_timeout: true). */
  shouldRetry?: boolean;
  message?: string;
  /** `rate_limit`: the `Stripe-Rate-Limited-Reason` header (default `global-rate`). */
  reason?: string;
  /** `timeout`: how long to hold the request before closing the socket (default 30 s). */
  holdMs?: number;
  /**
   * Execute the request before failing. `drop` defaults to true ("apply the write, then drop
   * the connection"); `error` and `timeout` default to false.
   */
  applyWrite?: boolean;
  /** `drop`: close without a byte, or after the status line and headers (default). */
  mode?: DropMode;
  /**
   * `error`, `lock_timeout`, `rate_limit`: save the injected error under the request's
   * Idempotency-Key, so every retry with that key gets it back (`Idempotent-Replayed: true`)
   * until the key expires. Stripe saves a response once execution has begun. Default: true for
   * 500 and `lock_timeout`, false for 502/503/504 (edge failures) and `rate_limit` (limiter).
   */
  replay?: boolean;
  /** Former name of `replay` (error faults only). */
  storeIdempotent?: boolean;
  /** `slow`: how long to hold the request before answering normally. */
  delayMs?: number;
  /** `slow`: apply the write before the delay or after it (default `after_delay`). */
  writeAt?: SlowWriteAt;
}

export interface ActiveFault extends FaultSpec {
  id: string;
  hits: number;
  remaining: number | "always";
  skipped: number;
}

/** Faults before the idempotency layer (limiters, edge errors) vs during execution. */
export type FaultStage = "edge" | "execution";

export function faultStage(f: FaultSpec): FaultStage {
  if (f.kind === "rate_limit" || f.kind === "error") return replaysError(f) ? "execution" : "edge";
  return "execution";
}

/** Whether the injected error is saved for replay under the request's Idempotency-Key. */
export function replaysError(f: FaultSpec): boolean {
  switch (f.kind) {
    case "error":
      return f.replay ?? f.storeIdempotent ?? (f.status ?? 500) === 500;
    case "lock_timeout":
      return f.replay ?? true;
    case "rate_limit":
      return f.replay ?? false;
    default:
      return false;
  }
}

const KINDS: FaultKind[] = ["error", "rate_limit", "lock_timeout", "timeout", "drop", "slow"];

export function validateFault(spec: FaultSpec): void {
  if (!KINDS.includes(spec.kind)) throw new Error(`unknown fault kind: ${spec.kind}`);
  if (typeof spec.route !== "string" || !/^\S+ \/\S*$/.test(spec.route)) {
    throw new Error(`route must look like "POST /v1/invoices", got ${JSON.stringify(spec.route)}`);
  }
  if (spec.kind === "error" && ![500, 502, 503, 504].includes(spec.status ?? 500)) {
    throw new Error("error faults take status 500, 502, 503 or 504");
  }
  if (spec.mode && spec.mode !== "before_response" && spec.mode !== "after_headers") {
    throw new Error("drop mode is before_response or after_headers");
  }
  if (spec.replay !== undefined && typeof spec.replay !== "boolean") {
    throw new Error("replay must be true or false");
  }
  if (spec.replay === true && !["error", "lock_timeout", "rate_limit"].includes(spec.kind)) {
    // Nothing is answered to save; a write they apply (applyWrite) is saved and replayed anyway.
    throw new Error(
      `replay applies to error, lock_timeout and rate_limit faults, not ${spec.kind}`,
    );
  }
  if (spec.kind === "slow") {
    if (typeof spec.delayMs !== "number" || !(spec.delayMs > 0)) {
      throw new Error("slow faults need delayMs > 0");
    }
    if (spec.writeAt && spec.writeAt !== "before_delay" && spec.writeAt !== "after_delay") {
      throw new Error("writeAt is before_delay or after_delay");
    }
  }
}

export function routeMatches(pattern: string, method: string, path: string): boolean {
  const space = pattern.indexOf(" ");
  const pm = pattern.slice(0, space);
  if (pm !== "*" && pm.toUpperCase() !== method) return false;
  const want = pattern.slice(space + 1).split("/");
  const have = path.split("/");
  for (let i = 0; i < want.length; i++) {
    if (want[i] === "*" && i === want.length - 1) return true;
    if (i >= have.length) return false;
    if (want[i].startsWith(":")) continue;
    if (want[i] !== have[i]) return false;
  }
  return want.length === have.length;
}

class TokenBucket {
  private tokens: number;
  private last = performance.now();

  constructor(readonly ratePerSecond: number, readonly burst: number) {
    this.tokens = burst;
  }

  private refill(): void {
    const now = performance.now();
    this.tokens = Math.min(
      this.burst,
      this.tokens + ((now - this.last) / 1000) * this.ratePerSecond,
    );
    this.last = now;
  }

  available(): boolean {
    this.refill();
    return this.tokens >= 1;
  }

  take(): void {
    this.tokens -= 1;
  }
}

export interface LatencyConfig {
  minMs: number;
  maxMs: number;
}

export interface RateLimitConfig {
  /** All API requests per second (Stripe: 100 live, 25 test). null = unlimited. */
  globalPerSecond: number | null;
  /** Search requests per second (Stripe: 20). null = unlimited. */
  searchPerSecond: number | null;
  /**
   * Requests per second to each named operation (route), Search excepted (Stripe: 25 unless an
   * endpoint says otherwise). null = unlimited.
   */
  endpointPerSecond: number | null;
  /** Bucket size in seconds' worth of tokens (default 1). */
  burstSeconds: number;
}

export class Faults {
  latency: LatencyConfig = { minMs: 0, maxMs: 0 };
  private rateConfig: RateLimitConfig = {
    globalPerSecond: null,
    searchPerSecond: null,
    endpointPerSecond: null,
    burstSeconds: 1,
  };
  private globalBucket: TokenBucket | null = null;
  private searchBucket: TokenBucket | null = null;
  private endpointBuckets = new Map<string, TokenBucket>();
  private active: ActiveFault[] = [];
  private nextId = 0;

  setLatency(cfg: { fixedMs?: number; minMs?: number; maxMs?: number }): LatencyConfig {
    const min = cfg.fixedMs ?? cfg.minMs ?? 0;
    const max = cfg.fixedMs ?? cfg.maxMs ?? min;
    if (!(min >= 0 && max >= min)) throw new Error("latency needs 0 <= minMs <= maxMs");
    this.latency = { minMs: min, maxMs: max };
    return this.latency;
  }

  latencyMs(): number {
    const { minMs, maxMs } = this.latency;
    return minMs + Math.random() * (maxMs - minMs);
  }

  get rateLimits(): RateLimitConfig {
    return { ...this.rateConfig };
  }

  setRateLimits(cfg: Partial<RateLimitConfig>): RateLimitConfig {
    this.rateConfig = { ...this.rateConfig, ...cfg };
    const { globalPerSecond: g, searchPerSecond: s, burstSeconds: b } = this.rateConfig;
    this.globalBucket = g ? new TokenBucket(g, Math.max(1, g * b)) : null;
    this.searchBucket = s ? new TokenBucket(s, Math.max(1, s * b)) : null;
    this.endpointBuckets.clear();
    return this.rateLimits;
  }

  private endpointBucket(route: string): TokenBucket | null {
    const e = this.rateConfig.endpointPerSecond;
    if (!e) return null;
    let bucket = this.endpointBuckets.get(route);
    if (!bucket) {
      bucket = new TokenBucket(e, Math.max(1, e * this.rateConfig.burstSeconds));
      this.endpointBuckets.set(route, bucket);
    }
    return bucket;
  }

  /**
   * Takes a token from every limiter the request counts against (the account's, and Search's or
   * its own operation's); returns the limiter's reason when the request must be refused.
   */
  checkRate(isSearch: boolean, route = ""): "global-rate" | "endpoint-rate" | null {
    const own = isSearch ? this.searchBucket : this.endpointBucket(route);
    if (this.globalBucket && !this.globalBucket.available()) return "global-rate";
    if (own && !own.available()) return "endpoint-rate";
    this.globalBucket?.take();
    own?.take();
    return null;
  }

  add(spec: FaultSpec): ActiveFault {
    validateFault(spec);
    const fault: ActiveFault = {
      ...spec,
      id: `fault_${++this.nextId}`,
      hits: 0,
      skipped: 0,
      remaining: spec.count ?? 1,
    };
    // Resolve the default once, so faults() shows whether this error will be replayed.
    if (["error", "lock_timeout", "rate_limit"].includes(spec.kind)) {
      fault.replay = replaysError(spec);
    }
    this.active.push(fault);
    return fault;
  }

  list(): ActiveFault[] {
    return this.active.map((f) => ({ ...f }));
  }

  remove(id: string): boolean {
    const before = this.active.length;
    this.active = this.active.filter((f) => f.id !== id);
    return this.active.length < before;
  }

  clearFaults(): void {
    this.active = [];
  }

  /** Consumes and returns the first fault of `stage` matching this request, if any. */
  take(stage: FaultStage, method: string, path: string): ActiveFault | undefined {
    for (const f of this.active) {
      if (f.remaining !== "always" && f.remaining <= 0) continue;
      if (faultStage(f) !== stage || !routeMatches(f.route, method, path)) continue;
      if (f.skipped < (f.skip ?? 0)) {
        f.skipped++;
        continue;
      }
      f.hits++;
      if (f.remaining !== "always") f.remaining--;
      return { ...f };
    }
    return undefined;
  }

  reset(): void {
    this.latency = { minMs: 0, maxMs: 0 };
    this.setRateLimits({ globalPerSecond: null, searchPerSecond: null, burstSeconds: 1 });
    this.active = [];
  }
}
