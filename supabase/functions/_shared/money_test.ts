import assert from "node:assert/strict";
import { lineCents } from "./money.ts";

/** A small seeded generator (mulberry32), so a failure can be replayed from its seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

Deno.test("lineCents: the 100.25 h × 14¢ line of the report (1403.5¢) sums to the bill's subtotal", () => {
  const lines = [
    { count: 100.25, rate: 14, subtotal: 1403.5 },
    { count: 1, rate: 5000, subtotal: 5000 },
  ];
  assert.deepEqual(lineCents(6404, lines), { ok: true, cents: [1404, 5000] });
  assert.deepEqual(lineCents(6403, lines), { ok: true, cents: [1403, 5000] });
  const off = lineCents(6414, lines);
  assert.equal(off.ok, false, "a subtotal 10¢ away from its lines is refused, not guessed");
});

Deno.test("lineCents: random counts and rates (half cents included) always sum to the subtotal", () => {
  const seed = Number(Deno.env.get("MONEY_SEED") ?? Date.now() % 2 ** 31);
  console.log(`lineCents property seed: ${seed} (MONEY_SEED=${seed} replays it)`);
  const next = rng(seed);
  const int = (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1));
  for (let round = 0; round < 5_000; round++) {
    const n = int(1, 8);
    // Counts in thousandths and integer-cent rates (credits negative), as exact integers.
    const milliCounts = Array.from({ length: n }, () => BigInt(int(0, 5_000_000)));
    const rates = Array.from({ length: n }, () => BigInt(int(-2_000, 20_000)));
    // Exact line subtotals in thousandths of a cent; the report keeps them to half cents.
    const exactMilli = milliCounts.map((c, i) => c * rates[i]);
    const halfCents = exactMilli.map((m) => {
      // Round to the nearest half cent (500 thousandths), halves away from zero.
      const q = (m * 2n + (m >= 0n ? 500n : -500n)) / 1000n;
      return q;
    });
    const subtotalsHalf = halfCents; // in half cents
    const sumHalf = subtotalsHalf.reduce((a, b) => a + b, 0n);
    // The bill's subtotal: the sum rounded to a whole cent, half up.
    const subtotal = Number(sumHalf >= 0n ? (sumHalf + 1n) / 2n : -((-sumHalf) / 2n));
    const lines = subtotalsHalf.map((h, i) => ({
      count: Number(milliCounts[i]) / 1000,
      rate: Number(rates[i]),
      subtotal: Number(h) / 2,
    }));
    const r = lineCents(subtotal, lines);
    const ctx = `seed ${seed} round ${round}: ${JSON.stringify({ subtotal, lines })}`;
    assert.ok(r.ok, ctx);
    if (!r.ok) continue;
    assert.equal(r.cents.reduce((a, b) => a + b, 0), subtotal, ctx);
    r.cents.forEach((c, i) => {
      assert.ok(Number.isInteger(c), ctx);
      assert.ok(Math.abs(c - lines[i].subtotal) < 1, `${ctx}: line ${i} moved a cent or more`);
    });
  }
});
