/** Payment methods of a customer: list, retrieve, attach, detach; and setup intents. */
import type { Emulator, RequestInfo } from "../emulator.ts";
import { invalid, missingParam, noSuch } from "../errors.ts";
import { newId, randomBase62 } from "../ids.ts";
import type { Json, JsonObject } from "../json.ts";
import type { CardDetails, CustomerRecord, PaymentMethodRecord } from "../model.ts";
import { applyMetadata } from "../params.ts";
import { renderCustomer, renderPaymentMethod, renderSetupIntent } from "../render.ts";
import type { Router } from "../router.ts";
import { expandAll, getCustomer, getLiveCustomer, LIST_PARAMS, paginate } from "./common.ts";

export function getPaymentMethod(emu: Emulator, id: string, param = "id"): PaymentMethodRecord {
  const pm = emu.store.paymentMethods.get(id);
  if (!pm) throw noSuch("pm", id, param);
  return pm;
}

/** Creates a card payment method (only the control API does this: "by hand"). */
export function createCard(
  emu: Emulator,
  card: Partial<CardDetails> & { declines?: boolean; metadata?: Record<string, string> },
): PaymentMethodRecord {
  const pm: PaymentMethodRecord = {
    id: newId("pm"),
    created: emu.clock.created(),
    seq: emu.store.nextSeq(),
    customer: null,
    type: "card",
    card: {
      brand: card.brand ?? "visa",
      last4: card.last4 ?? "4242",
      exp_month: card.exp_month ?? 12,
      exp_year: card.exp_year ?? new Date().getUTCFullYear() + 3,
      funding: card.funding ?? "credit",
      country: card.country ?? "US",
    },
    billingDetails: {},
    fingerprint: randomBase62(16),
    metadata: { ...(card.metadata ?? {}) },
    declines: card.declines ?? false,
  };
  emu.store.paymentMethods.set(pm.id, pm);
  return pm;
}

export function attachPaymentMethod(
  emu: Emulator,
  pm: PaymentMethodRecord,
  c: CustomerRecord,
  request: RequestInfo,
): void {
  if (pm.customer === c.id) return;
  if (pm.customer) {
    throw invalid("The payment method you provided has already been attached to a customer.", {
      param: "payment_method",
    });
  }
  pm.customer = c.id;
  emu.store.paymentMethodsByCustomer.insert(c.id, pm);
  emu.emit("payment_method.attached", renderPaymentMethod(pm), request, { customer: null });
}

export function detachPaymentMethod(
  emu: Emulator,
  pm: PaymentMethodRecord,
  request: RequestInfo,
): void {
  if (!pm.customer) {
    throw invalid(
      "The payment method you provided is not attached to a customer so detachment is impossible.",
      { param: "payment_method" },
    );
  }
  const c = emu.store.customers.get(pm.customer);
  emu.store.paymentMethodsByCustomer.remove(pm.customer, pm);
  const previousCustomer = pm.customer;
  pm.customer = null;
  emu.emit("payment_method.detached", renderPaymentMethod(pm), request, {
    customer: previousCustomer,
  });
  // Stripe clears a default that points at a detached method.
  if (c && !c.deleted && c.invoiceSettings.default_payment_method === pm.id) {
    c.invoiceSettings.default_payment_method = null;
    emu.emit("customer.updated", renderCustomer(c), request, {
      invoice_settings: { default_payment_method: pm.id },
    });
  }
}

export function registerPaymentMethodRoutes(r: Router): void {
  r.add("GET", "/v1/customers/:id/payment_methods", ({ emu, params, path }) => {
    params.only([...LIST_PARAMS, "type", "allow_redisplay"]);
    const c = getLiveCustomer(emu, path.id);
    const type = params.str("type");
    return paginate(emu, params, emu.store.paymentMethodsByCustomer.get(c.id), {
      url: `/v1/customers/${c.id}/payment_methods`,
      kind: "pm",
      lookup: (id) => emu.store.paymentMethods.get(id),
      render: renderPaymentMethod,
      filter: type ? (pm) => pm.type === type : undefined,
    });
  });

  r.add("GET", "/v1/customers/:customer/payment_methods/:id", ({ emu, params, path }) => {
    params.only([]);
    const c = getCustomer(emu, path.customer);
    const pm = getPaymentMethod(emu, path.id);
    if (pm.customer !== c.id) throw noSuch("pm", path.id);
    return expandAll(params.expand(), renderPaymentMethod(pm), emu);
  });

  r.add("GET", "/v1/payment_methods/:id", ({ emu, params, path }) => {
    params.only([]);
    return expandAll(params.expand(), renderPaymentMethod(getPaymentMethod(emu, path.id)), emu);
  });

  r.add("POST", "/v1/payment_methods/:id/attach", ({ emu, params, path, request }) => {
    params.only(["customer"]);
    const pm = getPaymentMethod(emu, path.id);
    const c = getLiveCustomer(emu, params.str("customer", { required: true })!, "customer");
    attachPaymentMethod(emu, pm, c, request);
    return expandAll(params.expand(), renderPaymentMethod(pm), emu);
  });

  r.add("POST", "/v1/payment_methods/:id/detach", ({ emu, params, path, request }) => {
    params.only([]);
    const pm = getPaymentMethod(emu, path.id);
    detachPaymentMethod(emu, pm, request);
    return expandAll(params.expand(), renderPaymentMethod(pm), emu);
  });

  r.add("POST", "/v1/setup_intents", ({ emu, params, request }) => {
    params.only([
      "automatic_payment_methods",
      "customer",
      "description",
      "metadata",
      "payment_method",
      "payment_method_types",
      "usage",
    ]);
    const customerId = params.str("customer", { nonEmpty: true });
    if (customerId !== undefined) getLiveCustomer(emu, customerId, "customer");
    const pmId = params.str("payment_method", { nonEmpty: true });
    if (pmId !== undefined) getPaymentMethod(emu, pmId, "payment_method");
    let automatic: Json = null;
    const apm = params.obj("automatic_payment_methods");
    if (apm) {
      apm.only(["enabled", "allow_redirects"]);
      const enabled = apm.bool("enabled");
      if (enabled === undefined) throw missingParam("automatic_payment_methods[enabled]");
      automatic = {
        allow_redirects: apm.oneOf("allow_redirects", ["always", "never"] as const) ?? "always",
        enabled,
      };
    }
    const types = params.strList("payment_method_types");
    if (automatic && types) {
      throw invalid(
        "You may only specify one of these parameters: automatic_payment_methods, " +
          "payment_method_types.",
        { code: "parameters_exclusive", param: "automatic_payment_methods" },
      );
    }
    const id = newId("seti");
    const si = {
      id,
      created: emu.clock.created(),
      seq: emu.store.nextSeq(),
      customer: customerId ?? null,
      status: "requires_payment_method" as const,
      usage: params.oneOf("usage", ["on_session", "off_session"] as const) ?? "off_session",
      description: params.nullableStr("description") ?? null,
      metadata: applyMetadata({}, params.metadata()),
      paymentMethod: pmId ?? null,
      paymentMethodTypes: types ?? (automatic ? ["card", "link"] : ["card"]),
      automaticPaymentMethods: automatic,
      clientSecret: `${id}_secret_${randomBase62(25)}`,
    };
    emu.store.setupIntents.set(id, si);
    const body: JsonObject = renderSetupIntent(si);
    emu.emit("setup_intent.created", renderSetupIntent(si), request);
    return expandAll(params.expand(), body, emu);
  });

  r.add("GET", "/v1/setup_intents/:id", ({ emu, params, path }) => {
    params.only(["client_secret"]);
    const si = emu.store.setupIntents.get(path.id);
    if (!si) throw noSuch("seti", path.id);
    return expandAll(params.expand(), renderSetupIntent(si), emu);
  });
}
