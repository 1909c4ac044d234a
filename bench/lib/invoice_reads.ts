/**
 * Dashboard reads of public.invoices_ext at scale, as PostgREST sends them: a world of T tenants
 * × M months of usage bills plus manual bills, a fifth of them invoiced with mirrored Stripe
 * state, and U users each admin of one tenant (tenant 10, 20, ...). Every read runs as
 * `authenticated` with the user's JWT claims, in the SQL PostgREST generates for
 * `GET /invoices_ext` (filtered by tenant, unfiltered, and `Prefer: count=exact`).
 */
import type { Sql } from "../../supabase/functions/_shared/db.ts";

export interface ReadWorld {
  tenants: number;
  months: number;
  manualBills: number;
  users: number;
}

export interface LoadTimes {
  tenants_s: number;
  usage_bills_s: number;
  manual_bills_s: number;
  invoices_s: number;
  analyze_s: number;
  total_s: number;
}

export const tenantName = (i: number) => `bt${String(i).padStart(7, "0")}/`;
/** User k (1-based) administers tenant 10·k. */
export const userTenant = (k: number) => tenantName(10 * k);
export const userId = (k: number) => `00000000-0000-4000-8000-${String(k).padStart(12, "0")}`;
/** The first month of usage bills; months run from here. */
export const FIRST_MONTH = "2028-01-01";

const seconds = (t0: number) => Math.round((performance.now() - t0) / 10) / 100;

/**
 * Loads the world through a superuser connection. Triggers are off for the bulk insert
 * (session_replication_role = replica); the invoice registry they would fill is written
 * directly, so the tables look as the link functions leave them.
 */
export async function loadReadWorld(admin: Sql, w: ReadWorld): Promise<LoadTimes> {
  const start = performance.now();
  const times: Partial<LoadTimes> = {};
  await admin.begin(async (tx) => {
    await tx`set local session_replication_role = replica`;
    await tx`set local timezone = 'UTC'`;
    let t0 = performance.now();
    await tx`
      insert into public.tenants (tenant, billing_email)
      select 'bt' || lpad(g::text, 7, '0') || '/', 'billing+' || g || '@example.com'
      from generate_series(1, ${w.tenants}) g`;
    await tx`
      insert into auth.users (id, aud, role, email)
      select ('00000000-0000-4000-8000-' || lpad(k::text, 12, '0'))::uuid, 'authenticated',
        'authenticated', 'bench-user-' || k || '@example.com'
      from generate_series(1, ${w.users}) k`;
    await tx`
      insert into public.user_grants (user_id, object_role, capability)
      select ('00000000-0000-4000-8000-' || lpad(k::text, 12, '0'))::uuid,
        'bt' || lpad((10 * k)::text, 7, '0') || '/', 'admin'
      from generate_series(1, ${w.users}) k`;
    times.tenants_s = seconds(t0);

    // Usage bills: a report with a few lines, like upstream's; every fifth bill invoiced.
    t0 = performance.now();
    await tx`
      insert into internal.billing_historicals (tenant, billed_month, report, stripe_invoice_id)
      select 'bt' || lpad(g::text, 7, '0') || '/',
        ${FIRST_MONTH}::timestamptz + make_interval(months => m),
        jsonb_build_object(
          'subtotal', 1000 + g % 997,
          'processed_data_gb', g % 100,
          'task_usage_hours', (g * 7 + m) % 720,
          'line_items', jsonb_build_array(
            jsonb_build_object('description', 'Data processing', 'count', g % 100,
              'rate', 50, 'subtotal', (g % 100) * 50),
            jsonb_build_object('description', 'Task hours', 'count', (g * 7 + m) % 720,
              'rate', 14, 'subtotal', ((g * 7 + m) % 720) * 14)),
          'billed_prefix', 'bt' || lpad(g::text, 7, '0') || '/'),
        case when (g + m) % 5 = 0 then 'in_bt' || g || 'm' || m end
      from generate_series(1, ${w.tenants}) g, generate_series(0, ${w.months - 1}) m`;
    times.usage_bills_s = seconds(t0);

    // Manual bills: one contract each for the first manualBills tenants with an index that is a
    // multiple of 10 (so every user's tenant has one), every fifth invoiced.
    t0 = performance.now();
    await tx`
      insert into internal.manual_bills (tenant, usd_cents, description, date_start, date_end,
        stripe_invoice_id)
      select 'bt' || lpad(g::text, 7, '0') || '/', 50000, 'Annual contract',
        ${FIRST_MONTH}::date + make_interval(months => g % ${w.months}),
        (${FIRST_MONTH}::date + make_interval(months => g % ${w.months} + 3))::date - 1,
        case when (g / 10) % 5 = 0 then 'in_btm' || g end
      from generate_series(10, 10 * ${w.manualBills}, 10) g`;
    times.manual_bills_s = seconds(t0);

    t0 = performance.now();
    await tx`
      insert into internal.bill_invoice_links (stripe_invoice_id, bill_kind, bill_id)
      select stripe_invoice_id, 'final', id from internal.billing_historicals
      where stripe_invoice_id is not null
      union all
      select stripe_invoice_id, 'manual', id from internal.manual_bills
      where stripe_invoice_id is not null`;
    await tx`
      insert into internal.stripe_invoice_state (stripe_invoice_id, customer_id, status,
        amount_due, total, currency, hosted_invoice_url, invoice_pdf, source_time, source)
      select l.stripe_invoice_id, 'cus_bench',
        (array['open', 'paid', 'paid', 'void', 'draft'])[1 + (l.bill_id % 5)::int],
        1000 + l.bill_id % 997, 1000 + l.bill_id % 997, 'usd',
        'https://invoice.example/' || l.stripe_invoice_id,
        'https://invoice.example/' || l.stripe_invoice_id || '.pdf', now(), 'bench'
      from internal.bill_invoice_links l`;
    times.invoices_s = seconds(t0);
  });
  const t0 = performance.now();
  await admin`vacuum analyze public.tenants, public.user_grants, internal.billing_historicals,
    internal.manual_bills, internal.stripe_invoice_state, internal.bill_invoice_links`;
  times.analyze_s = seconds(t0);
  times.total_s = seconds(start);
  return times as LoadTimes;
}

const PAGE_SELECT = `select null::bigint as total_result_set,
    pg_catalog.count(_postgrest_t) as page_total,
    coalesce(json_agg(_postgrest_t), '[]') as body,
    nullif(current_setting('response.headers', true), '') as response_headers,
    nullif(current_setting('response.status', true), '') as response_status
  from (select * from pgrst_source) _postgrest_t`;

/** The three reads, in the SQL PostgREST 12 generates for them (parameters as it binds them). */
export const READS = {
  // GET /invoices_ext?billed_prefix=eq.<tenant>&order=date_start.desc&limit=24
  filtered: `with pgrst_source as (
      select "public"."invoices_ext".* from "public"."invoices_ext"
      where "public"."invoices_ext"."billed_prefix" = $1
      order by "public"."invoices_ext"."date_start" desc limit $2 offset $3)
    ${PAGE_SELECT}`,
  // GET /invoices_ext?order=date_start.desc&limit=24 (the view's own authorization only)
  unfiltered: `with pgrst_source as (
      select "public"."invoices_ext".* from "public"."invoices_ext"
      order by "public"."invoices_ext"."date_start" desc limit $1 offset $2)
    ${PAGE_SELECT}`,
  // The same with Prefer: count=exact (the total counted over the whole view)
  count: `with pgrst_source as (
      select "public"."invoices_ext".* from "public"."invoices_ext"
      order by "public"."invoices_ext"."date_start" desc limit $1 offset $2),
    pgrst_source_count as (select 1 from "public"."invoices_ext")
    ${
    PAGE_SELECT.replace(
      "null::bigint as total_result_set",
      "(select pg_catalog.count(*) from pgrst_source_count) as total_result_set",
    )
  }`,
  // GET /tenants?select=tenant,billing_email (the tenants policy, no filter of the caller's)
  tenants: `with pgrst_source as (
      select "public"."tenants"."tenant", "public"."tenants"."billing_email"
      from "public"."tenants")
    ${PAGE_SELECT}`,
} as const;

function readParams(kind: ReadKind, tenant: string): (string | number)[] {
  if (kind === "tenants") return [];
  return kind === "filtered" ? [tenant, 24, 0] : [24, 0];
}

export type ReadKind = keyof typeof READS;

interface ReadResult {
  total_result_set: number | null;
  page_total: number;
  body: { billed_prefix: string; bill_id: string }[];
}

/** Runs `fn` as PostgREST does for user k: a transaction with role and claims set locally. */
export async function asUser<T>(sql: Sql, k: number, fn: (tx: Sql) => Promise<T>): Promise<T> {
  const claims = JSON.stringify({ sub: userId(k), role: "authenticated", aud: "authenticated" });
  return await sql.begin(async (tx) => {
    await tx`select set_config('role', 'authenticated', true),
      set_config('request.jwt.claims', ${claims}, true)`;
    return await fn(tx as unknown as Sql);
  }) as T;
}

export interface ReadFigures {
  n: number;
  p50_ms: number;
  p95_ms: number;
  max_ms: number;
}

/** Times `reps` reads of each kind, round-robin over the users (the read statement only). */
export async function timeReads(
  sql: Sql,
  users: number,
  reps: number,
): Promise<Record<ReadKind, ReadFigures>> {
  const out = {} as Record<ReadKind, ReadFigures>;
  for (const kind of Object.keys(READS) as ReadKind[]) {
    const ms: number[] = [];
    for (let r = 0; r < reps; r++) {
      const k = 1 + (r % users);
      await asUser(sql, k, async (tx) => {
        const t0 = performance.now();
        await run(tx, kind, k);
        ms.push(performance.now() - t0);
      });
    }
    ms.sort((a, b) => a - b);
    const at = (p: number) => ms[Math.min(ms.length - 1, Math.floor(p * ms.length))];
    out[kind] = { n: ms.length, p50_ms: r2(at(0.5)), p95_ms: r2(at(0.95)), max_ms: r2(ms.at(-1)!) };
  }
  return out;
}

async function run(
  tx: Sql,
  kind: ReadKind,
  k: number,
  tenant = userTenant(k),
): Promise<ReadResult> {
  const rows = await tx.unsafe(READS[kind], readParams(kind, tenant));
  return rows[0] as unknown as ReadResult;
}

const r2 = (x: number) => Math.round(x * 100) / 100;

/**
 * For every user: the rows they may see are exactly their tenant's bills. The expected count
 * comes from how the world was generated (M usage bills, plus one contract when the tenant is
 * among the first manualBills multiples of 10), not from the view.
 */
export async function checkVisibility(sql: Sql, w: ReadWorld): Promise<string[]> {
  const failures: string[] = [];
  for (let k = 1; k <= w.users; k++) {
    const tenant = userTenant(k);
    const expected = w.months + (k <= w.manualBills ? 1 : 0);
    const r = await asUser(sql, k, (tx) => run(tx, "count", k));
    if (Number(r.total_result_set) !== expected) {
      failures.push(`user ${k}: count=exact says ${r.total_result_set}, expected ${expected}`);
    }
    const page = await asUser(sql, k, (tx) => run(tx, "unfiltered", k));
    const foreign = page.body.filter((b) => b.billed_prefix !== tenant);
    if (foreign.length > 0 || Number(page.page_total) !== Math.min(24, expected)) {
      failures.push(
        `user ${k}: unfiltered page has ${page.page_total} rows, ${foreign.length} of other tenants`,
      );
    }
    const filtered = await asUser(sql, k, (tx) => run(tx, "filtered", k));
    if (Number(filtered.page_total) !== Math.min(24, expected)) {
      failures.push(`user ${k}: filtered page has ${filtered.page_total} rows`);
    }
    const tenants = await asUser(sql, k, (tx) => run(tx, "tenants", k));
    if (
      Number(tenants.page_total) !== 1 ||
      (tenants.body[0] as unknown as { tenant: string }).tenant !== tenant
    ) {
      failures.push(`user ${k}: the tenants read has ${tenants.page_total} rows`);
    }
    // Another user's tenant, asked for by name, shows nothing.
    const other = await asUser(sql, k, (tx) => run(tx, "filtered", k, userTenant(k === 1 ? 2 : 1)));
    if (Number(other.page_total) !== 0) {
      failures.push(`user ${k}: sees ${other.page_total} rows of another user's tenant`);
    }
  }
  return failures;
}

/** EXPLAIN (ANALYZE, BUFFERS) of each read as user 1, in text. */
export async function explainReads(sql: Sql): Promise<Record<ReadKind, string>> {
  const out = {} as Record<ReadKind, string>;
  for (const kind of Object.keys(READS) as ReadKind[]) {
    out[kind] = await asUser(sql, 1, async (tx) => {
      const rows = await tx.unsafe(
        `explain (analyze, buffers) ${READS[kind]}`,
        readParams(kind, userTenant(1)),
      );
      return rows.map((r) => (r as Record<string, string>)["QUERY PLAN"]).join("\n");
    });
  }
  return out;
}
