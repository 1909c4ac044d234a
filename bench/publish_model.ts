/**
 * The model-based publishing test at scale: thousands of random sequences (publish runs with
 * faults and concurrent workers, crashes, bill edits, tenant moves, hand actions in Stripe,
 * releases), the invariants checked after every step (supabase/functions/tests/publish_model.ts).
 * Runs on its own cluster (STACK_PORT + 90 by default), several streams at once, each with its
 * own emulator and seed. Prints how many sequences and steps ran, and any violation with its seed.
 *
 *   deno task bench:model [--sequences 5000] [--parallel 4] [--seed 1] [--port N] [--keep]
 */
import { parseArgs } from "node:util";
import { openWorld } from "../supabase/functions/tests/publish_helpers.ts";
import { runModel } from "../supabase/functions/tests/publish_model.ts";
import { Cluster, defaultPort, round } from "./lib/infra.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    sequences: { type: "string", default: "5000" },
    parallel: { type: "string", default: "4" },
    seed: { type: "string", default: "1" },
    port: { type: "string" },
    keep: { type: "boolean", default: false },
  },
});
const sequences = Number(values.sequences);
const parallel = Math.max(1, Number(values.parallel));
const seed = Number(values.seed);
const port = values.port ? Number(values.port) : defaultPort(90);

const cluster = new Cluster(port);
console.log(
  `model bench: ${sequences} sequences, ${parallel} streams, seeds ${seed}..${
    seed + parallel - 1
  }, cluster 127.0.0.1:${port}`,
);
await cluster.reset();
Deno.env.set("SUPABASE_DB_URL", cluster.url);
const started = performance.now();
const per = Math.ceil(sequences / parallel);
let failures = 0;
const results = await Promise.all(
  Array.from({ length: parallel }, async (_, i) => {
    const w = await openWorld();
    try {
      const ran = await runModel(w, { seed: seed + i, numRuns: per });
      return { seed: seed + i, ran, error: null as string | null };
    } catch (err) {
      failures++;
      return { seed: seed + i, ran: 0, error: err instanceof Error ? err.message : String(err) };
    } finally {
      await w.close();
    }
  }),
);
const seconds = (performance.now() - started) / 1000;
const ran = results.reduce((s, r) => s + r.ran, 0);
for (const r of results) {
  console.log(`  seed ${r.seed}: ${r.error ? `VIOLATION\n${r.error}` : `${r.ran} sequences, ok`}`);
}
console.log(
  `sequences run: ${ran} (target ≥ ${sequences}); violations: ${failures}; ` +
    `${round(seconds, 1)} s (${round((seconds * 1000) / Math.max(1, ran), 0)} ms per sequence)`,
);
if (!values.keep) await cluster.stop();
Deno.exit(failures > 0 ? 1 : 0);
