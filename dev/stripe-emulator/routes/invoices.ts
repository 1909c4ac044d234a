/** Invoices: create, retrieve, update, delete, list, search and the status actions. */
import type { Emulator, RequestInfo } from "../emulator.ts";
import { ApiError, invalid, invalidParam } from "../errors.ts";
import { newId } from "../ids.ts";
import type { Json, JsonObject } from "../json.ts";
import {
  type CollectionMethod,
  INVOICE_STATUSES,
  type InvoiceRecord,
  type InvoiceStatus,
} from "../model.ts";
import { applyMetadata, type Params } from "../params.ts";
import { deletedStub, renderInvoice } from "../render.ts";
import type { Router } from "../router.ts";
import {
  attachItem,
  checkCapacity,
  finalize,
  markPaid,
  paymentFailed,
  recomputeSubtotal,
  touchInvoice,
  transition,
  withInvoiceUpdate,
} from "../invoice_ops.ts";
import {
  expandAll,
  getInvoice,
  getLiveCustomer,
  LIST_PARAMS,
  paginate,
  rangeFilter,
  searchResponse,
} from "./common.ts";
import { getPaymentMethod } from "./payment_methods.ts";

const EDITABLE = [
  "auto_advance",
  "collection_method",
  "custom_fields",
  "days_until_due",
  "default_payment_method",
  "description",
  "due_date",
  "effective_at",
  "footer",
  "metadata",
  "number",
  "statement_descriptor",
];

function customFields(p: Params): Json | undefined {
  if (!p.has("custom_fields")) return undefined;
  if (p.isEmpty("custom_fields")) return null;
  const list = p.list("custom_fields")!;
  if (list.length > 4) throw invalidParam("custom_fields", "You can pass at most 4 custom fields.");
  return list.map((f) => {
    f.only(["name", "value"]);
    return {
      name: f.str("name", { required: true, max: 40 })!,
      value: f.str("value", { required: true, max: 140 })!,
    };
  });
}

/** Applies editable params to `inv` (validated against its customer). */
function applyInvoiceParams(emu: Emulator, inv: InvoiceRecord, p: Params): void {
  const autoAdvance = p.bool("auto_advance");
  if (autoAdvance !== undefined) inv.autoAdvance = autoAdvance;
  const method = p.oneOf("collection_method", ["charge_automatically", "send_invoice"] as const);
  if (method !== undefined) inv.collectionMethod = method as CollectionMethod;
  const cf = customFields(p);
  if (cf !== undefined) inv.customFields = cf;
  const days = p.int("days_until_due", { min: 0, max: 1825 });
  if (p.has("days_until_due")) inv.daysUntilDue = days ?? null;
  const due = p.int("due_date", { min: 0 });
  if (due !== undefined && due <= emu.clock.nowSeconds()) {
    // Stripe refuses a due date that is not in the future, on create and on update.
    throw invalidParam(
      "due_date",
      `Invalid due_date: must be in the future (got ${due}, now is ${emu.clock.nowSeconds()}).`,
    );
  }
  if (p.has("due_date")) inv.dueDate = due ?? null;
  if (days !== undefined && due === undefined) inv.dueDate = inv.created + days * 86_400;
  const description = p.nullableStr("description", 1500);
  if (description !== undefined) inv.description = description;
  const footer = p.nullableStr("footer", 5000);
  if (footer !== undefined) inv.footer = footer;
  const number = p.nullableStr("number", 26);
  if (number !== undefined) inv.number = number;
  const effective = p.int("effective_at", { min: 0 });
  if (p.has("effective_at")) inv.effectiveAt = effective ?? null;
  const descriptor = p.nullableStr("statement_descriptor", 22);
  if (descriptor !== undefined) inv.statementDescriptor = descriptor;
  const pmId = p.nullableStr("default_payment_method");
  if (pmId !== undefined) {
    if (pmId !== null) {
      const pm = getPaymentMethod(emu, pmId, "default_payment_method");
      if (pm.customer !== inv.customer) {
        throw invalid(
          `The PaymentMethod ${pmId} does not belong to the invoice's customer.`,
          { param: "default_payment_method" },
        );
      }
    }
    inv.defaultPaymentMethod = pmId;
  }
  inv.metadata = applyMetadata(inv.metadata, p.metadata());
  if (inv.collectionMethod === "send_invoice") {
    if (inv.daysUntilDue === null && inv.dueDate === null) {
      throw invalidParam(
        "days_until_due",
        "Invoices with collection_method='send_invoice' must have a due_date or days_until_due.",
      );
    }
  } else if (p.has("days_until_due") || p.has("due_date")) {
    throw invalidParam(
      p.has("due_date") ? "due_date" : "days_until_due",
      "You cannot set days_until_due or due_date when collection_method is " +
        "charge_automatically.",
    );
  }
}

export function createInvoice(emu: Emulator, p: Params, request: RequestInfo): InvoiceRecord {
  p.only([...EDITABLE, "customer", "currency", "pending_invoice_items_behavior"]);
  const customerId = p.str("customer", { required: true })!;
  const c = getLiveCustomer(emu, customerId, "customer");
  const currency = (p.str("currency", { nonEmpty: true }) ?? c.currency ?? "usd").toLowerCase();
  const created = emu.clock.created();
  const inv: InvoiceRecord = {
    id: newId("in"),
    created,
    seq: emu.store.nextSeq(),
    deleted: false,
    customer: c.id,
    status: "draft",
    currency,
    collectionMethod: "charge_automatically",
    autoAdvance: false,
    description: null,
    footer: c.invoiceSettings.footer,
    statementDescriptor: null,
    customFields: c.invoiceSettings.custom_fields,
    metadata: {},
    daysUntilDue: null,
    dueDate: null,
    number: null,
    effectiveAt: null,
    hostedInvoiceUrl: null,
    invoicePdf: null,
    transitions: {
      finalized_at: null,
      marked_uncollectible_at: null,
      paid_at: null,
      voided_at: null,
    },
    items: [],
    subtotal: 0,
    startingBalance: null,
    endingBalance: null,
    amountPaid: 0,
    paidOutOfBand: false,
    attemptCount: 0,
    attempted: false,
    customerSnapshot: null,
    defaultPaymentMethod: null,
    extra: {},
  };
  applyInvoiceParams(emu, inv, p);
  const behavior = p.oneOf("pending_invoice_items_behavior", ["exclude", "include"] as const) ??
    "exclude";
  if (behavior === "include") {
    // Pending items come first, newest first (Stripe's documented line order).
    const pending = [...(emu.store.itemsByCustomer.get(c.id)?.newestFirst() ?? [])]
      .filter((i) => i.invoice === null && i.currency === currency);
    checkCapacity(inv, pending.length);
    for (const item of pending) attachItem(emu, inv, item);
  }
  recomputeSubtotal(emu, inv);
  emu.store.addInvoice(inv);
  touchInvoice(emu, inv);
  emu.emit("invoice.created", renderInvoice(emu, inv), request);
  return inv;
}

function updateInvoice(emu: Emulator, inv: InvoiceRecord, p: Params, request: RequestInfo) {
  p.only(EDITABLE);
  if (inv.status !== "draft") {
    for (const key of p.keys()) {
      if (key === "expand") continue;
      if (!emu.behaviour.finalizedEditableFields.includes(key)) {
        throw invalid(
          `You cannot update '${key}' on an invoice that is no longer a draft (status: ` +
            `${inv.status}).`,
          { code: emu.behaviour.finalizedEditCode, param: key },
        );
      }
    }
    if (p.has("auto_advance") && inv.status !== "open") {
      throw invalid("auto_advance can only be set on draft and open invoices.", {
        param: "auto_advance",
      });
    }
  }
  const draft = structuredClone(inv);
  applyInvoiceParams(emu, draft, p);
  withInvoiceUpdate(emu, inv, request, () => Object.assign(inv, draft));
}

function deleteInvoice(emu: Emulator, inv: InvoiceRecord, request: RequestInfo): JsonObject {
  if (inv.status !== "draft") {
    throw invalid(
      `You can only delete draft invoices. This invoice has status '${inv.status}'; void it ` +
        `instead.`,
    );
  }
  const last = renderInvoice(emu, inv);
  for (const id of inv.items) emu.store.removeItem(emu.store.items.get(id)!);
  emu.store.removeInvoice(inv);
  touchInvoice(emu, inv);
  emu.emit("invoice.deleted", last, request);
  return deletedStub(inv.id, "invoice");
}

/** `pay`/`send` on a draft finalize it first, unless the behaviour knob says otherwise. */
function finalizeDraftFor(emu: Emulator, inv: InvoiceRecord, request: RequestInfo, action: string) {
  if (inv.status !== "draft") return;
  if (emu.behaviour.draftPayOrSend === "error") {
    throw invalid(`You can't ${action} a draft invoice; finalize it first.`);
  }
  finalize(emu, inv, request);
}

function payInvoice(emu: Emulator, inv: InvoiceRecord, p: Params, request: RequestInfo) {
  p.only(["forgive", "mandate", "off_session", "paid_out_of_band", "payment_method", "source"]);
  p.bool("forgive");
  p.bool("off_session");
  const outOfBand = p.bool("paid_out_of_band") ?? false;
  const pmParam = p.str("payment_method", { nonEmpty: true });
  if (inv.status === "paid") throw invalid("Invoice is already paid");
  if (inv.status === "void") throw invalid("This invoice has been voided and cannot be paid.");
  finalizeDraftFor(emu, inv, request, "pay");
  // A $0 draft becomes paid when finalized.
  if ((inv.status as InvoiceStatus) === "paid") throw invalid("Invoice is already paid");
  if (outOfBand) {
    markPaid(emu, inv, request, { charged: false, outOfBand: true });
    return;
  }
  const c = emu.store.customers.get(inv.customer);
  const pmId = pmParam ?? inv.defaultPaymentMethod ?? c?.invoiceSettings.default_payment_method;
  if (!pmId) {
    throw invalid(
      "This customer has no attached payment source or default payment method. Please " +
        "consider adding a default payment method.",
    );
  }
  const pm = getPaymentMethod(emu, pmId, "payment_method");
  if (pm.customer !== inv.customer) {
    throw invalid(`The PaymentMethod ${pmId} does not belong to the invoice's customer.`, {
      param: "payment_method",
    });
  }
  if (pm.declines) {
    paymentFailed(emu, inv, request);
    throw new ApiError({
      status: 402,
      type: "card_error",
      code: "card_declined",
      declineCode: "generic_decline",
      message: "Your card was declined.",
    });
  }
  inv.attemptCount++;
  inv.attempted = true;
  markPaid(emu, inv, request, { charged: true, outOfBand: false });
}

export function registerInvoiceRoutes(r: Router): void {
  const respond = (emu: Emulator, p: Params, inv: InvoiceRecord) =>
    expandAll(p.expand(), renderInvoice(emu, inv), emu);

  r.add(
    "POST",
    "/v1/invoices",
    ({ emu, params, request }) => respond(emu, params, createInvoice(emu, params, request)),
  );

  r.add("GET", "/v1/invoices/:id", ({ emu, params, path }) => {
    params.only([]);
    return respond(emu, params, getInvoice(emu, path.id));
  });

  r.add("POST", "/v1/invoices/:id", ({ emu, params, path, request }) => {
    const inv = getInvoice(emu, path.id);
    updateInvoice(emu, inv, params, request);
    return respond(emu, params, inv);
  });

  r.add("DELETE", "/v1/invoices/:id", ({ emu, params, path, request }) => {
    params.only([]);
    return deleteInvoice(emu, getInvoice(emu, path.id), request);
  });

  r.add("GET", "/v1/invoices", ({ emu, params }) => {
    params.only([
      ...LIST_PARAMS,
      "customer",
      "status",
      "collection_method",
      "created",
      "due_date",
      "subscription",
    ]);
    const customer = params.str("customer");
    const status = params.oneOf("status", INVOICE_STATUSES) as InvoiceStatus | undefined;
    const method = params.oneOf(
      "collection_method",
      [
        "charge_automatically",
        "send_invoice",
      ] as const,
    );
    const created = rangeFilter(params, "created");
    const due = rangeFilter(params, "due_date");
    const subscription = params.str("subscription");
    const filtered = status || method || created || due || subscription;
    const index = customer !== undefined
      ? emu.store.invoicesByCustomer.get(customer)
      : emu.store.invoiceIndex;
    return paginate(emu, params, index, {
      url: "/v1/invoices",
      kind: "in",
      lookup: (id) => emu.store.invoices.get(id),
      render: (inv) => renderInvoice(emu, inv),
      filter: filtered
        ? (inv) =>
          (!status || inv.status === status) &&
          (!method || inv.collectionMethod === method) &&
          (!created || created(inv.created)) &&
          (!due || (inv.dueDate !== null && due(inv.dueDate))) &&
          subscription === undefined // one-off invoices belong to no subscription
        : undefined,
    });
  });

  r.add(
    "GET",
    "/v1/invoices/search",
    ({ emu, params }) =>
      searchResponse(emu, params, emu.invoiceSearch, "/v1/invoices/search", (id) => {
        const inv = emu.store.invoices.get(id);
        return inv && !inv.deleted ? renderInvoice(emu, inv) : undefined;
      }),
  );

  r.add("POST", "/v1/invoices/:id/finalize", ({ emu, params, path, request }) => {
    params.only(["auto_advance"]);
    const inv = getInvoice(emu, path.id);
    if (inv.status !== "draft") {
      throw invalid(
        "This invoice is already finalized, you can't re-finalize a non-draft invoice.",
      );
    }
    const autoAdvance = params.bool("auto_advance");
    if (autoAdvance !== undefined) inv.autoAdvance = autoAdvance;
    finalize(emu, inv, request);
    return respond(emu, params, inv);
  });

  r.add("POST", "/v1/invoices/:id/pay", ({ emu, params, path, request }) => {
    const inv = getInvoice(emu, path.id);
    payInvoice(emu, inv, params, request);
    return respond(emu, params, inv);
  });

  r.add("POST", "/v1/invoices/:id/void", ({ emu, params, path, request }) => {
    params.only([]);
    const inv = getInvoice(emu, path.id);
    if (inv.status !== "open" && inv.status !== "uncollectible") {
      throw invalid(
        `You can only void open or uncollectible invoices. This invoice has status ` +
          `'${inv.status}'${inv.status === "draft" ? "; delete drafts instead" : ""}.`,
      );
    }
    transition(emu, inv, request, "void");
    return respond(emu, params, inv);
  });

  r.add("POST", "/v1/invoices/:id/mark_uncollectible", ({ emu, params, path, request }) => {
    params.only([]);
    const inv = getInvoice(emu, path.id);
    if (inv.status !== "open") {
      throw invalid(
        `You can only mark open invoices as uncollectible. This invoice has status ` +
          `'${inv.status}'.`,
      );
    }
    transition(emu, inv, request, "uncollectible");
    return respond(emu, params, inv);
  });

  r.add("POST", "/v1/invoices/:id/send", ({ emu, params, path, request }) => {
    params.only([]);
    const inv = getInvoice(emu, path.id);
    if (inv.collectionMethod !== "send_invoice") {
      throw invalid(
        "You can only manually send an invoice if its collection method is 'send_invoice'.",
      );
    }
    if (inv.status === "void") throw invalid("You can't send a voided invoice.");
    finalizeDraftFor(emu, inv, request, "send");
    emu.emit("invoice.sent", renderInvoice(emu, inv), request);
    return respond(emu, params, inv);
  });
}
