// Checks that the local stack is shaped like a Supabase project and that migrations are
// idempotent. Needs the stack running (dev/stack.sh start).
import assert from "node:assert/strict";
import { createDb, dbUrlFromEnv } from "../../supabase/functions/_shared/db.ts";

const url = dbUrlFromEnv(Deno.env);
const repo = new URL("../../", import.meta.url).pathname;

Deno.test("the postgres role is not a superuser but bypasses RLS, as on Supabase", async () => {
  const sql = createDb(url, { max: 1 });
  try {
    const [role] = await sql`
      select rolsuper, rolbypassrls, rolcreaterole, rolcreatedb
      from pg_roles where rolname = current_user`;
    assert.equal(role.rolsuper, false);
    assert.equal(role.rolbypassrls, true);
    assert.equal(role.rolcreaterole, true);
    assert.equal(role.rolcreatedb, true);
    const api = await sql`
      select rolname, rolbypassrls, rolcanlogin from pg_roles
      where rolname in ('anon', 'authenticated', 'service_role') order by rolname`;
    assert.deepEqual(api.map((r) => [r.rolname, r.rolbypassrls, r.rolcanlogin]), [
      ["anon", false, false],
      ["authenticated", false, false],
      ["service_role", true, false],
    ]);
  } finally {
    await sql.end();
  }
});

Deno.test("pg_cron is preloaded and auth.uid() reads request.jwt.claims", async () => {
  const sql = createDb(url, { max: 1 });
  try {
    const [{ libs }] = await sql`select current_setting('shared_preload_libraries') as libs`;
    assert.match(libs, /pg_cron/);
    const [{ uid }] = await sql.begin(async (tx) => {
      await tx`select set_config('request.jwt.claims', '{"sub":"a11ce000-0000-4000-8000-000000000001"}', true)`;
      return await tx`select auth.uid()::text as uid`;
    });
    assert.equal(uid, "a11ce000-0000-4000-8000-000000000001");
  } finally {
    await sql.end();
  }
});

Deno.test("re-running `supabase migration up` applies nothing", async () => {
  const sql = createDb(url, { max: 1 });
  try {
    const before = await sql`select version from supabase_migrations.schema_migrations order by 1`;
    const files = [...Deno.readDirSync(`${repo}supabase/migrations`)]
      .filter((f) => /^\d+_.*\.sql$/.test(f.name));
    assert.equal(before.length, files.length, "every migration file is recorded as applied");
    const out = await new Deno.Command(`${repo}node_modules/.bin/supabase`, {
      args: ["migration", "up", "--db-url", url],
      cwd: repo,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, text);
    assert.doesNotMatch(text, /Applying migration/);
    const after = await sql`select version from supabase_migrations.schema_migrations order by 1`;
    assert.deepEqual(after, before);
  } finally {
    await sql.end();
  }
});

Deno.test("a second `stack.sh start` while the stack runs leaves it running", async () => {
  const out = await new Deno.Command("bash", {
    args: [`${repo}dev/stack.sh`, "start"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, text);
  assert.match(text, /already running/);
  const sql = createDb(url, { max: 1 });
  try {
    const [{ one }] = await sql`select 1 as one`;
    assert.equal(one, 1);
  } finally {
    await sql.end();
  }
});
