/**
 * Idempotency keys for every Stripe write. A key names the installation (created once per
 * database by a migration, so a reset database or a staging copy sharing the Stripe account
 * never replays another's requests), the bill, its generation, the operation and a hash of the
 * operation's payload: a late retry or a second worker sending the same write replays it; a
 * different write gets a different key.
 */
import { createHash } from "node:crypto";
import type { Sql } from "./db.ts";

/** Metadata key naming the installation that created an invoice or customer. */
export const INSTALLATION_KEY = "estuary.dev/installation";

const cache = new WeakMap<object, Promise<string>>();

/** This database's installation ID (read once per connection pool). */
export function installationId(sql: Sql): Promise<string> {
  let p = cache.get(sql);
  if (!p) {
    p = sql<{ id: string }[]>`select internal.installation_id()::text as id`.then((rows) =>
      rows[0].id
    );
    p.catch(() => cache.delete(sql));
    cache.set(sql, p);
  }
  return p;
}

/** JSON with object keys sorted, so equal payloads hash equally. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/** A short, stable digest of a payload. */
export function payloadHash(payload: unknown): string {
  return createHash("sha256").update(canonicalJson(payload)).digest("hex").slice(0, 24);
}

/**
 * The part of a key every write for one bill shares: installation, bill, generation (audited
 * releases and replacements) and salt (errors Stripe replayed for this bill, each of which
 * moves the bill on to fresh keys).
 */
export function billKeyBase(
  installation: string,
  billRef: string,
  generation: number,
  salt: number,
): string {
  return `flow:${installation}:${billRef}:g${generation}${salt > 0 ? `:s${salt}` : ""}`;
}

/** The key of one write: `<base>:<operation>:<payload hash>` (well under Stripe's 255). */
export function writeKey(base: string, operation: string, payload: unknown): string {
  return `${base}:${operation}:${payloadHash(payload)}`;
}

/** The customer create key: one per installation and tenant. */
export function customerCreateKey(installation: string, tenant: string): string {
  return `flow:${installation}:customer-create:${tenant}`;
}
