/**
 * Stripe failures as one line an operator can act on: which call, the HTTP status, Stripe's
 * error code and message, and the request ID to quote to Stripe support. Never the key.
 */

const ENDPOINT = Symbol("stripeEndpoint");

/** Remembers which call an error came from (the caller tags it; the SDK error does not say). */
export function tagStripeEndpoint(err: unknown, endpoint: string): void {
  if (typeof err === "object" && err !== null && !(ENDPOINT in err)) {
    Object.defineProperty(err, ENDPOINT, { value: endpoint, enumerable: false });
  }
}

/** The call an error was tagged with, if any. */
export function stripeEndpointOf(err: unknown): string | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const value = (err as Record<symbol, unknown>)[ENDPOINT];
  return typeof value === "string" ? value : undefined;
}

interface SdkErrorFields {
  type?: unknown;
  statusCode?: unknown;
  code?: unknown;
  message?: unknown;
  requestId?: unknown;
  cause?: unknown;
  endpoint?: unknown;
}

// Anything shaped like a key is cut out, should a message ever echo one.
const KEY_PATTERN = /\b(sk|rk|pk)_(test|live)_[A-Za-z0-9]+/g;

/**
 * `GET /v1/invoices: HTTP 500 api_error "An unknown error occurred" (request req_123)`.
 * `endpoint` overrides the tag; errors that are not Stripe's keep their name and message.
 */
export function describeStripeError(endpoint: string | undefined, err: unknown): string {
  let e = (typeof err === "object" && err !== null ? err : {}) as SdkErrorFields;
  const call = endpoint ?? stripeEndpointOf(err) ??
    (typeof e.endpoint === "string" ? e.endpoint : undefined);
  // A give-up after 429s wraps Stripe's last answer.
  const wrapper = e;
  if (typeof e.cause === "object" && e.cause !== null && "statusCode" in e.cause) {
    e = e.cause as SdkErrorFields;
  }
  const isStripe = typeof e.type === "string" && e.type.startsWith("Stripe");
  if (!isStripe) {
    const name = err instanceof Error ? err.name : "Error";
    const message = err instanceof Error ? err.message : String(err);
    return `${call ? `${call}: ` : ""}${name}: ${message}`.replace(KEY_PATTERN, "$1_$2_***");
  }
  const parts: string[] = [];
  if (typeof e.statusCode === "number") parts.push(`HTTP ${e.statusCode}`);
  else parts.push(String(e.type));
  if (typeof e.code === "string" && e.code) parts.push(e.code);
  const message = typeof e.message === "string" && e.message ? e.message : "no message";
  parts.push(JSON.stringify(message));
  if (typeof e.requestId === "string" && e.requestId) parts.push(`(request ${e.requestId})`);
  const prefix = call ?? "Stripe";
  const given = wrapper !== e && typeof (wrapper as { message?: unknown }).message === "string"
    ? `; ${(wrapper as { message: string }).message}`
    : "";
  return `${prefix}: ${parts.join(" ")}${given}`.replace(KEY_PATTERN, "$1_$2_***");
}
