/** Helpers shared by the route modules: lists, cursors, `created` filters, expansion, lookups. */
import type { Emulator } from "../emulator.ts";
import { invalid, invalidParam, noSuch } from "../errors.ts";
import type { Json, JsonObject } from "../json.ts";
import type { CustomerRecord, InvoiceRecord } from "../model.ts";
import type { Params } from "../params.ts";
import {
  renderCustomer,
  renderInvoice,
  renderInvoiceItem,
  renderPaymentMethod,
  renderSetupIntent,
} from "../render.ts";
import { parseQuery, type SearchIndex } from "../search.ts";
import type { Ordered, SortedIndex } from "../sorted_index.ts";

export const LIST_PARAMS = ["limit", "starting_after", "ending_before"] as const;

export function listLimit(p: Params): number {
  return p.int("limit", { min: 1, max: 100 }) ?? 10;
}

/** A `created`-style filter: an integer, or a hash of gt/gte/lt/lte. */
export function rangeFilter(p: Params, key: string): ((v: number) => boolean) | undefined {
  if (!p.has(key)) return undefined;
  const raw = p.raw(key);
  if (typeof raw === "string") {
    const exact = p.int(key);
    return exact === undefined ? undefined : (v) => v === exact;
  }
  const r = p.obj(key)!.only(["gt", "gte", "lt", "lte"]);
  const gt = r.int("gt");
  const gte = r.int("gte");
  const lt = r.int("lt");
  const lte = r.int("lte");
  return (v) =>
    (gt === undefined || v > gt) && (gte === undefined || v >= gte) &&
    (lt === undefined || v < lt) && (lte === undefined || v <= lte);
}

export function listEnvelope(url: string, data: Json[], hasMore: boolean): JsonObject {
  return { object: "list", data, has_more: hasMore, url };
}

/**
 * One page of a sorted index with Stripe's cursor semantics: newest first,
 * `starting_after` = older than, `ending_before` = the objects just newer than, newest first.
 */
export function paginate<T extends Ordered>(
  emu: Emulator,
  p: Params,
  index: SortedIndex<T> | undefined,
  opts: {
    url: string;
    kind: string;
    lookup: (id: string) => T | undefined;
    render: (item: T) => JsonObject;
    filter?: (item: T) => boolean;
  },
): JsonObject {
  const limit = listLimit(p);
  const after = p.str("starting_after", { nonEmpty: true });
  const before = p.str("ending_before", { nonEmpty: true });
  if (after !== undefined && before !== undefined) {
    throw invalid("You may only specify one of these parameters: ending_before, starting_after.", {
      code: "parameters_exclusive",
      param: "ending_before",
    });
  }
  const cursorId = after ?? before;
  let cursor: T | undefined;
  if (cursorId !== undefined) {
    cursor = opts.lookup(cursorId);
    if (!cursor) {
      throw noSuch(opts.kind, cursorId, after !== undefined ? "starting_after" : "ending_before");
    }
  }
  const page = index
    ? index.page({
      limit,
      startingAfter: after !== undefined ? cursor : undefined,
      endingBefore: before !== undefined ? cursor : undefined,
      filter: opts.filter,
    })
    : { data: [], hasMore: false };
  const data = page.data.map((item) => opts.render(item));
  return expandAll(p.expand(), listEnvelope(opts.url, data, page.hasMore), emu);
}

export function getCustomer(emu: Emulator, id: string, param = "id"): CustomerRecord {
  const c = emu.store.customers.get(id);
  if (!c) throw noSuch("cus", id, param);
  return c;
}

/** A customer that must still exist (body params referencing deleted customers fail). */
export function getLiveCustomer(emu: Emulator, id: string, param = "id"): CustomerRecord {
  const c = getCustomer(emu, id, param);
  if (c.deleted) throw noSuch("cus", id, param);
  return c;
}

export function getInvoice(emu: Emulator, id: string, param = "id"): InvoiceRecord {
  const inv = emu.store.invoices.get(id);
  if (!inv || inv.deleted) throw noSuch("in", id, param);
  return inv;
}

function resolveId(emu: Emulator, id: string): JsonObject | undefined {
  const s = emu.store;
  const prefix = id.slice(0, id.indexOf("_"));
  switch (prefix) {
    case "cus": {
      const c = s.customers.get(id);
      return c && renderCustomer(c);
    }
    case "in": {
      const inv = s.invoices.get(id);
      return inv && !inv.deleted ? renderInvoice(emu, inv) : undefined;
    }
    case "ii": {
      const item = s.items.get(id);
      return item && renderInvoiceItem(item);
    }
    case "pm": {
      const pm = s.paymentMethods.get(id);
      return pm && renderPaymentMethod(pm);
    }
    case "seti": {
      const si = s.setupIntents.get(id);
      return si && renderSetupIntent(si);
    }
  }
  return undefined;
}

function cannotExpand(path: string) {
  return invalidParam("expand", `This property cannot be expanded (${path}).`);
}

/** Fields that hold an expandable id (null-valued ones stay null when expanded). */
const EXPANDABLE = new Set([
  "customer",
  "invoice",
  "default_payment_method",
  "payment_method",
  "default_source",
  "latest_revision",
  "on_behalf_of",
  "test_clock",
  "application",
  "subscription",
  "latest_attempt",
  "mandate",
  "single_use_mandate",
  "invoice_item",
]);

function expandPath(emu: Emulator, value: Json, segs: string[], full: string): Json {
  if (Array.isArray(value)) return value.map((v) => expandPath(emu, v, segs, full));
  if (value === null || typeof value !== "object") throw cannotExpand(full);
  const [head, ...rest] = segs;
  let child = value[head];
  if (child === undefined || (rest.length === 0 && !EXPANDABLE.has(head))) {
    throw cannotExpand(full);
  }
  if (child === null) return value;
  if (typeof child === "string") {
    const resolved = resolveId(emu, child);
    if (!resolved) throw cannotExpand(full);
    child = resolved;
  }
  value[head] = rest.length === 0 ? child : expandPath(emu, child, rest, full);
  return value;
}

/** Applies `expand[]` paths (dot-separated, `data.` prefix for lists) to a response. */
export function expandAll(paths: string[], obj: JsonObject, emu: Emulator): JsonObject {
  const sorted = [...paths].sort((a, b) => a.length - b.length);
  for (const path of sorted) expandPath(emu, obj, path.split("."), path);
  return obj;
}

/** The opaque `next_page` token: the query plus the position of the last result returned. */
function encodePage(query: string, last: Ordered): string {
  return btoa(JSON.stringify([query, last.created, last.seq])).replaceAll("=", "");
}

function decodePage(token: string, query: string): { created: number; seq: number } {
  try {
    const [q, created, seq] = JSON.parse(atob(token));
    if (q === query && typeof created === "number" && typeof seq === "number") {
      return { created, seq };
    }
  } catch {
    // fall through
  }
  throw invalidParam("page", "Invalid page token: it does not belong to this query.");
}

/** The `search_result` envelope over a search index. */
export function searchResponse(
  emu: Emulator,
  p: Params,
  index: SearchIndex,
  url: string,
  render: (id: string) => JsonObject | undefined,
): JsonObject {
  p.only(["query", "limit", "page"]);
  const text = p.str("query", { required: true })!;
  const limit = listLimit(p);
  const page = p.str("page", { nonEmpty: true });
  const query = parseQuery(text, index.fields);
  index.catchUp(emu.clock.nowMs());
  let docs = index.search(query);
  if (emu.behaviour.searchOrder === "oldest_first") docs.reverse();
  if (page !== undefined) {
    const pos = decodePage(page, text);
    const older = emu.behaviour.searchOrder === "newest_first";
    docs = docs.filter((d) =>
      older
        ? d.created < pos.created || (d.created === pos.created && d.seq < pos.seq)
        : d.created > pos.created || (d.created === pos.created && d.seq > pos.seq)
    );
  }
  const drop = emu.searchKnobs.dropProbability;
  const data: JsonObject[] = [];
  let hasMore = false;
  let last: Ordered | undefined;
  for (const doc of docs) {
    if (drop > 0 && Math.random() < drop) continue;
    // The index may be stale: filter on cached fields, return the live object (as Stripe does).
    const obj = render(doc.id);
    if (!obj) continue;
    if (data.length === limit) {
      hasMore = true;
      break;
    }
    data.push(obj);
    last = doc;
  }
  const result: JsonObject = {
    object: "search_result",
    data,
    has_more: hasMore,
    next_page: hasMore && last ? encodePage(text, last) : null,
    url,
  };
  return expandAll(p.expand(), result, emu);
}
