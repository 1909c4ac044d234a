/** Typed, validating access to a decoded parameter tree, with Stripe's error messages. */
import { invalidParam, missingParam, unknownParam } from "./errors.ts";
import type { FormMap, FormValue } from "./form.ts";
import { normalizeDecimal } from "./decimal.ts";
import type { Metadata } from "./json.ts";

const INTEGER = /^-?[0-9]{1,15}$/;
const DECIMAL = /^-?[0-9]{1,15}(\.[0-9]{1,12})?$/;

/** `metadata[k]=` deletes k; `metadata=` clears everything; other keys are set. */
export interface MetadataPatch {
  clear: boolean;
  entries: Record<string, string | null>;
}

export class Params {
  constructor(readonly tree: FormMap, readonly prefix = "") {}

  static empty(): Params {
    return new Params(Object.create(null) as FormMap);
  }

  /** The name Stripe reports in `param`, e.g. `lines[0][amount]`. */
  name(key: string): string {
    return this.prefix ? `${this.prefix}[${key}]` : key;
  }

  has(key: string): boolean {
    return this.tree[key] !== undefined;
  }

  raw(key: string): FormValue | undefined {
    return this.tree[key];
  }

  keys(): string[] {
    return Object.keys(this.tree);
  }

  /** Rejects any key outside `allowed` (and `expand`, valid everywhere at the top level). */
  only(allowed: readonly string[]): this {
    for (const key of Object.keys(this.tree)) {
      if (key === "expand" && !this.prefix) continue;
      if (!allowed.includes(key)) throw unknownParam(this.name(key));
    }
    return this;
  }

  /** True when the caller sent `key=` (the "unset" convention). */
  isEmpty(key: string): boolean {
    return this.tree[key] === "";
  }

  str(key: string, opts: { required?: boolean; max?: number; nonEmpty?: boolean } = {}):
    | string
    | undefined {
    const v = this.tree[key];
    if (v === undefined) {
      if (opts.required) throw missingParam(this.name(key));
      return undefined;
    }
    if (typeof v !== "string") {
      throw invalidParam(this.name(key), `Invalid string: ${this.name(key)} must be a string`);
    }
    if (v === "" && (opts.required || opts.nonEmpty)) {
      throw invalidParam(
        this.name(key),
        `You passed an empty string for '${this.name(key)}'. We assume empty values are an ` +
          `attempt to unset a parameter; however '${this.name(key)}' cannot be unset. You ` +
          `should remove '${this.name(key)}' from your request or supply a non-empty value.`,
        "parameter_invalid_empty",
      );
    }
    if (opts.max !== undefined && v.length > opts.max) {
      throw invalidParam(
        this.name(key),
        `Invalid string: ${v.slice(0, 20)}...; must be at most ${opts.max} characters`,
      );
    }
    return v;
  }

  /** A nullable string field: `key=` means null. */
  nullableStr(key: string, max?: number): string | null | undefined {
    const v = this.str(key, { max });
    if (v === undefined) return undefined;
    return v === "" ? null : v;
  }

  int(key: string, opts: { required?: boolean; min?: number; max?: number } = {}):
    | number
    | undefined {
    const v = this.str(key, { required: opts.required, nonEmpty: opts.required });
    if (v === undefined || v === "") return undefined;
    if (!INTEGER.test(v)) {
      throw invalidParam(this.name(key), `Invalid integer: ${v}`, "parameter_invalid_integer");
    }
    const n = Number(v);
    if (opts.min !== undefined && n < opts.min) {
      throw invalidParam(
        this.name(key),
        `This value must be greater than or equal to ${opts.min}.`,
        "parameter_invalid_integer",
      );
    }
    if (opts.max !== undefined && n > opts.max) {
      throw invalidParam(
        this.name(key),
        `This value must be less than or equal to ${opts.max} (it currently is '${n}').`,
        "parameter_invalid_integer",
      );
    }
    return n;
  }

  /**
   * A decimal string (e.g. `unit_amount_decimal`), at most 12 decimal places, kept as text to
   * avoid float drift and returned in its shortest form (`"100.250"` -> `"100.25"`).
   */
  decimal(key: string, opts: { required?: boolean; nonNegative?: boolean } = {}):
    | string
    | undefined {
    const v = this.str(key, { required: opts.required, nonEmpty: opts.required });
    if (v === undefined || v === "") return undefined;
    if (!DECIMAL.test(v)) {
      throw invalidParam(
        this.name(key),
        `Invalid decimal: ${v}; must be a decimal with at most 12 decimal places`,
      );
    }
    const canonical = normalizeDecimal(v);
    if (opts.nonNegative && canonical.startsWith("-")) {
      throw invalidParam(this.name(key), `Invalid ${this.name(key)}: must be non-negative`);
    }
    return canonical;
  }

  bool(key: string): boolean | undefined {
    const v = this.str(key);
    if (v === undefined || v === "") return undefined;
    if (v === "true") return true;
    if (v === "false") return false;
    throw invalidParam(this.name(key), `Invalid boolean: ${v}`);
  }

  oneOf<T extends string>(key: string, values: readonly T[], opts: { required?: boolean } = {}):
    | T
    | undefined {
    const v = this.str(key, { required: opts.required, nonEmpty: opts.required });
    if (v === undefined || v === "") return undefined;
    if (!(values as readonly string[]).includes(v)) {
      const list = values.length > 1
        ? `${values.slice(0, -1).join(", ")}, or ${values[values.length - 1]}`
        : values[0];
      throw invalidParam(this.name(key), `Invalid ${this.name(key)}: must be one of ${list}`);
    }
    return v as T;
  }

  /** A nested hash; `undefined` if absent or sent as `key=`. */
  obj(key: string, opts: { required?: boolean } = {}): Params | undefined {
    const v = this.tree[key];
    if (v === undefined || v === "") {
      if (opts.required) throw missingParam(this.name(key));
      return undefined;
    }
    if (typeof v === "string" || Array.isArray(v)) {
      throw invalidParam(this.name(key), `Invalid hash: ${this.name(key)} must be a hash`);
    }
    return new Params(v, this.name(key));
  }

  /** An array of hashes, e.g. `lines[0][amount]`. */
  list(key: string, opts: { required?: boolean } = {}): Params[] | undefined {
    const v = this.tree[key];
    if (v === undefined || v === "") {
      if (opts.required) throw missingParam(this.name(key));
      return undefined;
    }
    if (!Array.isArray(v)) {
      throw invalidParam(this.name(key), `Invalid array: ${this.name(key)} must be an array`);
    }
    return v.map((item, i) => {
      const name = `${this.name(key)}[${i}]`;
      if (typeof item === "string" || Array.isArray(item)) {
        throw invalidParam(name, `Invalid hash: ${name} must be a hash`);
      }
      return new Params(item, name);
    });
  }

  /** An array of strings, e.g. `expand[0]=customer`; a single string counts as one entry. */
  strList(key: string): string[] | undefined {
    const v = this.tree[key];
    if (v === undefined || v === "") return v === "" ? [] : undefined;
    if (typeof v === "string") return [v];
    if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) {
      throw invalidParam(this.name(key), `Invalid array: ${this.name(key)} must be strings`);
    }
    return v as string[];
  }

  expand(): string[] {
    return this.strList("expand") ?? [];
  }

  metadata(key = "metadata"): MetadataPatch | undefined {
    const v = this.tree[key];
    if (v === undefined) return undefined;
    if (v === "") return { clear: true, entries: {} };
    if (typeof v === "string") {
      throw invalidParam(this.name(key), `Invalid hash: ${this.name(key)} must be a hash`);
    }
    // Numeric keys arrive as an array after form decoding; restore them as keys.
    const pairs: [string, FormValue][] = Array.isArray(v)
      ? v.map((x, i) => [String(i), x])
      : Object.entries(v);
    const entries: Record<string, string | null> = {};
    for (const [k, val] of pairs) {
      const name = `${this.name(key)}[${k}]`;
      if (typeof val !== "string") throw invalidParam(name, `Invalid string: ${name}`);
      if (k.length > 40) {
        throw invalidParam(name, `Metadata keys can have a maximum length of 40 characters.`);
      }
      if (val.length > 500) {
        throw invalidParam(name, `Metadata values can have a maximum length of 500 characters.`);
      }
      entries[k] = val === "" ? null : val;
    }
    return { clear: false, entries };
  }
}

/** Applies a metadata patch, enforcing Stripe's 50-key limit. */
export function applyMetadata(
  current: Metadata,
  patch: MetadataPatch | undefined,
  param = "metadata",
): Metadata {
  if (!patch) return current;
  const next: Metadata = patch.clear ? {} : { ...current };
  for (const [k, v] of Object.entries(patch.entries)) {
    if (v === null) delete next[k];
    else next[k] = v;
  }
  if (Object.keys(next).length > 50) {
    throw invalidParam(param, "Metadata can have at most 50 keys.");
  }
  return next;
}
