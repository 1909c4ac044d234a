/**
 * The emulator clock: real time plus an offset that tests can advance instantly (to cross the
 * 24 h idempotency window, make lagged Search results visible, ...).
 */
export class Clock {
  private offsetMs = 0;
  private lastCreated = 0;

  /** Milliseconds since the epoch on the emulator clock. */
  nowMs(): number {
    return Date.now() + this.offsetMs;
  }

  /** Whole seconds on the emulator clock. */
  nowSeconds(): number {
    return Math.floor(this.nowMs() / 1000);
  }

  /** A `created` value that never goes backwards, even if the offset is reset. */
  created(): number {
    const now = this.nowSeconds();
    if (now > this.lastCreated) this.lastCreated = now;
    return this.lastCreated;
  }

  advance(seconds: number): void {
    if (!Number.isFinite(seconds) || seconds < 0) throw new RangeError("seconds must be >= 0");
    this.offsetMs += seconds * 1000;
  }

  offsetSeconds(): number {
    return this.offsetMs / 1000;
  }

  reset(): void {
    this.offsetMs = 0;
  }
}
