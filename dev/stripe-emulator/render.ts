/** Records to the JSON shapes of API version 2026-10-28.endive (stripe-node v23 types). */
import type { Emulator } from "./emulator.ts";
import type { Json, JsonObject } from "./json.ts";
import type {
  CustomerRecord,
  CustomerSnapshot,
  InvoiceItemRecord,
  InvoiceRecord,
  PaymentMethodRecord,
  ProductRecord,
  SetupIntentRecord,
} from "./model.ts";

/** `full` renders a deleted customer's last state (for the control API's state dump). */
export function renderCustomer(c: CustomerRecord, full = false): JsonObject {
  if (c.deleted && !full) return deletedStub(c.id, "customer");
  return {
    id: c.id,
    object: "customer",
    address: c.address,
    balance: c.balance,
    created: c.created,
    currency: c.currency,
    customer_account: null,
    default_source: null,
    delinquent: false,
    description: c.description,
    discount: null,
    email: c.email,
    invoice_prefix: c.invoicePrefix,
    invoice_settings: { ...c.invoiceSettings },
    livemode: false,
    metadata: { ...c.metadata },
    name: c.name,
    next_invoice_sequence: c.nextInvoiceSequence,
    phone: c.phone,
    preferred_locales: [...c.preferredLocales],
    shipping: c.shipping,
    tax_exempt: c.taxExempt,
    test_clock: null,
  };
}

export function deletedStub(id: string, object: string): JsonObject {
  return { id, object, deleted: true };
}

export function customerSnapshot(c: CustomerRecord | undefined): CustomerSnapshot {
  return {
    email: c?.email ?? null,
    name: c?.name ?? null,
    phone: c?.phone ?? null,
    address: c?.address ?? null,
    shipping: c?.shipping ?? null,
    tax_exempt: c?.taxExempt ?? "none",
  };
}

export interface InvoiceAmounts {
  subtotal: number;
  total: number;
  startingBalance: number;
  amountDue: number;
  amountRemaining: number;
  endingBalance: number | null;
}

/**
 * Totals from lines: no discounts or taxes, so subtotal = total; the
 * customer's balance (current while draft, frozen at finalization) adjusts amount_due, and a
 * negative result is due as 0.
 */
export function invoiceAmounts(emu: Emulator, inv: InvoiceRecord): InvoiceAmounts {
  const total = inv.subtotal;
  const startingBalance = inv.startingBalance ??
    (emu.store.customers.get(inv.customer)?.balance ?? 0);
  const amountDue = Math.max(0, total + startingBalance);
  return {
    subtotal: total,
    total,
    startingBalance,
    amountDue,
    amountRemaining: inv.status === "paid" ? 0 : Math.max(0, amountDue - inv.amountPaid),
    endingBalance: inv.endingBalance,
  };
}

function pricing(item: InvoiceItemRecord): Json {
  if (item.unitAmountDecimal === null) return null;
  return {
    type: "price_details",
    price_details: { price: item.price, product: item.product },
    unit_amount_decimal: item.unitAmountDecimal,
  };
}

export function renderLine(item: InvoiceItemRecord): JsonObject {
  return {
    id: item.lineId,
    object: "line_item",
    amount: item.amount,
    currency: item.currency,
    description: item.description,
    discount_amounts: [],
    discountable: item.discountable,
    discounts: [],
    invoice: item.invoice,
    livemode: false,
    metadata: { ...item.metadata },
    parent: {
      type: "invoice_item_details",
      invoice_item_details: {
        invoice_item: item.id,
        proration: false,
        proration_details: { credited_items: null },
        subscription: null,
      },
      subscription_item_details: null,
    },
    period: { ...item.period },
    pretax_credit_amounts: [],
    pricing: pricing(item),
    quantity: item.quantity,
    quantity_decimal: item.quantityDecimal,
    subscription: null,
    subtotal: item.amount,
    taxes: [],
  };
}

export function renderInvoiceItem(item: InvoiceItemRecord, full = false): JsonObject {
  if (item.deleted && !full) return deletedStub(item.id, "invoiceitem");
  return {
    id: item.id,
    object: "invoiceitem",
    amount: item.amount,
    currency: item.currency,
    customer: item.customer,
    customer_account: null,
    date: item.created,
    description: item.description,
    discountable: item.discountable,
    discounts: [],
    invoice: item.invoice,
    livemode: false,
    metadata: { ...item.metadata },
    net_amount: item.amount,
    parent: null,
    period: { ...item.period },
    pricing: pricing(item),
    proration: false,
    quantity: item.quantity,
    quantity_decimal: item.quantityDecimal,
    tax_rates: [],
    test_clock: null,
  };
}

/** Line records of an invoice, in line order. */
export function invoiceLines(emu: Emulator, inv: InvoiceRecord): InvoiceItemRecord[] {
  return inv.items.map((id) => emu.store.items.get(id)!);
}

export function renderInvoice(emu: Emulator, inv: InvoiceRecord, full = false): JsonObject {
  if (inv.deleted && !full) return deletedStub(inv.id, "invoice");
  const a = invoiceAmounts(emu, inv);
  const snap = inv.customerSnapshot ?? customerSnapshot(emu.store.customers.get(inv.customer));
  const embedded = inv.items.slice(0, emu.behaviour.embeddedLines)
    .map((id) => renderLine(emu.store.items.get(id)!));
  return {
    id: inv.id,
    object: "invoice",
    account_country: "US",
    account_name: "Stripe Emulator",
    account_tax_ids: null,
    amount_due: a.amountDue,
    amount_overpaid: 0,
    amount_paid: inv.amountPaid,
    amount_remaining: a.amountRemaining,
    amount_shipping: 0,
    application: null,
    attempt_count: inv.attemptCount,
    attempted: inv.attempted,
    auto_advance: inv.autoAdvance,
    automatic_tax: {
      disabled_reason: null,
      enabled: false,
      liability: null,
      provider: null,
      status: null,
    },
    automatically_finalizes_at: null,
    billing_reason: "manual",
    collection_method: inv.collectionMethod,
    created: inv.created,
    currency: inv.currency,
    custom_fields: inv.customFields,
    customer: inv.customer,
    customer_account: null,
    customer_address: snap.address,
    customer_email: snap.email,
    customer_name: snap.name,
    customer_phone: snap.phone,
    customer_shipping: snap.shipping,
    customer_tax_exempt: snap.tax_exempt,
    customer_tax_ids: [],
    default_payment_method: inv.defaultPaymentMethod,
    default_source: null,
    default_tax_rates: [],
    description: inv.description,
    discounts: [],
    due_date: inv.dueDate,
    effective_at: inv.effectiveAt,
    ending_balance: a.endingBalance,
    footer: inv.footer,
    from_invoice: null,
    hosted_invoice_url: inv.hostedInvoiceUrl,
    invoice_pdf: inv.invoicePdf,
    issuer: { type: "self" },
    last_finalization_error: null,
    latest_revision: null,
    lines: {
      object: "list",
      data: embedded,
      has_more: inv.items.length > embedded.length,
      total_count: inv.items.length,
      url: `/v1/invoices/${inv.id}/lines`,
    },
    livemode: false,
    metadata: { ...inv.metadata },
    next_payment_attempt: null,
    number: inv.number,
    on_behalf_of: null,
    parent: null,
    payment_settings: {
      default_mandate: null,
      payment_method_options: null,
      payment_method_types: null,
    },
    period_end: inv.created,
    period_start: inv.created,
    post_payment_credit_notes_amount: 0,
    pre_payment_credit_notes_amount: 0,
    receipt_number: null,
    rendering: null,
    shipping_cost: null,
    shipping_details: null,
    starting_balance: a.startingBalance,
    statement_descriptor: inv.statementDescriptor,
    status: inv.status,
    status_details: {},
    status_transitions: { ...inv.transitions },
    subtotal: a.subtotal,
    subtotal_excluding_tax: a.subtotal,
    test_clock: null,
    total: a.total,
    total_discount_amounts: [],
    total_excluding_tax: a.total,
    total_pretax_credit_amounts: [],
    total_taxes: [],
    webhooks_delivered_at: inv.created,
    ...inv.extra,
  };
}

export function renderProduct(p: ProductRecord): JsonObject {
  return {
    id: p.id,
    object: "product",
    active: p.active,
    created: p.created,
    default_price: null,
    description: p.description,
    images: [],
    livemode: false,
    marketing_features: [],
    metadata: { ...p.metadata },
    name: p.name,
    package_dimensions: null,
    shippable: null,
    statement_descriptor: null,
    tax_code: null,
    type: "service",
    unit_label: null,
    updated: p.updated,
    url: null,
  };
}

export function renderPaymentMethod(pm: PaymentMethodRecord): JsonObject {
  return {
    id: pm.id,
    object: "payment_method",
    allow_redisplay: "unspecified",
    billing_details: {
      address: {
        city: null,
        country: null,
        line1: null,
        line2: null,
        postal_code: null,
        state: null,
      },
      email: null,
      name: null,
      phone: null,
      tax_id: null,
      ...pm.billingDetails,
    },
    card: {
      brand: pm.card.brand,
      checks: { address_line1_check: null, address_postal_code_check: null, cvc_check: "pass" },
      country: pm.card.country,
      display_brand: pm.card.brand,
      exp_month: pm.card.exp_month,
      exp_year: pm.card.exp_year,
      fingerprint: pm.fingerprint,
      funding: pm.card.funding,
      generated_from: null,
      last4: pm.card.last4,
      networks: { available: [pm.card.brand], preferred: null },
      regulated_status: "unregulated",
      three_d_secure_usage: { supported: true },
      wallet: null,
    },
    created: pm.created,
    customer: pm.customer,
    customer_account: null,
    livemode: false,
    metadata: { ...pm.metadata },
    type: pm.type,
  };
}

export function renderSetupIntent(si: SetupIntentRecord): JsonObject {
  return {
    id: si.id,
    object: "setup_intent",
    application: null,
    automatic_payment_methods: si.automaticPaymentMethods,
    cancellation_reason: null,
    client_secret: si.clientSecret,
    created: si.created,
    customer: si.customer,
    customer_account: null,
    description: si.description,
    excluded_payment_method_types: null,
    flow_directions: null,
    last_setup_error: null,
    latest_attempt: null,
    livemode: false,
    mandate: null,
    metadata: { ...si.metadata },
    next_action: null,
    on_behalf_of: null,
    payment_method: si.paymentMethod,
    payment_method_configuration_details: null,
    payment_method_options: {
      card: { mandate_options: null, network: null, request_three_d_secure: "automatic" },
    },
    payment_method_types: [...si.paymentMethodTypes],
    single_use_mandate: null,
    status: si.status,
    usage: si.usage,
  };
}
