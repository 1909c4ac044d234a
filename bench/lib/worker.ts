/**
 * A publish worker as its own OS process, for the reliability matrix: drains one run with the
 * real engine. Bench-only instrumentation wraps StripeCaller.prototype.call in this process (no
 * hook in production code) to count Stripe calls and SIGKILL this very process around the k-th:
 *
 *   --kill-after K   right after the K-th call returns (Stripe applied it; the engine never saw
 *                    the answer)
 *   --kill-before K  right before the K-th call is sent (everything up to it, including the
 *                    intent committed for it, is durable; Stripe never got it)
 *
 *   deno run --allow-all bench/lib/worker.ts --db URL --stripe-port P --run RUN_ID
 *     [--worker NAME] [--batch N] [--kill-after K | --kill-before K] [--timeout-ms MS]
 *
 * Prints one JSON line `{calls, processed, remaining}` when it finishes without being killed.
 */
import { parseArgs } from "node:util";
import { createDb } from "../../supabase/functions/_shared/db.ts";
import { drainRun } from "../../supabase/functions/_shared/publish.ts";
import { StripeCaller } from "../../supabase/functions/_shared/stripe_calls.ts";
import { emulatorStripe } from "./infra.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    db: { type: "string" },
    "stripe-port": { type: "string" },
    run: { type: "string" },
    worker: { type: "string", default: `proc-${Deno.pid}` },
    batch: { type: "string", default: "10" },
    "kill-after": { type: "string", default: "0" },
    "kill-before": { type: "string", default: "0" },
    "timeout-ms": { type: "string", default: "10000" },
    "base-delay-ms": { type: "string", default: "20" },
  },
});
if (!values.db || !values["stripe-port"] || !values.run) {
  console.error("worker: --db, --stripe-port and --run are required");
  Deno.exit(2);
}
const killAfter = Number(values["kill-after"]);
const killBefore = Number(values["kill-before"]);

let calls = 0;
const original = StripeCaller.prototype.call;
StripeCaller.prototype.call = async function (
  this: StripeCaller,
  ...args: Parameters<typeof original>
) {
  const n = ++calls;
  if (n === killBefore) Deno.kill(Deno.pid, "SIGKILL");
  try {
    return await original.apply(this, args);
  } finally {
    if (n === killAfter) Deno.kill(Deno.pid, "SIGKILL");
  }
} as typeof original;

const sql = createDb(values.db, { max: 2, applicationName: values.worker });
const stripe = emulatorStripe(Number(values["stripe-port"]), Number(values["timeout-ms"]));
try {
  const base = Number(values["base-delay-ms"]);
  const r = await drainRun(
    {
      sql,
      stripe,
      worker: values.worker,
      callerOptions: { baseDelayMs: base, maxDelayMs: base * 8 },
    },
    values.run,
    { budgetMs: 120_000, batchSize: Number(values.batch) },
  );
  console.log(JSON.stringify({ calls, processed: r.processed, remaining: r.remaining }));
} finally {
  await sql.end();
}
