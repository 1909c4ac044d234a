/**
 * Delivers the local pg_net stand-in's requests (dev/supabase-compat/pg_net.sql), as pg_net's
 * background worker does on a real project: takes committed rows off net.http_request_queue,
 * sends them, and records each outcome in net._http_response (status, headers, body, or
 * timed_out / error_msg). Woken by NOTIFY on commit, and polls every 200 ms in case a wake-up
 * was missed. Started and stopped by dev/stack.sh (PID file); never logs headers or bodies.
 *
 * Environment: NET_WORKER_DB_URL (a superuser connection), NET_WORKER_TTL (response retention,
 * a Postgres interval, default "6 hours"), NET_WORKER_BATCH_SIZE (default 200).
 */
import { createDb, type Sql } from "../../supabase/functions/_shared/db.ts";

const POLL_MS = 200;

export interface QueuedRequest {
  id: string;
  method: string;
  url: string;
  headers: Record<string, string> | null;
  body: Uint8Array | null;
  timeout_milliseconds: number;
}

export interface DeliveryOutcome {
  status_code: number | null;
  content_type: string | null;
  headers: Record<string, string> | null;
  content: string | null;
  timed_out: boolean;
  error_msg: string | null;
}

/** Sends one request; never throws (failures become the outcome, as pg_net records them). */
export async function deliver(req: QueuedRequest, stop?: AbortSignal): Promise<DeliveryOutcome> {
  const started = performance.now();
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), req.timeout_milliseconds);
  const signal = stop ? AbortSignal.any([abort.signal, stop]) : abort.signal;
  try {
    const res = await fetch(req.url, {
      method: req.method.toUpperCase(),
      headers: req.headers ?? {},
      body: req.body && req.method.toUpperCase() !== "GET" ? new Uint8Array(req.body) : undefined,
      signal,
    });
    const content = await res.text();
    return {
      status_code: res.status,
      content_type: res.headers.get("content-type"),
      headers: Object.fromEntries(res.headers.entries()),
      content: content === "" ? null : content,
      timed_out: false,
      error_msg: null,
    };
  } catch (err) {
    const timedOut = abort.signal.aborted && !stop?.aborted;
    const elapsed = (performance.now() - started).toFixed(1);
    return {
      status_code: null,
      content_type: null,
      headers: null,
      content: null,
      timed_out: timedOut,
      error_msg: timedOut
        ? `Timeout of ${req.timeout_milliseconds} ms reached. Total time: ${elapsed} ms`
        : stop?.aborted
        ? "the worker stopped before the response arrived"
        : `request failed: ${err instanceof Error ? err.message : String(err)}`,
    };
  } finally {
    clearTimeout(timer);
  }
}

/** Runs the delivery loop until `signal` aborts. */
export async function runWorker(
  sql: Sql,
  options: { ttl?: string; batchSize?: number; signal?: AbortSignal; log?: (s: string) => void } =
    {},
): Promise<void> {
  const ttl = options.ttl ?? "6 hours";
  const batchSize = options.batchSize ?? 200;
  const log = options.log ?? (() => {});
  const inFlight = new Set<Promise<void>>();
  let wake: (() => void) | null = null;
  const listener = await sql.listen("net_http_request_queue", () => wake?.());
  options.signal?.addEventListener("abort", () => wake?.(), { once: true });

  const record = async (req: QueuedRequest) => {
    const started = performance.now();
    const out = await deliver(req, options.signal);
    await sql`
      insert into net._http_response
        (id, status_code, content_type, headers, content, timed_out, error_msg)
      values (${req.id}::bigint, ${out.status_code}, ${out.content_type},
        ${out.headers === null ? null : JSON.stringify(out.headers)}::text::jsonb, ${out.content},
        ${out.timed_out}, ${out.error_msg})`;
    const where = new URL(req.url);
    log(
      `request ${req.id} ${req.method} ${where.origin}${where.pathname} -> ` +
        `${out.status_code ?? (out.timed_out ? "timed out" : "error")} ` +
        `in ${(performance.now() - started).toFixed(0)} ms`,
    );
  };

  const takeBatch = async () => {
    await sql`
      delete from net._http_response where ctid in (
        select ctid from net._http_response where created < now() - ${ttl}::interval
        order by created limit ${batchSize})`;
    // Taken off the queue before sending, as pg_net does: a crash loses them, never repeats.
    return await sql<QueuedRequest[]>`
      delete from net.http_request_queue q
      using (select id from net.http_request_queue order by id limit ${batchSize}
             for update skip locked) r
      where q.id = r.id
      returning q.id::text as id, q.method::text as method, q.url, q.headers, q.body,
        q.timeout_milliseconds`;
  };

  try {
    while (!options.signal?.aborted) {
      let taken: QueuedRequest[] = [];
      try {
        taken = await takeBatch();
      } catch (err) {
        // The database restarting or briefly away: try again on the next poll.
        log(`reading the queue failed: ${err instanceof Error ? err.message : err}`);
      }
      for (const req of taken) {
        const p = record(req).catch((err) => log(`request ${req.id}: recording failed: ${err}`))
          .finally(() => inFlight.delete(p));
        inFlight.add(p);
      }
      if (taken.length === batchSize) continue;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, POLL_MS);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = null;
    }
  } finally {
    await listener.unlisten();
    await Promise.allSettled([...inFlight]);
  }
}

if (import.meta.main) {
  const url = Deno.env.get("NET_WORKER_DB_URL");
  if (!url) {
    console.error("NET_WORKER_DB_URL is required (a superuser connection to the local stack)");
    Deno.exit(2);
  }
  const sql = createDb(url, { max: 4, applicationName: "pg_net stand-in worker" });
  const stop = new AbortController();
  for (const sig of ["SIGTERM", "SIGINT"] as const) {
    Deno.addSignalListener(sig, () => stop.abort());
  }
  const log = (s: string) => console.log(`${new Date().toISOString()} ${s}`);
  log("pg_net stand-in worker started");
  await runWorker(sql, {
    ttl: Deno.env.get("NET_WORKER_TTL") ?? "6 hours",
    batchSize: Number(Deno.env.get("NET_WORKER_BATCH_SIZE")) || 200,
    signal: stop.signal,
    log,
  });
  await sql.end({ timeout: 5 });
  log("pg_net stand-in worker stopped");
}
