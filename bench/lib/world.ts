/**
 * Scenario data: tenants, usage and manual bills in Postgres, and what the old automation left in
 * Stripe (customers with `estuary.dev/tenant_name`, invoices with upstream's type + period
 * metadata and no bill ID). Deterministic: tenant i always gets the same bill.
 */
import type { EmulatorControl, StripeJson } from "../../dev/stripe-emulator/control.ts";
import type { Sql } from "../../supabase/functions/_shared/db.ts";
import { addLineParam, createParams } from "../../supabase/functions/_shared/executor.ts";
import { INSTALLATION_KEY } from "../../supabase/functions/_shared/idempotency.ts";
import {
  BILL_ID_KEY,
  CREATED_BY_AUTOMATION_KEY,
  TENANT_NAME_KEY,
} from "../../supabase/functions/_shared/metadata.ts";
import {
  type Bill,
  type BillLine,
  invoiceSpecFor,
  linesFor,
} from "../../supabase/functions/_shared/planner.ts";

/** A bill as seeded (enough to rebuild what the engine would send). */
export interface SeededBill {
  kind: "final" | "manual";
  id: number;
  tenant: string;
  /** Index of the tenant in its world (drives the deterministic choices). */
  index: number;
  dateStart: string;
  dateEnd: string;
  lineItems: BillLine[];
  subtotal: number;
}

/** First and last day of a YYYY-MM month. */
export function monthBounds(month: string): { start: string; end: string } {
  const [y, m] = month.split("-").map(Number);
  const last = new Date(Date.UTC(y, m, 0)).getUTCDate();
  return { start: `${month}-01`, end: `${month}-${String(last).padStart(2, "0")}` };
}

/** The month before/after a YYYY-MM month. */
export function addMonths(month: string, n: number): string {
  const [y, m] = month.split("-").map(Number);
  const d = new Date(Date.UTC(y, m - 1 + n, 1));
  return `${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, "0")}`;
}

/** Tenant names `<prefix><index>/`. */
export function tenantNames(prefix: string, n: number, from = 0): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}${String(from + i).padStart(5, "0")}/`);
}

/** Inserts tenants (on a trial since 2020, so usage bills are billable). */
export async function makeTenants(sql: Sql, tenants: string[]): Promise<void> {
  for (let i = 0; i < tenants.length; i += 5000) {
    const chunk = tenants.slice(i, i + 5000);
    await sql`insert into public.tenants (tenant, trial_start, billing_email, billing_name)
      select t, '2020-01-01', 'billing@' || rtrim(t, '/') || '.example', 'Billing ' || t
      from unnest(${chunk}::text[]) t`;
  }
}

/** Usage line items of tenant `index` (1–10 lines; every fifth tenant ends with a credit). */
export function usageLines(index: number, variant = 0): BillLine[] {
  const n = 1 + (index % 10);
  const lines: BillLine[] = [];
  for (let j = 0; j < n; j++) {
    const credit = n > 1 && j === n - 1 && index % 5 === 0;
    // Half units at even rates: whole cents per line, as upstream's reports have.
    const count = credit ? 1 : 10 + ((index * 31 + j * 17 + variant * 13) % 400) / 2;
    const rate = credit ? -100 : 2 * (3 + ((index + j * 7 + variant) % 30));
    lines.push({
      description: credit ? "Free trial credit" : `Usage component ${j + 1}`,
      count,
      rate,
      subtotal: Math.round(count * rate),
    });
  }
  return lines;
}

const sum = (lines: BillLine[]) => lines.reduce((s, l) => s + l.subtotal, 0);

/** One usage bill per tenant for `month`; returns them in tenant order. */
export async function makeFinalBills(
  sql: Sql,
  tenants: { tenant: string; index: number }[],
  month: string,
  variant = 0,
): Promise<SeededBill[]> {
  const { start, end } = monthBounds(month);
  const out: SeededBill[] = [];
  for (let i = 0; i < tenants.length; i += 2000) {
    const chunk = tenants.slice(i, i + 2000).map((t) => {
      const lines = usageLines(t.index, variant);
      return {
        tenant: t.tenant,
        index: t.index,
        lines,
        report: { line_items: lines, subtotal: sum(lines), processed_data_gb: 10 + t.index % 7 },
      };
    });
    const rows = await sql<{ id: string; tenant: string }[]>`
      insert into internal.billing_historicals (tenant, billed_month, report)
      select r.tenant, ${start}::timestamptz, r.report
      from jsonb_to_recordset(${chunk.map((c) => ({
      tenant: c.tenant,
      report: c.report,
    })) as unknown as string}::jsonb) as r(tenant text, report jsonb)
      returning id::text, tenant::text`;
    const ids = new Map(rows.map((r) => [r.tenant, Number(r.id)]));
    for (const c of chunk) {
      out.push({
        kind: "final",
        id: ids.get(c.tenant)!,
        tenant: c.tenant,
        index: c.index,
        dateStart: start,
        dateEnd: end,
        lineItems: c.lines,
        subtotal: c.report.subtotal,
      });
    }
  }
  return out;
}

/** One manual (contract) bill per tenant, covering `month`. */
export async function makeManualBills(
  sql: Sql,
  tenants: { tenant: string; index: number }[],
  month: string,
): Promise<SeededBill[]> {
  const { start, end } = monthBounds(month);
  const out: SeededBill[] = [];
  for (let i = 0; i < tenants.length; i += 2000) {
    const chunk = tenants.slice(i, i + 2000).map((t) => ({
      tenant: t.tenant,
      index: t.index,
      cents: 5_000 + (t.index % 20) * 250,
    }));
    const rows = await sql<{ id: string; tenant: string }[]>`
      insert into internal.manual_bills (tenant, usd_cents, description, date_start, date_end)
      select r.tenant, r.cents, 'Annual contract installment', ${start}::date, ${end}::date
      from jsonb_to_recordset(${chunk as unknown as string}::jsonb)
        as r(tenant text, cents integer)
      returning id::text, tenant::text`;
    const ids = new Map(rows.map((r) => [r.tenant, Number(r.id)]));
    for (const c of chunk) {
      out.push({
        kind: "manual",
        id: ids.get(c.tenant)!,
        tenant: c.tenant,
        index: c.index,
        dateStart: start,
        dateEnd: end,
        lineItems: [{
          description: "Annual contract installment",
          count: 1,
          rate: c.cents,
          subtotal: c.cents,
        }],
        subtotal: c.cents,
      });
    }
  }
  return out;
}

/** The planner's view of a seeded bill (no stored IDs). */
export function asBill(b: SeededBill): Bill {
  return {
    kind: b.kind,
    id: b.id,
    tenant: b.tenant,
    dateStart: b.dateStart,
    dateEnd: b.dateEnd,
    lineItems: b.lineItems,
    subtotal: b.subtotal,
    extra: b.kind === "final" ? { processed_data_gb: 10 } : null,
    storedInvoiceId: null,
    tenantTrialStart: "2020-01-01",
    paymentProvider: "stripe",
    generation: 0,
    releasedInvoiceIds: [],
  };
}

/** What Stripe must collect for a bill: the subtotal the bill itself states, to the cent. */
export function expectedTotal(b: { subtotal: number; lineItems: BillLine[] }): number {
  return b.subtotal;
}

/** Runs `fn` over `items` with at most `n` at once. */
export async function pool<T, R>(items: T[], n: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]);
      }
    }),
  );
  return out;
}

/** A customer as the old automation made it: name = tenant, tenant in metadata. */
export function legacyCustomer(control: EmulatorControl, tenant: string): Promise<StripeJson> {
  return control.createCustomer({
    name: tenant,
    email: `billing@${tenant.slice(0, -1)}.example`,
    description: `Represents the billing entity for Flow tenant '${tenant}'`,
    metadata: { [TENANT_NAME_KEY]: tenant, [CREATED_BY_AUTOMATION_KEY]: "true" },
  });
}

/**
 * An invoice for `bill` with everything the engine would send (lines, fields, metadata), made by
 * hand in the emulator. `withBillId` false = the old automation's (upstream keys only).
 */
export function invoiceFor(
  control: EmulatorControl,
  customer: string,
  bill: SeededBill,
  opts: {
    status?: "draft" | "open" | "paid" | "void";
    withBillId?: boolean;
    now?: Date;
  } = {},
): Promise<StripeJson> {
  const b = asBill(bill);
  const ctx = {
    runId: "seed",
    now: opts.now ?? new Date(),
    recreateExisting: false,
    usageCollectionMethod: "charge_automatically" as const,
    installation: "",
  };
  const spec = invoiceSpecFor(b, ctx);
  const metadata = { ...spec.metadata };
  // Made before installation IDs existed (so adoptable by any installation of this database).
  delete metadata[INSTALLATION_KEY];
  if (!opts.withBillId) delete metadata[BILL_ID_KEY];
  const params = createParams({
    kind: "create",
    bill: { kind: b.kind, id: b.id, tenant: b.tenant },
    reason: "no_invoice",
    customerId: customer,
    idempotencyKey: "seed",
    keyBase: "seed",
    invoice: { ...spec, metadata },
    lines: [],
    expectedTotal: 0,
  });
  const wanted = linesFor(b);
  if ("error" in wanted) throw new Error(`seeded bill ${b.kind}:${b.id}: ${wanted.error}`);
  const lines = wanted.lines;
  return control.createInvoice({
    ...(params as Record<string, unknown>),
    customer,
    status: opts.status ?? "draft",
    lines: lines.map((l) => addLineParam(l) as Record<string, unknown>),
  });
}
