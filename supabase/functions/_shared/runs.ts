/**
 * The durable run queue (internal.publish_runs / publish_run_items) seen from TypeScript: every
 * state change goes through the SQL functions, which hold the leasing rules.
 */
import type { Sql } from "./db.ts";
import type { CollectionMethod } from "./planner.ts";

/** Options stored with a run. */
export interface RunOptions {
  dry_run: boolean;
  recreate_existing: boolean;
  usage_collection_method: CollectionMethod;
  /** The whole run's Stripe budget; each worker takes a share. */
  rate_per_second: number;
  lease_seconds: number;
  max_attempts: number;
}

/** A run as stored. */
export interface RunRow {
  id: string;
  month: string;
  tenants: string[] | null;
  options: RunOptions;
  status: "pending" | "running" | "done";
  /** When the run was enqueued (a timestamptz literal, exact to the microsecond). */
  created_at: string;
}

/** A claimed item. */
export interface Claim {
  run_id: string;
  item_no: number;
  bill_kind: "final" | "manual";
  bill_id: number;
  tenant: string;
  attempts: number;
  active_workers: number;
  /** When this worker's lease on the item ends unless extended. */
  lease_expires_at: Date;
}

/** Creates a run and its items in one transaction (or returns the existing run with that ID). */
export async function enqueueRun(
  sql: Sql,
  input: {
    month: string;
    tenants?: string[] | null;
    options?: Partial<RunOptions>;
    actor: string;
    runId?: string | null;
  },
): Promise<string> {
  const [row] = await sql<{ id: string }[]>`
    select internal.enqueue_publish_run(${input.month + "-01"}::date,
      ${input.tenants ?? null}::text[], ${sql.json((input.options ?? {}) as never)},
      ${input.actor}, ${input.runId ?? null}::uuid)::text as id`;
  return row.id;
}

/** Loads a run; null when there is none with that ID. */
export async function loadRun(sql: Sql, runId: string): Promise<RunRow | null> {
  const rows = await sql<RunRow[]>`
    select id::text, to_char(month, 'YYYY-MM') as month, tenants, options, status,
      created_at::text
    from internal.publish_runs where id = ${runId}::uuid`;
  return rows[0] ?? null;
}

/** Leases up to `limit` items of the run to `worker`. */
export async function claimItems(
  sql: Sql,
  runId: string,
  worker: string,
  limit: number,
): Promise<Claim[]> {
  const rows = await sql<Claim[]>`
    select run_id::text, item_no, bill_kind, bill_id::int as bill_id, tenant, attempts,
      active_workers, lease_expires_at
    from internal.claim_publish_items(${runId}::uuid, ${worker}, ${limit})`;
  return rows.map((r) => ({
    ...r,
    bill_id: Number(r.bill_id),
    lease_expires_at: new Date(r.lease_expires_at),
  }));
}

/** What an item came to. */
export interface ItemCompletion {
  outcome: string | null;
  action: string | null;
  reason: string | null;
  detail: string | null;
  invoiceId: string | null;
  stripeCalls: Record<string, number>;
  plan: unknown;
  error: string | null;
  /** Back to pending for another attempt (until the run's max_attempts). */
  retry: boolean;
}

/** Finishes (or returns) an item the worker holds; returns its new state. */
export async function completeItem(
  sql: Sql,
  claim: Claim,
  worker: string,
  c: ItemCompletion,
): Promise<string> {
  const [row] = await sql<{ state: string }[]>`
    select internal.complete_publish_item(${claim.run_id}::uuid, ${claim.item_no}, ${worker},
      ${c.outcome}, ${c.action}, ${c.reason}, ${c.detail}, ${c.invoiceId},
      ${sql.json(c.stripeCalls as never)},
      ${c.plan === null ? null : sql.json(c.plan as never)}::jsonb,
      ${c.error}, ${c.retry}) as state`;
  return row.state;
}

/** Hands claimed-but-untouched items back (the worker ran out of time). */
export async function releaseItems(
  sql: Sql,
  runId: string,
  worker: string,
  itemNos: number[],
): Promise<void> {
  if (itemNos.length === 0) return;
  await sql`select internal.release_publish_items(${runId}::uuid, ${worker}, ${itemNos}::int[])`;
}

/** The run report: status, counters and (optionally) every item. */
export async function runReport(
  sql: Sql,
  runId: string,
  withItems = true,
): Promise<Record<string, unknown>> {
  const [row] = await sql<{ report: Record<string, unknown> }[]>`
    select internal.publish_run_report(${runId}::uuid, ${withItems}) as report`;
  return row.report;
}

/** A run that is still pending or running. */
export interface ActiveRun {
  id: string;
  month: string;
  tenants: string[] | null;
  options: RunOptions;
  created_by: string;
  created_at: string;
  item_count: number;
}

/** What to do about a new request for a month that may already have an active run. */
export type ActiveRunDecision =
  | { kind: "none" }
  | { kind: "join"; run: ActiveRun }
  | { kind: "conflict"; run: ActiveRun };

function sameTenants(a: string[] | null, b: string[] | null): boolean {
  if (a === null || b === null) return a === b;
  const x = [...new Set(a)].sort();
  const y = [...new Set(b)].sort();
  return x.length === y.length && x.every((t, i) => t === y[i]);
}

function overlaps(a: string[] | null, b: string[] | null): boolean {
  if (a === null || b === null) return true;
  const set = new Set(a);
  return b.some((t) => set.has(t));
}

/**
 * Another operator (or invocation) may be publishing the month already. A request for the same
 * bills with the same options joins that run; one that overlaps it with other options is a
 * conflict (the caller names the run and how to follow it); disjoint tenants start their own.
 */
export async function decideActiveRun(
  sql: Sql,
  input: { month: string; tenants: string[] | null; options: Partial<RunOptions> },
): Promise<ActiveRunDecision> {
  const runs = await sql<ActiveRun[]>`
    select id::text, to_char(month, 'YYYY-MM') as month, tenants, options, created_by,
      created_at::text, item_count
    from internal.publish_runs
    where month = ${input.month + "-01"}::date and status <> 'done'
    order by created_at`;
  const want = {
    dry_run: input.options.dry_run ?? false,
    recreate_existing: input.options.recreate_existing ?? false,
    usage_collection_method: input.options.usage_collection_method ?? "charge_automatically",
  };
  for (const run of runs) {
    if (!overlaps(run.tenants, input.tenants)) continue;
    const same = sameTenants(run.tenants, input.tenants) &&
      run.options.dry_run === want.dry_run &&
      run.options.recreate_existing === want.recreate_existing &&
      run.options.usage_collection_method === want.usage_collection_method;
    // A dry run and a real run of the same bills do not get in each other's way.
    if (!same && run.options.dry_run !== want.dry_run) continue;
    return { kind: same ? "join" : "conflict", run };
  }
  return { kind: "none" };
}

/** Items of a run this worker cannot take yet, and until when. */
export interface RunBlockers {
  /** Items leased by other workers of this run (alive, or dead until the lease expires). */
  leased: { worker: string; items: number; lease_expires_at: string }[];
  /** Pending items whose bill another run is working on. */
  otherRuns: { run_id: string; items: number; lease_expires_at: string }[];
}

/** Why a drain that found nothing to claim still has items left. */
export async function runBlockers(sql: Sql, runId: string): Promise<RunBlockers> {
  const leased = await sql<RunBlockers["leased"]>`
    select lease_owner as worker, count(*)::int as items,
      to_char(max(lease_expires_at) at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"')
        as lease_expires_at
    from internal.publish_run_items
    where run_id = ${runId}::uuid and state = 'running'
    group by lease_owner order by lease_owner`;
  const otherRuns = await sql<RunBlockers["otherRuns"]>`
    select o.run_id::text, count(*)::int as items,
      to_char(max(o.lease_expires_at) at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"')
        as lease_expires_at
    from internal.publish_run_items i
    join internal.publish_run_items o on o.bill_kind = i.bill_kind and o.bill_id = i.bill_id
      and o.run_id <> i.run_id and o.state = 'running'
    where i.run_id = ${runId}::uuid and i.state = 'pending'
    group by o.run_id order by o.run_id`;
  return { leased, otherRuns };
}

/** One page of a run's items (optionally only one state: pending … failed, or warned). */
export async function runItemsPage(
  sql: Sql,
  runId: string,
  options: { state?: string | null; afterItemNo?: number; limit?: number } = {},
): Promise<Record<string, unknown>[]> {
  const rows = await sql<{ item: Record<string, unknown> }[]>`
    select item from internal.publish_run_items_page(${runId}::uuid, ${options.state ?? null},
      ${options.afterItemNo ?? 0}, ${options.limit ?? 1000})`;
  return rows.map((r) => r.item);
}

/** Names of `tenants` that are not tenants (so a typo is an error, not an empty run). */
export async function unknownTenants(sql: Sql, tenants: string[] | null): Promise<string[]> {
  if (!tenants || tenants.length === 0) return [];
  const [row] = await sql<{ unknown: string[] }[]>`
    select internal.unknown_tenants(${tenants}::text[]) as unknown`;
  return row.unknown;
}
