/** Webhook delivery: signatures verified by the SDK, ordering, retries, replays. */
import assert from "node:assert/strict";
import { Stripe } from "../../supabase/functions/_shared/stripe_client.ts";
import { type EmulatorTarget, emulatorTest } from "./test_support.ts";
import { signPayload } from "./webhooks.ts";

const SECRET = "whsec_test_emulator_secret";

interface Receiver {
  url: string;
  events: Stripe.Event[];
  /** Raw signature headers seen. */
  signatures: string[];
  /** Answer 500 to the next `n` deliveries. */
  failNext(n: number): void;
  close(): Promise<void>;
}

/** A webhook endpoint that verifies each delivery exactly like the project's handler will. */
function startReceiver(): Receiver {
  const verifier = new Stripe("sk_test_unused");
  const events: Stripe.Event[] = [];
  const signatures: string[] = [];
  let failures = 0;
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, async (req) => {
    const body = await req.text();
    const sig = req.headers.get("stripe-signature") ?? "";
    signatures.push(sig);
    if (failures > 0) {
      failures--;
      return new Response("try later", { status: 500 });
    }
    try {
      events.push(await verifier.webhooks.constructEventAsync(body, sig, SECRET));
      return new Response("ok");
    } catch (e) {
      return new Response(String(e), { status: 400 });
    }
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/hook`,
    events,
    signatures,
    failNext: (n) => (failures = n),
    close: () => server.shutdown(),
  };
}

async function withReceiver(t: EmulatorTarget, fn: (r: Receiver) => Promise<void>) {
  const r = startReceiver();
  await t.emu.control.configureWebhooks({ url: r.url, secret: SECRET, retryDelaysMs: [20] });
  try {
    await fn(r);
  } finally {
    await t.emu.close();
    await r.close();
  }
}

emulatorTest("webhooks: signed deliveries verify with constructEventAsync, in order", async (t) => {
  await withReceiver(t, async (r) => {
    const c = await t.customer({ name: "hook" });
    const inv = await t.invoice({ customer: c.id, metadata: { bill: "9" } });
    await t.stripe.invoices.addLines(inv.id, { lines: [{ amount: 300 }] });
    await t.stripe.invoices.finalizeInvoice(inv.id);
    await t.stripe.invoices.pay(inv.id, { paid_out_of_band: true });
    await t.emu.control.flushWebhooks();
    assert.deepEqual(r.events.map((e) => e.type), [
      "customer.created",
      "invoice.created",
      "invoice.updated",
      "invoiceitem.created",
      "invoice.finalized",
      "invoice.paid",
    ]);
    const created = r.events[1];
    assert.equal((created.data.object as Stripe.Invoice).id, inv.id);
    assert.equal(created.api_version, "2026-10-28.endive");
    assert.ok(created.request?.id?.startsWith("req_"));
    assert.ok(created.request?.idempotency_key?.startsWith("stripe-node-retry-"));
    const updated = r.events[2];
    assert.equal((updated.data.previous_attributes as Partial<Stripe.Invoice>).total, 0);
    assert.match(r.signatures[0], /^t=\d+,v1=[0-9a-f]{64}$/);
    // Creation order is the delivery order.
    const created_at = r.events.map((e) => e.created);
    assert.deepEqual(created_at, [...created_at].sort((a, b) => a - b));
    // The secret never shows up in reports.
    const report = JSON.stringify(await t.emu.control.webhooks());
    assert.ok(!report.includes(SECRET));
  });
});

emulatorTest("webhooks: failed deliveries are retried, then given up", async (t) => {
  await withReceiver(t, async (r) => {
    await t.emu.control.configureWebhooks({ maxAttempts: 3 });
    r.failNext(2);
    await t.customer({});
    await t.emu.control.flushWebhooks();
    assert.equal(r.events.length, 1, "third attempt succeeded");
    const { deliveries } = await t.emu.control.webhooks();
    assert.deepEqual(deliveries.map((d) => [d.attempt, d.status]), [[1, 500], [2, 500], [3, 200]]);

    r.failNext(5);
    await t.customer({});
    await t.emu.control.flushWebhooks();
    assert.equal(r.events.length, 1, "gave up after 3 attempts");
    const evts = await t.stripe.events.list({ delivery_success: false });
    assert.equal(evts.data.length, 1);
  });
});

emulatorTest("webhooks: pause, deliver out of order, redeliver a duplicate", async (t) => {
  await withReceiver(t, async (r) => {
    await t.emu.control.pauseWebhooks();
    const c = await t.customer({});
    await t.stripe.customers.update(c.id, { name: "v2" });
    await t.stripe.customers.update(c.id, { name: "v3" });
    const { pending } = await t.emu.control.webhooks();
    assert.equal(pending.length, 3);
    assert.equal(r.events.length, 0, "nothing delivered while paused");

    const results = await t.emu.control.deliverEvents([pending[2], pending[0]]);
    assert.ok(results.every((x) => x.ok));
    assert.deepEqual(r.events.map((e) => e.id), [pending[2], pending[0]]);
    assert.deepEqual((await t.emu.control.webhooks()).pending, [pending[1]]);

    await t.emu.control.redeliverEvent(pending[2]);
    await t.emu.control.resumeWebhooks();
    await t.emu.control.flushWebhooks();
    assert.deepEqual(r.events.map((e) => e.id), [pending[2], pending[0], pending[2], pending[1]]);
    const v3 = r.events[0].data.object as Stripe.Customer;
    assert.equal(v3.name, "v3");
  });
});

Deno.test("webhooks: signPayload matches the SDK's test header generator", async () => {
  const stripe = new Stripe("sk_test_unused");
  const payload = JSON.stringify({ id: "evt_1", object: "event" });
  const t = 1_700_000_000;
  const ours = await signPayload(payload, SECRET, t);
  const theirs = await stripe.webhooks.generateTestHeaderStringAsync({
    payload,
    secret: SECRET,
    timestamp: t,
  });
  assert.equal(ours, theirs);
});
