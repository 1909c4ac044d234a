/** JSON value types shared by the emulator modules. */
export type Json = null | boolean | number | string | Json[] | JsonObject;
export interface JsonObject {
  [key: string]: Json;
}
/** A metadata map as Stripe renders it: string keys, string values. */
export type Metadata = Record<string, string>;

/** Deep copy through JSON, for snapshots that must not alias live state. */
export function cloneJson<T extends Json>(value: T): T {
  return structuredClone(value);
}

function isPlainObject(v: Json | undefined): v is JsonObject {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/**
 * Stripe's `previous_attributes`: for each changed key the old value; nested hashes (metadata,
 * invoice_settings) recurse, and keys that did not exist before appear as null.
 */
export function previousAttributes(before: JsonObject, after: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const key of new Set([...Object.keys(before), ...Object.keys(after)])) {
    const b = before[key];
    const a = after[key];
    if (isPlainObject(b) && isPlainObject(a)) {
      const nested = previousAttributes(b, a);
      if (Object.keys(nested).length > 0) out[key] = nested;
    } else if (JSON.stringify(b) !== JSON.stringify(a)) {
      out[key] = b === undefined ? null : b;
    }
  }
  return out;
}
