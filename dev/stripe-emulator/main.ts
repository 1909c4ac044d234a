/**
 * `deno task stripe-emulator [--port N]`: runs the Stripe emulator on 127.0.0.1 (default port
 * 12111, or STRIPE_EMULATOR_PORT). Optional webhook endpoint: STRIPE_EMULATOR_WEBHOOK_URL with
 * STRIPE_WEBHOOK_SECRET. STRIPE_EMULATOR_ACCOUNT_ID fixes the account id `GET /v1/account` reports.
 */
import { startStripeEmulator } from "./server.ts";

function portFromArgs(args: string[]): number | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--port") return Number(args[i + 1]);
    if (a.startsWith("--port=")) return Number(a.slice("--port=".length));
  }
  return undefined;
}

const port = portFromArgs(Deno.args) ?? Number(Deno.env.get("STRIPE_EMULATOR_PORT") ?? 12111);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`stripe-emulator: invalid port ${port}`);
  Deno.exit(2);
}
const running = await startStripeEmulator({
  port,
  webhookUrl: Deno.env.get("STRIPE_EMULATOR_WEBHOOK_URL"),
  webhookSecret: Deno.env.get("STRIPE_WEBHOOK_SECRET"),
  // A fixed id keeps one "account" across restarts (default: a new one per start).
  accountId: Deno.env.get("STRIPE_EMULATOR_ACCOUNT_ID") || undefined,
});
const hook = running.emulator.webhooks.enabled
  ? ` webhooks -> ${running.emulator.webhooks.config.url}`
  : "";
console.log(
  `stripe-emulator listening on ${running.url} (control: ${running.url}/_emulator/, account ` +
    `${running.emulator.accountId})${hook}`,
);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, async () => {
    await running.close();
    Deno.exit(0);
  });
}
