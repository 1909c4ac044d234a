/**
 * Reads bills for publishing: one bill by its stable ID, with what its tenant and its invoice
 * history (audited releases/replacements, earlier intents) say about it.
 */
import type { Sql } from "./db.ts";
import type { Bill, BillLine, StripeKnowledge } from "./plan_types.ts";

/** A bill plus the tenant's stored customer. */
export interface LoadedBill {
  bill: Bill;
  tenantCustomerId: string | null;
}

interface BillRow {
  kind: "final" | "manual";
  id: string;
  tenant: string;
  date_start: string;
  date_end: string;
  line_items: BillLine[] | null;
  subtotal: number;
  extra: { processed_data_gb?: number | null } | null;
  stripe_invoice_id: string | null;
  trial_start: string | null;
  payment_provider: "stripe" | "external" | null;
  stripe_customer_id: string | null;
  generation: number;
  released: string[];
}

/** Loads one bill (null when it no longer exists), shaped like its `invoices_ext` row. */
export async function loadBill(
  sql: Sql,
  kind: "final" | "manual",
  id: number,
): Promise<LoadedBill | null> {
  const rows = await sql<BillRow[]>`
    with b as (
      select 'final'::text as kind, h.id, h.tenant::text as tenant,
        -- billed_month is midnight UTC: read it in UTC whatever the session's zone.
        date_trunc('month', h.billed_month at time zone 'UTC')::date as date_start,
        (date_trunc('month', h.billed_month at time zone 'UTC') + interval '1 month'
          - interval '1 day')::date as date_end,
        coalesce(nullif(h.report -> 'line_items', 'null'), '[]'::jsonb) as line_items,
        coalesce(nullif(h.report -> 'subtotal', 'null'), '0')::integer as subtotal,
        nullif(h.report, 'null'::jsonb) as extra,
        h.stripe_invoice_id
      from internal.billing_historicals h where ${kind} = 'final' and h.id = ${id}
      union all
      select 'manual', m.id, m.tenant::text, m.date_start, m.date_end,
        jsonb_build_array(jsonb_build_object('description', m.description, 'count', 1,
          'rate', m.usd_cents, 'subtotal', m.usd_cents)),
        m.usd_cents, null, m.stripe_invoice_id
      from internal.manual_bills m where ${kind} = 'manual' and m.id = ${id}
    )
    select b.kind, b.id::text, b.tenant, b.date_start::text, b.date_end::text, b.line_items,
      b.subtotal, b.extra, b.stripe_invoice_id, t.trial_start::text, t.payment_provider::text,
      t.stripe_customer_id,
      (select count(*)::int from internal.stripe_id_audit a
        where a.object_kind = b.kind and a.object_key = b.id::text
          and a.action in ('release', 'replace')) as generation,
      array(select a.old_id from internal.stripe_id_audit a
        where a.object_kind = b.kind and a.object_key = b.id::text
          and a.action in ('release', 'replace') and a.old_id is not null) as released
    from b left join public.tenants t on t.tenant = b.tenant`;
  if (rows.length === 0) return null;
  const r = rows[0];
  return {
    tenantCustomerId: r.stripe_customer_id,
    bill: {
      kind: r.kind,
      id: Number(r.id),
      tenant: r.tenant,
      dateStart: r.date_start,
      dateEnd: r.date_end,
      lineItems: (r.line_items ?? []).map((l) => ({
        description: l.description ?? null,
        count: Number(l.count ?? 0),
        rate: Number(l.rate ?? 0),
        subtotal: Number(l.subtotal ?? 0),
      })),
      subtotal: Number(r.subtotal),
      extra: r.extra,
      storedInvoiceId: r.stripe_invoice_id,
      tenantTrialStart: r.trial_start,
      paymentProvider: r.payment_provider,
      generation: r.generation,
      releasedInvoiceIds: r.released,
    },
  };
}

/** What earlier attempts recorded for a bill. */
export type BillHistory = Pick<
  StripeKnowledge,
  "priorCreate" | "replacementStartedFor" | "createdThisRun" | "keySalt" | "orphans"
>;

interface IntentRow {
  step: string;
  idempotency_key: string | null;
  stripe_invoice_id: string | null;
  params: Record<string, unknown> | null;
  at: Date;
}

/** Reads the bill's intents and this run's links from the durable records. */
export async function loadBillHistory(
  sql: Sql,
  kind: "final" | "manual",
  id: number,
  runId: string,
): Promise<BillHistory> {
  const intents = await sql<IntentRow[]>`
    select step, idempotency_key, stripe_invoice_id, params, at from internal.publish_intents
    where bill_kind = ${kind} and bill_id = ${id}
      and step in ('create_invoice', 'void_invoice', 'delete_invoice')
    order by at desc, id desc limit 20`;
  const [{ replays }] = await sql<{ replays: number }[]>`
    select count(*)::int as replays from internal.publish_intents
    where bill_kind = ${kind} and bill_id = ${id} and step = 'replayed'`;
  const create = intents.find((i) => i.step === "create_invoice");
  // Deleted or voided by us: to replace it, or as a stale draft of a bill that needs none.
  const replacing = intents.find((i) =>
    (i.step === "void_invoice" || i.step === "delete_invoice") &&
    (i.params?.reason === "replace" || i.params?.reason === "stale")
  );
  const links = await sql<{ new_id: string }[]>`
    select new_id from internal.stripe_id_audit
    where object_kind = ${kind} and object_key = ${String(id)} and run_id = ${runId}::uuid
      and action in ('link', 'replace') and new_id is not null`;
  return {
    priorCreate: create?.idempotency_key
      ? {
        idempotencyKey: create.idempotency_key,
        dueDate: typeof create.params?.due_date === "number" ? create.params.due_date : null,
        at: new Date(create.at).getTime(),
        customerId: typeof create.params?.customer === "string" ? create.params.customer : null,
      }
      : null,
    replacementStartedFor: replacing?.stripe_invoice_id ?? null,
    createdThisRun: links.map((l) => l.new_id),
    keySalt: replays,
    orphans: [],
  };
}
