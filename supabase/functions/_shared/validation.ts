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

/**
 * Billing dates lie in these years. Postgres has no year 0000 (and the engine adds months to
 * the last one), so anything outside is refused here rather than failing in the database.
 */
export const MIN_BILLING_YEAR = 1970;
export const MAX_BILLING_YEAR = 2999;

function yearInRange(s: string): boolean {
  const year = Number(s.slice(0, 4));
  return year >= MIN_BILLING_YEAR && year <= MAX_BILLING_YEAR;
}

const YEAR_RANGE_MESSAGE = `must be in the years ${MIN_BILLING_YEAR} to ${MAX_BILLING_YEAR}`;

/** A calendar date, YYYY-MM-DD. */
export const isoDateSchema = z.string().regex(
  /^\d{4}-\d{2}-\d{2}$/,
  "must be a date, YYYY-MM-DD",
).refine((s) => {
  // Round-trip: Date.parse accepts 2030-02-30 as March 2.
  const t = Date.parse(`${s}T00:00:00Z`);
  return !Number.isNaN(t) && new Date(t).toISOString().slice(0, 10) === s;
}, "must be a valid date").refine(yearInRange, YEAR_RANGE_MESSAGE);

/** A billed month, YYYY-MM. */
export const monthSchema = z.string().regex(
  /^\d{4}-(0[1-9]|1[0-2])$/,
  "must be a month, YYYY-MM",
).refine(yearInRange, YEAR_RANGE_MESSAGE);

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
