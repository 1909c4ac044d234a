/** Invoice lines (list, add/update/remove, single update) and invoice items. */
import type { Emulator, RequestInfo } from "../emulator.ts";
import { invalid, invalidParam, missingParam, noSuch } from "../errors.ts";
import { newId } from "../ids.ts";
import {
  attachItem,
  checkCapacity,
  detachItem,
  notEditable,
  withInvoiceUpdate,
} from "../invoice_ops.ts";
import { multiplyRounded, truncateDecimal } from "../decimal.ts";
import type { InvoiceItemRecord, InvoiceRecord, ProductRecord } from "../model.ts";
import { applyMetadata, type Params } from "../params.ts";
import { renderInvoice, renderInvoiceItem, renderLine } from "../render.ts";
import type { Router } from "../router.ts";
import { SortedIndex } from "../sorted_index.ts";
import { draftProduct, getProduct, saveProduct } from "./products.ts";
import {
  expandAll,
  getInvoice,
  getLiveCustomer,
  LIST_PARAMS,
  listEnvelope,
  listLimit,
  paginate,
  rangeFilter,
} from "./common.ts";

const LINE_FIELDS = [
  "amount",
  "description",
  "discountable",
  "metadata",
  "period",
  "price_data",
  "pricing",
  "quantity",
  "quantity_decimal",
];

/** What a request says about an item's price; undefined fields are left alone. */
interface PriceChange {
  amount?: number;
  /** Canonical decimal text, or null for an amount-only line. */
  unitAmountDecimal?: string | null;
  /** Canonical decimal text of the quantity. */
  quantity?: string;
  product?: string | null;
  /** A product `price_data[product_data]` asks for: stored only when the request commits. */
  newProduct?: ProductRecord;
  currency?: string;
}

/**
 * Reads amount / price_data / unit_amount_decimal / quantity / quantity_decimal, rejecting
 * conflicting sources. Nothing is stored here: a later invalid line must leave no trace.
 */
function readPrice(emu: Emulator, p: Params, forInvoiceItem: boolean): PriceChange {
  const out: PriceChange = {};
  const amount = p.int("amount");
  const priceData = p.obj("price_data");
  // Top-level unit_amount_decimal (invoice items only) may be negative: it credits.
  const unitDecimal = forInvoiceItem ? p.decimal("unit_amount_decimal") : undefined;
  if (p.has("pricing")) {
    const pricing = p.obj("pricing")!.only(["price"]);
    const price = pricing.str("price", { required: true })!;
    throw noSuch("price", price, `${p.name("pricing")}[price]`);
  }
  const sources = [amount !== undefined, !!priceData, unitDecimal !== undefined]
    .filter(Boolean).length;
  if (sources > 1) {
    throw invalidParam(
      p.name("amount"),
      "You may only specify one of these parameters: amount, price_data, unit_amount_decimal.",
      "parameters_exclusive",
    );
  }
  if (amount !== undefined) {
    out.amount = amount;
    out.unitAmountDecimal = null;
  }
  if (priceData) {
    priceData.only([
      "currency",
      "product",
      "product_data",
      "tax_behavior",
      "unit_amount",
      "unit_amount_decimal",
    ]);
    out.currency = priceData.str("currency", { required: true })!.toLowerCase();
    const product = priceData.str("product", { nonEmpty: true });
    const productData = priceData.obj("product_data");
    if (product !== undefined && productData) {
      throw invalidParam(
        priceData.name("product"),
        "You may only specify one of these parameters: product, product_data.",
        "parameters_exclusive",
      );
    }
    if (product === undefined && !productData) {
      throw missingParam(priceData.name("product"));
    }
    if (product !== undefined) {
      out.product = getProduct(emu, product, priceData.name("product")).id;
    } else {
      productData!.only(["name", "description", "metadata", "tax_code", "images"]);
      // Stripe makes a new Product for every product_data, however often the name repeats.
      out.newProduct = draftProduct(emu, productData!, "product_data");
      out.product = out.newProduct.id;
    }
    const unit = priceData.int("unit_amount", { min: 0 });
    const unitDec = priceData.decimal("unit_amount_decimal", { nonNegative: true });
    if (unit !== undefined && unitDec !== undefined) {
      throw invalidParam(
        priceData.name("unit_amount"),
        "You may only specify one of these parameters: unit_amount, unit_amount_decimal.",
        "parameters_exclusive",
      );
    }
    if (unit === undefined && unitDec === undefined) {
      throw missingParam(priceData.name("unit_amount"));
    }
    out.unitAmountDecimal = unitDec ?? String(unit);
  }
  if (unitDecimal !== undefined) out.unitAmountDecimal = unitDecimal;
  const quantity = p.int("quantity", { min: 0 });
  const quantityDecimal = p.decimal("quantity_decimal", { nonNegative: true });
  if (quantity !== undefined && quantityDecimal !== undefined) {
    throw invalidParam(
      p.name("quantity"),
      "You may only specify one of these parameters: quantity, quantity_decimal.",
      "parameters_exclusive",
    );
  }
  if (quantity !== undefined) out.quantity = String(quantity);
  else if (quantityDecimal !== undefined) out.quantity = quantityDecimal;
  return out;
}

/** Stores the product a price change created (call once the request is known to commit). */
function commitProduct(emu: Emulator, change: PriceChange, request: RequestInfo): void {
  if (change.newProduct) saveProduct(emu, change.newProduct, request);
}

function applyPrice(
  emu: Emulator,
  item: InvoiceItemRecord,
  change: PriceChange,
  param: string,
): void {
  if (change.unitAmountDecimal !== undefined) {
    item.unitAmountDecimal = change.unitAmountDecimal;
    item.price = change.unitAmountDecimal === null ? null : newId("price");
    item.product = change.unitAmountDecimal === null ? null : (change.product ?? item.product);
  }
  if (change.quantity !== undefined) {
    if (item.unitAmountDecimal === null && change.amount === undefined) {
      throw invalidParam(param, "quantity needs a unit price (price_data or unit_amount_decimal).");
    }
    item.quantity = truncateDecimal(change.quantity);
    item.quantityDecimal = change.quantity;
  }
  if (change.amount !== undefined) {
    item.amount = change.amount;
    if (change.quantity === undefined) {
      item.quantity = 1;
      item.quantityDecimal = "1";
    }
  } else if (
    item.unitAmountDecimal !== null &&
    (change.unitAmountDecimal !== undefined || change.quantity !== undefined)
  ) {
    // Only a price or quantity change recomputes: the amount is stored, not derived on read.
    item.amount = multiplyRounded(
      item.unitAmountDecimal,
      item.quantityDecimal,
      emu.behaviour.amountRounding,
    );
  }
}

function readPeriod(p: Params, item: InvoiceItemRecord): void {
  const period = p.obj("period");
  if (!period) return;
  period.only(["start", "end"]);
  const start = period.int("start", { required: true })!;
  const end = period.int("end", { required: true })!;
  if (end < start) {
    throw invalidParam(period.name("end"), "The period end must be on or after the period start.");
  }
  item.period = { start, end };
}

/** Applies the fields shared by lines and invoice items (everything but the price). */
function applyDescriptive(p: Params, item: InvoiceItemRecord): void {
  const description = p.nullableStr("description", 500);
  if (description !== undefined) item.description = description;
  const discountable = p.bool("discountable");
  if (discountable !== undefined) item.discountable = discountable;
  item.metadata = applyMetadata(item.metadata, p.metadata(), p.name("metadata"));
  readPeriod(p, item);
}

function newItem(emu: Emulator, customer: string, currency: string): InvoiceItemRecord {
  const created = emu.clock.created();
  return {
    id: newId("ii"),
    created,
    seq: emu.store.nextSeq(),
    deleted: false,
    customer,
    invoice: null,
    lineId: null,
    amount: 0,
    currency,
    description: null,
    metadata: {},
    period: { start: created, end: created },
    quantity: 1,
    quantityDecimal: "1",
    unitAmountDecimal: null,
    price: null,
    product: null,
    discountable: true,
  };
}

function requireDraft(inv: InvoiceRecord, what: string): void {
  if (inv.status !== "draft") throw notEditable(inv, what);
}

function lineItem(emu: Emulator, inv: InvoiceRecord, lineId: string, param: string) {
  const itemId = emu.store.lines.get(lineId);
  const item = itemId ? emu.store.items.get(itemId) : undefined;
  if (!item || item.invoice !== inv.id) throw noSuch("il", lineId, param);
  return item;
}

/** Validates every entry first, so a bad line leaves the invoice untouched. */
function addLines(emu: Emulator, inv: InvoiceRecord, p: Params, request: RequestInfo): void {
  p.only(["lines", "invoice_metadata"]);
  const metadata = p.metadata("invoice_metadata");
  const entries = p.list("lines", { required: true })!;
  requireDraft(inv, "add lines");
  const prepared: {
    item: InvoiceItemRecord;
    copy: InvoiceItemRecord;
    isNew: boolean;
    price?: PriceChange;
  }[] = [];
  for (const line of entries) {
    line.only([...LINE_FIELDS, "invoice_item"]);
    const existingId = line.str("invoice_item", { nonEmpty: true });
    if (existingId !== undefined) {
      const item = emu.store.items.get(existingId);
      const param = line.name("invoice_item");
      if (!item || item.deleted || item.customer !== inv.customer) {
        throw noSuch("ii", existingId, param);
      }
      if (item.invoice !== null || prepared.some((x) => x.item === item)) {
        throw invalidParam(param, `The invoice item ${existingId} is already on an invoice.`);
      }
      if (item.currency !== inv.currency) {
        throw invalidParam(param, `The invoice item currency must be ${inv.currency}.`);
      }
      const copy = structuredClone(item);
      applyDescriptive(line, copy);
      prepared.push({ item, copy, isNew: false });
      continue;
    }
    const price = readPrice(emu, line, false);
    if (price.amount === undefined && price.unitAmountDecimal === undefined) {
      throw missingParam(line.name("amount"));
    }
    if (price.currency && price.currency !== inv.currency) {
      throw invalidParam(
        line.name("price_data") + "[currency]",
        `The price currency must match the invoice currency (${inv.currency}).`,
      );
    }
    const item = newItem(emu, inv.customer, inv.currency);
    applyPrice(emu, item, price, line.name("quantity"));
    applyDescriptive(line, item);
    prepared.push({ item, copy: item, isNew: true, price });
  }
  checkCapacity(inv, prepared.length);
  const newItems: InvoiceItemRecord[] = [];
  withInvoiceUpdate(emu, inv, request, () => {
    for (const { item, copy, isNew } of prepared) {
      Object.assign(item, copy);
      if (isNew) {
        emu.store.addItem(item);
        newItems.push(item);
      }
      attachItem(emu, inv, item);
    }
    inv.metadata = applyMetadata(inv.metadata, metadata, "invoice_metadata");
  });
  for (const { price } of prepared) if (price) commitProduct(emu, price, request);
  for (const item of newItems) emu.emit("invoiceitem.created", renderInvoiceItem(item), request);
}

/** Applies line-level changes to a copy, so validation failures change nothing. */
function updateLineCopy(emu: Emulator, line: Params, item: InvoiceItemRecord) {
  const copy = structuredClone(item);
  const price = readPrice(emu, line, false);
  if (price.currency && price.currency !== item.currency) {
    throw invalidParam(line.name("price_data") + "[currency]", "The currency cannot change.");
  }
  applyPrice(emu, copy, price, line.name("quantity"));
  applyDescriptive(line, copy);
  return { copy, price };
}

function updateLines(emu: Emulator, inv: InvoiceRecord, p: Params, request: RequestInfo) {
  p.only(["lines", "invoice_metadata"]);
  const metadata = p.metadata("invoice_metadata");
  const entries = p.list("lines", { required: true })!;
  requireDraft(inv, "update lines");
  const updates = entries.map((line) => {
    line.only([...LINE_FIELDS, "id"]);
    const id = line.str("id", { required: true })!;
    const item = lineItem(emu, inv, id, line.name("id"));
    return { item, ...updateLineCopy(emu, line, item) };
  });
  withInvoiceUpdate(emu, inv, request, () => {
    for (const { item, copy } of updates) Object.assign(item, copy);
    inv.metadata = applyMetadata(inv.metadata, metadata, "invoice_metadata");
  });
  for (const { item } of updates) emu.emit("invoiceitem.updated", renderInvoiceItem(item), request);
  for (const { price } of updates) commitProduct(emu, price, request);
}

function removeLines(emu: Emulator, inv: InvoiceRecord, p: Params, request: RequestInfo) {
  p.only(["lines", "invoice_metadata"]);
  const metadata = p.metadata("invoice_metadata");
  const entries = p.list("lines", { required: true })!;
  requireDraft(inv, "remove lines");
  const removals = entries.map((line) => {
    line.only(["id", "behavior"]);
    const id = line.str("id", { required: true })!;
    const behavior = line.oneOf("behavior", ["delete", "unassign"] as const, { required: true })!;
    return { item: lineItem(emu, inv, id, line.name("id")), behavior };
  });
  const deleted: InvoiceItemRecord[] = [];
  withInvoiceUpdate(emu, inv, request, () => {
    for (const { item, behavior } of removals) {
      if (item.invoice !== inv.id) continue; // listed twice
      detachItem(emu, inv, item);
      if (behavior === "delete") {
        emu.store.removeItem(item);
        deleted.push(item);
      }
    }
    inv.metadata = applyMetadata(inv.metadata, metadata, "invoice_metadata");
  });
  for (const item of deleted) emu.emit("invoiceitem.deleted", renderInvoiceItem(item), request);
}

/** Lines are paged in line order; cursors are line ids. */
function listLines(emu: Emulator, inv: InvoiceRecord, p: Params) {
  p.only([...LIST_PARAMS]);
  const limit = listLimit(p);
  const after = p.str("starting_after", { nonEmpty: true });
  const before = p.str("ending_before", { nonEmpty: true });
  if (after !== undefined && before !== undefined) {
    throw invalid("You may only specify one of these parameters: ending_before, starting_after.", {
      code: "parameters_exclusive",
      param: "ending_before",
    });
  }
  const items = inv.items.map((id) => emu.store.items.get(id)!);
  let start = 0;
  let end = items.length;
  if (after !== undefined) {
    start = items.indexOf(lineItem(emu, inv, after, "starting_after")) + 1;
    end = Math.min(items.length, start + limit);
  } else if (before !== undefined) {
    end = items.indexOf(lineItem(emu, inv, before, "ending_before"));
    start = Math.max(0, end - limit);
  } else {
    end = Math.min(items.length, limit);
  }
  const hasMore = before !== undefined ? start > 0 : end < items.length;
  const data = items.slice(start, end).map(renderLine);
  return expandAll(p.expand(), listEnvelope(`/v1/invoices/${inv.id}/lines`, data, hasMore), emu);
}

function getItem(emu: Emulator, id: string): InvoiceItemRecord {
  const item = emu.store.items.get(id);
  if (!item || item.deleted) throw noSuch("ii", id);
  return item;
}

/** The invoice an item sits on, which must still be a draft for the item to change. */
function editableInvoiceOf(emu: Emulator, item: InvoiceItemRecord): InvoiceRecord | undefined {
  if (!item.invoice) return undefined;
  const inv = emu.store.invoices.get(item.invoice)!;
  if (inv.status !== "draft") {
    throw invalid(
      `The invoice item ${item.id} is on invoice ${inv.id}, which is no longer a draft.`,
      { code: "invoice_not_editable" },
    );
  }
  return inv;
}

function createItem(emu: Emulator, p: Params, request: RequestInfo): InvoiceItemRecord {
  p.only([
    ...LINE_FIELDS,
    "currency",
    "customer",
    "invoice",
    "unit_amount_decimal",
  ]);
  const c = getLiveCustomer(emu, p.str("customer", { required: true })!, "customer");
  const invoiceId = p.str("invoice", { nonEmpty: true });
  let inv: InvoiceRecord | undefined;
  if (invoiceId !== undefined) {
    inv = getInvoice(emu, invoiceId, "invoice");
    if (inv.customer !== c.id) {
      throw invalidParam("invoice", `The invoice ${invoiceId} belongs to a different customer.`);
    }
  }
  const price = readPrice(emu, p, true);
  if (price.amount === undefined && price.unitAmountDecimal === undefined) {
    throw missingParam("amount");
  }
  const currency = price.currency ?? p.str("currency", { nonEmpty: true })?.toLowerCase() ??
    inv?.currency ?? c.currency;
  if (!currency) throw missingParam("currency");
  if (inv && currency !== inv.currency) {
    throw invalidParam("currency", `The currency must match the invoice (${inv.currency}).`);
  }
  if (inv) {
    requireDraft(inv, "add invoice items");
    checkCapacity(inv, 1);
  }
  const item = newItem(emu, c.id, currency);
  applyPrice(emu, item, price, "quantity");
  applyDescriptive(p, item);
  if (p.bool("discountable") === undefined && item.amount < 0) item.discountable = false;
  commitProduct(emu, price, request);
  emu.store.addItem(item);
  if (inv) {
    const target = inv;
    withInvoiceUpdate(emu, target, request, () => attachItem(emu, target, item));
  }
  emu.emit("invoiceitem.created", renderInvoiceItem(item), request);
  return item;
}

export function registerLineRoutes(r: Router): void {
  const invoiceResponse = (emu: Emulator, p: Params, inv: InvoiceRecord) =>
    expandAll(p.expand(), renderInvoice(emu, inv), emu);

  r.add(
    "GET",
    "/v1/invoices/:id/lines",
    ({ emu, params, path }) => listLines(emu, getInvoice(emu, path.id), params),
  );

  r.add("POST", "/v1/invoices/:id/add_lines", ({ emu, params, path, request }) => {
    const inv = getInvoice(emu, path.id);
    addLines(emu, inv, params, request);
    return invoiceResponse(emu, params, inv);
  });

  r.add("POST", "/v1/invoices/:id/update_lines", ({ emu, params, path, request }) => {
    const inv = getInvoice(emu, path.id);
    updateLines(emu, inv, params, request);
    return invoiceResponse(emu, params, inv);
  });

  r.add("POST", "/v1/invoices/:id/remove_lines", ({ emu, params, path, request }) => {
    const inv = getInvoice(emu, path.id);
    removeLines(emu, inv, params, request);
    return invoiceResponse(emu, params, inv);
  });

  r.add("POST", "/v1/invoices/:id/lines/:line", ({ emu, params, path, request }) => {
    params.only(LINE_FIELDS);
    const inv = getInvoice(emu, path.id);
    const item = lineItem(emu, inv, path.line, "line_item_id");
    requireDraft(inv, "update lines");
    const { copy, price } = updateLineCopy(emu, params, item);
    withInvoiceUpdate(emu, inv, request, () => Object.assign(item, copy));
    emu.emit("invoiceitem.updated", renderInvoiceItem(item), request);
    commitProduct(emu, price, request);
    return expandAll(params.expand(), renderLine(item), emu);
  });

  r.add(
    "POST",
    "/v1/invoiceitems",
    ({ emu, params, request }) =>
      expandAll(params.expand(), renderInvoiceItem(createItem(emu, params, request)), emu),
  );

  r.add("GET", "/v1/invoiceitems/:id", ({ emu, params, path }) => {
    params.only([]);
    return expandAll(params.expand(), renderInvoiceItem(getItem(emu, path.id)), emu);
  });

  r.add("POST", "/v1/invoiceitems/:id", ({ emu, params, path, request }) => {
    params.only([...LINE_FIELDS, "unit_amount_decimal"]);
    const item = getItem(emu, path.id);
    const inv = editableInvoiceOf(emu, item);
    const copy = structuredClone(item);
    const price = readPrice(emu, params, true);
    if (price.currency && price.currency !== item.currency) {
      throw invalidParam("price_data[currency]", "The currency cannot change.");
    }
    applyPrice(emu, copy, price, "quantity");
    applyDescriptive(params, copy);
    if (inv) withInvoiceUpdate(emu, inv, request, () => Object.assign(item, copy));
    else Object.assign(item, copy);
    // Stripe sends this for every item edit, whether or not the invoice's total moved.
    emu.emit("invoiceitem.updated", renderInvoiceItem(item), request);
    commitProduct(emu, price, request);
    return expandAll(params.expand(), renderInvoiceItem(item), emu);
  });

  r.add("DELETE", "/v1/invoiceitems/:id", ({ emu, params, path, request }) => {
    params.only([]);
    const item = getItem(emu, path.id);
    const inv = editableInvoiceOf(emu, item);
    const last = renderInvoiceItem(item);
    if (inv) withInvoiceUpdate(emu, inv, request, () => detachItem(emu, inv, item));
    emu.store.removeItem(item);
    emu.emit("invoiceitem.deleted", last, request);
    return { id: item.id, object: "invoiceitem", deleted: true };
  });

  r.add("GET", "/v1/invoiceitems", ({ emu, params }) => {
    params.only([...LIST_PARAMS, "customer", "invoice", "pending", "created"]);
    const customer = params.str("customer");
    const invoiceId = params.str("invoice");
    const pending = params.bool("pending");
    const created = rangeFilter(params, "created");
    let index: SortedIndex<InvoiceItemRecord> | undefined;
    if (invoiceId !== undefined) {
      // At most 250 items: a throwaway index keeps one pagination code path.
      index = new SortedIndex<InvoiceItemRecord>();
      const inv = emu.store.invoices.get(invoiceId);
      for (const id of inv?.items ?? []) index.insert(emu.store.items.get(id)!);
    } else if (customer !== undefined) {
      index = emu.store.itemsByCustomer.get(customer);
    } else {
      index = emu.store.itemIndex;
    }
    return paginate(emu, params, index, {
      url: "/v1/invoiceitems",
      kind: "ii",
      lookup: (id) => emu.store.items.get(id),
      render: renderInvoiceItem,
      filter: (item) =>
        (customer === undefined || item.customer === customer) &&
        (pending === undefined || (item.invoice === null) === pending) &&
        (!created || created(item.created)),
    });
  });
}
