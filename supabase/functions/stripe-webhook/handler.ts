/**
 * Stripe's webhook endpoint: verifies `Stripe-Signature` over the raw body, then stores each
 * event once by ID and applies invoice and customer.deleted events to the invoice state mirror,
 * order-safely. Unfollowed event types are acknowledged and ignored. Stripe sends no JWT, so
 * config.toml sets verify_jwt = false and the signature is the only credential.
 */
import { createDb, dbUrlFromEnv, type Sql } from "../_shared/db.ts";
import {
  type Env,
  type FunctionApp,
  HttpError,
  json,
  readCappedText,
  withCors,
} from "../_shared/http.ts";
import { Stripe } from "../_shared/stripe_client.ts";
import {
  isUnusableEventError,
  receiveStripeEvent,
  recordRejectedStripeEvent,
  signedInTheFuture,
} from "../_shared/webhook_events.ts";

/** Stripe's event payloads stay far below this; a larger body is refused before it is read. */
export const MAX_WEBHOOK_BODY_BYTES = 1024 * 1024;

/** How far a signature's timestamp may be from now, either way (the SDK's default). */
export const SIGNATURE_TOLERANCE_SECONDS = 300;

/** Builds the webhook function over `env` (Deno.env when deployed, a map under the gateway). */
export function createApp(env: Env): FunctionApp {
  let sql: Sql | undefined;
  const db = () => sql ??= createDb(dbUrlFromEnv(env), { max: 2, applicationName: "webhook" });
  const cryptoProvider = Stripe.createSubtleCryptoProvider();

  const handle = async (req: Request): Promise<Response> => {
    if (req.method !== "POST") throw new HttpError(405, "method_not_allowed", "use POST");
    const secret = env.get("STRIPE_WEBHOOK_SECRET")?.trim();
    if (!secret) {
      console.error("stripe-webhook: STRIPE_WEBHOOK_SECRET is not set");
      throw new HttpError(500, "not_configured", "webhook secret is not configured");
    }
    const signature = req.headers.get("stripe-signature");
    if (!signature) {
      throw new HttpError(400, "missing_signature", "Stripe-Signature header is required");
    }
    const body = await readCappedText(req, MAX_WEBHOOK_BODY_BYTES);
    if (signedInTheFuture(signature, Math.floor(Date.now() / 1000), SIGNATURE_TOLERANCE_SECONDS)) {
      console.warn("stripe-webhook: rejected delivery: signature timestamp is in the future");
      throw new HttpError(400, "invalid_signature", "signature verification failed");
    }
    let event: Stripe.Event;
    try {
      event = await Stripe.webhooks.constructEventAsync(
        body,
        signature,
        secret,
        SIGNATURE_TOLERANCE_SECONDS,
        cryptoProvider,
      );
    } catch (err) {
      // The SDK's message names the failed check, never the secret.
      console.warn(`stripe-webhook: rejected delivery: ${(err as Error).message.split("\n")[0]}`);
      throw new HttpError(400, "invalid_signature", "signature verification failed");
    }
    try {
      const outcome = await receiveStripeEvent(db(), event);
      return json({ received: true, id: event.id, outcome });
    } catch (err) {
      // Signed but not shaped as the mirror needs: a retry cannot help, so acknowledge it (a
      // non-2xx would be redelivered for days) and keep it, with the field, for an operator.
      if (!isUnusableEventError(err)) throw err;
      const field = (err as { column_name?: string }).column_name ?? null;
      const reason = (err as Error).message;
      console.error(`stripe-webhook: rejected event ${event.id}: ${reason}`);
      await recordRejectedStripeEvent(db(), event, field, reason);
      return json({ received: true, id: event.id, outcome: "rejected", field, message: reason });
    }
  };

  return {
    fetch: withCors("stripe-webhook", handle),
    close: async () => {
      await sql?.end();
    },
  };
}
