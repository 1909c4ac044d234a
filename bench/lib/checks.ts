/**
 * The invariants (docs/design.md §2), checked from the outside after every benchmark scenario and every
 * reliability scenario: what Stripe holds (the emulator's state dump, deleted objects included)
 * against what Postgres stored and audited.
 *
 * - duplicates: a bill with more than one live (not deleted, not void) invoice, counting
 *   invoices carrying its `estuary.dev/bill_id`, legacy invoices carrying its upstream
 *   type + period key, and its stored invoice;
 * - duplicate customers: a tenant with more than one live customer carrying its tenant name;
 * - lost IDs: an invoice carrying a bill's `estuary.dev/bill_id` (i.e. made for that bill) that
 *   is not deleted and not the bill's stored invoice;
 * - wrong links: a stored invoice that Stripe does not have, that carries another bill's ID, or
 *   that belongs to another customer than the tenant's stored one;
 * - missing audit: a stored ID without an audit row that wrote it;
 * - overwritten: a stored ID that changed since the snapshot, or an audit row replacing one ID by
 *   another without an audited release/replace;
 * - total mismatch: a live draft whose total is not the bill's.
 */
import type { EmulatorControl, StateDump } from "../../dev/stripe-emulator/control.ts";
import type { Sql } from "../../supabase/functions/_shared/db.ts";
import type { Stripe } from "../../supabase/functions/_shared/stripe_client.ts";
import {
  BILL_ID_KEY,
  INVOICE_TYPE_KEY,
  PERIOD_END_KEY,
  PERIOD_START_KEY,
  TENANT_NAME_KEY,
} from "../../supabase/functions/_shared/metadata.ts";
import type { BillLine } from "../../supabase/functions/_shared/planner.ts";
import { expectedTotal } from "./world.ts";

/**
 * The emulator's customers and invoices read through the API (every page), for states too big
 * for one `/_emulator/state` JSON string (V8 caps a string at ~512 MB; 10,000 tenants with
 * their history pass that). Deleted objects are not listed: callers that delete nothing (the
 * benchmark) lose nothing. Latency and limiters are switched off while it reads, then restored.
 */
export async function listedState(control: EmulatorControl, stripe: Stripe): Promise<StateDump> {
  const cfg = await control.config();
  await control.setLatency({});
  await control.setRateLimits({
    globalPerSecond: null,
    searchPerSecond: null,
    endpointPerSecond: null,
  });
  try {
    const customers: StateDump["customers"] = [];
    for await (const c of stripe.customers.list({ limit: 100 })) {
      customers.push({ ...(c as unknown as Record<string, unknown>), deleted: false });
    }
    const invoices: StateDump["invoices"] = [];
    for await (const i of stripe.invoices.list({ limit: 100 })) {
      invoices.push({ ...(i as unknown as Record<string, unknown>), deleted: false, line_ids: [] });
    }
    return {
      customers,
      invoices,
      invoice_items: [],
      payment_methods: [],
      setup_intents: [],
      event_count: 0,
    };
  } finally {
    const lat = cfg.latency as { minMs: number; maxMs: number } | undefined;
    if (lat) await control.setLatency(lat);
    const rl = cfg.rate_limits as Record<string, unknown> | undefined;
    if (rl) await control.setRateLimits(rl);
  }
}

/** Stored IDs by object (`tenant:<name>`, `final:<id>`, `manual:<id>`) and the audit high-water mark. */
export interface IdSnapshot {
  ids: Map<string, string | null>;
  auditMax: number;
}

interface BillRow {
  kind: "final" | "manual";
  id: string;
  tenant: string;
  date_start: string;
  date_end: string;
  stripe_invoice_id: string | null;
  line_items: BillLine[];
  subtotal: number;
}

async function loadBills(sql: Sql, tenants: string[] | null): Promise<BillRow[]> {
  return await sql<BillRow[]>`
    select 'final' as kind, h.id::text, h.tenant::text,
      to_char(h.billed_month, 'YYYY-MM-DD') as date_start,
      to_char(h.billed_month + interval '1 month' - interval '1 day', 'YYYY-MM-DD') as date_end,
      h.stripe_invoice_id, coalesce(h.report -> 'line_items', '[]') as line_items,
      coalesce((h.report ->> 'subtotal')::integer, 0) as subtotal
    from internal.billing_historicals h
    where ${tenants}::text[] is null or h.tenant = any(${tenants}::text[])
    union all
    select 'manual', m.id::text, m.tenant::text, m.date_start::text, m.date_end::text,
      m.stripe_invoice_id,
      jsonb_build_array(jsonb_build_object('description', m.description, 'count', 1,
        'rate', m.usd_cents, 'subtotal', m.usd_cents)),
      m.usd_cents
    from internal.manual_bills m
    where ${tenants}::text[] is null or m.tenant = any(${tenants}::text[])`;
}

/** Every stored ID in scope (null scope = everything). */
export async function snapshotIds(sql: Sql, tenants: string[] | null = null): Promise<IdSnapshot> {
  const ids = new Map<string, string | null>();
  const ts = await sql<{ tenant: string; id: string | null }[]>`
    select tenant::text, stripe_customer_id as id from public.tenants
    where ${tenants}::text[] is null or tenant = any(${tenants}::text[])`;
  for (const t of ts) ids.set(`tenant:${t.tenant}`, t.id);
  for (const b of await loadBills(sql, tenants)) ids.set(`${b.kind}:${b.id}`, b.stripe_invoice_id);
  const [{ max }] = await sql<{ max: number }[]>`
    select coalesce(max(id), 0)::int as max from internal.stripe_id_audit`;
  return { ids, auditMax: max };
}

/** What the checks found; every list must be empty. */
export interface CheckReport {
  bills: number;
  tenants: number;
  liveInvoices: number;
  duplicates: string[];
  duplicateCustomers: string[];
  lostIds: string[];
  wrongLinks: string[];
  missingAudit: string[];
  overwritten: string[];
  totalMismatch: string[];
  /** Bills expected to have a live stored invoice that have none. */
  unpublished: string[];
}

export function checkFailures(r: CheckReport): string[] {
  const out: string[] = [];
  for (
    const k of [
      "duplicates",
      "duplicateCustomers",
      "lostIds",
      "wrongLinks",
      "missingAudit",
      "overwritten",
      "totalMismatch",
      "unpublished",
    ] as const
  ) {
    if (r[k].length > 0) {
      out.push(`${k}: ${r[k].slice(0, 5).join("; ")}${r[k].length > 5 ? " …" : ""}`);
    }
  }
  return out;
}

export interface CheckOptions {
  /** Tenants in scope; null = every tenant. */
  tenants: string[] | null;
  /** Stored IDs before the scenario (for "no stored ID overwritten"). */
  before?: IdSnapshot;
  /** A state dump already fetched (else fetched from control). */
  state?: StateDump;
  /** Bills (`kind:id`) that must end with a live stored invoice. */
  expectPublished?: string[];
  /** Compare live drafts' totals to their bills (default true). */
  totals?: boolean;
}

type Invoice = StateDump["invoices"][number];

/** Checks the invariants for the tenants in scope. */
export async function checkInvariants(
  sql: Sql,
  control: EmulatorControl,
  opts: CheckOptions,
): Promise<CheckReport> {
  const state = opts.state ?? await control.state();
  const bills = await loadBills(sql, opts.tenants);
  const tenantRows = await sql<{ tenant: string; customer: string | null }[]>`
    select tenant::text, stripe_customer_id as customer from public.tenants
    where ${opts.tenants}::text[] is null or tenant = any(${opts.tenants}::text[])`;
  const scope = new Set(tenantRows.map((t) => t.tenant));
  const customerOfTenant = new Map(tenantRows.map((t) => [t.tenant, t.customer]));
  const tenantOfCustomer = new Map<string, string>();
  for (const t of tenantRows) if (t.customer) tenantOfCustomer.set(t.customer, t.tenant);

  const report: CheckReport = {
    bills: bills.length,
    tenants: tenantRows.length,
    liveInvoices: 0,
    duplicates: [],
    duplicateCustomers: [],
    lostIds: [],
    wrongLinks: [],
    missingAudit: [],
    overwritten: [],
    totalMismatch: [],
    unpublished: [],
  };

  // Customers: one live customer per tenant.
  const customersByTenant = new Map<string, string[]>();
  for (const c of state.customers) {
    const t = c.metadata?.[TENANT_NAME_KEY];
    if (c.deleted || typeof t !== "string" || !scope.has(t)) continue;
    customersByTenant.set(t, [...(customersByTenant.get(t) ?? []), c.id]);
    if (!tenantOfCustomer.has(c.id)) tenantOfCustomer.set(c.id, t);
  }
  for (const [t, ids] of customersByTenant) {
    if (ids.length > 1) report.duplicateCustomers.push(`${t} has ${ids.join(", ")}`);
  }

  // Invoices in scope: of a scope tenant's customer, or carrying a scope tenant's name.
  const invoices: Invoice[] = state.invoices.filter((inv) => {
    const t = inv.metadata?.[TENANT_NAME_KEY];
    return (typeof t === "string" && scope.has(t)) ||
      (typeof inv.customer === "string" && tenantOfCustomer.has(inv.customer));
  });
  const byId = new Map(state.invoices.map((i) => [i.id as string, i]));
  const live = (i: Invoice) => !i.deleted && i.status !== "void";
  report.liveInvoices = invoices.filter(live).length;
  const byBillId = new Map<string, Invoice[]>();
  const byUpstreamKey = new Map<string, Invoice[]>();
  for (const inv of invoices) {
    const ref = inv.metadata?.[BILL_ID_KEY];
    if (typeof ref === "string") byBillId.set(ref, [...(byBillId.get(ref) ?? []), inv]);
    else {
      const m = inv.metadata ?? {};
      const k = [m[TENANT_NAME_KEY], m[INVOICE_TYPE_KEY], m[PERIOD_START_KEY], m[PERIOD_END_KEY]]
        .join("|");
      byUpstreamKey.set(k, [...(byUpstreamKey.get(k) ?? []), inv]);
    }
  }

  const expect = new Set(opts.expectPublished ?? []);
  for (const b of bills) {
    const ref = `${b.kind}:${b.id}`;
    const mine = byBillId.get(ref) ?? [];
    const legacy = byUpstreamKey.get([b.tenant, b.kind, b.date_start, b.date_end].join("|")) ??
      [];
    const liveSet = new Set<string>();
    for (const i of [...mine, ...legacy]) if (live(i)) liveSet.add(i.id as string);
    const stored = b.stripe_invoice_id ? byId.get(b.stripe_invoice_id) : undefined;
    if (stored && live(stored)) liveSet.add(stored.id as string);
    if (liveSet.size > 1) report.duplicates.push(`${ref} has ${[...liveSet].join(", ")}`);
    for (const i of mine) {
      if (!i.deleted && i.id !== b.stripe_invoice_id) {
        report.lostIds.push(
          `${ref}: ${i.id} (${i.status}) not stored (stored: ${b.stripe_invoice_id})`,
        );
      }
    }
    if (b.stripe_invoice_id) {
      if (!stored) {
        report.wrongLinks.push(`${ref}: stored ${b.stripe_invoice_id} unknown to Stripe`);
      } else {
        const carried = stored.metadata?.[BILL_ID_KEY];
        if (typeof carried === "string" && carried !== ref) {
          report.wrongLinks.push(`${ref}: stored ${stored.id} carries ${carried}`);
        }
        const cus = customerOfTenant.get(b.tenant);
        if (cus && stored.customer !== cus) {
          report.wrongLinks.push(
            `${ref}: stored ${stored.id} belongs to ${stored.customer}, not ${cus}`,
          );
        }
        if ((opts.totals ?? true) && !stored.deleted && stored.status === "draft") {
          const want = expectedTotal({ subtotal: Number(b.subtotal), lineItems: b.line_items });
          if (stored.total !== want) {
            report.totalMismatch.push(`${ref}: ${stored.id} totals ${stored.total}, bill ${want}`);
          }
        }
      }
    }
    if (expect.has(ref) && (!stored || !live(stored))) {
      report.unpublished.push(`${ref}: ${b.stripe_invoice_id ?? "no stored invoice"}`);
    }
  }
  // Expected bills that no longer exist are unpublished too.
  const known = new Set(bills.map((b) => `${b.kind}:${b.id}`));
  for (const ref of expect) if (!known.has(ref)) report.unpublished.push(`${ref}: bill missing`);

  // Audit: every stored ID was written by an audited change; none was replaced silently.
  const after = await snapshotIds(sql, opts.tenants);
  const audit = await sql<
    {
      id: number;
      object_kind: string;
      object_key: string;
      action: string;
      old_id: string | null;
      new_id: string | null;
    }[]
  >`
    select a.id::int, a.object_kind, a.object_key, a.action, a.old_id, a.new_id
    from internal.stripe_id_audit a
    where ${opts.tenants}::text[] is null
      or (a.object_kind = 'tenant' and a.object_key = any(${opts.tenants}::text[]))
      or (a.object_kind = 'final' and a.object_key in (select id::text
        from internal.billing_historicals where tenant = any(${opts.tenants}::text[])))
      or (a.object_kind = 'manual' and a.object_key in (select id::text
        from internal.manual_bills where tenant = any(${opts.tenants}::text[])))
    order by a.id`;
  const wrote = new Set<string>();
  for (const a of audit) {
    const obj = `${a.object_kind}:${a.object_key}`;
    if (["link", "replace", "direct_update"].includes(a.action) && a.new_id) {
      wrote.add(`${obj}=${a.new_id}`);
    }
    if (a.action === "link" && a.old_id && a.old_id !== a.new_id) {
      report.overwritten.push(`${obj}: link replaced ${a.old_id} by ${a.new_id} (audit ${a.id})`);
    }
    if (a.action === "direct_update" && a.old_id) {
      report.overwritten.push(`${obj}: direct update ${a.old_id} -> ${a.new_id} (audit ${a.id})`);
    }
  }
  for (const [obj, id] of after.ids) {
    if (id && !wrote.has(`${obj}=${id}`)) report.missingAudit.push(`${obj}=${id}`);
  }
  if (opts.before) {
    const released = new Set(
      audit.filter((a) =>
        a.id > opts.before!.auditMax && (a.action === "release" || a.action === "replace")
      ).map((a) => `${a.object_kind}:${a.object_key}`),
    );
    for (const [obj, id] of opts.before.ids) {
      const now = after.ids.get(obj);
      if (id && now !== id && !released.has(obj)) {
        report.overwritten.push(`${obj}: ${id} -> ${now ?? "null"} without an audited release`);
      }
    }
  }
  return report;
}
