/**
 * `adopt`: the one-time backfill of stored IDs. For every tenant, adopt its customer (one
 * metadata Search, only where no ID is stored), then match each of its bills without an invoice
 * ID against the customer's invoice list (by estuary.dev/bill_id, else the old automation's
 * type + period key) and link the hits. Reports hits, misses, duplicates and orphans.
 */
import { installationId } from "../../supabase/functions/_shared/idempotency.ts";
import { type CommandSpec, type Flags, parseTenants, TENANTS_FLAG } from "../args.ts";
import { requireKnownTenants } from "../bills.ts";
import type { CliContext } from "../context.ts";
import { callsLine, money, Progress, table } from "../format.ts";
import { loadBill } from "../../supabase/functions/_shared/bills.ts";
import { adoptCustomer } from "../../supabase/functions/_shared/customers.ts";
import { listCustomerInvoices } from "../../supabase/functions/_shared/invoices.ts";
import {
  INVOICE_TYPE_KEY,
  PERIOD_END_KEY,
  PERIOD_START_KEY,
} from "../../supabase/functions/_shared/metadata.ts";
import { billIdOf, matchInvoice } from "../../supabase/functions/_shared/planner.ts";

export const adoptSpec: CommandSpec = {
  name: "adopt",
  summary:
    "One-time backfill: store the IDs of customers and invoices made before IDs were stored.",
  usage: "adopt [--dry-run] [--tenants a/,b/]",
  flags: {
    "dry-run": { type: "boolean", description: "report only: store nothing" },
    tenants: TENANTS_FLAG,
  },
  details: "Stripe is only read (one customer Search per tenant without a stored customer, one\n" +
    "invoice list per customer). Duplicates and possible legacy matches are listed for\n" +
    "`link`; nothing ambiguous is linked automatically.",
};

/** One line of the bill report. */
export interface AdoptBillRow {
  tenant: string;
  bill: string;
  period: string;
  amount: number;
  result:
    | "linked"
    | "would_link"
    | "already_linked"
    | "miss"
    | "duplicates"
    | "possible_legacy_match"
    | "conflict";
  invoices: string[];
  detail: string;
}

/** One line of the customer report. */
export interface AdoptCustomerRow {
  tenant: string;
  result: "stored" | "adopted" | "would_adopt" | "missing";
  customer: string | null;
  duplicates: string[];
  detail: string;
}

/** An automation invoice that matches no bill. */
export interface Orphan {
  tenant: string;
  invoice: string;
  status: string;
  type: string;
  period: string;
  amount: number;
}

/** `adopt`. */
export async function runAdopt(ctx: CliContext, flags: Flags): Promise<number> {
  const dryRun = Boolean(flags["dry-run"]);
  const only = parseTenants(flags.tenants);
  await requireKnownTenants(ctx.sql, only);
  const tenants = (await ctx.sql<{ tenant: string }[]>`
    select tenant from public.tenants
    where ${only ?? null}::text[] is null or tenant = any(${only ?? null}::text[])
    order by tenant`).map((t) => t.tenant);
  const deps = { sql: ctx.sql, caller: ctx.caller, actor: ctx.actor };
  const customers: AdoptCustomerRow[] = [];
  const bills: AdoptBillRow[] = [];
  const orphans: Orphan[] = [];
  const progress = new Progress("adopting", tenants.length);

  for (const [n, tenant] of tenants.entries()) {
    const c = await adoptCustomer(deps, tenant, { dryRun });
    customers.push({
      tenant,
      result: c.source === "adopted" && dryRun ? "would_adopt" : c.source,
      customer: c.customerId,
      duplicates: c.duplicates,
      detail: c.conflict ??
        (c.duplicates.length ? "oldest adopted; the others are duplicates" : ""),
    });
    const refs = await ctx.sql<{ kind: "final" | "manual"; id: number }[]>`
      select 'final' as kind, id::int from internal.billing_historicals where tenant = ${tenant}
      union all
      select 'manual', id::int from internal.manual_bills where tenant = ${tenant}
      order by 1, 2`;
    const listed = c.customerId ? await listCustomerInvoices(deps, c.customerId) : null;
    const matched = new Set<string>();
    for (const ref of refs) {
      const loaded = await loadBill(ctx.sql, ref.kind, ref.id);
      if (!loaded) continue;
      const bill = loaded.bill;
      const row = {
        tenant,
        bill: billIdOf(bill),
        period: `${bill.dateStart}..${bill.dateEnd}`,
        amount: bill.subtotal,
      };
      if (bill.storedInvoiceId) {
        matched.add(bill.storedInvoiceId);
        bills.push({
          ...row,
          result: "already_linked",
          invoices: [bill.storedInvoiceId],
          detail: "",
        });
        continue;
      }
      if (!listed) {
        bills.push({
          ...row,
          result: "miss",
          invoices: [],
          detail: "the tenant has no customer in Stripe",
        });
        continue;
      }
      // Another installation's invoices (a staging copy on this account) are never adopted.
      const m = matchInvoice(bill, listed.listed, [], await installationId(ctx.sql));
      if (m.kind === "found") {
        matched.add(m.invoice.id);
        if (dryRun) {
          bills.push({
            ...row,
            result: "would_link",
            invoices: [m.invoice.id],
            detail: `by ${m.via}`,
          });
          continue;
        }
        const [out] = await ctx.sql<{ outcome: string; detail: string | null }[]>`
          select outcome, detail from internal.link_bill_invoice(${bill.kind}, ${bill.id},
            ${m.invoice.id}, ${ctx.actor}, ${`adopted by ${m.via}`})`;
        if (out.outcome === "linked" || out.outcome === "unchanged") {
          listed.listed.linkedTo[m.invoice.id] = billIdOf(bill);
          bills.push({ ...row, result: "linked", invoices: [m.invoice.id], detail: `by ${m.via}` });
        } else {
          bills.push({
            ...row,
            result: "conflict",
            invoices: [m.invoice.id],
            detail: out.detail ?? "",
          });
        }
      } else if (m.kind === "ambiguous") {
        for (const i of m.invoices) matched.add(i.id);
        bills.push({
          ...row,
          result: "duplicates",
          invoices: m.invoices.map((i) => i.id),
          detail: `several live invoices match by ${m.via}: link one, void the others`,
        });
      } else if (m.kind === "legacy_overlap") {
        for (const i of m.invoices) matched.add(i.id);
        bills.push({
          ...row,
          result: "possible_legacy_match",
          invoices: m.invoices.map((i) => i.id),
          detail: "same type, overlapping period: confirm with `link` (dates were edited?)",
        });
      } else {
        bills.push({ ...row, result: "miss", invoices: [], detail: "publish will create it" });
      }
    }
    for (const inv of listed?.listed.invoices ?? []) {
      const type = inv.metadata[INVOICE_TYPE_KEY];
      if (!type || matched.has(inv.id) || listed!.listed.linkedTo[inv.id]) continue;
      orphans.push({
        tenant,
        invoice: inv.id,
        status: inv.status ?? "-",
        type,
        period: `${inv.metadata[PERIOD_START_KEY] ?? "?"}..${inv.metadata[PERIOD_END_KEY] ?? "?"}`,
        amount: inv.total,
      });
    }
    progress.update(n + 1);
  }
  progress.done();

  const stats = ctx.caller.stats();
  if (ctx.json) {
    console.log(
      JSON.stringify({ dry_run: dryRun, customers, bills, orphans, stripe_calls: stats }, null, 2),
    );
    return 0;
  }
  const tally = <T extends { result: string }>(rows: T[]) => {
    const m = new Map<string, number>();
    for (const r of rows) m.set(r.result, (m.get(r.result) ?? 0) + 1);
    return [...m].map(([k, v]) => `${k.replaceAll("_", " ")} ${v}`).join(", ") || "none";
  };
  ctx.say(`Customers (${tenants.length} tenants): ${tally(customers)}`);
  const notableCustomers = customers.filter((c) =>
    c.result !== "stored" || c.duplicates.length > 0
  );
  if (notableCustomers.length > 0) {
    ctx.say(table(notableCustomers, [
      { header: "Tenant", value: (c) => c.tenant },
      { header: "Result", value: (c) => c.result },
      { header: "Customer", value: (c) => c.customer },
      { header: "Duplicates", value: (c) => c.duplicates.join(", ") || "-" },
      { header: "Detail", value: (c) => c.detail, below: true },
    ]));
  }
  ctx.say(`\nBills (${bills.length}): ${tally(bills)}`);
  const notableBills = bills.filter((b) => b.result !== "already_linked");
  if (notableBills.length > 0) {
    ctx.say(table(notableBills, [
      { header: "Tenant", value: (b) => b.tenant },
      { header: "Bill", value: (b) => b.bill },
      { header: "Period", value: (b) => b.period },
      { header: "Amount", value: (b) => money(b.amount), align: "right" },
      { header: "Result", value: (b) => b.result },
      { header: "Invoice(s)", value: (b) => b.invoices.join(", ") || "-" },
      { header: "Detail", value: (b) => b.detail, below: true },
    ]));
  }
  ctx.say(`\nOrphans (automation invoices matching no bill): ${orphans.length}`);
  if (orphans.length > 0) {
    ctx.say(table(orphans, [
      { header: "Tenant", value: (o) => o.tenant },
      { header: "Invoice", value: (o) => o.invoice },
      { header: "Status", value: (o) => o.status },
      { header: "Type", value: (o) => o.type },
      { header: "Period", value: (o) => o.period },
      { header: "Amount", value: (o) => money(o.amount), align: "right" },
    ]));
  }
  ctx.say(`\n${dryRun ? "Dry run: nothing stored. " : ""}${callsLine(stats)}`);
  return 0;
}
