/** Every SDK-visible request, for tests and benchmarks to count Stripe calls by endpoint. */
export interface CallRecord {
  seq: number;
  /** Wall-clock epoch milliseconds when the request arrived. */
  at: number;
  method: string;
  /** Route template, e.g. `GET /v1/invoices/:id`. */
  route: string;
  path: string;
  /** HTTP status sent; 0 when the connection was closed before any byte was sent. */
  status: number;
  requestId: string;
  idempotencyKey: string | null;
  replayed: boolean;
  /** On a replay, the `requestId` of the request whose saved response was sent. */
  originalRequestId: string | null;
  /** Whether the endpoint's handler ran (a write may be applied even if the client saw none). */
  executed: boolean;
  /** Injected fault or limiter that shaped the response, e.g. `drop:after_headers`. */
  fault: string | null;
  search: boolean;
  write: boolean;
  durationMs: number;
}

export interface CallSummary {
  total: number;
  searches: number;
  writes: number;
  byRoute: Record<string, number>;
  byStatus: Record<string, number>;
}

export class CallLog {
  private entries: CallRecord[] = [];
  private seq = 0;
  private summaryState: CallSummary = CallLog.emptySummary();

  constructor(public maxEntries = 200_000) {}

  private static emptySummary(): CallSummary {
    return { total: 0, searches: 0, writes: 0, byRoute: {}, byStatus: {} };
  }

  record(r: Omit<CallRecord, "seq">): void {
    const rec = { seq: ++this.seq, ...r };
    this.entries.push(rec);
    if (this.entries.length > this.maxEntries) {
      this.entries.splice(0, this.entries.length - this.maxEntries);
    }
    const s = this.summaryState;
    s.total++;
    if (rec.search) s.searches++;
    if (rec.write) s.writes++;
    s.byRoute[rec.route] = (s.byRoute[rec.route] ?? 0) + 1;
    s.byStatus[String(rec.status)] = (s.byStatus[String(rec.status)] ?? 0) + 1;
  }

  /** Records with `seq` greater than `since`. */
  list(since = 0): CallRecord[] {
    if (since <= 0) return [...this.entries];
    return this.entries.filter((e) => e.seq > since);
  }

  summary(): CallSummary {
    return structuredClone(this.summaryState);
  }

  /** Clears the log and counters (sequence numbers keep increasing). */
  reset(): void {
    this.entries = [];
    this.summaryState = CallLog.emptySummary();
  }
}
