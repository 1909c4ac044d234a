// An existing project already has the upstream tables (with rows): it must apply only the change
// migrations. The path docs/deploy.md gives: mark the base migration applied with
// `supabase migration repair`, then `supabase migration up`. Runs on its own cluster on
// STACK_PORT + 10 (the legacy-grants port, idle while the Deno tests run).
import assert from "node:assert/strict";
import { createDb } from "../../supabase/functions/_shared/db.ts";

const repo = new URL("../../", import.meta.url).pathname;
const port = Number(Deno.env.get("STACK_PORT") || "54322") + 10;
const stackDir = `/tmp/billing-repair-${port}`;
const url = `postgresql://postgres@127.0.0.1:${port}/postgres?sslmode=disable`;
const BASE = "20261101000000";

async function run(cmd: string, args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(cmd, {
    args,
    cwd: repo,
    env,
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (out.code !== 0) throw new Error(`${cmd} ${args.join(" ")} exited ${out.code}:\n${text}`);
  return text;
}

const stackEnv = { STACK_PORT: String(port), STACK_DIR: stackDir };

Deno.test({
  name: "an existing project with the upstream tables applies only the change migrations",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // A bare project: Supabase's roles and schemas, no migrations.
    await run("bash", ["dev/stack.sh", "reset"], { ...stackEnv, STACK_MIGRATE: "0" });
    const sql = createDb(url, { max: 1 });
    try {
      // The project's own schema (what the base migration stands in for), with rows.
      await run("psql", [
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        url,
        "-f",
        `supabase/migrations/${BASE}_base_billing_schema.sql`,
      ]);
      await sql`insert into public.tenants (tenant, trial_start) values ('legacyCo/', '2025-01-01')`;
      await sql`insert into internal.billing_historicals (tenant, billed_month, report)
        values ('legacyCo/', '2026-09-01', '{"subtotal": 4200, "line_items": []}')`;
      await sql`insert into internal.manual_bills (tenant, usd_cents, description, date_start,
        date_end) values ('legacyCo/', 90000, 'Contract', '2026-09-01', '2026-11-30')`;

      const supabase = `${repo}node_modules/.bin/supabase`;
      await run(supabase, ["migration", "repair", BASE, "--status", "applied", "--db-url", url]);
      const up = await run(supabase, ["migration", "up", "--db-url", url]);
      assert.doesNotMatch(up, new RegExp(`Applying migration ${BASE}`), "the base is not re-run");
      assert.match(up, /Applying migration 20261102000000_store_stripe_ids\.sql/);

      const local = [...Deno.readDirSync(`${repo}supabase/migrations`)]
        .map((e) => e.name.slice(0, 14)).sort();
      const applied = (await sql<{ version: string }[]>`
        select version from supabase_migrations.schema_migrations order by version`)
        .map((r) => r.version);
      assert.deepEqual(applied, local, "every migration is recorded as applied");

      // The rows are intact and the changes apply to them.
      const [t] = await sql`select tenant, stripe_customer_id from public.tenants`;
      assert.deepEqual({ ...t }, { tenant: "legacyCo/", stripe_customer_id: null });
      const bills = await sql<{ bill_id: string }[]>`
        select bill_id from internal.invoices_ext order by bill_id`;
      assert.equal(bills.length, 2);
      const [{ id }] = await sql<{ id: string }[]>`
        select internal.enqueue_publish_run('2026-09-01', null, '{"dry_run": true}', 'test')::text
          as id`;
      const [{ n }] = await sql<{ n: number }[]>`
        select item_count as n from internal.publish_runs where id = ${id}::uuid`;
      assert.equal(n, 2, "the existing bills are selected for publishing");
    } finally {
      await sql.end();
      await run("bash", ["dev/stack.sh", "stop"], stackEnv);
      await Deno.remove(stackDir, { recursive: true }).catch(() => {});
    }
  },
});
