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

/** `1 bill`, `2 bills`; `irregular` for nouns that do not just take an s. */
export function count(n: number, noun: string, irregular?: string): string {
  return `${n.toLocaleString("en-US")} ${n === 1 ? noun : irregular ?? `${noun}s`}`;
}

/** A column: header, how to read a cell, alignment, and whether it may wrap to fit. */
export interface Column<T> {
  header: string;
  value: (row: T) => string | number | null | undefined;
  align?: "left" | "right";
  /** Wrapped (on spaces, else hard) so the table fits `TABLE_WIDTH` columns. */
  wrap?: boolean;
  /** Printed under its row, indented and wrapped to the full width (long free text). */
  below?: boolean;
}

/** Tables are laid out for a terminal this wide. */
export const TABLE_WIDTH = 100;

function wrapText(text: string, width: number): string[] {
  const out: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/).filter((w) => w !== "")) {
    let w = word;
    while (w.length > width) {
      if (line) {
        out.push(line);
        line = "";
      }
      out.push(w.slice(0, width));
      w = w.slice(width);
    }
    if (!line) line = w;
    else if (line.length + 1 + w.length <= width) line += ` ${w}`;
    else {
      out.push(line);
      line = w;
    }
  }
  if (line || out.length === 0) out.push(line);
  return out;
}

/**
 * Renders rows as an aligned text table with a header rule. Wrapping columns share what the
 * others leave of {@link TABLE_WIDTH} (at least 20 each) and continue on following lines.
 */
export function table<T>(rows: T[], allColumns: Column<T>[], maxWidth = TABLE_WIDTH): string {
  const columns = allColumns.filter((c) => !c.below);
  const belowColumns = allColumns.filter((c) => c.below);
  const cells = rows.map((row) => columns.map((c) => String(c.value(row) ?? "-")));
  const widths = columns.map((c, i) => Math.max(c.header.length, ...cells.map((r) => r[i].length)));
  const wrapping = columns.map((c, i) => (c.wrap ? i : -1)).filter((i) => i >= 0);
  const total = () => widths.reduce((a, b) => a + b, 0) + 2 * (columns.length - 1);
  if (wrapping.length > 0 && total() > maxWidth) {
    const fixed = total() - wrapping.reduce((a, i) => a + widths[i], 0);
    const each = Math.max(12, Math.floor((maxWidth - fixed) / wrapping.length));
    for (const i of wrapping) {
      widths[i] = Math.min(widths[i], Math.max(each, columns[i].header.length));
    }
  }
  const fmt = (values: string[]) =>
    values
      .map((v, i) => columns[i].align === "right" ? v.padStart(widths[i]) : v.padEnd(widths[i]))
      .join("  ")
      .trimEnd();
  const lines = [fmt(columns.map((c) => c.header)), fmt(widths.map((w) => "-".repeat(w)))];
  cells.forEach((row, r) => {
    const parts = row.map((v, i) => (columns[i].wrap ? wrapText(v, widths[i]) : [v]));
    const height = Math.max(...parts.map((p) => p.length));
    for (let k = 0; k < height; k++) lines.push(fmt(parts.map((p) => p[k] ?? "")));
    for (const c of belowColumns) {
      const text = String(c.value(rows[r]) ?? "");
      if (text) { for (const l of wrapText(text, maxWidth - 4)) lines.push(`    ${l}`); }
    }
  });
  return lines.join("\n");
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
  return `${count(stats.total, "Stripe call")}, ${count(stats.writes, "write")}, ` +
    `${count(stats.search, "search", "searches")}` +
    (parts.length ? ` (${parts.join(", ")})` : "");
}
