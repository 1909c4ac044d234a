/**
 * `finalize`: the month-end send step, by stored ID (no Search). Lists the month's draft
 * invoices, fixes the collection method of usage drafts whose customer has no default payment
 * method, asks, then finalizes with auto_advance so Stripe charges or sends. Every step first
 * re-reads the invoice and refuses one that changed since it was listed.
 */
import { installationId, writeKey } from "../../supabase/functions/_shared/idempotency.ts";
import {
  type CommandSpec,
  type Flags,
  MONTH_FLAG,
  parseMonth,
  parseTenants,
  TENANTS_FLAG,
} from "../args.ts";
import { loadMonthBills, type MonthBill, requireKnownTenants } from "../bills.ts";
import { confirm } from "../confirm.ts";
import type { CliContext } from "../context.ts";
import { callsLine, count, money, Progress, table } from "../format.ts";
import { invoiceMismatch } from "../../supabase/functions/_shared/bill_invoice.ts";
import { accountLabel } from "../../supabase/functions/_shared/stripe_account.ts";
import { describeStripeError } from "../../supabase/functions/_shared/stripe_errors.ts";
import { recordInvoiceState } from "../../supabase/functions/_shared/invoices.ts";
import { isStripeNotFound } from "../../supabase/functions/_shared/stripe_calls.ts";
import type { Stripe } from "../../supabase/functions/_shared/stripe_client.ts";

export const finalizeSpec: CommandSpec = {
  name: "finalize",
  summary: "Finalize the month's draft invoices by stored ID, so Stripe charges or sends them.",
  usage: "finalize --month YYYY-MM [--tenants a/,b/] [--yes]",
  flags: {
    month: MONTH_FLAG,
    tenants: TENANTS_FLAG,
    yes: { type: "boolean", description: "do not ask for confirmation" },
  },
  details:
    "Usage drafts set to charge automatically whose customer has no default payment method\n" +
    "are switched to send_invoice (due in 30 days) first. Manual bills must already be\n" +
    "send_invoice (publish makes them so). Exits non-zero if any invoice failed.",
};

const DUE_DAYS = 30;

/** What finalize decided and did for one invoice. */
export interface FinalizeRow {
  bill_id: string;
  tenant: string;
  stripe_invoice_id: string;
  status: string;
  amount_due: number;
  collection_method: string;
  has_default_payment_method: boolean;
  action: "finalize" | "switch_and_finalize" | "skip" | "error";
  outcome: "finalized" | "skipped" | "refused" | "failed" | "pending";
  note: string;
}

function customerHasDefaultPaymentMethod(invoice: Stripe.Invoice): boolean {
  const c = invoice.customer;
  if (!c || typeof c === "string" || ("deleted" in c && c.deleted)) return false;
  const customer = c as Stripe.Customer;
  return Boolean(customer.invoice_settings?.default_payment_method || customer.default_source);
}

/** What must not change between listing and finalizing (collection method aside, which we set). */
function fingerprint(invoice: Stripe.Invoice): string {
  const customer = typeof invoice.customer === "string" ? invoice.customer : invoice.customer?.id;
  return JSON.stringify([
    invoice.status,
    invoice.total,
    invoice.amount_due,
    invoice.currency,
    customer,
    invoice.description,
    invoice.metadata,
    invoice.lines?.data.map((l) => [l.id, l.amount]),
    invoice.lines?.has_more,
    customerHasDefaultPaymentMethod(invoice),
  ]);
}

async function retrieve(ctx: CliContext, id: string): Promise<Stripe.Invoice | null> {
  try {
    return await ctx.caller.call(
      "GET /v1/invoices/:id",
      (s) => s.invoices.retrieve(id, { expand: ["customer"] }),
    );
  } catch (err) {
    if (isStripeNotFound(err)) return null;
    throw err;
  }
}

function record(ctx: CliContext, invoice: Stripe.Invoice): Promise<void> {
  return recordInvoiceState(ctx.sql, invoice, new Date(), "finalize");
}

function plan(bill: MonthBill, invoice: Stripe.Invoice | null): FinalizeRow {
  const base = {
    bill_id: bill.bill_id,
    tenant: bill.tenant,
    stripe_invoice_id: bill.stripe_invoice_id!,
    status: invoice ? invoice.status ?? "unknown" : "deleted",
    amount_due: invoice?.amount_due ?? 0,
    collection_method: invoice?.collection_method ?? "-",
    has_default_payment_method: invoice ? customerHasDefaultPaymentMethod(invoice) : false,
  };
  if (!invoice) return { ...base, action: "skip", outcome: "skipped", note: "invoice is deleted" };
  if (invoice.status !== "draft") {
    return { ...base, action: "skip", outcome: "skipped", note: `already ${invoice.status}` };
  }
  // Nothing is finalized that differs from its bill: the customer and the total, by the rule
  // publish and drift use.
  const customer = typeof invoice.customer === "string" ? invoice.customer : invoice.customer?.id;
  const mismatch = invoiceMismatch(
    { customer: customer ?? null, total: invoice.total },
    bill,
    bill.customer_id,
  );
  if (mismatch) {
    return {
      ...base,
      action: "error",
      outcome: "refused",
      note: `draft ${mismatch}: rerun publish for this month, then finalize`,
    };
  }
  if (bill.invoice_type === "manual" && invoice.collection_method !== "send_invoice") {
    return {
      ...base,
      action: "error",
      outcome: "refused",
      note: "manual bill is not send_invoice: rerun publish for this month",
    };
  }
  if (invoice.collection_method === "charge_automatically" && !base.has_default_payment_method) {
    return {
      ...base,
      action: "switch_and_finalize",
      outcome: "pending",
      note: "no default payment method: send_invoice",
    };
  }
  return { ...base, action: "finalize", outcome: "pending", note: "" };
}

/** `finalize`. */
export async function runFinalize(ctx: CliContext, flags: Flags): Promise<number> {
  const month = parseMonth(flags.month);
  const tenants = parseTenants(flags.tenants);
  await requireKnownTenants(ctx.sql, tenants);
  const bills = await loadMonthBills(ctx.sql, month, tenants);
  const unpublished = bills.filter((b) => !b.stripe_invoice_id);
  const rows: FinalizeRow[] = [];
  const listed = new Map<string, string>();
  const stored = bills.filter((b) => b.stripe_invoice_id);
  const reading = new Progress("reading invoices", stored.length);
  for (const bill of stored) {
    const invoice = await retrieve(ctx, bill.stripe_invoice_id!);
    if (invoice) {
      listed.set(invoice.id, fingerprint(invoice));
      await record(ctx, invoice);
    }
    rows.push(plan(bill, invoice));
    reading.update(rows.length);
  }
  reading.done();
  const work = rows.filter((r) => r.action === "finalize" || r.action === "switch_and_finalize");

  if (!ctx.json) {
    ctx.say(
      `Invoices of ${month.slice(0, 7)} (${count(rows.length, "bill")} with stored IDs, ` +
        `${count(unpublished.length, "bill")} not published):`,
    );
    ctx.say(table(rows, [
      { header: "Tenant", value: (r) => r.tenant },
      { header: "Bill", value: (r) => r.bill_id },
      { header: "Amount", value: (r) => money(r.amount_due), align: "right" },
      { header: "Invoice", value: (r) => r.stripe_invoice_id },
      {
        header: "Collection",
        value: (r) =>
          (r.collection_method === "send_invoice" ? "send" : "charge") +
          (r.has_default_payment_method ? "" : " (no PM)"),
      },
      {
        header: "Action",
        value: (r) => (r.action === "switch_and_finalize" ? "send+finalize" : r.action),
      },
      {
        header: "Note",
        value: (r) => [r.status === "draft" ? "" : r.status, r.note].filter(Boolean).join(": "),
        below: true,
      },
    ]));
  }

  if (work.length > 0 && !flags.yes) {
    const total = work.reduce((a, r) => a + r.amount_due, 0);
    const where = ctx.account ? accountLabel(ctx.account) : "Stripe";
    const ok = await confirm(
      `Finalize ${count(work.length, "draft invoice")} totalling ${money(total)} on ${where}? ` +
        "Stripe then charges or emails each.",
    );
    if (!ok) {
      ctx.say("Nothing finalized (not confirmed; pass --yes to skip the question).");
      for (const r of work) {
        r.outcome = "skipped";
        r.note = "not confirmed";
      }
      return finish(ctx, month, rows, 2);
    }
  }

  const finalizing = new Progress("finalizing", work.length);
  let n = 0;
  for (const row of work) {
    try {
      await finalizeOne(ctx, row, listed.get(row.stripe_invoice_id)!);
    } catch (err) {
      row.outcome = "failed";
      row.note = describeStripeError(undefined, err);
    }
    finalizing.update(++n, row.stripe_invoice_id);
  }
  finalizing.done();
  const failed = rows.filter((r) => r.outcome === "failed" || r.outcome === "refused").length;
  return finish(ctx, month, rows, failed > 0 ? 1 : 0);
}

async function finalizeOne(ctx: CliContext, row: FinalizeRow, listedPrint: string): Promise<void> {
  const id = row.stripe_invoice_id;
  let current = await retrieve(ctx, id);
  if (!current || fingerprint(current) !== listedPrint) {
    row.outcome = "refused";
    row.note = current
      ? `changed since it was listed (now ${current.status}, ${
        money(current.amount_due)
      }); not finalized`
      : "deleted since it was listed";
    return;
  }
  if (row.action === "switch_and_finalize") {
    // Computed once, so a retry sends the same body under the same idempotency key.
    const dueDate = Math.floor(Date.now() / 1000) + DUE_DAYS * 86_400;
    current = await ctx.caller.call(
      "POST /v1/invoices/:id",
      (s, o) =>
        s.invoices.update(id, {
          collection_method: "send_invoice",
          due_date: dueDate,
          expand: ["customer"],
        }, o),
      {
        idempotencyKey: writeKey(`flow:${await installationId(ctx.sql)}:finalize`, "collection", {
          invoice: id,
          due_date: dueDate,
        }),
      },
    );
    await record(ctx, current);
    const again = await retrieve(ctx, id);
    if (!again || fingerprint(again) !== fingerprint(current)) {
      row.outcome = "refused";
      row.note = "changed after its collection method was fixed; not finalized";
      return;
    }
  }
  const finalized = await ctx.caller.call(
    "POST /v1/invoices/:id/finalize",
    (s, o) => s.invoices.finalizeInvoice(id, { auto_advance: true }, o),
    {
      // Per installation; the same finalize of the same invoice replays.
      idempotencyKey: writeKey(`flow:${await installationId(ctx.sql)}:finalize`, "finalize", {
        invoice: id,
      }),
    },
  );
  await record(ctx, finalized);
  row.outcome = "finalized";
  row.status = finalized.status ?? row.status;
  row.collection_method = finalized.collection_method;
}

function finish(ctx: CliContext, month: string, rows: FinalizeRow[], code: number): number {
  const finalized = rows.filter((r) => r.outcome === "finalized").length;
  const failed = rows.filter((r) => r.outcome === "failed" || r.outcome === "refused");
  const stats = ctx.caller.stats();
  if (ctx.json) {
    console.log(
      JSON.stringify(
        {
          month: month.slice(0, 7),
          finalized,
          failed: failed.length,
          invoices: rows,
          stripe_calls: stats,
        },
        null,
        2,
      ),
    );
  } else {
    for (const r of failed) {
      ctx.say(`  ${r.outcome}: ${r.tenant} ${r.bill_id} ${r.stripe_invoice_id}: ${r.note}`);
    }
    ctx.say(
      `Finalized ${finalized}, failed ${failed.length}, skipped ${
        rows.length - finalized - failed.length
      }. ${callsLine(stats)}`,
    );
    if (failed.length > 0) ctx.say(`Failed to process ${count(failed.length, "invoice")}.`);
  }
  return code;
}
