/**
 * The only module that imports the Stripe SDK. Every caller builds its client here, so the
 * API version, host and retry policy are decided in one place.
 */
import Stripe from "npm:stripe@23.1.0";

export { Stripe };

/** The API version this project is written against; sent on every request. */
export const STRIPE_API_VERSION = "2026-10-28.endive" as const;

/** Where and how to reach Stripe (or the local emulator). */
export interface StripeConfig {
  secretKey: string;
  host?: string;
  port?: number;
  protocol?: "http" | "https";
  /** SDK-level retries; the executor does its own backoff, so this defaults to 0. */
  maxNetworkRetries?: number;
  timeoutMs?: number;
}

// Which mode each client's key is in (Stripe limits live and test apart); the key is not kept.
const modes = new WeakMap<Stripe, "live" | "test">();

/** Live or test, from the key the client was made with (test when not made here). */
export function stripeModeOf(stripe: Stripe): "live" | "test" {
  return modes.get(stripe) ?? "test";
}

/** Builds a Stripe client; only host, port and protocol differ between Stripe and the emulator. */
export function createStripe(config: StripeConfig): Stripe {
  const stripe = new Stripe(config.secretKey, {
    apiVersion: STRIPE_API_VERSION,
    host: config.host,
    port: config.port,
    protocol: config.protocol,
    maxNetworkRetries: config.maxNetworkRetries ?? 0,
    timeout: config.timeoutMs ?? 30_000,
    telemetry: false,
    httpClient: Stripe.createFetchHttpClient(),
  });
  modes.set(stripe, /^[sr]k_live_/.test(config.secretKey) ? "live" : "test");
  return stripe;
}

/** Reads the Stripe connection from the environment (STRIPE_SECRET_KEY, STRIPE_API_BASE). */
export function stripeConfigFromEnv(env: { get(name: string): string | undefined }): StripeConfig {
  const secretKey = env.get("STRIPE_SECRET_KEY");
  if (!secretKey) throw new Error("STRIPE_SECRET_KEY is not set");
  const base = env.get("STRIPE_API_BASE");
  if (!base) return { secretKey };
  const url = new URL(base);
  return {
    secretKey,
    host: url.hostname,
    port: url.port ? Number(url.port) : (url.protocol === "http:" ? 80 : 443),
    protocol: url.protocol === "http:" ? "http" : "https",
  };
}
