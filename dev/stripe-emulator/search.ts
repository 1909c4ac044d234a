/**
 * Stripe Search: its query language (customer and invoice fields) and an index that can lag behind writes
 * (eventual consistency) so tests can prove nobody reads their own writes through Search.
 */
import { invalidParam } from "./errors.ts";
import type { Metadata } from "./json.ts";

export type FieldType = "token" | "string" | "numeric" | "metadata";
export type Operator = ":" | "~" | ">" | "<" | ">=" | "<=";

export interface Clause {
  field: string;
  /** Metadata key for `metadata["key"]`. */
  key?: string;
  op: Operator;
  /** `null` is the presence test (`field:null`). */
  value: string | number | null;
  negated: boolean;
}

export interface Query {
  conjunction: "and" | "or";
  clauses: Clause[];
}

function queryError(message: string) {
  return invalidParam("query", message);
}

/** Parses a Search query for a resource whose searchable fields are `fields`. */
export function parseQuery(text: string, fields: Record<string, FieldType>): Query {
  let pos = 0;
  const clauses: Clause[] = [];
  const conjunctions = new Set<"and" | "or">();
  const skipSpace = () => {
    while (pos < text.length && /\s/.test(text[pos])) pos++;
  };
  const readQuoted = (): string => {
    const quote = text[pos];
    pos++;
    let out = "";
    while (pos < text.length && text[pos] !== quote) {
      if (text[pos] === "\\" && pos + 1 < text.length) pos++;
      out += text[pos++];
    }
    if (pos >= text.length) throw queryError(`Unterminated string in query at position ${pos}.`);
    pos++;
    return out;
  };

  skipSpace();
  if (pos >= text.length) throw queryError("The query must not be empty.");
  while (pos < text.length) {
    if (clauses.length > 0) {
      const word = /^(and|or)(?=\s)/i.exec(text.slice(pos));
      if (word) {
        conjunctions.add(word[1].toLowerCase() as "and" | "or");
        pos += word[1].length;
        skipSpace();
      } else {
        conjunctions.add("and");
      }
    }
    let negated = false;
    if (text[pos] === "-") {
      negated = true;
      pos++;
    }
    const name = /^[a-z_]+/.exec(text.slice(pos));
    if (!name) throw queryError(`Invalid query syntax at position ${pos}: expected a field.`);
    const field = name[0];
    pos += field.length;
    const type = fields[field];
    if (!type) {
      throw queryError(
        `Field \`${field}\` is an unsupported search field. Supported fields: ` +
          `${Object.keys(fields).join(", ")}.`,
      );
    }
    let key: string | undefined;
    if (type === "metadata") {
      if (text[pos] !== "[" || (text[pos + 1] !== '"' && text[pos + 1] !== "'")) {
        throw queryError('Metadata searches must name a key: metadata["key"]:"value".');
      }
      pos++;
      key = readQuoted();
      if (text[pos] !== "]") throw queryError(`Invalid query syntax at position ${pos}.`);
      pos++;
    }
    const opMatch = /^(>=|<=|:|~|>|<|=)/.exec(text.slice(pos));
    if (!opMatch) {
      throw queryError(`Invalid query syntax at position ${pos}: expected an operator.`);
    }
    const op = (opMatch[1] === "=" ? ":" : opMatch[1]) as Operator;
    pos += opMatch[1].length;
    let value: string | number | null;
    if (text[pos] === '"' || text[pos] === "'") {
      value = readQuoted();
    } else {
      const bare = /^[^\s]+/.exec(text.slice(pos));
      if (!bare) throw queryError(`Invalid query syntax at position ${pos}: expected a value.`);
      pos += bare[0].length;
      if (bare[0] === "null") value = null;
      else if (/^-?[0-9]+(\.[0-9]+)?$/.test(bare[0])) value = Number(bare[0]);
      else throw queryError(`String values must be quoted: ${bare[0]}.`);
    }
    validateClause(field, type, op, value);
    clauses.push({ field, key, op, value, negated });
    skipSpace();
  }
  if (conjunctions.size > 1) {
    throw queryError("Queries cannot mix AND and OR. Use only one of them in a query.");
  }
  return { conjunction: conjunctions.has("or") ? "or" : "and", clauses };
}

function validateClause(field: string, type: FieldType, op: Operator, value: unknown): void {
  if (op === "~") {
    if (type !== "string") {
      throw queryError(`The ~ operator is only supported on string fields, not \`${field}\`.`);
    }
    if (typeof value !== "string" || value.length < 3) {
      throw queryError("Substring searches (~) need a value of at least 3 characters.");
    }
  }
  if (op !== ":" && op !== "~" && type !== "numeric") {
    throw queryError(
      `Comparison operators are only supported on numeric fields, not \`${field}\`.`,
    );
  }
  if (type === "numeric" && value !== null && typeof value !== "number") {
    throw queryError(`The field \`${field}\` expects a numeric value.`);
  }
}

/** What the index knows about one object (possibly stale compared to the live object). */
export interface SearchDoc {
  id: string;
  created: number;
  seq: number;
  fields: Record<string, string | number | null>;
  metadata: Metadata;
}

function words(s: string): string[] {
  return s.toLowerCase().split(/\s+/).filter(Boolean);
}

/** String `:` matches when the value contains the query's words in order. */
function wordsInOrder(haystack: string, needle: string): boolean {
  const hay = words(haystack);
  const want = words(needle);
  let i = 0;
  for (const w of hay) if (i < want.length && w === want[i]) i++;
  return i === want.length && want.length > 0;
}

function clauseMatches(doc: SearchDoc, c: Clause, type: FieldType): boolean {
  const actual = type === "metadata" ? doc.metadata[c.key!] ?? null : doc.fields[c.field] ?? null;
  if (c.value === null) return actual === null || actual === "";
  if (actual === null) return false;
  switch (type) {
    case "numeric": {
      const a = Number(actual);
      const v = Number(c.value);
      if (c.op === ":") return a === v;
      if (c.op === ">") return a > v;
      if (c.op === "<") return a < v;
      if (c.op === ">=") return a >= v;
      return a <= v;
    }
    case "string":
      if (c.op === "~") return String(actual).toLowerCase().includes(String(c.value).toLowerCase());
      return wordsInOrder(String(actual), String(c.value));
    default:
      return String(actual).toLowerCase() === String(c.value).toLowerCase();
  }
}

interface Pending {
  visibleAt: number;
  version: number;
  id: string;
  doc: SearchDoc | null;
}

/**
 * A per-resource search index. Writes become visible after `lagMs` (emulator clock). Exact
 * metadata and token clauses use inverted indexes, so metadata lookups never scan everything.
 */
export class SearchIndex {
  private docs = new Map<string, SearchDoc>();
  private versions = new Map<string, number>();
  /** metadata key -> lowercased value -> ids. */
  private meta = new Map<string, Map<string, Set<string>>>();
  /** token field -> lowercased value -> ids. */
  private tokens = new Map<string, Map<string, Set<string>>>();
  private pending: Pending[] = [];
  private head = 0;
  private version = 0;

  constructor(readonly fields: Record<string, FieldType>, readonly indexedTokens: string[]) {
    for (const f of indexedTokens) this.tokens.set(f, new Map());
  }

  get size(): number {
    return this.docs.size;
  }

  /** Queues an insert/update (`doc`) or removal (`null`) to become visible at `visibleAt`. */
  write(id: string, doc: SearchDoc | null, visibleAt: number, nowMs: number): void {
    const entry = { visibleAt, version: ++this.version, id, doc };
    if (visibleAt <= nowMs && this.head === this.pending.length) {
      this.apply(entry);
      return;
    }
    // Keep the queue sorted by visibility time (stable for equal times).
    let lo = this.head;
    let hi = this.pending.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.pending[mid].visibleAt <= visibleAt) lo = mid + 1;
      else hi = mid;
    }
    this.pending.splice(lo, 0, entry);
  }

  /** Makes every queued write whose time has come visible. */
  catchUp(nowMs: number): void {
    while (this.head < this.pending.length && this.pending[this.head].visibleAt <= nowMs) {
      this.apply(this.pending[this.head++]);
    }
    if (this.head > 1024 && this.head * 2 > this.pending.length) {
      this.pending = this.pending.slice(this.head);
      this.head = 0;
    }
  }

  clear(): void {
    this.docs.clear();
    this.versions.clear();
    this.meta.clear();
    for (const f of this.indexedTokens) this.tokens.set(f, new Map());
    this.pending = [];
    this.head = 0;
  }

  private apply(entry: Pending): void {
    // A later write may already be visible if the lag was shortened meanwhile.
    if ((this.versions.get(entry.id) ?? 0) > entry.version) return;
    this.versions.set(entry.id, entry.version);
    const old = this.docs.get(entry.id);
    if (old) this.unindex(old);
    if (entry.doc) {
      this.docs.set(entry.id, entry.doc);
      this.index(entry.doc);
    } else {
      this.docs.delete(entry.id);
    }
  }

  private postings(map: Map<string, Map<string, Set<string>>>, key: string, value: string) {
    let byValue = map.get(key);
    if (!byValue) map.set(key, byValue = new Map());
    let ids = byValue.get(value);
    if (!ids) byValue.set(value, ids = new Set());
    return ids;
  }

  private index(doc: SearchDoc): void {
    for (const [k, v] of Object.entries(doc.metadata)) {
      this.postings(this.meta, k, v.toLowerCase()).add(doc.id);
    }
    for (const f of this.indexedTokens) {
      const v = doc.fields[f];
      if (v !== null && v !== undefined) {
        this.postings(this.tokens, f, String(v).toLowerCase()).add(doc.id);
      }
    }
  }

  private unindex(doc: SearchDoc): void {
    for (const [k, v] of Object.entries(doc.metadata)) {
      this.meta.get(k)?.get(v.toLowerCase())?.delete(doc.id);
    }
    for (const f of this.indexedTokens) {
      const v = doc.fields[f];
      if (v !== null && v !== undefined) {
        this.tokens.get(f)?.get(String(v).toLowerCase())?.delete(doc.id);
      }
    }
  }

  /** Ids a clause can match, from an inverted index, or undefined if it needs a scan. */
  private candidates(c: Clause): Set<string> | undefined {
    if (c.negated || c.op !== ":" || c.value === null) return undefined;
    const value = String(c.value).toLowerCase();
    if (c.key !== undefined) return this.meta.get(c.key)?.get(value) ?? new Set();
    if (this.tokens.has(c.field)) return this.tokens.get(c.field)!.get(value) ?? new Set();
    return undefined;
  }

  private matches(doc: SearchDoc, q: Query): boolean {
    const test = (c: Clause) => clauseMatches(doc, c, this.fields[c.field]) !== c.negated;
    return q.conjunction === "and" ? q.clauses.every(test) : q.clauses.some(test);
  }

  /** Every visible match, newest first. */
  search(q: Query): SearchDoc[] {
    let pool: Iterable<string> | undefined;
    if (q.conjunction === "and") {
      let best: Set<string> | undefined;
      for (const c of q.clauses) {
        const ids = this.candidates(c);
        if (ids && (!best || ids.size < best.size)) best = ids;
      }
      pool = best;
    } else {
      const union = new Set<string>();
      let indexable = true;
      for (const c of q.clauses) {
        const ids = this.candidates(c);
        if (!ids) {
          indexable = false;
          break;
        }
        for (const id of ids) union.add(id);
      }
      if (indexable) pool = union;
    }
    const out: SearchDoc[] = [];
    if (pool) {
      for (const id of pool) {
        const doc = this.docs.get(id);
        if (doc && this.matches(doc, q)) out.push(doc);
      }
    } else {
      for (const doc of this.docs.values()) if (this.matches(doc, q)) out.push(doc);
    }
    return out.sort((a, b) => b.created - a.created || b.seq - a.seq);
  }
}

export const CUSTOMER_SEARCH_FIELDS: Record<string, FieldType> = {
  created: "numeric",
  email: "string",
  metadata: "metadata",
  name: "string",
  phone: "string",
};

export const INVOICE_SEARCH_FIELDS: Record<string, FieldType> = {
  created: "numeric",
  currency: "token",
  customer: "token",
  metadata: "metadata",
  number: "string",
  receipt_number: "string",
  status: "string",
  subscription: "string",
  total: "numeric",
};
