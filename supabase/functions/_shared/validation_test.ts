import assert from "node:assert/strict";
import { HttpError } from "./http.ts";
import {
  isoDateSchema,
  monthSchema,
  parseOrThrow,
  stripeIdSchema,
  tenantSchema,
  z,
} from "./validation.ts";

function fieldOf(schema: z.ZodType, value: unknown): { field?: string; message: string } {
  try {
    parseOrThrow(schema, value);
  } catch (err) {
    assert.ok(err instanceof HttpError);
    assert.equal(err.status, 400);
    return { field: err.field, message: err.message };
  }
  throw new Error("expected a 400");
}

Deno.test("parseOrThrow() names the missing or malformed field", () => {
  const schema = z.object({
    tenant: tenantSchema,
    pm: stripeIdSchema("pm"),
    when: isoDateSchema.optional(),
    nested: z.object({ n: z.number() }).optional(),
  });
  assert.deepEqual(fieldOf(schema, {}), { field: "tenant", message: "tenant is required" });
  assert.equal(fieldOf(schema, { tenant: "x" }).field, "tenant");
  assert.equal(fieldOf(schema, { tenant: "x/", pm: "card_1" }).field, "pm");
  assert.equal(fieldOf(schema, { tenant: "x/", pm: "pm_1", when: "2030-02-30x" }).field, "when");
  assert.equal(fieldOf(schema, { tenant: "x/", pm: "pm_1", nested: { n: "1" } }).field, "nested.n");
  assert.equal(fieldOf(schema, "text").field, "body");
  assert.deepEqual(parseOrThrow(schema, { tenant: "x/", pm: "pm_1", extra: 1 }), {
    tenant: "x/",
    pm: "pm_1",
  });
});

Deno.test("isoDateSchema refuses impossible dates", () => {
  assert.equal(isoDateSchema.safeParse("2030-01-31").success, true);
  assert.equal(isoDateSchema.safeParse("2030-13-01").success, false);
  assert.equal(isoDateSchema.safeParse("2030-02-30").success, false);
  assert.equal(isoDateSchema.safeParse("2030-1-1").success, false);
});

Deno.test("isoDateSchema and monthSchema refuse years Postgres or the engine cannot take", () => {
  for (const date of ["0000-01-01", "0001-06-15", "1969-12-31", "3000-01-01"]) {
    assert.equal(isoDateSchema.safeParse(date).success, false, date);
  }
  for (const date of ["1970-01-01", "2999-12-31"]) {
    assert.equal(isoDateSchema.safeParse(date).success, true, date);
  }
  for (const month of ["0000-05", "1969-12", "3000-01"]) {
    assert.equal(monthSchema.safeParse(month).success, false, month);
  }
  assert.equal(monthSchema.safeParse("2026-10").success, true);
  assert.equal(monthSchema.safeParse("2026-13").success, false);
});
