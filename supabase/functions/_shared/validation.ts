/**
 * The only module that imports zod. Request bodies are parsed here so every bad input gets a 400
 * naming the field, and nothing downstream sees an unchecked value.
 */
import { z } from "npm:zod@4.6.7";
import { HttpError } from "./http.ts";

export { z };

/** A tenant slug: one catalog path segment ending in a slash, e.g. "acmeCo/". */
export const tenantSchema = z.string().regex(
  /^[A-Za-z0-9_.-]+\/$/,
  'must be a tenant name ending in "/"',
);

/** A Stripe ID with the given prefix, e.g. "pm" for payment methods. */
export function stripeIdSchema(prefix: string) {
  return z.string().regex(new RegExp(`^${prefix}_[A-Za-z0-9]+$`), `must look like ${prefix}_...`);
}

/** A calendar date, YYYY-MM-DD. */
export const isoDateSchema = z.string().regex(
  /^\d{4}-\d{2}-\d{2}$/,
  "must be a date, YYYY-MM-DD",
).refine((s) => {
  // Round-trip: Date.parse accepts 2030-02-30 as March 2.
  const t = Date.parse(`${s}T00:00:00Z`);
  return !Number.isNaN(t) && new Date(t).toISOString().slice(0, 10) === s;
}, "must be a valid date");

/** The value at `path` inside `value`, or undefined. */
function valueAt(value: unknown, path: readonly PropertyKey[]): unknown {
  let v = value;
  for (const key of path) {
    if (typeof v !== "object" || v === null) return undefined;
    v = (v as Record<PropertyKey, unknown>)[key];
  }
  return v;
}

/** The dotted path of a zod issue ("body" for the root). */
function fieldOf(path: readonly PropertyKey[]): string {
  return path.length === 0 ? "body" : path.map(String).join(".");
}

/**
 * Parses `value` with `schema`; throws a 400 {@link HttpError} naming the first bad field (zod
 * reports issues in schema order).
 */
export function parseOrThrow<T>(schema: z.ZodType<T>, value: unknown): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const field = fieldOf(issue.path);
  const message = issue.path.length > 0 && valueAt(value, issue.path) === undefined
    ? `${field} is required`
    : `${field}: ${issue.message}`;
  throw new HttpError(400, "invalid_request", message, field);
}
