// The local pg_net stand-in end to end: net.http_post in a transaction, delivered by the worker
// dev/stack.sh runs (only after commit), with the outcome in net._http_response. Needs the
// stack running (dev/stack.sh start).
import assert from "node:assert/strict";
import { createDb, dbUrlFromEnv, type Sql } from "../../supabase/functions/_shared/db.ts";

const url = dbUrlFromEnv(Deno.env);

interface Seen {
  method: string;
  path: string;
  probe: string | null;
  contentType: string | null;
  body: string;
}

async function withServer(fn: (base: string, seen: Seen[]) => Promise<void>): Promise<void> {
  const seen: Seen[] = [];
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, async (req) => {
    const path = new URL(req.url).pathname;
    seen.push({
      method: req.method,
      path,
      probe: req.headers.get("x-probe"),
      contentType: req.headers.get("content-type"),
      body: await req.text(),
    });
    if (path === "/slow") await new Promise((r) => setTimeout(r, 1500));
    return Response.json({ answered: path }, { status: path === "/missing" ? 404 : 200 });
  });
  try {
    await fn(`http://127.0.0.1:${server.addr.port}`, seen);
  } finally {
    await server.shutdown();
  }
}

interface ResponseRow {
  status_code: number | null;
  content_type: string | null;
  headers: Record<string, string> | null;
  content: string | null;
  timed_out: boolean | null;
  error_msg: string | null;
}

async function responseOf(sql: Sql, id: string, waitMs = 5000): Promise<ResponseRow | null> {
  const until = Date.now() + waitMs;
  while (Date.now() < until) {
    const [row] = await sql<ResponseRow[]>`
      select status_code, content_type, headers, content, timed_out, error_msg
      from net._http_response where id = ${id}::bigint`;
    if (row) return row;
    await new Promise((r) => setTimeout(r, 50));
  }
  return null;
}

Deno.test("a committed net.http_post is delivered and its response recorded", async () => {
  const sql = createDb(url, { max: 1 });
  try {
    await withServer(async (base, seen) => {
      const [{ id }] = await sql`
        select net.http_post(${base + "/hook"}, '{"month": "2026-11"}'::jsonb,
          headers := '{"Content-Type": "application/json", "x-probe": "p1"}'::jsonb)::text as id`;
      const row = await responseOf(sql, id);
      assert.ok(row, "a response row appears");
      assert.equal(row.status_code, 200);
      assert.equal(row.timed_out, false);
      assert.equal(row.error_msg, null);
      assert.deepEqual(JSON.parse(row.content ?? ""), { answered: "/hook" });
      assert.match(row.content_type ?? "", /application\/json/);
      assert.match(row.headers?.["content-type"] ?? "", /application\/json/);
      assert.deepEqual(seen, [{
        method: "POST",
        path: "/hook",
        probe: "p1",
        contentType: "application/json",
        body: '{"month": "2026-11"}',
      }]);
      const [{ queued }] = await sql`
        select count(*)::int as queued from net.http_request_queue where id = ${id}::bigint`;
      assert.equal(queued, 0, "taken off the queue");
    });
  } finally {
    await sql.end();
  }
});

Deno.test("a rolled-back net.http_post is never sent", async () => {
  const sql = createDb(url, { max: 1 });
  try {
    await withServer(async (base, seen) => {
      let id = "";
      await assert.rejects(
        sql.begin(async (tx) => {
          [{ id }] = await tx`select net.http_post(${base + "/rolled-back"})::text as id`;
          throw new Error("roll back");
        }),
        /roll back/,
      );
      assert.notEqual(id, "");
      // A committed request sent after it arrives first; the rolled-back one never does.
      const [{ id: later }] = await sql`select net.http_post(${base + "/after"})::text as id`;
      assert.ok(await responseOf(sql, later));
      await new Promise((r) => setTimeout(r, 500));
      assert.deepEqual(seen.map((s) => s.path), ["/after"]);
      assert.equal(await responseOf(sql, id, 200), null);
    });
  } finally {
    await sql.end();
  }
});

Deno.test("timeout_milliseconds is honoured; HTTP errors and refused connections are recorded", async () => {
  const sql = createDb(url, { max: 1 });
  try {
    await withServer(async (base) => {
      const started = Date.now();
      const [{ slow, missing }] = await sql`
        select net.http_post(${base + "/slow"}, timeout_milliseconds := 300)::text as slow,
          net.http_post(${base + "/missing"})::text as missing`;
      const timedOut = await responseOf(sql, slow);
      assert.ok(timedOut);
      assert.equal(timedOut.timed_out, true);
      assert.equal(timedOut.status_code, null);
      assert.match(timedOut.error_msg ?? "", /^Timeout of 300 ms reached/);
      assert.ok(Date.now() - started < 1200, "recorded before the server answers (1.5 s)");
      const notFound = await responseOf(sql, missing);
      assert.equal(notFound?.status_code, 404);
      assert.equal(notFound?.error_msg, null);
    });
    // A port nobody listens on (a server's, just closed).
    const closed = Deno.listen({ port: 0, hostname: "127.0.0.1" });
    const port = (closed.addr as Deno.NetAddr).port;
    closed.close();
    const [{ id }] = await sql`select net.http_post(${`http://127.0.0.1:${port}/`})::text as id`;
    const refused = await responseOf(sql, id);
    assert.ok(refused);
    assert.equal(refused.status_code, null);
    assert.equal(refused.timed_out, false);
    assert.match(refused.error_msg ?? "", /request failed/);
  } finally {
    await sql.end();
  }
});
