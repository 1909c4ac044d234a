import assert from "node:assert/strict";
import { fromUnixSeconds, toUnixSeconds } from "./units.ts";

Deno.test("fromUnixSeconds() and toUnixSeconds() convert Stripe timestamps", () => {
  assert.equal(fromUnixSeconds(1_900_000_000).toISOString(), "2030-03-17T17:46:40.000Z");
  assert.equal(toUnixSeconds(new Date("2030-03-17T17:46:40.999Z")), 1_900_000_000);
  assert.equal(toUnixSeconds(fromUnixSeconds(1_700_000_001)), 1_700_000_001);
});
