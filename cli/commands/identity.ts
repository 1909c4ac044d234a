/**
 * The audited operator actions on stored identity: `release` (let a voided or deleted bill be
 * issued again, or forget a tenant's deleted customer), `replace` (swap a tenant's customer) and
 * `link` (state which Stripe object a bill or tenant is). All check Stripe first and go through
 * the compare-and-set SQL functions.
 */
import { type CommandSpec, type Flags, UsageError } from "../args.ts";
import { confirm } from "../confirm.ts";
import type { CliContext } from "../context.ts";
import { loadBill as loadStoredBill } from "../../supabase/functions/_shared/bills.ts";
import {
  billRef,
  parseBillRef,
  TENANT_NAME_KEY,
} from "../../supabase/functions/_shared/metadata.ts";
import { recordInvoiceState } from "../../supabase/functions/_shared/invoices.ts";
import { isStripeNotFound } from "../../supabase/functions/_shared/stripe_calls.ts";
import type { Stripe } from "../../supabase/functions/_shared/stripe_client.ts";

export const releaseSpec: CommandSpec = {
  name: "release",
  summary: "Forget a bill's voided/deleted invoice or a tenant's deleted customer (audited).",
  usage: "release (--bill KIND:ID | --tenant SLUG) --reason TEXT",
  flags: {
    bill: {
      type: "string",
      placeholder: "KIND:ID",
      description: "the bill, e.g. manual:3 or final:12",
    },
    tenant: {
      type: "string",
      placeholder: "SLUG",
      description: "the tenant whose customer to forget, e.g. acmeCo/",
    },
    reason: {
      type: "string",
      placeholder: "TEXT",
      description: "why, recorded in the audit",
      required: true,
    },
    yes: {
      type: "boolean",
      description: "release an invoice last seen open or paid without asking",
    },
  },
  details: "Refused unless the stored invoice is void in Stripe or gone (deleted draft), or the\n" +
    "tenant's stored customer is deleted in Stripe. A released customer is never linked again;\n" +
    "the next publish (or link) gives the tenant a new one. Use replace for a live customer.\n" +
    "An invoice Stripe no longer has that was open or paid when last seen needs confirmation.",
};

export const replaceSpec: CommandSpec = {
  name: "replace",
  summary: "Swap a tenant's stored customer for another one (audited; the old one is retired).",
  usage: "replace --tenant SLUG --customer cus_... --reason TEXT",
  flags: {
    tenant: { type: "string", placeholder: "SLUG", description: "the tenant, e.g. acmeCo/" },
    customer: {
      type: "string",
      placeholder: "cus_...",
      description: "the tenant's new Stripe customer",
      required: true,
    },
    reason: {
      type: "string",
      placeholder: "TEXT",
      description: "why, recorded in the audit",
      required: true,
    },
  },
  details: "Refused when the new customer is deleted, belongs to another tenant, is linked\n" +
    "elsewhere or was released before. The old customer is never linked to any tenant again.",
};

export const linkSpec: CommandSpec = {
  name: "link",
  summary: "State which Stripe invoice a bill is, or which customer a tenant is (audited).",
  usage: "link (--bill KIND:ID --invoice in_... | --tenant SLUG --customer cus_...) --reason TEXT",
  flags: {
    bill: { type: "string", placeholder: "KIND:ID", description: "the bill, e.g. manual:3" },
    invoice: { type: "string", placeholder: "in_...", description: "the bill's Stripe invoice" },
    tenant: { type: "string", placeholder: "SLUG", description: "the tenant, e.g. acmeCo/" },
    customer: {
      type: "string",
      placeholder: "cus_...",
      description: "the tenant's Stripe customer",
    },
    reason: {
      type: "string",
      placeholder: "TEXT",
      description: "why, recorded in the audit",
      required: true,
    },
  },
  details: 'Resolves a "possible legacy match" or a duplicate. Refused when the Stripe object\n' +
    "belongs to another tenant or is already linked elsewhere, or when one is already stored.",
};

/** A bill row as the identity commands need it. */
interface BillRow {
  kind: "final" | "manual";
  id: number;
  tenant: string;
  stripe_invoice_id: string | null;
  customer_id: string | null;
}

function requireBill(flags: Flags): { kind: "final" | "manual"; id: number } {
  const ref = parseBillRef(String(flags.bill ?? ""));
  if (!ref) {
    throw new UsageError(`--bill must be KIND:ID (final:12, manual:3), got "${flags.bill}"`);
  }
  return ref;
}

function requireReason(flags: Flags): string {
  const reason = String(flags.reason ?? "").trim();
  if (!reason) throw new UsageError("--reason must say why (it is recorded in the audit)");
  return reason;
}

async function loadBill(ctx: CliContext, kind: "final" | "manual", id: number): Promise<BillRow> {
  const loaded = await loadStoredBill(ctx.sql, kind, id);
  if (!loaded) throw new UsageError(`bill ${billRef(kind, id)} does not exist`);
  return {
    kind,
    id,
    tenant: loaded.bill.tenant,
    stripe_invoice_id: loaded.bill.storedInvoiceId,
    customer_id: loaded.tenantCustomerId,
  };
}

async function retrieveInvoice(ctx: CliContext, id: string): Promise<Stripe.Invoice | null> {
  try {
    return await ctx.caller.call("GET /v1/invoices/:id", (s) => s.invoices.retrieve(id));
  } catch (err) {
    if (isStripeNotFound(err)) return null;
    throw err;
  }
}

function recordState(ctx: CliContext, invoice: Stripe.Invoice | { id: string; deleted: true }) {
  return recordInvoiceState(ctx.sql, invoice, new Date(), "cli");
}

/** Result of an identity command, printed or emitted as JSON. */
export interface IdentityResult {
  ok: boolean;
  action: string;
  subject: string;
  message: string;
  stored_id: string | null;
}

function report(ctx: CliContext, result: IdentityResult): number {
  if (ctx.json) console.log(JSON.stringify(result, null, 2));
  else ctx.say(`${result.ok ? "ok" : "refused"}: ${result.message}`);
  return result.ok ? 0 : 1;
}

/** `release`: forget a voided/deleted invoice, or a tenant's deleted customer. */
export async function runRelease(ctx: CliContext, flags: Flags): Promise<number> {
  if (flags.tenant !== undefined) {
    if (flags.bill !== undefined) {
      throw new UsageError("release takes --bill or --tenant, not both");
    }
    return await releaseTenant(ctx, flags);
  }
  if (flags.bill === undefined) {
    throw new UsageError("release needs --bill KIND:ID or --tenant SLUG");
  }
  const { kind, id } = requireBill(flags);
  const reason = requireReason(flags);
  const bill = await loadBill(ctx, kind, id);
  const subject = billRef(kind, id);
  if (!bill.stripe_invoice_id) {
    return report(ctx, {
      ok: true,
      action: "release",
      subject,
      stored_id: null,
      message: `${subject} has no stored invoice; nothing to release`,
    });
  }
  const invoice = await retrieveInvoice(ctx, bill.stripe_invoice_id);
  if (!invoice) {
    // Only a draft can be deleted: one last seen open or paid vanishing is suspicious.
    const [seen] = await ctx.sql<{ status: string; at: string }[]>`
      select status, to_char(source_time at time zone 'UTC', 'YYYY-MM-DD HH24:MI "UTC"') as at
      from internal.stripe_invoice_state
      where stripe_invoice_id = ${bill.stripe_invoice_id} and not deleted
        and status in ('open', 'paid')`;
    if (seen) {
      ctx.say(
        `${bill.stripe_invoice_id} was ${seen.status} when last seen (${seen.at}), but Stripe ` +
          `account ${ctx.account?.id ?? "?"} answers 404 for it now. An ${seen.status} invoice ` +
          "cannot be deleted in Stripe; releasing lets the next publish bill this again.",
      );
      const ok = Boolean(flags.yes) ||
        await confirm(`Release ${bill.stripe_invoice_id} from ${subject} anyway?`);
      if (!ok) {
        return report(ctx, {
          ok: false,
          action: "release",
          subject,
          stored_id: bill.stripe_invoice_id,
          message: `not released: ${bill.stripe_invoice_id} was ${seen.status} when last seen ` +
            "(confirm, or pass --yes, only if you are sure it is gone)",
        });
      }
    }
  }
  if (invoice) await recordState(ctx, invoice);
  else await recordState(ctx, { id: bill.stripe_invoice_id, deleted: true });
  if (invoice && invoice.status !== "void") {
    return report(ctx, {
      ok: false,
      action: "release",
      subject,
      stored_id: bill.stripe_invoice_id,
      message: `${subject}'s invoice ${bill.stripe_invoice_id} is ${invoice.status}; only a void ` +
        "or deleted invoice may be released (void it in Stripe first)",
    });
  }
  const [out] = await ctx.sql<
    { outcome: string; stored_id: string | null; detail: string | null }[]
  >`
    select outcome, stored_id, detail
    from internal.release_bill_invoice(${kind}, ${id}, ${bill.stripe_invoice_id}, ${ctx.actor}, ${reason})`;
  const ok = out.outcome === "released";
  return report(ctx, {
    ok,
    action: "release",
    subject,
    stored_id: out.stored_id,
    message: ok
      ? `released ${bill.stripe_invoice_id} (${invoice ? "void" : "deleted"}) from ${subject}; ` +
        "the next publish creates a new invoice"
      : `${out.detail}`,
  });
}

/** `link`: state a bill's invoice or a tenant's customer. */
export async function runLink(ctx: CliContext, flags: Flags): Promise<number> {
  const reason = requireReason(flags);
  if (flags.bill !== undefined || flags.invoice !== undefined) {
    if (flags.tenant !== undefined || flags.customer !== undefined) {
      throw new UsageError("link takes either --bill with --invoice, or --tenant with --customer");
    }
    return await linkBill(ctx, flags, reason);
  }
  if (flags.tenant !== undefined || flags.customer !== undefined) {
    return await linkTenant(ctx, flags, reason);
  }
  throw new UsageError(
    "link needs --bill KIND:ID --invoice in_... or --tenant SLUG --customer cus_...",
  );
}

async function linkBill(ctx: CliContext, flags: Flags, reason: string): Promise<number> {
  const { kind, id } = requireBill(flags);
  const invoiceId = String(flags.invoice ?? "");
  if (!/^in_[A-Za-z0-9]+$/.test(invoiceId)) {
    throw new UsageError(`--invoice must look like in_..., got "${invoiceId}"`);
  }
  const bill = await loadBill(ctx, kind, id);
  const subject = billRef(kind, id);
  const refuse = (message: string) =>
    report(ctx, { ok: false, action: "link", subject, stored_id: bill.stripe_invoice_id, message });
  const invoice = await retrieveInvoice(ctx, invoiceId);
  if (!invoice) return refuse(`invoice ${invoiceId} does not exist in Stripe`);
  const invoiceTenant = invoice.metadata?.[TENANT_NAME_KEY];
  if (invoiceTenant && invoiceTenant !== bill.tenant) {
    return refuse(`invoice ${invoiceId} belongs to tenant ${invoiceTenant}, not ${bill.tenant}`);
  }
  const invoiceCustomer = typeof invoice.customer === "string"
    ? invoice.customer
    : invoice.customer?.id;
  if (bill.customer_id && invoiceCustomer !== bill.customer_id) {
    return refuse(
      `invoice ${invoiceId} is billed to ${invoiceCustomer}, but ${bill.tenant}'s customer is ${bill.customer_id}`,
    );
  }
  if (!bill.customer_id && invoiceCustomer) {
    const owner = await ctx.sql<{ tenant: string }[]>`
      select tenant from public.tenants where stripe_customer_id = ${invoiceCustomer}`;
    if (owner.length > 0) {
      return refuse(
        `invoice ${invoiceId} is billed to ${invoiceCustomer}, the customer of ${owner[0].tenant}`,
      );
    }
  }
  await recordState(ctx, invoice);
  const [out] = await ctx.sql<
    { outcome: string; stored_id: string | null; detail: string | null }[]
  >`
    select outcome, stored_id, detail
    from internal.link_bill_invoice(${kind}, ${id}, ${invoiceId}, ${ctx.actor}, ${reason})`;
  const ok = out.outcome === "linked" || out.outcome === "unchanged";
  return report(ctx, {
    ok,
    action: "link",
    subject,
    stored_id: out.stored_id,
    message: ok
      ? `${subject} is invoice ${invoiceId} (${out.outcome}, ${invoice.status})`
      : out.outcome === "conflict"
      ? `${out.detail}; release it first if it really is replaced`
      : `${out.detail}`,
  });
}

function requireTenant(flags: Flags): string {
  const tenant = String(flags.tenant ?? "");
  if (!/^[A-Za-z0-9_.-]+\/$/.test(tenant)) {
    throw new UsageError(`--tenant must be a tenant slug ending in "/", got "${tenant}"`);
  }
  return tenant;
}

function requireCustomer(flags: Flags): string {
  const customerId = String(flags.customer ?? "");
  if (!/^cus_[A-Za-z0-9]+$/.test(customerId)) {
    throw new UsageError(`--customer must look like cus_..., got "${customerId}"`);
  }
  return customerId;
}

/** The tenant's stored customer; a UsageError when the tenant does not exist. */
async function loadTenantCustomer(ctx: CliContext, tenant: string): Promise<string | null> {
  const rows = await ctx.sql<{ stripe_customer_id: string | null }[]>`
    select stripe_customer_id from public.tenants where tenant = ${tenant}`;
  if (rows.length === 0) throw new UsageError(`tenant ${tenant} does not exist`);
  return rows[0].stripe_customer_id;
}

/** The customer in Stripe: live, deleted (a deleted object or a 404), or "missing". */
async function retrieveCustomer(
  ctx: CliContext,
  customerId: string,
): Promise<Stripe.Customer | "deleted" | "missing"> {
  try {
    const customer = await ctx.caller.call(
      "GET /v1/customers/:id",
      (s) => s.customers.retrieve(customerId),
    );
    return "deleted" in customer && customer.deleted ? "deleted" : customer as Stripe.Customer;
  } catch (err) {
    if (isStripeNotFound(err)) return "missing";
    throw err;
  }
}

/** Why `customerId` may not become `tenant`'s customer, or null when it may. */
async function customerRefusal(
  ctx: CliContext,
  tenant: string,
  customerId: string,
): Promise<string | null> {
  const customer = await retrieveCustomer(ctx, customerId);
  if (customer === "missing") return `customer ${customerId} does not exist in Stripe`;
  if (customer === "deleted") return `customer ${customerId} is deleted`;
  const owner = customer.metadata?.[TENANT_NAME_KEY];
  if (owner && owner !== tenant) return `customer ${customerId} belongs to tenant ${owner}`;
  return null;
}

async function releaseTenant(ctx: CliContext, flags: Flags): Promise<number> {
  const tenant = requireTenant(flags);
  const reason = requireReason(flags);
  const stored = await loadTenantCustomer(ctx, tenant);
  const done = (ok: boolean, message: string, storedId: string | null) =>
    report(ctx, { ok, action: "release", subject: tenant, stored_id: storedId, message });
  if (!stored) return done(true, `${tenant} has no stored customer; nothing to release`, null);
  const customer = await retrieveCustomer(ctx, stored);
  if (typeof customer !== "string") {
    return done(
      false,
      `${tenant}'s customer ${stored} is live in Stripe; only a deleted customer may be ` +
        "released (use replace to swap it for another)",
      stored,
    );
  }
  await ctx.sql`select internal.record_customer_deleted(${stored}, now())`;
  const [out] = await ctx.sql<
    { outcome: string; stored_id: string | null; detail: string | null }[]
  >`
    select outcome, stored_id, detail
    from internal.release_tenant_customer(${tenant}, ${stored}, ${ctx.actor}, ${reason})`;
  const ok = out.outcome === "released";
  return done(
    ok,
    ok
      ? `released ${stored} (deleted) from ${tenant}; it is never linked again, and the next ` +
        "publish gives the tenant a new customer"
      : `${out.detail}`,
    out.stored_id,
  );
}

/** `replace`: swap a tenant's customer for another, retiring the old one. */
export async function runReplace(ctx: CliContext, flags: Flags): Promise<number> {
  const tenant = requireTenant(flags);
  const customerId = requireCustomer(flags);
  const reason = requireReason(flags);
  const stored = await loadTenantCustomer(ctx, tenant);
  const refuse = (message: string) =>
    report(ctx, { ok: false, action: "replace", subject: tenant, stored_id: stored, message });
  if (!stored) return refuse(`${tenant} has no stored customer; use link to store one`);
  const refusal = await customerRefusal(ctx, tenant, customerId);
  if (refusal) return refuse(refusal);
  const [out] = await ctx.sql<
    { outcome: string; stored_id: string | null; detail: string | null }[]
  >`
    select outcome, stored_id, detail
    from internal.replace_tenant_customer(${tenant}, ${stored}, ${customerId}, ${ctx.actor},
      ${reason})`;
  const ok = out.outcome === "replaced" || out.outcome === "unchanged";
  return report(ctx, {
    ok,
    action: "replace",
    subject: tenant,
    stored_id: out.stored_id,
    message: ok
      ? `${tenant} is customer ${customerId} (${out.outcome}); ${stored} is retired`
      : `${out.detail}`,
  });
}

async function linkTenant(ctx: CliContext, flags: Flags, reason: string): Promise<number> {
  const tenant = requireTenant(flags);
  const customerId = requireCustomer(flags);
  await loadTenantCustomer(ctx, tenant);
  const refuse = (message: string) =>
    report(ctx, { ok: false, action: "link", subject: tenant, stored_id: null, message });
  const refusal = await customerRefusal(ctx, tenant, customerId);
  if (refusal) return refuse(refusal);
  const [out] = await ctx.sql<
    { outcome: string; stored_id: string | null; detail: string | null }[]
  >`
    select outcome, stored_id, detail
    from internal.link_tenant_customer(${tenant}, ${customerId}, ${ctx.actor}, ${reason})`;
  const ok = out.outcome === "linked" || out.outcome === "unchanged";
  return report(ctx, {
    ok,
    action: "link",
    subject: tenant,
    stored_id: out.stored_id,
    message: ok
      ? `${tenant} is customer ${customerId} (${out.outcome})`
      : out.outcome === "conflict"
      ? `${out.detail}; release it first if it was deleted, or use replace`
      : `${out.detail}`,
  });
}
