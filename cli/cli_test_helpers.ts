/** Helpers for CLI tests: run the CLI as a subprocess against the local stack and an emulator. */
import { createDb, dbUrlFromEnv, type Sql } from "../supabase/functions/_shared/db.ts";
import { createStripe, type Stripe } from "../supabase/functions/_shared/stripe_client.ts";
import { type RunningEmulator, startStripeEmulator } from "../dev/stripe-emulator/server.ts";
import { TEST_STRIPE_ACCOUNT } from "../dev/test_account.ts";

const MAIN = new URL("./main.ts", import.meta.url).pathname;

/** What a CLI run printed and returned. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** A local stack connection, an in-process emulator and an SDK client for arranging state. */
export interface CliFixture {
  sql: Sql;
  emulator: RunningEmulator;
  stripe: Stripe;
  env: Record<string, string>;
  /** A unique tenant slug for this test. */
  tenant(prefix: string): string;
  /**
   * Runs `deno task billing <args>`. With `prompt`, answers the confirmation question with
   * `prompt.answer` after `prompt.before()` ran (e.g. a change made while the operator reads).
   */
  run(
    args: string[],
    options?: {
      prompt?: { before: () => Promise<void>; answer: string };
      /** Variables to change for this run ("" unsets one: the CLI reads empty as unset). */
      env?: Record<string, string>;
    },
  ): Promise<CliRun>;
  close(): Promise<void>;
}

/** Starts an emulator on a free port and connects to the local stack. */
export async function cliFixture(): Promise<CliFixture> {
  const emulator = await startStripeEmulator({ port: 0, accountId: TEST_STRIPE_ACCOUNT });
  const sql = createDb(dbUrlFromEnv(Deno.env), { max: 2 });
  const secretKey = "sk_test_cli";
  const stripe = createStripe({
    secretKey,
    host: "127.0.0.1",
    port: emulator.port,
    protocol: "http",
  });
  const env = {
    STRIPE_SECRET_KEY: secretKey,
    STRIPE_API_BASE: emulator.url,
    SUPABASE_DB_URL: dbUrlFromEnv(Deno.env),
    BILLING_ACTOR: "cli-test",
    NO_COLOR: "1",
  };
  const suffix = crypto.randomUUID().slice(0, 8);
  return {
    sql,
    emulator,
    stripe,
    env,
    tenant: (prefix) => `${prefix}${suffix}/`,
    async run(args, options = {}) {
      const proc = new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-all", MAIN, ...args],
        env: {
          ...env,
          ...(options.prompt ? { BILLING_CONFIRM_FROM_STDIN: "1" } : {}),
          ...options.env,
        },
        stdin: options.prompt ? "piped" : "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const decoder = new TextDecoder();
      let stdout = "";
      let answered = false;
      const readOut = (async () => {
        for await (const chunk of proc.stdout) {
          stdout += decoder.decode(chunk, { stream: true });
          if (options.prompt && !answered && stdout.includes("[y/N]")) {
            answered = true;
            await options.prompt.before();
            const writer = proc.stdin.getWriter();
            await writer.write(new TextEncoder().encode(options.prompt.answer + "\n"));
            await writer.close();
          }
        }
      })();
      const readErr = new Response(proc.stderr).text();
      const [status, , stderr] = await Promise.all([proc.status, readOut, readErr]);
      if (options.prompt && !answered) await proc.stdin.close().catch(() => {});
      return { code: status.code, stdout, stderr };
    },
    async close() {
      await sql.end();
      await emulator.close();
    },
  };
}
