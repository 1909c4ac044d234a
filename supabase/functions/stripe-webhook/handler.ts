/**
 * Stripe's webhook endpoint: verifies `Stripe-Signature` over the raw body, then stores each
 * event once by ID and applies invoice and customer.deleted events to the invoice state mirror,
 * order-safely. Unfollowed event types are acknowledged and ignored. Stripe sends no JWT, so
 * config.toml sets verify_jwt = false and the signature is the only credential.
 */
import { createDb, dbUrlFromEnv, type Sql } from "../_shared/db.ts";
import { type Env, type FunctionApp, HttpError, json, withCors } from "../_shared/http.ts";
import { Stripe } from "../_shared/stripe_client.ts";
import { receiveStripeEvent } from "../_shared/webhook_events.ts";

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
    const body = await req.text();
    const signature = req.headers.get("stripe-signature");
    if (!signature) {
      throw new HttpError(400, "missing_signature", "Stripe-Signature header is required");
    }
    let event: Stripe.Event;
    try {
      event = await Stripe.webhooks.constructEventAsync(
        body,
        signature,
        secret,
        undefined,
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
      // 22023: the event is signed but not shaped as the mirror needs; retrying will not help.
      if ((err as { code?: string }).code === "22023") {
        console.error(`stripe-webhook: unusable event ${event.id}: ${(err as Error).message}`);
        throw new HttpError(400, "invalid_event", (err as Error).message);
      }
      throw err;
    }
  };

  return {
    fetch: withCors("stripe-webhook", handle),
    close: async () => {
      await sql?.end();
    },
  };
}
