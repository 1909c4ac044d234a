/**
 * Unit conversions, in one place: Stripe's Unix seconds and JavaScript dates (milliseconds).
 */

/** A Stripe timestamp (Unix seconds) as a Date. */
export function fromUnixSeconds(seconds: number): Date {
  return new Date(seconds * 1000);
}

/** A Date as a Stripe timestamp (whole Unix seconds, rounded down). */
export function toUnixSeconds(date: Date): number {
  return Math.floor(date.getTime() / 1000);
}
