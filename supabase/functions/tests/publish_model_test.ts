// The model-based test of publishing (see publish_model.ts), a fixed sample: the same seed every
// run, so the test command is repeatable; MODEL_SEED and MODEL_RUNS explore further, and
// `deno task bench:model` runs thousands.
import assert from "node:assert/strict";
import { IO, openWorld, run } from "./publish_helpers.ts";
import { checkInvariants, openReal, runModel } from "./publish_model.ts";

Deno.test({
  name: "model: random publish, edit, fault and hand-action sequences keep the invariants",
  ...IO,
  async fn() {
    const seed = Number(Deno.env.get("MODEL_SEED") ?? 20261201);
    const numRuns = Number(Deno.env.get("MODEL_RUNS") ?? 12);
    console.log(`model seed ${seed}, ${numRuns} sequences (MODEL_SEED=${seed} replays them)`);
    const w = await openWorld();
    try {
      const ran = await runModel(w, { seed, numRuns });
      assert.equal(ran >= numRuns, true, `ran ${ran} of ${numRuns} sequences`);
    } finally {
      await w.close();
    }
  },
});

Deno.test({
  name: "model: the invariant checks catch a duplicate, an unstored invoice and a wrong total",
  ...IO,
  async fn() {
    const w = await openWorld();
    try {
      const r = await openReal(w);
      await run(w, "2026-10", [r.a, r.b]);
      r.settled = true;
      await checkInvariants(r);
      const [m] = await w.sql`select stripe_invoice_id as id from internal.manual_bills
        where id = ${r.manual}`;
      const stored = await w.stripe.invoices.retrieve(m.id);
      // A hand-made draft of a wrong total: caught as such.
      await w.stripe.invoices.addLines(m.id, { lines: [{ amount: 1, description: "x" }] });
      await assert.rejects(checkInvariants(r), /totals 12001, the bill 12000/);
      // A second live invoice carrying this bill's identity: caught as a duplicate.
      await w.emu.control.createInvoice({
        customer: stored.customer as string,
        status: "draft",
        metadata: { ...stored.metadata },
      });
      await assert.rejects(checkInvariants(r), /has 2 live invoices/);
      // The stored one deleted by hand: the other is live and not stored.
      await w.emu.control.deleteInvoice(m.id);
      await assert.rejects(checkInvariants(r), /live invoice in_\w+ is not stored/);
    } finally {
      await w.close();
    }
  },
});
