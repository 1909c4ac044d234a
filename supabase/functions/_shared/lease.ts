/**
 * A worker's lease on one run item, as the executor sees it: no Stripe write is sent, or sent
 * again, unless the lease is held with room to spare, and the lease is kept alive while a call is
 * in flight. A worker that can no longer extend its lease (another worker took the item, the
 * database is unreachable) stops writing; whoever holds the item next replays the same keys.
 */
import type { Sql } from "./db.ts";

/** The worker no longer holds the item (or cannot prove it does). */
export class LeaseLostError extends Error {
  /** Postgres' lock_not_available, as the queue functions raise it. */
  readonly code = "55P03";
  constructor(detail: string) {
    super(`lease lost: ${detail}`);
    this.name = "LeaseLostError";
  }
}

export interface LeaseOptions {
  sql: Sql;
  runId: string;
  itemNo: number;
  worker: string;
  expiresAt: Date;
  leaseSeconds: number;
  now?: () => Date;
}

export class ItemLease {
  private expiresAt: Date;
  private lostReason: string | null = null;
  private readonly now: () => Date;

  constructor(private readonly o: LeaseOptions) {
    this.expiresAt = o.expiresAt;
    this.now = o.now ?? (() => new Date());
  }

  /** When the lease ends unless extended. */
  get expires(): Date {
    return this.expiresAt;
  }

  private remainingMs(): number {
    return this.expiresAt.getTime() - this.now().getTime();
  }

  /** Extends the lease by its full length; fenced in SQL by owner and expiry. */
  async extend(): Promise<void> {
    if (this.lostReason) throw new LeaseLostError(this.lostReason);
    try {
      const [row] = await this.o.sql<{ expires: Date }[]>`
        select internal.extend_publish_item_lease(${this.o.runId}::uuid, ${this.o.itemNo},
          ${this.o.worker}) as expires`;
      this.expiresAt = new Date(row.expires);
    } catch (err) {
      this.lostReason = err instanceof Error ? err.message : String(err);
      throw new LeaseLostError(this.lostReason);
    }
  }

  /** Before each attempt of a write: held, with at least half the lease ahead. */
  async ensure(): Promise<void> {
    if (this.lostReason) throw new LeaseLostError(this.lostReason);
    if (this.remainingMs() < (this.o.leaseSeconds * 1000) / 2) await this.extend();
    if (this.remainingMs() <= 0) throw new LeaseLostError("the lease has expired");
  }

  /** Runs `call` while extending the lease every third of its length. */
  async during<T>(call: () => Promise<T>): Promise<T> {
    const every = Math.max(250, (this.o.leaseSeconds * 1000) / 3);
    const timer = setInterval(() => {
      this.extend().catch(() => {/* recorded in lostReason; the next ensure() throws */});
    }, every);
    try {
      return await call();
    } finally {
      clearInterval(timer);
    }
  }

  /** Whether a heartbeat or check found the lease gone. */
  get lost(): boolean {
    return this.lostReason !== null;
  }
}
