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
