// The item lease as the executor uses it: kept alive while a call is in flight, and refusing
// further writes once another worker has the item.
import assert from "node:assert/strict";
import { ItemLease, LeaseLostError } from "../_shared/lease.ts";
import { claimItems, enqueueRun } from "../_shared/runs.ts";
import { IO, makeTenant, manualBill, openWorld } from "./publish_helpers.ts";

Deno.test({
  name: "lease: extended while a call is in flight; lost once another worker holds the item",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const tenant = await makeTenant(w.sql);
      await manualBill(w.sql, tenant, 5_000, "2026-10-01", "2026-10-31");
      const runId = await enqueueRun(w.sql, {
        month: "2026-10",
        tenants: [tenant],
        options: { lease_seconds: 10 },
        actor: "test",
      });
      const [claim] = await claimItems(w.sql, runId, "holder", 1);
      const lease = new ItemLease({
        sql: w.sql,
        runId,
        itemNo: claim.item_no,
        worker: "holder",
        expiresAt: claim.lease_expires_at,
        leaseSeconds: 10,
      });
      const before = claim.lease_expires_at.getTime();
      // A 4 s call with a 10 s lease: the heartbeat (every 3.3 s) runs at least once.
      await lease.during(() => new Promise((r) => setTimeout(r, 4_000)));
      const [row] = await w.sql`select lease_expires_at from internal.publish_run_items
        where run_id = ${runId}::uuid and item_no = ${claim.item_no}`;
      assert.ok(new Date(row.lease_expires_at).getTime() > before + 2_000, "the lease moved on");
      await lease.ensure();
      // The lease runs out and another worker claims the item: no more writes from this one.
      await w.sql`update internal.publish_run_items set lease_expires_at = now() - interval '1 s'
        where run_id = ${runId}::uuid`;
      const [taken] = await claimItems(w.sql, runId, "other", 1);
      assert.equal(taken.item_no, claim.item_no);
      await assert.rejects(lease.extend(), LeaseLostError);
      await assert.rejects(lease.ensure(), LeaseLostError);
    } finally {
      await w.close();
    }
  },
});
