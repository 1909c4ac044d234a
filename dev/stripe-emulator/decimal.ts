/**
 * Exact decimal strings (Stripe's `decimal_string` fields: `quantity_decimal`,
 * `unit_amount_decimal`): parsed to a scaled bigint so amounts never pass through floats.
 */

/** `units / 10^scale`. */
export interface ExactDecimal {
  units: bigint;
  scale: number;
}

/** How a fractional minor-unit amount becomes an integer (real Stripe's rule is not pinned). */
export type AmountRounding = "half_away_from_zero" | "half_even";

const FORMAT = /^(-?)([0-9]+)(?:\.([0-9]+))?$/;

/** Parses `-12.345`; null when the text is not a plain decimal literal. */
export function parseDecimal(text: string): ExactDecimal | null {
  const m = FORMAT.exec(text);
  if (!m) return null;
  const fraction = m[3] ?? "";
  const units = BigInt(m[2] + fraction);
  return { units: m[1] === "-" ? -units : units, scale: fraction.length };
}

/** The shortest form: no leading zeros, no trailing fractional zeros, no `-0`. */
export function formatDecimal(d: ExactDecimal): string {
  let { units, scale } = d;
  while (scale > 0 && units % 10n === 0n) {
    units /= 10n;
    scale--;
  }
  const negative = units < 0n;
  const digits = (negative ? -units : units).toString().padStart(scale + 1, "0");
  const whole = digits.slice(0, digits.length - scale);
  const fraction = digits.slice(digits.length - scale);
  return `${negative ? "-" : ""}${whole}${fraction ? `.${fraction}` : ""}`;
}

/** Canonical text of a decimal literal (throws on anything else). */
export function normalizeDecimal(text: string): string {
  const d = parseDecimal(text);
  if (!d) throw new RangeError(`not a decimal: ${text}`);
  return formatDecimal(d);
}

/** `a × b` rounded to an integer with `rounding`. */
export function multiplyRounded(a: string, b: string, rounding: AmountRounding): number {
  const x = parseDecimal(a);
  const y = parseDecimal(b);
  if (!x || !y) throw new RangeError(`not decimals: ${a}, ${b}`);
  const product = x.units * y.units;
  const divisor = 10n ** BigInt(x.scale + y.scale);
  const negative = product < 0n;
  const magnitude = negative ? -product : product;
  let whole = magnitude / divisor;
  const twiceRemainder = (magnitude % divisor) * 2n;
  if (
    twiceRemainder > divisor ||
    (twiceRemainder === divisor && (rounding === "half_away_from_zero" || whole % 2n === 1n))
  ) {
    whole += 1n;
  }
  return Number(negative ? -whole : whole);
}

/** The integer part, truncated toward zero (Stripe's `quantity` beside `quantity_decimal`). */
export function truncateDecimal(text: string): number {
  const d = parseDecimal(text);
  if (!d) throw new RangeError(`not a decimal: ${text}`);
  return Number(d.units / 10n ** BigInt(d.scale));
}
