/**
 * Infrastructure for the benchmarks and the reliability matrix: a dedicated Postgres cluster
 * (dev/stack.sh with its own STACK_PORT/STACK_DIR, reset at start and stopped at the end, so the
 * shared dev cluster is never touched), and a Stripe emulator in its own process (so the
 * emulator and the engine do not share one JavaScript thread, as Stripe and a worker would not).
 */
import { EmulatorControl } from "../../dev/stripe-emulator/control.ts";
import { createDb, type Sql } from "../../supabase/functions/_shared/db.ts";
import { createStripe, type Stripe } from "../../supabase/functions/_shared/stripe_client.ts";

export const REPO = new URL("../../", import.meta.url).pathname;
export const DENO = Deno.execPath();

/** A dedicated cluster on `port`, under /tmp/billing-bench-<port>. */
export class Cluster {
  readonly url: string;
  private readonly env: Record<string, string>;

  constructor(readonly port: number) {
    this.url = `postgresql://postgres@127.0.0.1:${port}/postgres?sslmode=disable`;
    // UTC, as a project's database is by default (the test command covers other zones).
    this.env = {
      STACK_PORT: String(port),
      STACK_DIR: `/tmp/billing-bench-${port}`,
      STACK_TIMEZONE: "UTC",
    };
  }

  private async stack(command: string): Promise<void> {
    const out = await new Deno.Command("bash", {
      args: [`${REPO}dev/stack.sh`, command],
      env: this.env,
      stdout: "null",
      stderr: "piped",
    }).output();
    if (out.code !== 0) {
      throw new Error(`stack ${command} failed: ${new TextDecoder().decode(out.stderr)}`);
    }
  }

  /** Deletes the cluster and starts it afresh with every migration applied. */
  reset(): Promise<void> {
    return this.stack("reset");
  }

  stop(): Promise<void> {
    return this.stack("stop");
  }

  /** A pool as the engine's role (`postgres`, not a superuser). */
  pool(max: number, name = "bench"): Sql {
    return createDb(this.url, { max, applicationName: name });
  }
}

/** The default port of a dedicated cluster: beside whatever STACK_PORT the caller runs. */
export function defaultPort(offset: number): number {
  return Number(Deno.env.get("STACK_PORT") ?? 54322) + offset;
}

/** A Stripe emulator running as a child process (its PID is ours to stop). */
export interface EmulatorProcess {
  url: string;
  port: number;
  control: EmulatorControl;
  stop(): Promise<void>;
}

/** Starts `dev/stripe-emulator/main.ts --port 0` and reads the port from its banner. */
export async function startEmulatorProcess(): Promise<EmulatorProcess> {
  const child = new Deno.Command(DENO, {
    args: ["run", "--allow-net", "--allow-env", "--allow-read", "dev/stripe-emulator/main.ts"],
    cwd: REPO,
    env: { STRIPE_EMULATOR_PORT: "0" },
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  const deadline = Date.now() + 30_000;
  let url = "";
  while (!url) {
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error("stripe emulator did not start within 30 s");
    }
    const { value, done } = await reader.read();
    if (done) throw new Error(`stripe emulator exited before listening: ${buffered}`);
    buffered += value;
    const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(buffered);
    if (m) url = m[1];
  }
  // Keep draining stdout so the child never blocks on a full pipe.
  (async () => {
    try {
      for (;;) {
        const { done } = await reader.read();
        if (done) break;
      }
    } catch {
      // closed
    }
  })();
  const port = Number(new URL(url).port);
  return {
    url,
    port,
    control: new EmulatorControl(url),
    stop: async () => {
      try {
        child.kill("SIGTERM");
      } catch {
        // already gone
      }
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch {
          // already gone
        }
      }, 5_000);
      await child.status;
      clearTimeout(timer);
    },
  };
}

/** A Stripe client for the emulator (SDK retries off: the engine's caller does its own). */
export function emulatorStripe(port: number, timeoutMs = 30_000): Stripe {
  return createStripe({
    secretKey: "sk_test_bench",
    host: "127.0.0.1",
    port,
    protocol: "http",
    maxNetworkRetries: 0,
    timeoutMs,
  });
}

/** Rounds to `d` decimals. */
export function round(x: number, d = 2): number {
  const f = 10 ** d;
  return Math.round(x * f) / f;
}

/** Left-pads (numbers) or right-pads (text) a table cell. */
export function cell(v: unknown, width: number): string {
  const s = String(v);
  return typeof v === "number" ? s.padStart(width) : s.padEnd(width);
}
