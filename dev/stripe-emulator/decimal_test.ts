/** Unit tests for exact decimal arithmetic; expected values worked out by hand. */
import assert from "node:assert/strict";
import {
  formatDecimal,
  multiplyRounded,
  normalizeDecimal,
  parseDecimal,
  truncateDecimal,
} from "./decimal.ts";

Deno.test("decimal: shortest form", () => {
  assert.equal(normalizeDecimal("100.250"), "100.25");
  assert.equal(normalizeDecimal("007"), "7");
  assert.equal(normalizeDecimal("0.000000000001"), "0.000000000001");
  assert.equal(normalizeDecimal("-0.0"), "0");
  assert.equal(normalizeDecimal("-1.50"), "-1.5");
  assert.equal(normalizeDecimal("10.000"), "10");
  assert.equal(parseDecimal("1e3"), null);
  assert.equal(parseDecimal("1."), null);
  assert.equal(parseDecimal(".5"), null);
  assert.equal(formatDecimal({ units: 5n, scale: 3 }), "0.005");
});

Deno.test("decimal: truncated integer part", () => {
  assert.equal(truncateDecimal("100.25"), 100);
  assert.equal(truncateDecimal("0.999"), 0);
  assert.equal(truncateDecimal("-2.5"), -2);
  assert.equal(truncateDecimal("7"), 7);
});

Deno.test("decimal: products rounded half away from zero and half even", () => {
  // [unit, quantity, exact product, half away from zero, half even]
  const cases: [string, string, string, number, number][] = [
    ["14", "100.25", "1403.5", 1404, 1404],
    ["5", "0.5", "2.5", 3, 2],
    ["1", "1.5", "1.5", 2, 2],
    ["-5", "0.5", "-2.5", -3, -2],
    ["0.14", "100.25", "14.035", 14, 14],
    ["0.0125", "1000.4", "12.505", 13, 13],
    ["14.2", "100.25", "1423.55", 1424, 1424],
    ["0.5", "0.5", "0.25", 0, 0],
    ["0.000000000001", "0.000000000001", "0.000000000000000000000001", 0, 0],
    ["999999999999999", "1", "999999999999999", 999999999999999, 999999999999999],
    ["33.333333333333", "3", "99.999999999999", 100, 100],
    ["0.1", "0.2", "0.02", 0, 0],
    ["2.5", "1", "2.5", 3, 2],
    ["3.5", "1", "3.5", 4, 4],
    // Binary floats get these wrong (1.005 * 100 === 100.49999999999999 in JavaScript).
    ["1.005", "100", "100.5", 101, 100],
    ["0.285", "100", "28.5", 29, 28],
  ];
  for (const [unit, qty, exact, away, even] of cases) {
    assert.equal(
      multiplyRounded(unit, qty, "half_away_from_zero"),
      away,
      `${unit}×${qty}=${exact}`,
    );
    assert.equal(multiplyRounded(unit, qty, "half_even"), even, `${unit}×${qty}=${exact} (even)`);
  }
});
