/**
 * `drift`: stored IDs against Stripe, bill by bill. Retrieves each stored invoice and customer by
 * ID and lists each customer's invoices once, to find automation invoices no bill is linked to.
 * Read-only unless --record: a 404 is only evidence of a deletion on the bound account, which
 * the context has checked before any of this runs.
 */
import { invoiceMismatch } from "../../supabase/functions/_shared/bill_invoice.ts";
import { type CommandSpec, type Flags, parseMonth } from "../args.ts";
import { loadMonthBills, type MonthBill } from "../bills.ts";
import type { CliContext } from "../context.ts";
import { callsLine, count, money, Progress, table } from "../format.ts";
import {
  BILL_ID_KEY,
  INVOICE_TYPE_KEY,
  PERIOD_END_KEY,
  PERIOD_START_KEY,
  TENANT_NAME_KEY,
} from "../../supabase/functions/_shared/metadata.ts";
import {
  listCustomerInvoices,
  recordInvoiceState,
} from "../../supabase/functions/_shared/invoices.ts";
import type { InvoiceSnapshot } from "../../supabase/functions/_shared/planner.ts";
import { isStripeNotFound } from "../../supabase/functions/_shared/stripe_calls.ts";
import type { Stripe } from "../../supabase/functions/_shared/stripe_client.ts";

export const driftSpec: CommandSpec = {
  name: "drift",
  summary: "Compare stored IDs with Stripe: voided, deleted, paid, amounts, unlinked invoices.",
  usage: "drift [--month YYYY-MM] [--record]",
  flags: {
    month: {
      type: "string",
      placeholder: "YYYY-MM",
      description: "only the bills this month's publish selects",
    },
    record: {
      type: "boolean",
      description: "store what Stripe says (invoice states, deleted customers) in the database",
    },
  },
  details: "Read-only unless --record (and only ever after the Stripe account check passed).\n" +
    "Exits 1 when anything needs attention, 0 when Stripe and the database agree.",
};

/** One finding. */
export interface DriftFinding {
  kind:
    | "invoice_deleted"
    | "invoice_void"
    | "invoice_paid"
    | "invoice_uncollectible"
    | "amount_differs"
    | "bill_changed_after_finalized"
    | "invoice_other_tenant"
    | "customer_deleted"
    | "unlinked_automation_invoice";
  tenant: string;
  bill_id: string | null;
  stripe_id: string;
  detail: string;
  /** Whether someone should act (paid is information, not trouble). */
  attention: boolean;
}

/** `drift`. */
export async function runDrift(ctx: CliContext, flags: Flags): Promise<number> {
  const month = flags.month === undefined ? null : parseMonth(flags.month);
  const record = Boolean(flags.record);
  const bills = await loadMonthBills(ctx.sql, month);
  const findings: DriftFinding[] = [];
  const linked = bills.filter((b) => b.stripe_invoice_id);
  const progress = new Progress("drift", linked.length);
  let checked = 0;
  for (const bill of linked) {
    findings.push(...await checkBill(ctx, bill, record));
    progress.update(++checked);
  }
  progress.done();

  // Customers: deleted ones, and automation invoices that no bill holds.
  const customers = new Map<string, string>();
  for (const b of bills) if (b.customer_id) customers.set(b.customer_id, b.tenant);

  for (const [customerId, tenant] of customers) {
    const customer = await ctx.caller.call(
      "GET /v1/customers/:id",
      (s) => s.customers.retrieve(customerId),
    ).catch((err) => (isStripeNotFound(err) ? null : Promise.reject(err)));
    if (!customer || ("deleted" in customer && customer.deleted)) {
      findings.push({
        kind: "customer_deleted",
        tenant,
        bill_id: null,
        stripe_id: customerId,
        detail: "the tenant's stored customer is deleted in Stripe",
        attention: true,
      });
      if (record) await ctx.sql`select internal.record_customer_deleted(${customerId}, now())`;
      continue;
    }
    const { listed } = await listCustomerInvoices({ sql: ctx.sql, caller: ctx.caller }, customerId);
    for (const invoice of listed.invoices) {
      if (listed.linkedTo[invoice.id] || invoice.status === "void") continue;
      const type = invoice.metadata?.[INVOICE_TYPE_KEY];
      if (!type || (month && !overlaps(invoice, month))) continue;
      findings.push({
        kind: "unlinked_automation_invoice",
        tenant,
        bill_id: invoice.metadata?.[BILL_ID_KEY] ?? null,
        stripe_id: invoice.id,
        detail:
          `${invoice.status} ${type} invoice ${invoice.metadata?.[PERIOD_START_KEY] ?? "?"}..` +
          `${invoice.metadata?.[PERIOD_END_KEY] ?? "?"} (${
            money(invoice.total)
          }) is linked to no bill`,
        attention: true,
      });
    }
  }

  const attention = findings.filter((f) => f.attention).length;
  const stats = ctx.caller.stats();
  if (ctx.json) {
    console.log(
      JSON.stringify(
        {
          month: month?.slice(0, 7) ?? null,
          bills_checked: linked.length,
          findings,
          stripe_calls: stats,
        },
        null,
        2,
      ),
    );
  } else {
    ctx.say(
      `Checked ${linked.length} stored invoices and ${customers.size} customers` +
        (month ? ` for ${month.slice(0, 7)}` : "") + ".",
    );
    if (findings.length > 0) {
      ctx.say(table(findings, [
        { header: "Finding", value: (f) => f.kind },
        { header: "Tenant", value: (f) => f.tenant },
        { header: "Bill", value: (f) => f.bill_id },
        { header: "Stripe ID", value: (f) => f.stripe_id },
        { header: "Detail", value: (f) => f.detail, below: true },
      ]));
    } else {
      ctx.say("No drift: every stored ID matches Stripe.");
    }
    ctx.say(
      `${count(attention, "finding")} ${attention === 1 ? "needs" : "need"} attention` +
        `${record ? " (recorded)" : " (nothing recorded; --record stores it)"}. ${
          callsLine(stats)
        }`,
    );
  }
  return attention > 0 ? 1 : 0;
}

function overlaps(invoice: InvoiceSnapshot, month: string): boolean {
  const start = invoice.metadata[PERIOD_START_KEY];
  const end = invoice.metadata[PERIOD_END_KEY];
  if (!start || !end) return true;
  const monthEnd = new Date(Date.UTC(Number(month.slice(0, 4)), Number(month.slice(5, 7)), 0))
    .toISOString().slice(0, 10);
  return start <= monthEnd && end >= month;
}

async function checkBill(
  ctx: CliContext,
  bill: MonthBill,
  record: boolean,
): Promise<DriftFinding[]> {
  const id = bill.stripe_invoice_id!;
  const base = { tenant: bill.tenant, bill_id: bill.bill_id, stripe_id: id };
  let invoice: Stripe.Invoice;
  try {
    invoice = await ctx.caller.call("GET /v1/invoices/:id", (s) => s.invoices.retrieve(id));
  } catch (err) {
    if (!isStripeNotFound(err)) throw err;
    if (record) await recordInvoiceState(ctx.sql, { id, deleted: true }, new Date(), "drift");
    return [{
      ...base,
      kind: "invoice_deleted",
      detail: "deleted in Stripe; release it to reissue",
      attention: true,
    }];
  }
  if (record) await recordInvoiceState(ctx.sql, invoice, new Date(), "drift");
  const out: DriftFinding[] = [];
  if (invoice.metadata?.[TENANT_NAME_KEY] && invoice.metadata[TENANT_NAME_KEY] !== bill.tenant) {
    out.push({
      ...base,
      kind: "invoice_other_tenant",
      detail: `invoice belongs to ${invoice.metadata[TENANT_NAME_KEY]}`,
      attention: true,
    });
  }
  if (invoice.status === "void") {
    out.push({
      ...base,
      kind: "invoice_void",
      detail: "voided; release it to reissue",
      attention: true,
    });
    return out;
  }
  if (invoice.status === "paid") {
    out.push({
      ...base,
      kind: "invoice_paid",
      detail: `paid ${money(invoice.amount_paid)}`,
      attention: false,
    });
  }
  if (invoice.status === "uncollectible") {
    out.push({
      ...base,
      kind: "invoice_uncollectible",
      detail: "marked uncollectible",
      attention: true,
    });
  }
  const datesDiffer = invoice.metadata?.[PERIOD_START_KEY] !== bill.date_start ||
    invoice.metadata?.[PERIOD_END_KEY] !== bill.date_end;
  // The rule publish and finalize use (customer checks are drift's customer_* findings).
  const amountDiffers = invoiceMismatch({ customer: null, total: invoice.total }, bill, null) !==
    null;
  if (invoice.status !== "draft" && (datesDiffer || amountDiffers)) {
    out.push({
      ...base,
      kind: "bill_changed_after_finalized",
      detail: `bill is ${bill.date_start}..${bill.date_end} ${money(bill.subtotal)}, ` +
        `finalized invoice is ${invoice.metadata?.[PERIOD_START_KEY]}..` +
        `${invoice.metadata?.[PERIOD_END_KEY]} ${money(invoice.total)}`,
      attention: true,
    });
  } else if (amountDiffers) {
    out.push({
      ...base,
      kind: "amount_differs",
      detail: `draft total ${money(invoice.total)}, bill ${
        money(bill.subtotal)
      }: publish updates it`,
      attention: true,
    });
  }
  return out;
}
