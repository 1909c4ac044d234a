/** In-memory records. Rendering to Stripe's JSON shapes lives in render.ts. */
import type { Json, JsonObject, Metadata } from "./json.ts";
import type { Ordered } from "./sorted_index.ts";

export interface CustomerRecord extends Ordered {
  deleted: boolean;
  name: string | null;
  email: string | null;
  description: string | null;
  phone: string | null;
  address: Json;
  shipping: Json;
  balance: number;
  currency: string | null;
  invoicePrefix: string;
  nextInvoiceSequence: number;
  invoiceSettings: {
    custom_fields: Json;
    default_payment_method: string | null;
    footer: string | null;
    rendering_options: Json;
  };
  metadata: Metadata;
  preferredLocales: string[];
  taxExempt: string;
}

export const INVOICE_STATUSES = ["draft", "open", "paid", "uncollectible", "void"] as const;
export type InvoiceStatus = typeof INVOICE_STATUSES[number];
export type CollectionMethod = "charge_automatically" | "send_invoice";

/** Customer fields an invoice copies live while draft and freezes at finalization. */
export interface CustomerSnapshot {
  email: string | null;
  name: string | null;
  phone: string | null;
  address: Json;
  shipping: Json;
  tax_exempt: string;
}

export interface InvoiceRecord extends Ordered {
  deleted: boolean;
  customer: string;
  status: InvoiceStatus;
  currency: string;
  collectionMethod: CollectionMethod;
  autoAdvance: boolean;
  description: string | null;
  footer: string | null;
  statementDescriptor: string | null;
  customFields: Json;
  metadata: Metadata;
  daysUntilDue: number | null;
  dueDate: number | null;
  number: string | null;
  effectiveAt: number | null;
  hostedInvoiceUrl: string | null;
  invoicePdf: string | null;
  transitions: {
    finalized_at: number | null;
    marked_uncollectible_at: number | null;
    paid_at: number | null;
    voided_at: number | null;
  };
  /** Invoice item ids in line order. */
  items: string[];
  /** Running sum of line amounts, kept current on every line change. */
  subtotal: number;
  startingBalance: number | null;
  endingBalance: number | null;
  amountPaid: number;
  paidOutOfBand: boolean;
  attemptCount: number;
  attempted: boolean;
  customerSnapshot: CustomerSnapshot | null;
  defaultPaymentMethod: string | null;
  /** Opaque pass-through fields (rendering, payment_settings, shipping_details, ...). */
  extra: JsonObject;
}

export interface InvoiceItemRecord extends Ordered {
  deleted: boolean;
  customer: string;
  invoice: string | null;
  /** The `il_` id of its line while attached to an invoice. */
  lineId: string | null;
  amount: number;
  currency: string;
  description: string | null;
  metadata: Metadata;
  period: { start: number; end: number };
  quantity: number;
  quantityDecimal: string;
  unitAmountDecimal: string | null;
  /** Inline price created for `price_data` / `unit_amount_decimal` items. */
  price: string | null;
  product: string | null;
  discountable: boolean;
}

export interface ProductRecord extends Ordered {
  name: string;
  description: string | null;
  active: boolean;
  metadata: Metadata;
  updated: number;
  /** How it came to be: `POST /v1/products`, or `price_data[product_data]` on a line. */
  origin: "api" | "product_data";
}

export interface CardDetails {
  brand: string;
  last4: string;
  exp_month: number;
  exp_year: number;
  funding: string;
  country: string;
}

export interface PaymentMethodRecord extends Ordered {
  customer: string | null;
  type: "card";
  card: CardDetails;
  billingDetails: JsonObject;
  fingerprint: string;
  metadata: Metadata;
  /** Hand-made test cards can be set to decline every charge. */
  declines: boolean;
}

export interface SetupIntentRecord extends Ordered {
  customer: string | null;
  status: "requires_payment_method" | "succeeded" | "canceled";
  usage: string;
  description: string | null;
  metadata: Metadata;
  paymentMethod: string | null;
  paymentMethodTypes: string[];
  automaticPaymentMethods: Json;
  clientSecret: string;
}

export interface EventRecord extends Ordered {
  type: string;
  body: JsonObject;
}
