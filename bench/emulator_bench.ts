/**
 * Throughput of the Stripe emulator through the official SDK: a mix of create / retrieve /
 * list / add_lines calls from concurrent workers, latency 0.
 *
 *   deno run --allow-all bench/emulator_bench.ts [--calls 20000] [--concurrency 32]
 *                                                [--url http://127.0.0.1:12111]
 *
 * Without --url it starts an emulator in-process (client and server then share one thread,
 * so the figure is a lower bound for the emulator alone).
 */
import { createStripe, type Stripe } from "../supabase/functions/_shared/stripe_client.ts";
import { EmulatorControl } from "../dev/stripe-emulator/control.ts";
import { startStripeEmulator } from "../dev/stripe-emulator/server.ts";

function arg(name: string, fallback: string): string {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 && Deno.args[i + 1] ? Deno.args[i + 1] : fallback;
}

const totalCalls = Number(arg("calls", "20000"));
const concurrency = Number(arg("concurrency", "32"));
const external = arg("url", "");

const running = external ? null : await startStripeEmulator({ port: 0 });
const base = new URL(external || running!.url);
const control = new EmulatorControl(base.origin);
await control.reset();

const stripe: Stripe = createStripe({
  secretKey: "sk_test_bench",
  host: base.hostname,
  port: Number(base.port),
  protocol: "http",
  maxNetworkRetries: 0,
});

const latencies: number[] = [];
let issued = 0;
async function timed<T>(p: () => Promise<T>): Promise<T> {
  issued++;
  const t0 = performance.now();
  const out = await p();
  latencies.push(performance.now() - t0);
  return out;
}

/** One unit of work = 6 calls: create invoice, add lines, retrieve, list, update lines, list lines. */
async function worker(id: number): Promise<void> {
  const customer = await timed(() =>
    stripe.customers.create({ name: `bench-${id}`, metadata: { worker: String(id) } })
  );
  while (issued + 6 <= totalCalls) {
    const inv = await timed(() =>
      stripe.invoices.create({ customer: customer.id, metadata: { bill: crypto.randomUUID() } })
    );
    const withLines = await timed(() =>
      stripe.invoices.addLines(inv.id, {
        lines: [{ amount: 100, description: "a" }, { amount: 250, description: "b" }],
      })
    );
    await timed(() => stripe.invoices.retrieve(inv.id));
    await timed(() => stripe.invoices.list({ customer: customer.id, limit: 10 }));
    await timed(() =>
      stripe.invoices.updateLines(inv.id, {
        lines: [{ id: withLines.lines.data[0].id, amount: 150 }],
      })
    );
    await timed(() => stripe.invoices.listLineItems(inv.id));
  }
}

const started = performance.now();
await Promise.all(Array.from({ length: concurrency }, (_, i) => worker(i)));
const seconds = (performance.now() - started) / 1000;

latencies.sort((a, b) => a - b);
const pct = (p: number) =>
  latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))];
const summary = await control.callSummary();
const state = await control.state();

console.log(`emulator bench: ${latencies.length} SDK calls, concurrency ${concurrency}, latency 0`);
console.log(`  wall time      ${seconds.toFixed(2)} s`);
console.log(`  throughput     ${(latencies.length / seconds).toFixed(0)} requests/s`);
console.log(
  `  latency        p50 ${pct(0.5).toFixed(1)} ms, p99 ${pct(0.99).toFixed(1)} ms, ` +
    `max ${latencies[latencies.length - 1].toFixed(1)} ms`,
);
console.log(
  `  emulator saw   ${summary.total} calls (${summary.writes} writes), statuses ` +
    JSON.stringify(summary.byStatus),
);
console.log(
  `  state          ${state.customers.length} customers, ${state.invoices.length} invoices`,
);
for (const [route, n] of Object.entries(summary.byRoute)) {
  console.log(`    ${route.padEnd(40)} ${n}`);
}
if (summary.total !== latencies.length) {
  console.error("call log does not match the calls made");
  Deno.exitCode = 1;
}
await running?.close();
