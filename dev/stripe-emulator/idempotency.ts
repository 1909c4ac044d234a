/**
 * Stripe's v1 idempotency layer: the first executed response for a key is saved (errors raised
 * once execution began included: 500s, lock_timeout 429s, state errors) and replayed; a different request under the same key is an `idempotency_error`;
 * a key still executing is a 409. Keys expire after a window measured on the emulator clock.
 */
import type { Clock } from "./clock.ts";

export interface SavedResponse {
  status: number;
  body: string;
  requestId: string;
  headers: Record<string, string>;
  /** Label of the injected fault this response is, if any (for the call log on replays). */
  fault: string | null;
}

interface Entry {
  endpoint: string;
  fingerprint: string;
  createdMs: number;
  response: SavedResponse | null;
}

export type Lookup =
  | { kind: "new" }
  | { kind: "replay"; response: SavedResponse }
  | { kind: "in_flight" }
  | { kind: "other_endpoint"; endpoint: string }
  | { kind: "other_params" };

export const DEFAULT_IDEMPOTENCY_TTL_SECONDS = 24 * 60 * 60;

export class IdempotencyStore {
  private entries = new Map<string, Entry>();
  ttlSeconds = DEFAULT_IDEMPOTENCY_TTL_SECONDS;

  constructor(private readonly clock: Clock) {}

  get size(): number {
    return this.entries.size;
  }

  private expired(e: Entry, now: number): boolean {
    return e.response !== null && now - e.createdMs >= this.ttlSeconds * 1000;
  }

  /** Looks the key up; on "new" the key is reserved (in flight) until complete() or abandon(). */
  begin(key: string, endpoint: string, fingerprint: string): Lookup {
    const now = this.clock.nowMs();
    const existing = this.entries.get(key);
    if (existing && !this.expired(existing, now)) {
      if (existing.endpoint !== endpoint) {
        return { kind: "other_endpoint", endpoint: existing.endpoint };
      }
      if (existing.fingerprint !== fingerprint) return { kind: "other_params" };
      if (!existing.response) return { kind: "in_flight" };
      return { kind: "replay", response: existing.response };
    }
    if (this.entries.size > 0 && this.entries.size % 4096 === 0) this.prune(now);
    this.entries.set(key, { endpoint, fingerprint, createdMs: now, response: null });
    return { kind: "new" };
  }

  complete(key: string, response: SavedResponse): void {
    const e = this.entries.get(key);
    if (e) e.response = response;
  }

  /** Forgets a reservation whose request never began executing (validation error, 429, ...). */
  abandon(key: string): void {
    const e = this.entries.get(key);
    if (e && !e.response) this.entries.delete(key);
  }

  private prune(now: number): void {
    for (const [k, e] of this.entries) if (this.expired(e, now)) this.entries.delete(k);
  }

  clear(): void {
    this.entries.clear();
  }
}
