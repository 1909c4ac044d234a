/**
 * A tenant's payment methods and setup intents, by the stored customer ID: every method is
 * checked to belong to that customer before it is made primary or detached (404 otherwise, as
 * upstream), and deleting the primary falls back to the first remaining method, as upstream.
 */
import { HttpError } from "./http.ts";
import { TENANT_NAME_KEY } from "./metadata.ts";
import { isStripeNotFound, type StripeCaller, stripeCode } from "./stripe_calls.ts";
import type { Stripe } from "./stripe_client.ts";

/** What the dashboard shows of a payment method (no fingerprints or billing addresses). */
export interface PaymentMethodSummary {
  id: string;
  type: string;
  billing_details: { name: string | null };
  card: { brand: string; last4: string; exp_month: number; exp_year: number } | null;
  us_bank_account: { bank_name: string | null; last4: string | null } | null;
}

/** A tenant's methods and which one invoices charge. */
export interface TenantPaymentMethods {
  primary: string | null;
  payment_methods: PaymentMethodSummary[];
}

function summarize(pm: Stripe.PaymentMethod): PaymentMethodSummary {
  return {
    id: pm.id,
    type: pm.type,
    billing_details: { name: pm.billing_details?.name ?? null },
    card: pm.card
      ? {
        brand: pm.card.brand,
        last4: pm.card.last4,
        exp_month: pm.card.exp_month,
        exp_year: pm.card.exp_year,
      }
      : null,
    us_bank_account: pm.us_bank_account
      ? { bank_name: pm.us_bank_account.bank_name, last4: pm.us_bank_account.last4 }
      : null,
  };
}

function customerDeleted(): HttpError {
  return new HttpError(
    409,
    "customer_deleted",
    "the tenant's Stripe customer was deleted; ask support to relink billing",
  );
}

/** The `param` a Stripe error names, if any. */
function stripeParam(err: unknown): string | undefined {
  return (err as { param?: string } | null)?.param;
}

/** The customer by ID; 409 when it was deleted in Stripe (an operator must relink the tenant). */
async function liveCustomer(caller: StripeCaller, customerId: string): Promise<Stripe.Customer> {
  const c = await caller.call("GET /v1/customers/:id", (s) => s.customers.retrieve(customerId));
  if (c.deleted) throw customerDeleted();
  return c;
}

function defaultMethodId(c: Stripe.Customer): string | null {
  const pm = c.invoice_settings?.default_payment_method;
  if (!pm) return null;
  return typeof pm === "string" ? pm : pm.id;
}

async function listMethods(
  caller: StripeCaller,
  customerId: string,
): Promise<Stripe.PaymentMethod[]> {
  const out: Stripe.PaymentMethod[] = [];
  let startingAfter: string | undefined;
  for (;;) {
    const page = await caller.call(
      "GET /v1/customers/:id/payment_methods",
      (s) =>
        s.customers.listPaymentMethods(customerId, {
          limit: 100,
          ...(startingAfter ? { starting_after: startingAfter } : {}),
        }),
    );
    out.push(...page.data);
    if (!page.has_more || page.data.length === 0) return out;
    startingAfter = page.data[page.data.length - 1].id;
  }
}

/** The tenant's methods (every page) and its primary one. */
export async function getTenantPaymentMethods(
  caller: StripeCaller,
  customerId: string,
): Promise<TenantPaymentMethods> {
  const customer = await liveCustomer(caller, customerId);
  const methods = await listMethods(caller, customerId);
  return { primary: defaultMethodId(customer), payment_methods: methods.map(summarize) };
}

/** The method, if it belongs to the customer; 404 otherwise (unknown or someone else's). */
async function requireOwnMethod(
  caller: StripeCaller,
  customerId: string,
  paymentMethodId: string,
): Promise<Stripe.PaymentMethod> {
  const notFound = () =>
    new HttpError(
      404,
      "payment_method_not_found",
      `no payment method ${paymentMethodId} for this tenant`,
      "payment_method_id",
    );
  let pm: Stripe.PaymentMethod;
  try {
    pm = await caller.call(
      "GET /v1/payment_methods/:id",
      (s) => s.paymentMethods.retrieve(paymentMethodId),
    );
  } catch (err) {
    if (isStripeNotFound(err)) throw notFound();
    throw err;
  }
  const owner = typeof pm.customer === "string" ? pm.customer : pm.customer?.id;
  if (owner !== customerId) throw notFound();
  return pm;
}

async function setDefault(
  caller: StripeCaller,
  customerId: string,
  paymentMethodId: string | null,
): Promise<void> {
  await caller.call(
    "POST /v1/customers/:id",
    (s, requestOptions) =>
      s.customers.update(customerId, {
        invoice_settings: { default_payment_method: paymentMethodId ?? "" },
      }, requestOptions),
  );
}

/** Makes one of the tenant's methods the one invoices charge. */
export async function setTenantPrimaryPaymentMethod(
  caller: StripeCaller,
  customerId: string,
  paymentMethodId: string,
): Promise<{ primary: string }> {
  await requireOwnMethod(caller, customerId, paymentMethodId);
  await setDefault(caller, customerId, paymentMethodId);
  return { primary: paymentMethodId };
}

/** Detaches one of the tenant's methods; when it was primary, the first remaining one takes over. */
export async function deleteTenantPaymentMethod(
  caller: StripeCaller,
  customerId: string,
  paymentMethodId: string,
): Promise<{ deleted: string; primary: string | null }> {
  await requireOwnMethod(caller, customerId, paymentMethodId);
  const customer = await liveCustomer(caller, customerId);
  const primary = defaultMethodId(customer);
  await caller.call(
    "POST /v1/payment_methods/:id/detach",
    (s, requestOptions) => s.paymentMethods.detach(paymentMethodId, {}, requestOptions),
  );
  if (primary !== paymentMethodId) return { deleted: paymentMethodId, primary };
  const [next] = await listMethods(caller, customerId);
  if (next) await setDefault(caller, customerId, next.id);
  return { deleted: paymentMethodId, primary: next?.id ?? null };
}

/** A setup intent the dashboard completes with Stripe.js to add a method. */
export async function createTenantSetupIntent(
  caller: StripeCaller,
  customerId: string,
  tenant: string,
): Promise<{ id: string; client_secret: string | null; status: string }> {
  let intent: Stripe.SetupIntent;
  try {
    intent = await caller.call(
      "POST /v1/setup_intents",
      (s, requestOptions) =>
        s.setupIntents.create({
          customer: customerId,
          description: "Store your payment details",
          usage: "off_session",
          automatic_payment_methods: { enabled: true },
          metadata: { [TENANT_NAME_KEY]: tenant },
        }, requestOptions),
    );
  } catch (err) {
    // The stored customer is gone: never make another one behind the operator's back.
    if (stripeCode(err) === "resource_missing" && stripeParam(err) === "customer") {
      throw customerDeleted();
    }
    throw err;
  }
  return { id: intent.id, client_secret: intent.client_secret, status: intent.status };
}
