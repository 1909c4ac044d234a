/**
 * Test harness: runs one test body against the emulator and, when STRIPE_SECRET_KEY holds a
 * test-mode key, against real Stripe too (cleaning up what it created).
 */
import { createStripe, Stripe } from "../../supabase/functions/_shared/stripe_client.ts";
import { type RunningEmulator, startStripeEmulator } from "./server.ts";

export type TargetName = "emulator" | "stripe";

const realKey = Deno.env.get("STRIPE_SECRET_KEY") ?? "";
export const REAL_STRIPE = realKey.startsWith("sk_test_");

let warned = false;
function warnOnce(): void {
  if (warned || REAL_STRIPE) return;
  warned = true;
  const line = "!".repeat(78);
  console.warn(
    `\n${line}\n!! REAL-STRIPE CONTRACT RUN SKIPPED: STRIPE_SECRET_KEY does not hold a test-mode` +
      `\n!! key (sk_test_...). Only the emulator was checked; the [stripe] tests are IGNORED.` +
      `\n${line}\n`,
  );
}

/** Objects a test created on real Stripe, removed afterwards (drafts deleted, others voided). */
export class Cleanup {
  customers: string[] = [];
  invoices: string[] = [];
  /** Products cannot be deleted once a price uses them: they are archived. */
  products: string[] = [];

  async run(stripe: Stripe): Promise<void> {
    for (const id of this.invoices) {
      try {
        const inv = await stripe.invoices.retrieve(id);
        if (inv.status === "draft") await stripe.invoices.del(id);
        else if (inv.status === "open" || inv.status === "uncollectible") {
          await stripe.invoices.voidInvoice(id);
        }
      } catch {
        // already gone
      }
    }
    for (const id of this.products) {
      try {
        await stripe.products.update(id, { active: false });
      } catch {
        // already gone
      }
    }
    for (const id of this.customers) {
      try {
        await stripe.customers.del(id);
      } catch {
        // already gone
      }
    }
  }
}

export interface Target {
  name: TargetName;
  stripe: Stripe;
  /** Present only on the emulator target. */
  emu?: RunningEmulator;
  cleanup: Cleanup;
  /** A fresh unique tag, to find this test's objects in a shared real account. */
  tag: string;
  /** Creates a customer (tracked for cleanup). */
  customer(params?: Stripe.CustomerCreateParams): Promise<Stripe.Customer>;
  /** Creates a product (archived afterwards). */
  product(
    params: Stripe.ProductCreateParams,
    options?: Stripe.RequestOptions,
  ): Promise<Stripe.Product>;
  /** Creates a draft invoice (tracked for cleanup). */
  invoice(params: Stripe.InvoiceCreateParams): Promise<Stripe.Invoice>;
  /** A card PaymentMethod attached to the customer; `declines` makes charges fail. */
  card(customer: string, declines?: boolean): Promise<string>;
  /** Polls until `check` passes (Search is eventually consistent on real Stripe). */
  eventually<T>(fn: () => Promise<T>, check: (v: T) => boolean): Promise<T>;
}

export function emulatorClient(
  port: number,
  opts: { maxNetworkRetries?: number; timeoutMs?: number } = {},
): Stripe {
  return createStripe({
    secretKey: "sk_test_emulator",
    host: "127.0.0.1",
    port,
    protocol: "http",
    maxNetworkRetries: opts.maxNetworkRetries ?? 0,
    timeoutMs: opts.timeoutMs ?? 10_000,
  });
}

async function openTarget(name: TargetName): Promise<Target> {
  let emu: RunningEmulator | undefined;
  let stripe: Stripe;
  if (name === "emulator") {
    emu = await startStripeEmulator({ port: 0 });
    stripe = emulatorClient(emu.port);
  } else {
    stripe = createStripe({ secretKey: realKey, maxNetworkRetries: 2 });
  }
  const cleanup = new Cleanup();
  const target: Target = {
    name,
    stripe,
    emu,
    cleanup,
    tag: `ct_${crypto.randomUUID().replaceAll("-", "").slice(0, 16)}`,
    async customer(params = {}) {
      const c = await stripe.customers.create(params);
      cleanup.customers.push(c.id);
      return c;
    },
    async product(params, options) {
      const p = await stripe.products.create(params, options);
      if (!cleanup.products.includes(p.id)) cleanup.products.push(p.id);
      return p;
    },
    async invoice(params) {
      const inv = await stripe.invoices.create(params);
      cleanup.invoices.push(inv.id);
      return inv;
    },
    async card(customer, declines = false) {
      if (emu) {
        const pm = await emu.control.createPaymentMethod({ customer, declines });
        return pm.id as string;
      }
      const pm = await stripe.paymentMethods.attach(
        declines ? "pm_card_chargeCustomerFail" : "pm_card_visa",
        { customer },
      );
      return pm.id;
    },
    async eventually(fn, check) {
      const deadline = Date.now() + (emu ? 0 : 90_000);
      for (;;) {
        const v = await fn();
        if (check(v) || Date.now() >= deadline) return v;
        await new Promise((r) => setTimeout(r, 2_000));
      }
    },
  };
  return target;
}

async function closeTarget(t: Target): Promise<void> {
  if (t.emu) await t.emu.close();
  else await t.cleanup.run(t.stripe);
}

const SDK_TEST = { sanitizeOps: false, sanitizeResources: false };

/** Registers `fn` for the emulator and (ignored without a key) for real Stripe. */
export function contractTest(name: string, fn: (t: Target) => Promise<void>): void {
  warnOnce();
  for (const target of ["emulator", "stripe"] as const) {
    Deno.test({
      name: `[${target}] ${name}`,
      ignore: target === "stripe" && !REAL_STRIPE,
      ...SDK_TEST,
      async fn() {
        const t = await openTarget(target);
        try {
          await fn(t);
        } finally {
          await closeTarget(t);
        }
      },
    });
  }
}

export interface EmulatorTarget extends Target {
  emu: RunningEmulator;
}

/** A test that needs emulator-only knobs. */
export function emulatorTest(name: string, fn: (t: EmulatorTarget) => Promise<void>): void {
  Deno.test({
    name: `[emulator] ${name}`,
    ...SDK_TEST,
    async fn() {
      const t = await openTarget("emulator");
      try {
        await fn(t as EmulatorTarget);
      } finally {
        await closeTarget(t);
      }
    },
  });
}

/** Runs `p`, expecting a Stripe error; returns it for assertions. */
export async function stripeError(
  p: Promise<unknown>,
): Promise<InstanceType<typeof Stripe.errors.StripeError>> {
  try {
    await p;
  } catch (e) {
    if (e instanceof Stripe.errors.StripeError) return e;
    throw e;
  }
  throw new Error("expected a Stripe error, got success");
}

/** A response header from `lastResponse` (a fetch Headers object or a plain map). */
export function responseHeader(obj: unknown, name: string): string | null {
  // deno-lint-ignore no-explicit-any
  const headers = (obj as any)?.lastResponse?.headers ?? (obj as any)?.headers;
  if (!headers) return null;
  if (typeof headers.get === "function") return headers.get(name);
  return headers[name.toLowerCase()] ?? null;
}
