// `release --tenant` and `replace --tenant`, through the CLI process, against the local stack and
// an in-process Stripe emulator: a tenant whose customer was deleted by hand can be given a new
// one, audited, and the old customer is never linked again. Needs `bash dev/stack.sh start`.
import assert from "node:assert/strict";
import { cliFixture } from "./cli_test_helpers.ts";
import { TENANT_NAME_KEY } from "../supabase/functions/_shared/metadata.ts";

Deno.test("release --tenant frees a deleted customer; replace swaps a live one; both audited", async () => {
  const f = await cliFixture();
  try {
    const tenant = f.tenant("reltenant");
    await f.sql`insert into public.tenants (tenant, billing_email)
      values (${tenant}, 'ops@example.test')`;
    const make = async () =>
      (await f.stripe.customers.create({ name: tenant, metadata: { [TENANT_NAME_KEY]: tenant } }))
        .id;
    const first = await make();
    await f.sql`select internal.link_tenant_customer(${tenant}, ${first}, 'test')`;
    const stored = async () =>
      (await f.sql<{ c: string | null }[]>`select stripe_customer_id as c from public.tenants
        where tenant = ${tenant}`)[0].c;

    // A live customer is not released.
    let r = await f.run(["release", "--tenant", tenant, "--reason", "try"]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /is live in Stripe; only a deleted customer may be released/);
    assert.equal(await stored(), first);

    // Deleted by hand: the runbook's recovery now works.
    await f.stripe.customers.del(first);
    const second = await make();
    r = await f.run(["link", "--tenant", tenant, "--customer", second, "--reason", "new"]);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /already has customer .*release it first if it was deleted/);
    r = await f.run(["release", "--tenant", tenant, "--reason", "deleted by hand in Stripe"]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`released ${first} \\(deleted\\) from ${tenant}`));
    assert.equal(await stored(), null);
    r = await f.run(["link", "--tenant", tenant, "--customer", second, "--reason", "new one"]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(await stored(), second);

    // Replace: a live customer swapped for another; the old one is retired for good.
    const third = await make();
    r = await f.run(["replace", "--tenant", tenant, "--customer", third, "--reason", "merged"]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(await stored(), third);
    r = await f.run(["replace", "--tenant", tenant, "--customer", second, "--reason", "undo"]);
    assert.equal(r.code, 1, "a retired customer is refused");
    assert.match(r.stdout, new RegExp(`customer ${second} was released before`));
    assert.equal(await stored(), third);

    r = await f.run(["replace", "--tenant", tenant, "--customer", third]);
    assert.equal(r.code, 2, "the reason is required");

    const audit = await f.sql<{ action: string; old_id: string | null; new_id: string | null }[]>`
      select action, old_id, new_id from internal.stripe_id_audit
      where object_kind = 'tenant' and object_key = ${tenant} order by id`;
    assert.deepEqual(audit.map((a) => [a.action, a.old_id, a.new_id]), [
      ["link", null, first],
      ["conflict", first, second],
      ["release", first, null],
      ["link", null, second],
      ["replace", second, third],
      ["duplicate", third, second],
    ]);
    const reasons = await f.sql<{ reason: string }[]>`select reason from internal.stripe_id_audit
      where object_kind = 'tenant' and object_key = ${tenant} and action = 'release'`;
    assert.equal(reasons[0].reason, "deleted by hand in Stripe");
  } finally {
    await f.close();
  }
});

Deno.test("replace and release --tenant have --help", async () => {
  const f = await cliFixture();
  try {
    for (const command of ["replace", "release"]) {
      const r = await f.run([command, "--help"]);
      assert.equal(r.code, 0, command);
      assert.match(r.stdout, /--tenant/);
    }
  } finally {
    await f.close();
  }
});
