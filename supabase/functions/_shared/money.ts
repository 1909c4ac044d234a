/**
 * The one money rule, shared by publish, drift and finalize: what Stripe collects for a bill is
 * the bill's subtotal, in integer cents, and nothing else. Each bill line becomes one
 * amount-only invoice line; a line whose own subtotal has a fraction of a cent (legacy reports
 * with fractional counts) is apportioned so the lines sum to the subtotal exactly.
 */

/** A bill line as far as money goes (cents; count and subtotal may be fractional). */
export interface MoneyLine {
  count: number;
  rate: number;
  subtotal: number;
}

/** Fractions of a cent are kept to this many parts per cent (six decimal places). */
const PARTS = 1_000_000;

/** The bill's lines as integer cents summing to `subtotal`, or why that cannot be done. */
export type LineCents =
  | { ok: true; cents: number[] }
  | { ok: false; detail: string };

/**
 * Integer cents per line that sum to the bill's subtotal. Each line gets its subtotal rounded
 * down, and the cents still missing go to the lines with the largest dropped fractions (earlier
 * lines first on ties), so no line moves by a cent or more. A bill whose lines do not add up to
 * its subtotal (off by a cent or more) is refused rather than guessed at.
 */
export function lineCents(subtotal: number, lines: readonly MoneyLine[]): LineCents {
  if (!Number.isSafeInteger(subtotal)) {
    return { ok: false, detail: `subtotal ${subtotal} is not a whole number of cents` };
  }
  const parts = lines.map((l) => Math.round(l.subtotal * PARTS));
  if (parts.some((p) => !Number.isSafeInteger(p))) {
    return { ok: false, detail: "a line subtotal is not a finite amount of cents" };
  }
  const sumParts = parts.reduce((a, b) => a + b, 0);
  if (Math.abs(sumParts - subtotal * PARTS) >= PARTS) {
    return {
      ok: false,
      detail: `the lines add up to ${sumParts / PARTS}¢ but the subtotal is ${subtotal}¢`,
    };
  }
  const cents = parts.map((p) => Math.floor(p / PARTS));
  let missing = subtotal - cents.reduce((a, b) => a + b, 0);
  // Largest dropped fraction first; stable on ties.
  const order = parts.map((p, i) => ({ i, frac: p - cents[i] * PARTS }))
    .sort((a, b) => b.frac - a.frac || a.i - b.i);
  for (const { i, frac } of order) {
    if (missing <= 0) break;
    if (frac === 0) break;
    cents[i] += 1;
    missing -= 1;
  }
  if (missing !== 0) {
    return { ok: false, detail: `cannot apportion ${subtotal}¢ over the bill's lines` };
  }
  return { ok: true, cents };
}

/** What Stripe must collect for a bill: its subtotal (the invoice `total`). */
export function expectedInvoiceTotal(bill: { subtotal: number }): number {
  return bill.subtotal;
}

/** `count` as the line shows it: up to six decimals, no trailing zeros. */
export function formatCount(count: number): string {
  return String(Number(count.toFixed(6)));
}

/** Cents as dollars with at least two decimals (sub-cent rates keep their digits). */
export function formatRate(cents: number): string {
  const dollars = Number((cents / 100).toFixed(8));
  const [whole, frac = ""] = String(Math.abs(dollars)).split(".");
  return `${dollars < 0 ? "-" : ""}$${whole}.${frac.padEnd(2, "0")}`;
}
