/** Output for people: aligned tables, money, a progress bar on stderr. */

/** Cents to `$1,234.56` (negative as `-$1.00`). */
export function money(cents: number | bigint | null | undefined): string {
  if (cents === null || cents === undefined) return "-";
  const n = Number(cents);
  const sign = n < 0 ? "-" : "";
  const abs = Math.abs(n);
  const dollars = Math.floor(abs / 100).toLocaleString("en-US");
  return `${sign}$${dollars}.${String(abs % 100).padStart(2, "0")}`;
}

/** A column: header, how to read a cell, and whether to right-align it. */
export interface Column<T> {
  header: string;
  value: (row: T) => string | number | null | undefined;
  align?: "left" | "right";
}

/** Renders rows as an aligned text table with a header rule. */
export function table<T>(rows: T[], columns: Column<T>[]): string {
  const cells = rows.map((row) => columns.map((c) => String(c.value(row) ?? "-")));
  const widths = columns.map((c, i) => Math.max(c.header.length, ...cells.map((r) => r[i].length)));
  const fmt = (values: string[]) =>
    values
      .map((v, i) => columns[i].align === "right" ? v.padStart(widths[i]) : v.padEnd(widths[i]))
      .join("  ")
      .trimEnd();
  return [
    fmt(columns.map((c) => c.header)),
    fmt(widths.map((w) => "-".repeat(w))),
    ...cells.map(fmt),
  ].join("\n");
}

/** Bold when stdout is a terminal and NO_COLOR is unset. */
export function bold(text: string): string {
  return Deno.stdout.isTerminal() && !Deno.env.get("NO_COLOR") ? `\x1b[1m${text}\x1b[0m` : text;
}

/** A progress bar drawn on stderr when it is a terminal; silent otherwise. */
export class Progress {
  private readonly enabled = Deno.stderr.isTerminal();
  private last = 0;
  private readonly encoder = new TextEncoder();

  constructor(private readonly label: string, private total: number) {}

  /** Redraws at most ten times a second. */
  update(done: number, note = ""): void {
    if (!this.enabled) return;
    const now = performance.now();
    if (done < this.total && now - this.last < 100) return;
    this.last = now;
    const width = 30;
    const frac = this.total === 0 ? 1 : Math.min(1, done / this.total);
    const filled = Math.round(frac * width);
    const bar = "#".repeat(filled) + ".".repeat(width - filled);
    Deno.stderr.writeSync(
      this.encoder.encode(`\r${this.label} [${bar}] ${done}/${this.total} ${note}`.padEnd(80)),
    );
  }

  setTotal(total: number): void {
    this.total = total;
  }

  done(): void {
    if (this.enabled) Deno.stderr.writeSync(this.encoder.encode("\r" + " ".repeat(80) + "\r"));
  }
}

/** Prints Stripe call counts as one line: `12 Stripe calls (POST /v1/invoices 4, ...)`. */
export function callsLine(
  stats: { total: number; byEndpoint: Record<string, number>; search: number; writes: number },
): string {
  const parts = Object.entries(stats.byEndpoint)
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .map(([endpoint, n]) => `${endpoint} ${n}`);
  return `${stats.total} Stripe calls, ${stats.writes} writes, ${stats.search} searches` +
    (parts.length ? ` (${parts.join(", ")})` : "");
}
