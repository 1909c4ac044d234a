/**
 * Flag parsing for the operator CLI: each command declares its flags once, and gets parsing,
 * validation errors that name the flag, and its --help text from that declaration.
 */
import { parseArgs } from "node:util";

/** One flag of a command. */
export interface FlagSpec {
  type: "string" | "boolean";
  description: string;
  /** Shown in help, e.g. "YYYY-MM". */
  placeholder?: string;
  required?: boolean;
}

/** A command: its name, a one-line summary, its flags and its longer help. */
export interface CommandSpec {
  name: string;
  summary: string;
  usage: string;
  flags: Record<string, FlagSpec>;
  details?: string;
}

/** `--month YYYY-MM`, required. */
export const MONTH_FLAG: FlagSpec = {
  type: "string",
  placeholder: "YYYY-MM",
  description: "the billed month",
  required: true,
};

/** `--tenants a/,b/`: limit a command to some tenants. */
export const TENANTS_FLAG: FlagSpec = {
  type: "string",
  placeholder: "a/,b/",
  description: "only these tenants",
};

/** A flag was missing, unknown or malformed; the message names it. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

const COMMON_FLAGS: Record<string, FlagSpec> = {
  json: { type: "boolean", description: "print machine-readable JSON on stdout" },
  help: { type: "boolean", description: "show this help" },
};

/** Parsed flags: strings and booleans by name. */
export type Flags = Record<string, string | boolean | undefined>;

/** Parses `argv` against the command's flags (plus --json and --help). */
export function parseFlags(spec: CommandSpec, argv: string[]): Flags {
  const all = { ...spec.flags, ...COMMON_FLAGS };
  const options: Record<string, { type: "string" | "boolean" }> = {};
  for (const [name, flag] of Object.entries(all)) options[name] = { type: flag.type };
  let values: Flags;
  try {
    const parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: false });
    values = parsed.values as Flags;
  } catch (err) {
    throw new UsageError(
      `${spec.name}: ${(err as Error).message.replace(/\. To specify.*$/s, "")}`,
    );
  }
  if (values.help) return values;
  for (const [name, flag] of Object.entries(spec.flags)) {
    if (flag.required && (values[name] === undefined || values[name] === "")) {
      throw new UsageError(`${spec.name}: --${name} is required (${flag.description})`);
    }
  }
  return values;
}

/** The help text of a command. */
export function helpText(spec: CommandSpec): string {
  const all = { ...spec.flags, ...COMMON_FLAGS };
  const rows = Object.entries(all).map(([name, flag]) => {
    const left = `--${name}${flag.type === "string" ? ` ${flag.placeholder ?? "VALUE"}` : ""}`;
    return [left, `${flag.description}${flag.required ? " (required)" : ""}`];
  });
  const width = Math.max(...rows.map(([left]) => left.length));
  const lines = [
    `${spec.summary}`,
    "",
    `Usage: deno task billing ${spec.usage}`,
    "",
    "Options:",
    ...rows.map(([left, right]) => `  ${left.padEnd(width)}  ${right}`),
  ];
  if (spec.details) lines.push("", spec.details.trim());
  return lines.join("\n");
}

/** `YYYY-MM` (or legacy `YYYY-MM-01`) to the first day of the month, `YYYY-MM-01`. */
export function parseMonth(value: unknown, flag = "month"): string {
  if (typeof value !== "string") throw new UsageError(`--${flag} is required (YYYY-MM)`);
  const m = /^(\d{4})-(\d{2})(?:-01)?$/.exec(value);
  const month = m ? Number(m[2]) : 0;
  if (!m || month < 1 || month > 12) {
    throw new UsageError(`--${flag} must be YYYY-MM (or YYYY-MM-01), got "${value}"`);
  }
  return `${m[1]}-${m[2]}-01`;
}

/** `a/,b/` to a list of tenant slugs, each ending in a slash. */
export function parseTenants(value: unknown, flag = "tenants"): string[] | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "string") throw new UsageError(`--${flag} takes a comma-separated list`);
  const tenants = value.split(",").map((t) => t.trim()).filter((t) => t !== "");
  for (const t of tenants) {
    if (!/^[A-Za-z0-9_.-]+\/$/.test(t)) {
      throw new UsageError(`--${flag}: "${t}" is not a tenant (one path segment ending in "/")`);
    }
  }
  if (tenants.length === 0) throw new UsageError(`--${flag} is empty`);
  return tenants;
}
