/** Customers: create, retrieve (deleted -> stub), update, delete, list, search. */
import { invalid, invalidParam, missingParam, noSuch } from "../errors.ts";
import type { Emulator, RequestInfo } from "../emulator.ts";
import { newId, randomBase62 } from "../ids.ts";
import { type Json, type JsonObject, previousAttributes } from "../json.ts";
import type { CustomerRecord } from "../model.ts";
import { applyMetadata, type Params } from "../params.ts";
import { renderCustomer } from "../render.ts";
import type { Router } from "../router.ts";
import {
  expandAll,
  getCustomer,
  getLiveCustomer,
  LIST_PARAMS,
  paginate,
  rangeFilter,
  searchResponse,
} from "./common.ts";
import { attachPaymentMethod, getPaymentMethod } from "./payment_methods.ts";

const WRITABLE = [
  "address",
  "balance",
  "description",
  "email",
  "invoice_prefix",
  "invoice_settings",
  "metadata",
  "name",
  "next_invoice_sequence",
  "phone",
  "preferred_locales",
  "shipping",
  "tax_exempt",
];

function address(p: Params, key: string): Json | undefined {
  if (!p.has(key)) return undefined;
  if (p.isEmpty(key)) return null;
  const a = p.obj(key)!.only(["city", "country", "line1", "line2", "postal_code", "state"]);
  return {
    city: a.str("city") ?? null,
    country: a.str("country") ?? null,
    line1: a.str("line1") ?? null,
    line2: a.str("line2") ?? null,
    postal_code: a.str("postal_code") ?? null,
    state: a.str("state") ?? null,
  };
}

function shipping(p: Params): Json | undefined {
  if (!p.has("shipping")) return undefined;
  if (p.isEmpty("shipping")) return null;
  const s = p.obj("shipping")!.only(["address", "name", "phone"]);
  if (!s.has("address")) throw missingParam("shipping[address]");
  return {
    address: address(s, "address") ?? null,
    name: s.str("name", { required: true })!,
    phone: s.str("phone") ?? null,
  };
}

function customFields(p: Params, key: string, max: number): Json | undefined {
  if (!p.has(key)) return undefined;
  if (p.isEmpty(key)) return null;
  const fields = p.list(key)!;
  if (fields.length > max) {
    throw invalidParam(key, `You can pass at most ${max} custom fields.`);
  }
  return fields.map((f) => {
    f.only(["name", "value"]);
    return {
      name: f.str("name", { required: true, max: 40 })!,
      value: f.str("value", { required: true, max: 140 })!,
    };
  });
}

/** Validates and applies writable customer params onto a record (create and update). */
function applyCustomerParams(emu: Emulator, c: CustomerRecord, p: Params): void {
  const name = p.nullableStr("name", 256);
  if (name !== undefined) c.name = name;
  const email = p.nullableStr("email", 512);
  if (email !== undefined) {
    if (email !== null && !/^[^\s@]+@[^\s@]+$/.test(email)) {
      throw invalid(`Invalid email address: ${email}`, { code: "email_invalid", param: "email" });
    }
    c.email = email;
  }
  const description = p.nullableStr("description", 350);
  if (description !== undefined) c.description = description;
  const phone = p.nullableStr("phone", 20);
  if (phone !== undefined) c.phone = phone;
  const addr = address(p, "address");
  if (addr !== undefined) c.address = addr;
  const ship = shipping(p);
  if (ship !== undefined) c.shipping = ship;
  const balance = p.int("balance");
  if (balance !== undefined) c.balance = balance;
  const prefix = p.str("invoice_prefix");
  if (prefix !== undefined) {
    if (!/^[A-Z0-9]{3,12}$/.test(prefix)) {
      throw invalidParam(
        "invoice_prefix",
        "Invoice prefix must be between 3 and 12 uppercase letters or numbers.",
      );
    }
    c.invoicePrefix = prefix;
  }
  const seq = p.int("next_invoice_sequence", { min: 1 });
  if (seq !== undefined) c.nextInvoiceSequence = seq;
  const locales = p.strList("preferred_locales");
  if (locales !== undefined) c.preferredLocales = locales;
  const taxExempt = p.oneOf("tax_exempt", ["none", "exempt", "reverse"] as const);
  if (taxExempt !== undefined) c.taxExempt = taxExempt;
  c.metadata = applyMetadata(c.metadata, p.metadata());
  const settings = p.obj("invoice_settings");
  if (settings) {
    settings.only(["custom_fields", "default_payment_method", "footer", "rendering_options"]);
    const cf = customFields(settings, "custom_fields", 4);
    if (cf !== undefined) c.invoiceSettings.custom_fields = cf;
    const footer = settings.nullableStr("footer", 5000);
    if (footer !== undefined) c.invoiceSettings.footer = footer;
    if (settings.has("rendering_options")) {
      const ro = settings.obj("rendering_options");
      c.invoiceSettings.rendering_options = ro
        ? {
          amount_tax_display: ro.only(["amount_tax_display", "template"]).str(
            "amount_tax_display",
          ) ?? null,
          template: ro.str("template") ?? null,
        }
        : null;
    }
    const pmId = settings.nullableStr("default_payment_method");
    if (pmId !== undefined) {
      if (pmId !== null) {
        const param = "invoice_settings[default_payment_method]";
        const pm = getPaymentMethod(emu, pmId, param);
        if (pm.customer !== c.id) {
          throw invalid(
            `The customer does not have a payment method with the ID ${pmId}. The payment ` +
              `method must be attached to the customer.`,
            { code: "resource_missing", param },
          );
        }
      }
      c.invoiceSettings.default_payment_method = pmId;
    }
  }
}

function newCustomer(emu: Emulator): CustomerRecord {
  return {
    id: newId("cus"),
    created: emu.clock.created(),
    seq: emu.store.nextSeq(),
    deleted: false,
    name: null,
    email: null,
    description: null,
    phone: null,
    address: null,
    shipping: null,
    balance: 0,
    currency: null,
    invoicePrefix: randomBase62(8).toUpperCase(),
    nextInvoiceSequence: 1,
    invoiceSettings: {
      custom_fields: null,
      default_payment_method: null,
      footer: null,
      rendering_options: null,
    },
    metadata: {},
    preferredLocales: [],
    taxExempt: "none",
  };
}

export function createCustomer(emu: Emulator, p: Params, request: RequestInfo): JsonObject {
  p.only([...WRITABLE, "payment_method"]);
  const c = newCustomer(emu);
  const pmId = p.str("payment_method", { nonEmpty: true });
  const pm = pmId !== undefined ? getPaymentMethod(emu, pmId, "payment_method") : undefined;
  if (pm?.customer) {
    throw invalid("The payment method you provided has already been attached to a customer.", {
      param: "payment_method",
    });
  }
  // The default PM check needs the PM attached first, so attach before applying settings.
  if (pm) pm.customer = c.id;
  try {
    applyCustomerParams(emu, c, p);
  } catch (e) {
    if (pm) pm.customer = null;
    throw e;
  }
  if (pm) pm.customer = null;
  emu.store.addCustomer(c);
  emu.indexCustomer(c);
  emu.emit("customer.created", renderCustomer(c), request);
  if (pm) attachPaymentMethod(emu, pm, c, request);
  return expandAll(p.expand(), renderCustomer(c), emu);
}

export function updateCustomer(
  emu: Emulator,
  c: CustomerRecord,
  p: Params,
  request: RequestInfo,
): JsonObject {
  p.only(WRITABLE);
  const before = renderCustomer(c);
  // Validate everything on a copy so a failed update changes nothing.
  const draft = structuredClone(c);
  applyCustomerParams(emu, draft, p);
  Object.assign(c, draft);
  const after = renderCustomer(c);
  const previous = previousAttributes(before, after);
  if (Object.keys(previous).length > 0) {
    emu.indexCustomer(c);
    emu.emit("customer.updated", after, request, previous);
  }
  return expandAll(p.expand(), after, emu);
}

export function deleteCustomer(emu: Emulator, c: CustomerRecord, request: RequestInfo) {
  const last = renderCustomer(c);
  c.deleted = true;
  emu.store.customerIndex.remove(c);
  emu.indexCustomer(c);
  emu.emit("customer.deleted", last, request);
  return renderCustomer(c);
}

export function registerCustomerRoutes(r: Router): void {
  r.add(
    "POST",
    "/v1/customers",
    ({ emu, params, request }) => createCustomer(emu, params, request),
  );

  r.add("GET", "/v1/customers/:id", ({ emu, params, path }) => {
    params.only([]);
    return expandAll(params.expand(), renderCustomer(getCustomer(emu, path.id)), emu);
  });

  r.add("POST", "/v1/customers/:id", ({ emu, params, path, request }) => {
    const c = getCustomer(emu, path.id);
    if (c.deleted) throw noSuch("cus", path.id);
    return updateCustomer(emu, c, params, request);
  });

  r.add("DELETE", "/v1/customers/:id", ({ emu, params, path, request }) => {
    params.only([]);
    return deleteCustomer(emu, getLiveCustomer(emu, path.id), request);
  });

  r.add("GET", "/v1/customers", ({ emu, params }) => {
    params.only([...LIST_PARAMS, "email", "created", "test_clock"]);
    const email = params.str("email");
    const created = rangeFilter(params, "created");
    return paginate(emu, params, emu.store.customerIndex, {
      url: "/v1/customers",
      kind: "cus",
      lookup: (id) => emu.store.customers.get(id),
      render: renderCustomer,
      filter: email === undefined && !created
        ? undefined
        : (c) => (email === undefined || c.email === email) && (!created || created(c.created)),
    });
  });

  r.add(
    "GET",
    "/v1/customers/search",
    ({ emu, params }) =>
      searchResponse(emu, params, emu.customerSearch, "/v1/customers/search", (id) => {
        const c = emu.store.customers.get(id);
        return c && !c.deleted ? renderCustomer(c) : undefined;
      }),
  );
}
