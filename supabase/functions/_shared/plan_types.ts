/**
 * The planner's vocabulary: a bill, what is known of its Stripe invoice, and the actions a plan
 * is made of. Types only.
 */

export type CollectionMethod = "charge_automatically" | "send_invoice";
export type InvoiceStatus = "draft" | "open" | "paid" | "uncollectible" | "void";

/** One line of a bill (amounts in cents; count and subtotal may be fractional in legacy reports). */
export interface BillLine {
  description: string | null;
  count: number;
  rate: number;
  subtotal: number;
}

/** A bill as selected for a month. `preview` rows are refused, never published. */
export interface Bill {
  kind: "final" | "manual" | "preview";
  id: number;
  tenant: string;
  /** YYYY-MM-DD, inclusive. */
  dateStart: string;
  dateEnd: string;
  lineItems: BillLine[];
  subtotal: number;
  /** The usage report (final bills): processed_data_gb and friends. */
  extra: { processed_data_gb?: number | null } | null;
  storedInvoiceId: string | null;
  tenantTrialStart: string | null;
  paymentProvider: "stripe" | "external" | null;
  /** Audited releases and replacements of this bill's invoice so far. */
  generation: number;
  /** Invoices this bill has released or replaced: never adopted again. */
  releasedInvoiceIds: string[];
}

/** A line of a Stripe invoice, as much as the planner compares. */
export interface LineSnapshot {
  id: string;
  description: string | null;
  amount: number;
  quantity: number | null;
  periodStart: number;
  periodEnd: number;
}

/** A Stripe invoice, as much as the planner needs. */
export interface InvoiceSnapshot {
  id: string;
  status: InvoiceStatus | null;
  customer: string | null;
  created: number;
  collectionMethod: CollectionMethod;
  dueDate: number | null;
  description: string | null;
  customFields: { name: string; value: string }[];
  metadata: Record<string, string>;
  total: number;
  /** Every line (all pages) for drafts; null when not read. */
  lines: LineSnapshot[] | null;
}

/** What identity resolution learned about the bill's invoice. */
export type InvoiceKnowledge =
  /** The stored ID was retrieved; null means Stripe answered 404 (deleted). */
  | { via: "stored"; invoice: InvoiceSnapshot | null; listed?: ListedInvoices }
  /** No stored ID: the customer's invoices, every page. */
  | { via: "listed"; listed: ListedInvoices }
  /** No customer yet (a dry run would create one, or it was just created): nothing to find. */
  | { via: "none" };

export interface ListedInvoices {
  invoices: InvoiceSnapshot[];
  /** Invoice ID → the bill (`kind:id`) it is already linked to, for listed invoices. */
  linkedTo: Record<string, string>;
}

/** Everything phase 2 needs to know from Stripe and from earlier runs. */
export interface StripeKnowledge {
  customerId: string | null;
  customerSource: "stored" | "adopted" | "created" | "would_create";
  customerDeleted: boolean;
  /** Only asked for when the no-data-moved rule needs it; null = unknown (treated as none). */
  hasDefaultPaymentMethod: boolean | null;
  invoice: InvoiceKnowledge;
  /**
   * An earlier create intent of this bill and when it was recorded (Unix ms): its due date is
   * reused only while Stripe still holds its key, so a replay sends the same body.
   */
  priorCreate:
    | { idempotencyKey: string; dueDate: number | null; at: number; customerId: string | null }
    | null;
  /** An earlier attempt deleted or voided this invoice to replace it (or as a stale draft). */
  replacementStartedFor: string | null;
  /** Invoices this run already created for the bill: never replaced again by the same run. */
  createdThisRun: string[];
  /** Errors Stripe replayed for this bill so far: each moves its writes to fresh keys. */
  keySalt: number;
  /**
   * This bill's invoices on another customer than the one it is published to now, left there by
   * an interrupted create (no stored ID) before the bill moved tenant.
   */
  orphans: InvoiceSnapshot[];
}

/** Run-wide inputs. */
export interface PlanContext {
  runId: string;
  /** Used only for due dates and the age of earlier create intents. */
  now: Date;
  recreateExisting: boolean;
  usageCollectionMethod: CollectionMethod;
  /** This database's installation ID: in every key and in the metadata of what it creates. */
  installation: string;
}

/** The invoice fields this system writes. */
export interface InvoiceSpec {
  collectionMethod: CollectionMethod;
  /** Unix seconds; send_invoice only. */
  dueDate: number | null;
  description: string;
  customFields: { name: string; value: string }[];
  metadata: Record<string, string>;
}

/** One invoice line: a signed amount in cents (no Price, no Product). */
export interface LineSpec {
  description: string;
  amount: number;
  periodStart: number;
  periodEnd: number;
}

export type SkipReason =
  | "free_tier"
  | "trial_starts_after_period"
  | "under_minimum"
  | "no_data_moved_no_payment_method"
  | "already_processed";

export type WarnReason =
  | "voided"
  | "deleted"
  | "customer_deleted"
  | "customer_mismatch"
  | "invoice_differs"
  | "conflict"
  | "possible_legacy_match";

export type RefuseReason = "preview" | "missing_report" | "inconsistent_bill";

export interface BillKey {
  kind: "final" | "manual" | "preview";
  id: number;
  tenant: string;
}

/** How an existing invoice was found without a stored ID. */
export interface Adoption {
  invoiceId: string;
  via: "bill_id" | "upstream_key";
}

export type Action =
  | {
    kind: "create";
    bill: BillKey;
    reason: "no_invoice" | "replace";
    customerId: string | null;
    idempotencyKey: string;
    /** Prefix of the keys of this bill's later writes (lines). */
    keyBase: string;
    invoice: InvoiceSpec;
    lines: LineSpec[];
    expectedTotal: number;
    /** The invoice this one replaces, and what to do to it first. */
    replaces?: { invoiceId: string; how: "void" | "delete" | "none"; why: string };
    /** An unlinked draft of this bill on another customer, deleted before the create. */
    discardOrphan?: string;
  }
  | {
    kind: "update";
    bill: BillKey;
    reason: "draft" | "adopted_draft";
    invoiceId: string;
    keyBase: string;
    adopt?: Adoption;
    /** Fields to write; null when they already match. */
    fields: Partial<InvoiceSpec> | null;
    /** The current values of those fields (part of the write's key). */
    fieldsBefore: Partial<InvoiceSpec> | null;
    /** Replace every line: remove these, add those. Null when the lines already match. */
    lines: { remove: string[]; add: LineSpec[] } | null;
    /** The draft's total as read (checked when nothing is written). */
    currentTotal: number;
    expectedTotal: number;
    /** An adopted invoice replaces this one (audited swap). */
    replaces?: string;
  }
  | {
    /** A draft of a bill that no longer needs an invoice: delete it and release the ID. */
    kind: "discard";
    bill: BillKey;
    reason: SkipReason;
    detail: string;
    invoiceId: string;
    /** The draft is already gone (an earlier attempt deleted it): only release the ID. */
    alreadyDeleted: boolean;
    /** The draft is the bill's stored invoice (released after); false: an unlinked orphan. */
    linked: boolean;
  }
  | {
    kind: "skip";
    bill: BillKey;
    reason: SkipReason;
    detail: string;
    invoiceId?: string;
    adopt?: Adoption;
  }
  | {
    kind: "warn";
    bill: BillKey;
    reason: WarnReason;
    detail: string;
    invoiceId?: string;
    adopt?: Adoption;
  }
  | { kind: "refuse"; bill: BillKey; reason: RefuseReason; detail: string };

/** Phase 1 result: settled without Stripe, skippable once its stored invoice is seen, or ask. */
export type Classification =
  | { kind: "settled"; action: Action }
  | { kind: "check_stored"; skip: Extract<Action, { kind: "skip" }> }
  | { kind: "needs_stripe"; needsPaymentMethod: boolean };
