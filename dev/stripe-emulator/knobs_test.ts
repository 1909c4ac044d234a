/** Emulator-only knobs, each shown through the official SDK. */
import assert from "node:assert/strict";
import { createStripe, Stripe } from "../../supabase/functions/_shared/stripe_client.ts";
import { Emulator } from "./emulator.ts";
import { startStripeEmulator } from "./server.ts";
import {
  emulatorClient,
  type EmulatorTarget,
  emulatorTest,
  responseHeader,
  stripeError,
} from "./test_support.ts";

const API_KEY = "sk_test_emulator";

// --- latency ---------------------------------------------------------------------------------

emulatorTest("latency: fixed and uniform range", async (t) => {
  const c = await t.customer({});
  await t.emu.control.setLatency({ fixedMs: 150 });
  let start = performance.now();
  await t.stripe.customers.retrieve(c.id);
  assert.ok(performance.now() - start >= 140, "fixed latency applies");

  await t.emu.control.setLatency({ minMs: 150, maxMs: 300 });
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    start = performance.now();
    await t.stripe.customers.retrieve(c.id);
    times.push(performance.now() - start);
  }
  assert.ok(times.every((ms) => ms >= 140 && ms < 1000), times.join(","));

  await t.emu.control.setLatency({});
  start = performance.now();
  await t.stripe.customers.retrieve(c.id);
  assert.ok(performance.now() - start < 100);
});

// --- rate limits -----------------------------------------------------------------------------

emulatorTest("rate limits: global bucket answers 429 rate_limit with global-rate", async (t) => {
  const c = await t.customer({});
  await t.emu.control.setRateLimits({ globalPerSecond: 5 });
  const results = await Promise.allSettled(
    Array.from({ length: 20 }, () => t.stripe.customers.retrieve(c.id)),
  );
  const limited = results.filter((r) => r.status === "rejected");
  assert.ok(limited.length >= 10, `expected most to be limited, got ${limited.length}`);
  assert.ok(results.some((r) => r.status === "fulfilled"));
  const err = (limited[0] as PromiseRejectedResult).reason;
  assert.ok(err instanceof Stripe.errors.StripeRateLimitError);
  assert.equal(err.statusCode, 429);
  assert.equal(err.code, "rate_limit");
  assert.equal(err.rawType, "invalid_request_error");
  assert.equal(responseHeader(err, "stripe-rate-limited-reason"), "global-rate");
  const calls = await t.emu.control.calls();
  assert.ok(calls.some((r) => r.fault === "limiter:global-rate" && r.status === 429));
});

emulatorTest("rate limits: Search has its own bucket (endpoint-rate)", async (t) => {
  await t.emu.control.setRateLimits({ searchPerSecond: 2 });
  const searches = await Promise.allSettled(
    Array.from({ length: 8 }, () => t.stripe.customers.search({ query: `name:"x"` })),
  );
  const limited = searches.filter((r) => r.status === "rejected");
  assert.ok(limited.length >= 5, `got ${limited.length}`);
  const err = (limited[0] as PromiseRejectedResult).reason;
  assert.equal(err.code, "rate_limit");
  assert.equal(responseHeader(err, "stripe-rate-limited-reason"), "endpoint-rate");
  // Other requests are not affected by the Search limiter.
  const lists = await Promise.all(Array.from({ length: 8 }, () => t.stripe.customers.list()));
  assert.equal(lists.length, 8);
  assert.equal((await t.emu.control.callSummary()).searches, 8);
});

emulatorTest("rate limits: each named operation has its own bucket (endpoint-rate)", async (t) => {
  await t.emu.control.setRateLimits({ endpointPerSecond: 3 });
  const lists = await Promise.allSettled(
    Array.from({ length: 9 }, () => t.stripe.customers.list({ limit: 1 })),
  );
  const limited = lists.filter((r) => r.status === "rejected");
  assert.ok(limited.length >= 5, `got ${limited.length}`);
  const err = (limited[0] as PromiseRejectedResult).reason;
  assert.equal(err.code, "rate_limit");
  assert.equal(responseHeader(err, "stripe-rate-limited-reason"), "endpoint-rate");
  assert.ok(!String(err.message).includes("Search"), err.message);
  // Another operation has a bucket of its own, and the account-wide one is not set.
  const other = await Promise.all(Array.from({ length: 3 }, () => t.stripe.invoices.list()));
  assert.equal(other.length, 3);
});

emulatorTest(
  "faults: lock_timeout 429 carries Stripe-Should-Retry; with replay off the SDK retry runs",
  async (t) => {
    const c = await t.customer({});
    await t.emu.control.addFault({ route: "POST /v1/customers/:id", kind: "lock_timeout" });
    const err = await stripeError(t.stripe.customers.update(c.id, { name: "x" }));
    assert.ok(err instanceof Stripe.errors.StripeRateLimitError);
    assert.equal(err.code, "lock_timeout");
    assert.equal(responseHeader(err, "stripe-should-retry"), "true");
    assert.equal(responseHeader(err, "stripe-rate-limited-reason"), null);

    // With replay off (not Stripe's default), the SDK's same-key retry executes.
    await t.emu.control.addFault({
      route: "POST /v1/customers/:id",
      kind: "lock_timeout",
      replay: false,
    });
    const retrying = emulatorClient(t.emu.port, { maxNetworkRetries: 1 });
    const ok = await retrying.customers.update(c.id, { name: "after-lock" });
    assert.equal(ok.name, "after-lock");
  },
);

emulatorTest(
  "faults: a lock_timeout 429 is replayed to every same-key retry until the key expires",
  async (t) => {
    const c = await t.customer({ name: "before" });
    const fault = await t.emu.control.addFault({
      route: "POST /v1/customers/:id",
      kind: "lock_timeout",
    });
    assert.equal(fault.replay, true, "lock_timeout replays by default");
    const key = `k-${crypto.randomUUID()}`;
    const first = await stripeError(
      t.stripe.customers.update(c.id, { name: "after" }, { idempotencyKey: key }),
    );
    assert.equal(first.statusCode, 429);
    assert.equal(first.code, "lock_timeout");
    assert.equal(responseHeader(first, "idempotent-replayed"), null);

    // The SDK's own retries (same key, Stripe-Should-Retry: true) all get the saved error.
    const retrying = emulatorClient(t.emu.port, { maxNetworkRetries: 2 });
    const again = await stripeError(
      retrying.customers.update(c.id, { name: "after" }, { idempotencyKey: key }),
    );
    assert.equal(again.statusCode, 429);
    assert.equal(again.code, "lock_timeout");
    assert.equal(again.message, first.message);
    assert.equal(responseHeader(again, "idempotent-replayed"), "true");
    assert.equal(responseHeader(again, "original-request"), first.requestId);
    assert.equal((await t.stripe.customers.retrieve(c.id) as Stripe.Customer).name, "before");

    // A fresh key is not affected (the fault fired once).
    const fresh = await t.stripe.customers.update(c.id, { name: "fresh" });
    assert.equal(fresh.name, "fresh");

    const calls = (await t.emu.control.calls()).filter((r) => r.idempotencyKey === key);
    assert.deepEqual(calls.map((r) => [r.status, r.replayed, r.fault, r.executed]), [
      [429, false, "lock_timeout", false],
      [429, true, "lock_timeout", false],
      [429, true, "lock_timeout", false],
      [429, true, "lock_timeout", false],
    ]);
    assert.equal(calls[0].originalRequestId, null);
    assert.ok(calls.slice(1).every((r) => r.originalRequestId === first.requestId));

    // Once the key expires on the emulator clock, the same key is a new request.
    await t.emu.control.advanceClock(24 * 60 * 60);
    const expired = await t.stripe.customers.update(c.id, { name: "after" }, {
      idempotencyKey: key,
    });
    assert.equal(expired.name, "after");
    assert.equal(responseHeader(expired, "idempotent-replayed"), null);
  },
);

emulatorTest("faults: replay option per kind (defaults and overrides)", async (t) => {
  const replayedTwice = async (spec: Parameters<typeof t.emu.control.addFault>[0]) => {
    await t.emu.control.clearFaults();
    await t.emu.control.addFault(spec);
    const key = `k-${crypto.randomUUID()}`;
    const e1 = await stripeError(t.stripe.customers.create({ name: "r" }, { idempotencyKey: key }));
    const second = await t.stripe.customers.create({ name: "r" }, { idempotencyKey: key })
      .then((c) => ({ ok: c.id, replayed: responseHeader(c, "idempotent-replayed") }))
      .catch((e) => ({
        status: e.statusCode as number,
        replayed: responseHeader(e, "idempotent-replayed"),
      }));
    return { status: e1.statusCode, second };
  };
  const route = "POST /v1/customers";
  // Limiter 429s never began executing: not saved by default...
  const limiter = await replayedTwice({ route, kind: "rate_limit" });
  assert.equal(limiter.status, 429);
  assert.ok("ok" in limiter.second && limiter.second.replayed === null);
  // ...unless asked.
  const savedLimiter = await replayedTwice({ route, kind: "rate_limit", replay: true });
  assert.deepEqual(savedLimiter.second, { status: 429, replayed: "true" });
  // 502 at the edge: not saved by default; saved with replay: true.
  const edge = await replayedTwice({ route, kind: "error", status: 502 });
  assert.ok("ok" in edge.second && edge.second.replayed === null);
  const savedEdge = await replayedTwice({ route, kind: "error", status: 502, replay: true });
  assert.deepEqual(savedEdge.second, { status: 502, replayed: "true" });
  // 500: saved by default; replay: false lets the retry execute.
  const unsaved500 = await replayedTwice({ route, kind: "error", status: 500, replay: false });
  assert.ok("ok" in unsaved500.second && unsaved500.second.replayed === null);
  const lockOff = await replayedTwice({ route, kind: "lock_timeout", replay: false });
  assert.ok("ok" in lockOff.second && lockOff.second.replayed === null);

  // Drops and timeouts answer nothing that could be saved.
  await assert.rejects(
    t.emu.control.addFault({ route, kind: "drop", replay: true }),
    /replay applies to error, lock_timeout and rate_limit faults/,
  );
});

emulatorTest("faults: injected 429 rate_limit by route", async (t) => {
  await t.emu.control.addFault({ route: "GET /v1/invoices", kind: "rate_limit", count: 2 });
  for (let i = 0; i < 2; i++) {
    const err = await stripeError(t.stripe.invoices.list());
    assert.ok(err instanceof Stripe.errors.StripeRateLimitError);
    assert.equal(responseHeader(err, "stripe-rate-limited-reason"), "global-rate");
  }
  assert.equal((await t.stripe.invoices.list()).object, "list");
});

// --- 5xx, timeouts, dropped connections --------------------------------------------------------

emulatorTest("faults: 500 is saved by idempotency and replayed; no write applied", async (t) => {
  await t.emu.control.addFault({ route: "POST /v1/customers", kind: "error", status: 500 });
  const key = `k-${crypto.randomUUID()}`;
  const e1 = await stripeError(t.stripe.customers.create({ name: "x" }, { idempotencyKey: key }));
  assert.ok(e1 instanceof Stripe.errors.StripeAPIError);
  assert.equal(e1.statusCode, 500);
  assert.equal(e1.rawType, "api_error");
  const e2 = await stripeError(t.stripe.customers.create({ name: "x" }, { idempotencyKey: key }));
  assert.equal(e2.statusCode, 500);
  assert.equal(responseHeader(e2, "idempotent-replayed"), "true");
  assert.equal((await t.emu.control.state()).customers.length, 0);
});

emulatorTest(
  "faults: 500 with applyWrite reports failure although the write happened",
  async (t) => {
    await t.emu.control.addFault({
      route: "POST /v1/customers",
      kind: "error",
      status: 500,
      applyWrite: true,
    });
    const err = await stripeError(t.stripe.customers.create({ name: "ghost" }));
    assert.equal(err.statusCode, 500);
    const state = await t.emu.control.state();
    assert.deepEqual(state.customers.map((c) => c.name), ["ghost"]);
  },
);

emulatorTest("faults: Stripe-Should-Retry false stops SDK retries; 503 is retried", async (t) => {
  const retrying = emulatorClient(t.emu.port, { maxNetworkRetries: 2 });
  await t.emu.control.addFault({
    route: "GET /v1/customers",
    kind: "error",
    status: 500,
    shouldRetry: false,
    count: "always",
  });
  const err = await stripeError(retrying.customers.list());
  assert.equal(err.statusCode, 500);
  assert.equal(responseHeader(err, "stripe-should-retry"), "false");
  assert.equal((await t.emu.control.callSummary()).byRoute["GET /v1/customers"], 1);
  await t.emu.control.clearFaults();
  await t.emu.control.resetCalls();

  // 503 (edge, not saved): the SDK's retry with the same key then executes.
  await t.emu.control.addFault({ route: "POST /v1/customers", kind: "error", status: 503 });
  const c = await retrying.customers.create({ name: "after-503" });
  assert.equal(c.name, "after-503");
  const calls = await t.emu.control.calls();
  assert.deepEqual(calls.map((r) => r.status), [503, 200]);
  assert.equal(calls[0].idempotencyKey, calls[1].idempotencyKey);
  assert.equal(calls[1].replayed, false);
});

emulatorTest("faults: 502 after letting the first request through (skip)", async (t) => {
  await t.emu.control.addFault({
    route: "GET /v1/customers/:id",
    kind: "error",
    status: 502,
    skip: 1,
  });
  const c = await t.customer({});
  await t.stripe.customers.retrieve(c.id);
  const err = await stripeError(t.stripe.customers.retrieve(c.id));
  assert.equal(err.statusCode, 502);
  await t.stripe.customers.retrieve(c.id);
  const [fault] = await t.emu.control.faults();
  assert.equal(fault.hits, 1);
  assert.equal(fault.remaining, 0);
});

emulatorTest(
  "faults: timeout holds past the client timeout (with and without the write)",
  async (t) => {
    const impatient = emulatorClient(t.emu.port, { timeoutMs: 300 });
    const c = await t.customer({});
    await t.emu.control.addFault({ route: "GET /v1/customers/:id", kind: "timeout", holdMs: 2000 });
    const started = performance.now();
    const err = await stripeError(impatient.customers.retrieve(c.id));
    assert.ok(err instanceof Stripe.errors.StripeConnectionError);
    assert.ok(performance.now() - started < 1500);

    await t.emu.control.addFault({
      route: "POST /v1/customers",
      kind: "timeout",
      holdMs: 2000,
      applyWrite: true,
    });
    const err2 = await stripeError(impatient.customers.create({ name: "slow" }));
    assert.ok(err2 instanceof Stripe.errors.StripeConnectionError);
    const names = (await t.emu.control.state()).customers.map((x) => x.name);
    assert.ok(names.includes("slow"), "the write was applied before the hang-up");
  },
);

emulatorTest(
  "faults: drop after headers -> StripeConnectionError, write applied, replayable",
  async (t) => {
    const c = await t.customer({});
    await t.emu.control.addFault({
      route: "POST /v1/invoices",
      kind: "drop",
      mode: "after_headers",
    });
    const key = `k-${crypto.randomUUID()}`;
    const err = await stripeError(
      t.stripe.invoices.create({ customer: c.id }, { idempotencyKey: key }),
    );
    assert.ok(err instanceof Stripe.errors.StripeConnectionError);
    const state = await t.emu.control.state();
    assert.equal(state.invoices.length, 1, "the write happened");
    const calls = await t.emu.control.calls();
    const dropped = calls.find((r) => r.route === "POST /v1/invoices")!;
    assert.equal(dropped.fault, "drop:after_headers");
    assert.equal(dropped.executed, true);
    // Retrying with the same key returns the saved result instead of a second invoice.
    const again = await t.stripe.invoices.create({ customer: c.id }, { idempotencyKey: key });
    assert.equal(again.id, state.invoices[0].id);
    assert.equal(responseHeader(again, "idempotent-replayed"), "true");
  },
);

emulatorTest("faults: drop before any byte: fetch resends on a reused connection", async (t) => {
  const c = await t.customer({}); // warms up a keep-alive connection
  await t.emu.control.resetCalls();
  await t.emu.control.addFault({
    route: "POST /v1/invoices",
    kind: "drop",
    mode: "before_response",
  });
  // The client silently resends the same request (same key): the code under test never sees
  // the fault. That is why tests that need a visible drop use mode after_headers.
  let outcome: "success" | "error";
  try {
    await t.stripe.invoices.create({ customer: c.id });
    outcome = "success";
  } catch (e) {
    assert.ok(e instanceof Stripe.errors.StripeConnectionError);
    outcome = "error";
  }
  const calls = (await t.emu.control.calls()).filter((r) => r.route === "POST /v1/invoices");
  assert.equal(calls[0].fault, "drop:before_response");
  assert.equal(calls[0].status, 0);
  if (outcome === "success") {
    assert.equal(calls.length, 2);
    assert.equal(calls[1].replayed, true);
    assert.equal(calls[1].idempotencyKey, calls[0].idempotencyKey);
  }
  assert.equal((await t.emu.control.state()).invoices.length, 1, "exactly one invoice");
});

// --- Search knobs ----------------------------------------------------------------------------

emulatorTest(
  "search: index lag hides new and changed objects until the clock passes",
  async (t) => {
    await t.emu.control.setSearch({ lagSeconds: 60 });
    const c = await t.customer({ metadata: { tenant: "lagged" } });
    const query = `metadata["tenant"]:"lagged"`;
    assert.equal((await t.stripe.customers.search({ query })).data.length, 0);
    assert.equal((await t.stripe.customers.retrieve(c.id)).id, c.id, "retrieve is consistent");
    await t.emu.control.advanceClock(61);
    assert.deepEqual((await t.stripe.customers.search({ query })).data.map((x) => x.id), [c.id]);

    // An update is also lagged: the old value still matches, and the live object is returned.
    await t.stripe.customers.update(c.id, { metadata: { tenant: "moved" } });
    const stale = await t.stripe.customers.search({ query });
    assert.deepEqual(stale.data.map((x) => x.metadata.tenant), ["moved"]);
    assert.equal(
      (await t.stripe.customers.search({ query: `metadata["tenant"]:"moved"` })).data.length,
      0,
    );
    await t.emu.control.advanceClock(61);
    assert.equal((await t.stripe.customers.search({ query })).data.length, 0);
  },
);

emulatorTest("search: drop probability omits visible matches", async (t) => {
  for (let i = 0; i < 40; i++) await t.customer({ metadata: { group: "g" } });
  const query = `metadata["group"]:"g"`;
  assert.equal((await t.stripe.customers.search({ query, limit: 100 })).data.length, 40);
  await t.emu.control.setSearch({ dropProbability: 1 });
  assert.equal((await t.stripe.customers.search({ query, limit: 100 })).data.length, 0);
  await t.emu.control.setSearch({ dropProbability: 0.5 });
  const n = (await t.stripe.customers.search({ query, limit: 100 })).data.length;
  assert.ok(n > 0 && n < 40, `got ${n}`);
});

// --- idempotency knobs -----------------------------------------------------------------------

emulatorTest("idempotency: a key in flight is a 409 idempotency_key_in_use", async (t) => {
  await t.emu.control.setLatency({ fixedMs: 300 });
  const key = `k-${crypto.randomUUID()}`;
  const [a, b] = await Promise.allSettled([
    t.stripe.customers.create({ name: "x" }, { idempotencyKey: key }),
    new Promise((r) => setTimeout(r, 50)).then(() =>
      t.stripe.customers.create({ name: "x" }, { idempotencyKey: key })
    ),
  ]);
  assert.equal(a.status, "fulfilled");
  assert.equal(b.status, "rejected");
  const err = (b as PromiseRejectedResult).reason;
  assert.equal(err.statusCode, 409);
  assert.equal(err.code, "idempotency_key_in_use");
  // After the first finishes, the same key replays.
  const again = await t.stripe.customers.create({ name: "x" }, { idempotencyKey: key });
  assert.equal(again.id, (a as PromiseFulfilledResult<Stripe.Customer>).value.id);
});

emulatorTest("idempotency: keys expire after the window on the emulator clock", async (t) => {
  const key = `k-${crypto.randomUUID()}`;
  const first = await t.stripe.customers.create({ name: "x" }, { idempotencyKey: key });
  await t.emu.control.advanceClock(23 * 3600);
  const replay = await t.stripe.customers.create({ name: "x" }, { idempotencyKey: key });
  assert.equal(replay.id, first.id);
  await t.emu.control.advanceClock(3600);
  const fresh = await t.stripe.customers.create({ name: "x" }, { idempotencyKey: key });
  assert.notEqual(fresh.id, first.id, "past 24 h the key is a brand-new request");

  await t.emu.control.setIdempotencyTtl(60);
  const k2 = `k-${crypto.randomUUID()}`;
  const a = await t.stripe.customers.create({ name: "y" }, { idempotencyKey: k2 });
  await t.emu.control.advanceClock(61);
  const b = await t.stripe.customers.create({ name: "y" }, { idempotencyKey: k2 });
  assert.notEqual(a.id, b.id);
});

emulatorTest("idempotency: same key on another endpoint is an idempotency_error", async (t) => {
  const key = `k-${crypto.randomUUID()}`;
  const c = await t.stripe.customers.create({}, { idempotencyKey: key });
  const err = await stripeError(
    t.stripe.invoices.create({ customer: c.id }, { idempotencyKey: key }),
  );
  assert.equal(err.rawType, "idempotency_error");
});

// --- hand-made changes -------------------------------------------------------------------------

emulatorTest("dashboard: hand-made changes emit the same events as the API", async (t) => {
  const ctl = t.emu.control;
  const c = await ctl.createCustomer({ name: "by-hand", metadata: { tenant: "t1" } });
  const pm = await ctl.createPaymentMethod({
    customer: c.id,
    brand: "mastercard",
    last4: "4444",
    exp_month: 1,
    exp_year: 2031,
  });
  await ctl.setDefaultPaymentMethod(c.id, pm.id);
  const seen = await t.stripe.customers.retrieve(c.id) as Stripe.Customer;
  assert.equal(seen.invoice_settings.default_payment_method, pm.id);
  const card = await t.stripe.paymentMethods.retrieve(pm.id);
  assert.equal(card.card?.last4, "4444");
  assert.equal(card.card?.brand, "mastercard");

  const paid = await ctl.createInvoice({
    customer: c.id,
    metadata: { "estuary.dev/bill_id": "b1" },
    lines: [{ amount: 1000, description: "usage" }],
    status: "paid",
  });
  assert.equal(paid.status, "paid");
  const viaSdk = await t.stripe.invoices.retrieve(paid.id);
  assert.equal(viaSdk.metadata?.["estuary.dev/bill_id"], "b1");
  assert.equal(viaSdk.total, 1000);

  const draft = await ctl.createInvoice({ customer: c.id, lines: [{ amount: 5 }] });
  await ctl.deleteInvoice(draft.id);
  assert.equal((await stripeError(t.stripe.invoices.retrieve(draft.id))).statusCode, 404);

  const open = await ctl.createInvoice({ customer: c.id, lines: [{ amount: 5 }], status: "open" });
  await ctl.voidInvoice(open.id);
  const unc = await ctl.createInvoice({ customer: c.id, lines: [{ amount: 7 }] });
  await ctl.finalizeInvoice(unc.id);
  await ctl.markInvoiceUncollectible(unc.id);
  await ctl.payInvoice(unc.id);
  assert.equal((await t.stripe.invoices.retrieve(unc.id)).status, "paid");

  await ctl.deleteCustomer(c.id);
  const gone = await t.stripe.customers.retrieve(c.id);
  assert.equal((gone as Stripe.DeletedCustomer).deleted, true);

  const events = await t.stripe.events.list({ limit: 100 });
  const types: string[] = events.data.map((e) => e.type).reverse();
  for (
    const type of [
      "customer.created",
      "payment_method.attached",
      "customer.updated",
      "invoice.created",
      "invoiceitem.created",
      "invoice.finalized",
      "invoice.paid",
      "invoice.deleted",
      "invoice.voided",
      "invoice.marked_uncollectible",
      "customer.deleted",
    ]
  ) assert.ok(types.includes(type), `missing ${type}`);
  // Dashboard changes have no API request behind them.
  assert.ok(events.data.every((e) => e.request?.id === null));
  // None of this reached the SDK call log.
  assert.equal(
    (await ctl.calls()).every((r) => r.route.startsWith("GET ")),
    true,
  );
});

emulatorTest("dashboard: completing a setup intent attaches the card", async (t) => {
  const c = await t.customer({});
  const si = await t.stripe.setupIntents.create({ customer: c.id });
  await t.emu.control.succeedSetupIntent(si.id, { card: { last4: "1881" } });
  const got = await t.stripe.setupIntents.retrieve(si.id);
  assert.equal(got.status, "succeeded");
  const pms = await t.stripe.customers.listPaymentMethods(c.id);
  assert.equal(pms.data[0].card?.last4, "1881");
});

// --- call log, state dump, reset ---------------------------------------------------------------

emulatorTest("call log: routes, counts, keys, replays; reset clears only the log", async (t) => {
  const c = await t.customer({});
  const key = `k-${crypto.randomUUID()}`;
  await t.stripe.invoices.create({ customer: c.id }, { idempotencyKey: key });
  await t.stripe.invoices.create({ customer: c.id }, { idempotencyKey: key });
  const inv = (await t.stripe.invoices.list({ customer: c.id })).data[0];
  await t.stripe.invoices.retrieve(inv.id);
  await t.stripe.invoices.search({ query: `customer:"${c.id}"` });
  await t.stripe.invoices.del(inv.id);

  const calls = await t.emu.control.calls();
  const routes = calls.map((r) => r.route);
  assert.deepEqual(routes, [
    "POST /v1/customers",
    "POST /v1/invoices",
    "POST /v1/invoices",
    "GET /v1/invoices",
    "GET /v1/invoices/:id",
    "GET /v1/invoices/search",
    "DELETE /v1/invoices/:id",
  ]);
  assert.equal(calls[1].idempotencyKey, key);
  assert.equal(calls[1].replayed, false);
  assert.equal(calls[2].replayed, true);
  assert.ok(calls[0].idempotencyKey?.startsWith("stripe-node-retry-"));
  assert.equal(calls[4].path, `/v1/invoices/${inv.id}`);
  assert.ok(calls.every((r) => r.requestId.startsWith("req_") && r.at > 0));

  const summary = await t.emu.control.callSummary();
  assert.equal(summary.total, 7);
  assert.equal(summary.searches, 1);
  assert.equal(summary.writes, 4);
  assert.equal(summary.byRoute["POST /v1/invoices"], 2);
  assert.equal(summary.byStatus["200"], 7);
  assert.ok(!JSON.stringify(calls).includes(API_KEY), "the API key is never logged");

  await t.emu.control.resetCalls();
  assert.equal((await t.emu.control.callSummary()).total, 0);
  assert.equal((await t.stripe.customers.retrieve(c.id)).id, c.id, "state survives");
});

emulatorTest("state dump flags deleted invoices and customers", async (t) => {
  const c = await t.customer({ name: "dump" });
  const inv = await t.invoice({ customer: c.id, metadata: { bill: "1" } });
  await t.stripe.invoices.addLines(inv.id, { lines: [{ amount: 10 }] });
  await t.stripe.invoices.del(inv.id);
  await t.stripe.customers.del(c.id);
  const state = await t.emu.control.state();
  assert.equal(state.invoices.length, 1);
  assert.equal(state.invoices[0].deleted, true);
  assert.equal(state.invoices[0].metadata.bill, "1", "last state is kept");
  assert.equal(state.customers[0].deleted, true);
  assert.equal(state.customers[0].name, "dump");
});

emulatorTest("reset forgets objects, keys, calls and knobs", async (t) => {
  const c = await t.customer({});
  await t.emu.control.setLatency({ fixedMs: 50 });
  await t.emu.control.addFault({ route: "GET /v1/invoices", kind: "error", count: "always" });
  await t.emu.control.reset();
  assert.equal((await stripeError(t.stripe.customers.retrieve(c.id))).statusCode, 404);
  assert.equal((await t.stripe.invoices.list()).data.length, 0);
  const config = await t.emu.control.config();
  assert.deepEqual(config.latency, { minMs: 0, maxMs: 0 });
  assert.deepEqual(await t.emu.control.faults(), []);
  assert.equal((await t.emu.control.callSummary()).total, 2);
});

// --- [U] behaviour knobs and limits -------------------------------------------------------------

emulatorTest("behaviour: pay on a draft finalizes first unless configured to fail", async (t) => {
  const c = await t.customer({});
  const a = await t.invoice({ customer: c.id });
  await t.stripe.invoices.addLines(a.id, { lines: [{ amount: 10 }] });
  const paid = await t.stripe.invoices.pay(a.id, { paid_out_of_band: true });
  assert.equal(paid.status, "paid");
  assert.ok(paid.number);

  await t.emu.control.setBehaviour({ draftPayOrSend: "error" });
  const b = await t.invoice({ customer: c.id });
  assert.equal((await stripeError(t.stripe.invoices.pay(b.id))).statusCode, 400);

  await t.emu.control.setBehaviour({ finalizedEditableFields: ["metadata", "description"] });
  await t.stripe.invoices.addLines(b.id, { lines: [{ amount: 10 }] });
  await t.stripe.invoices.finalizeInvoice(b.id);
  const edited = await t.stripe.invoices.update(b.id, { description: "now allowed" });
  assert.equal(edited.description, "now allowed");
});

emulatorTest("limits: 250 invoice items per invoice", async (t) => {
  const c = await t.customer({});
  const inv = await t.invoice({ customer: c.id });
  const lines = (n: number) => Array.from({ length: n }, () => ({ amount: 1 }));
  const err = await stripeError(t.stripe.invoices.addLines(inv.id, { lines: lines(251) }));
  assert.equal(err.statusCode, 400);
  assert.equal((await t.stripe.invoices.retrieve(inv.id)).total, 0, "nothing was added");
  const ok = await t.stripe.invoices.addLines(inv.id, { lines: lines(250) });
  assert.equal(ok.total, 250);
  assert.equal((ok.lines as unknown as { total_count: number }).total_count, 250);
  const more = await stripeError(t.stripe.invoices.addLines(inv.id, { lines: lines(1) }));
  assert.equal(more.statusCode, 400);
});

// --- raw HTTP details the SDK does not exercise ---------------------------------------------------

emulatorTest(
  "http: brackets raw or escaped, expand[] or expand[0], Basic auth, 401, 404",
  async (t) => {
    const c = await t.customer({ name: "raw" });
    const inv = await t.invoice({ customer: c.id });
    const base = t.emu.url;
    const auth = { authorization: `Bearer ${API_KEY}` };
    const escaped = await fetch(`${base}/v1/invoices/${inv.id}?expand%5B%5D=customer`, {
      headers: auth,
    });
    assert.equal((await escaped.json()).customer.name, "raw");
    const indexed = await fetch(`${base}/v1/invoices/${inv.id}?expand[0]=customer`, {
      headers: { authorization: `Basic ${btoa(`${API_KEY}:`)}` },
    });
    assert.equal((await indexed.json()).customer.name, "raw");
    const form = await fetch(`${base}/v1/customers/${c.id}`, {
      method: "POST",
      headers: { ...auth, "content-type": "application/x-www-form-urlencoded" },
      body: "metadata%5Ba%5D=1&metadata[b]=2&preferred_locales[]=en&preferred_locales[]=fr",
    });
    const updated = await form.json();
    assert.deepEqual(updated.metadata, { a: "1", b: "2" });
    assert.deepEqual(updated.preferred_locales, ["en", "fr"]);
    assert.ok(form.headers.get("request-id")?.startsWith("req_"));

    const none = await fetch(`${base}/v1/customers`);
    assert.equal(none.status, 401);
    assert.equal((await none.json()).error.type, "invalid_request_error");
    const unknown = await fetch(`${base}/v1/nothing`, { headers: auth });
    assert.equal(unknown.status, 404);
    await unknown.body?.cancel();
    const version = await fetch(`${base}/v1/customers`, {
      headers: { ...auth, "stripe-version": "2026-10-28.endive" },
    });
    assert.equal(version.headers.get("stripe-version"), "2026-10-28.endive");
    await version.body?.cancel();
  },
);

// --- slow calls ------------------------------------------------------------------------------

/** Starts a same-key update of `id` while the first is held; returns both outcomes. */
async function slowUpdate(t: EmulatorTarget, id: string, key: string) {
  const started = performance.now();
  const slow = t.stripe.customers.update(id, { name: "slow" }, { idempotencyKey: key });
  await new Promise((r) => setTimeout(r, 250));
  const nameDuringDelay = t.emu.emulator.store.customers.get(id)!.name;
  const sameKey = await t.stripe.customers.update(id, { name: "slow" }, { idempotencyKey: key })
    .then((c) => ({ replayed: responseHeader(c, "idempotent-replayed"), status: 200 }))
    .catch((e) => ({ replayed: null, status: e.statusCode as number, code: e.code as string }));
  const done = await slow;
  return { nameDuringDelay, sameKey, done, elapsedMs: performance.now() - started };
}

emulatorTest(
  "faults: slow holds the Nth request, then applies the write and answers",
  async (t) => {
    const c = await t.customer({ name: "before" });
    await t.emu.control.addFault({
      route: "POST /v1/customers/:id",
      kind: "slow",
      delayMs: 800,
      skip: 1,
    });
    // The first request is let through at full speed; the second (N = 2) is held.
    let start = performance.now();
    await t.stripe.customers.update(c.id, { name: "before" });
    assert.ok(performance.now() - start < 700, "not held");

    const out = await slowUpdate(t, c.id, `k-${crypto.randomUUID()}`);
    // Default writeAt after_delay: nothing applied yet, and the key is still in flight.
    assert.equal(out.nameDuringDelay, "before");
    assert.deepEqual(out.sameKey, { replayed: null, status: 409, code: "idempotency_key_in_use" });
    assert.equal(out.done.name, "slow");
    assert.ok(out.elapsedMs >= 780, `elapsed ${out.elapsedMs}`);
    const calls = await t.emu.control.calls();
    assert.equal(calls.filter((r) => r.fault === "slow:after_delay").length, 1);

    start = performance.now();
    await t.stripe.customers.retrieve(c.id);
    assert.ok(performance.now() - start < 700, "the fault fired once");
  },
);

emulatorTest("faults: a slow call outlasts the client's timeout and still writes", async (t) => {
  const impatient = emulatorClient(t.emu.port, { timeoutMs: 300 });
  const c = await t.customer({ name: "before" });
  await t.emu.control.addFault({ route: "POST /v1/customers/:id", kind: "slow", delayMs: 700 });
  const err = await stripeError(impatient.customers.update(c.id, { name: "late" }));
  assert.ok(err instanceof Stripe.errors.StripeConnectionError);
  assert.equal(t.emu.emulator.store.customers.get(c.id)!.name, "before");
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(t.emu.emulator.store.customers.get(c.id)!.name, "late", "written after the hold");
});

emulatorTest("faults: slow with writeAt before_delay applies first, answers late", async (t) => {
  const c = await t.customer({ name: "before" });
  await t.emu.control.addFault({
    route: "POST /v1/customers/:id",
    kind: "slow",
    delayMs: 800,
    writeAt: "before_delay",
  });
  const out = await slowUpdate(t, c.id, `k-${crypto.randomUUID()}`);
  assert.equal(out.nameDuringDelay, "slow");
  // The response is already saved, so a same-key request is answered from it at once.
  assert.deepEqual(out.sameKey, { replayed: "true", status: 200 });
  assert.equal(out.done.name, "slow");
  assert.ok(out.elapsedMs >= 780, `elapsed ${out.elapsedMs}`);
  await assert.rejects(
    t.emu.control.addFault({ route: "POST /v1/customers/:id", kind: "slow" }),
    /slow faults need delayMs > 0/,
  );
});

emulatorTest('due_date: "in the future" is judged on the emulator clock', async (t) => {
  const c = await t.customer({});
  const { now } = await t.emu.control.clock();
  const inv = await t.invoice({
    customer: c.id,
    currency: "usd",
    collection_method: "send_invoice",
    due_date: now + 3 * 86_400,
  });
  await t.emu.control.advanceClock(4 * 86_400);
  // The same date, accepted three days ahead, is now in the past.
  const err = await stripeError(t.stripe.invoices.update(inv.id, { due_date: now + 3 * 86_400 }));
  assert.equal(err.statusCode, 400);
  assert.equal(err.param, "due_date");
  const retried = await stripeError(
    t.stripe.invoices.create({
      customer: c.id,
      currency: "usd",
      collection_method: "send_invoice",
      due_date: now + 3 * 86_400,
    }),
  );
  assert.equal(retried.param, "due_date");
  const ok = await t.stripe.invoices.update(inv.id, { due_date: now + 5 * 86_400 });
  assert.equal(ok.due_date, now + 5 * 86_400);
});

// --- decimal amounts -------------------------------------------------------------------------

emulatorTest("decimals: half-cent ties follow the amountRounding knob", async (t) => {
  const c = await t.customer({});
  const product = await t.product({ name: "usage" });
  const inv = await t.invoice({ customer: c.id, currency: "usd" });
  const line = (unit: string, qty: string) => ({
    price_data: {
      currency: "usd",
      product: product.id,
      unit_amount_decimal: Stripe.Decimal.from(unit),
    },
    quantity_decimal: Stripe.Decimal.from(qty),
  });
  // 100.25 × 14 = 1403.5, 0.5 × 5 = 2.5, 1.5 × 1 = 1.5, 100.25 × 0.14 = 14.035
  const added = await t.stripe.invoices.addLines(inv.id, {
    lines: [line("14", "100.25"), line("5", "0.5"), line("1", "1.5"), line("0.14", "100.25")],
  });
  assert.deepEqual(added.lines.data.map((l) => l.amount), [1404, 3, 2, 14]);
  assert.equal(added.total, 1404 + 3 + 2 + 14);

  // Exact, not binary floating point: 1.005¢ × 100 is 100.5¢ (a float says 100.49999999999999).
  const item = await t.stripe.invoiceItems.create({
    customer: c.id,
    currency: "usd",
    unit_amount_decimal: Stripe.Decimal.from("1.005"),
    quantity: 100,
  });
  assert.equal(item.amount, 101);

  await t.emu.control.setBehaviour({ amountRounding: "half_even" });
  const ids = added.lines.data.map((l) => l.id);
  const even = await t.stripe.invoices.updateLines(inv.id, {
    lines: ids.map((id) => ({ id, metadata: { n: "1" } })),
  });
  // Unchanged lines keep their amounts; recomputed lines use the new rule.
  assert.equal(even.total, 1423);
  const redone = await t.stripe.invoices.updateLines(inv.id, {
    lines: [
      { id: ids[0], quantity_decimal: Stripe.Decimal.from("100.25") },
      { id: ids[1], quantity_decimal: Stripe.Decimal.from("0.5") },
      { id: ids[2], quantity_decimal: Stripe.Decimal.from("1.5") },
    ],
  });
  assert.deepEqual(redone.lines.data.map((l) => l.amount), [1404, 2, 2, 14]);
});

emulatorTest(
  "decimals: raw JSON carries strings; bad decimals are refused naming the field",
  async (t) => {
    const c = await t.customer({});
    const inv = await t.invoice({ customer: c.id, currency: "usd" });
    await t.stripe.invoices.addLines(inv.id, {
      lines: [{
        price_data: {
          currency: "usd",
          product_data: { name: "x" },
          unit_amount_decimal: Stripe.Decimal.from("0.50"),
        },
        quantity_decimal: Stripe.Decimal.from("2.500"),
      }],
    });
    const res = await fetch(`${t.emu.url}/v1/invoices/${inv.id}/lines`, {
      headers: { Authorization: `Bearer ${API_KEY}` },
    });
    const [raw] = (await res.json()).data;
    assert.equal(raw.quantity_decimal, "2.5");
    assert.equal(raw.quantity, 2);
    assert.equal(raw.pricing.unit_amount_decimal, "0.5");
    assert.equal(raw.amount, 1);

    const bad = async (lineParams: Record<string, unknown>, param: string) => {
      const err = await stripeError(
        t.stripe.invoices.addLines(inv.id, {
          lines: [lineParams as unknown as Stripe.InvoiceAddLinesParams.Line],
        }),
      );
      assert.equal(err.statusCode, 400, param);
      assert.equal(err.param, param);
    };
    const priced = { currency: "usd", product_data: { name: "x" }, unit_amount: 10 };
    await bad({ price_data: priced, quantity: 1, quantity_decimal: "1" }, "lines[0][quantity]");
    await bad({ price_data: priced, quantity_decimal: "-1" }, "lines[0][quantity_decimal]");
    await bad(
      { price_data: priced, quantity_decimal: "1.0000000000001" },
      "lines[0][quantity_decimal]",
    );
    await bad({ price_data: priced, quantity_decimal: "1e3" }, "lines[0][quantity_decimal]");
    await bad(
      {
        price_data: { ...priced, unit_amount: undefined, unit_amount_decimal: "-0.5" },
        quantity: 1,
      },
      "lines[0][price_data][unit_amount_decimal]",
    );
    await bad(
      { price_data: { ...priced, unit_amount_decimal: "10" }, quantity: 1 },
      "lines[0][price_data][unit_amount]",
    );
    const state = await t.emu.control.state();
    assert.equal(state.invoices[0].line_ids.length, 1, "refused lines add nothing");
    assert.equal(state.product_count, 1, "refused lines create no product");
  },
);

// --- products --------------------------------------------------------------------------------

emulatorTest(
  "products: product_data makes a new Product per line; product reuses one",
  async (t) => {
    const c = await t.customer({});
    const inv = await t.invoice({ customer: c.id, currency: "usd" });
    const byData = { currency: "usd", product_data: { name: "usage" }, unit_amount: 100 };
    await t.stripe.invoices.addLines(inv.id, {
      lines: [{ price_data: byData, quantity: 1 }, { price_data: byData, quantity: 2 }],
    });
    let state = await t.emu.control.state();
    assert.equal(state.product_count, 2);
    assert.deepEqual(state.products?.map((p) => [p.name, p.origin]), [
      ["usage", "product_data"],
      ["usage", "product_data"],
    ]);
    assert.equal((await t.emu.control.events("product.created")).length, 2);

    const reusable = await t.product({ id: "prod_usage_hours", name: "Usage (hours)" });
    assert.equal(reusable.id, "prod_usage_hours");
    const dup = await stripeError(
      t.stripe.products.create({ id: "prod_usage_hours", name: "again" }),
    );
    assert.equal(dup.statusCode, 400);
    assert.equal(dup.code, "resource_already_exists");
    const byId = { currency: "usd", product: reusable.id, unit_amount: 100 };
    const lines = Array.from({ length: 5 }, () => ({ price_data: byId, quantity: 1 }));
    await t.stripe.invoices.addLines(inv.id, { lines });
    state = await t.emu.control.state();
    assert.equal(state.product_count, 3, "lines naming a product create none");

    // A refused request (second line bad) creates no Product for its first line.
    const err = await stripeError(
      t.stripe.invoices.addLines(inv.id, {
        lines: [{ price_data: byData, quantity: 1 }, {
          price_data: { ...byId, product: "prod_nope" },
        }],
      }),
    );
    assert.equal(err.param, "lines[1][price_data][product]");
    assert.equal((await t.emu.control.state()).product_count, 3);
  },
);

// --- account and key modes --------------------------------------------------------------------

emulatorTest("account: accountId option; each instance has its own default", async (t) => {
  const bound = await startStripeEmulator({ port: 0, accountId: "acct_1BillingTests01" });
  const other = await startStripeEmulator({ port: 0 });
  try {
    const a = await emulatorClient(bound.port).accounts.retrieve(null);
    assert.equal(a.id, "acct_1BillingTests01");
    assert.equal(a.object, "account");
    assert.equal((await bound.control.config()).account_id, "acct_1BillingTests01");
    const b = await emulatorClient(other.port).accounts.retrieve(null);
    const mine = await t.stripe.accounts.retrieve(null);
    assert.match(b.id, /^acct_1[A-Za-z0-9]{15}$/);
    assert.notEqual(b.id, mine.id, "two default instances are two accounts");
    // Reset forgets objects, not which account this is.
    await t.emu.control.reset();
    assert.equal((await t.stripe.accounts.retrieve(null)).id, mine.id);
    const foreign = await stripeError(t.stripe.accounts.retrieve(b.id));
    assert.equal(foreign.statusCode, 403);
    // Finalized invoices link to this account's hosted pages.
    const c = await t.customer({});
    const inv = await t.invoice({ customer: c.id, currency: "usd" });
    await t.stripe.invoices.addLines(inv.id, { lines: [{ amount: 100 }] });
    const open = await t.stripe.invoices.finalizeInvoice(inv.id);
    assert.ok(open.hosted_invoice_url?.includes(`/${mine.id}/`));
    assert.throws(() => new Emulator({ accountId: "not-an-account" }), /acct_/);
  } finally {
    await bound.close();
    await other.close();
  }
});

emulatorTest("keys: live and restricted keys; livemode follows the key's mode", async (t) => {
  const client = (key: string) =>
    createStripe({ secretKey: key, host: "127.0.0.1", port: t.emu.port, protocol: "http" });
  const live = client("sk_live_emulator");
  const restrictedLive = client("rk_live_emulator");
  const restrictedTest = client("rk_test_emulator");

  const liveCustomer = await live.customers.create({ name: "live" });
  assert.equal(liveCustomer.livemode, true);
  const inv = await restrictedLive.invoices.create({ customer: liveCustomer.id, currency: "usd" });
  assert.equal(inv.livemode, true);
  const added = await restrictedLive.invoices.addLines(inv.id, { lines: [{ amount: 100 }] });
  assert.ok(added.lines.data.every((l) => l.livemode === true));
  const testCustomer = await restrictedTest.customers.create({ name: "test" });
  assert.equal(testCustomer.livemode, false);
  assert.equal(
    (await t.stripe.customers.retrieve(testCustomer.id) as Stripe.Customer).livemode,
    false,
  );

  // Events record the mode of the request that caused them.
  const created = await t.emu.control.events("customer.created");
  assert.deepEqual(
    created.map((e) => [e.livemode, (e.data as { object: { name: string } }).object.name]),
    [
      [true, "live"],
      [false, "test"],
    ],
  );
  // Idempotency keys are per mode: the same key in test mode is a new request.
  const key = `k-${crypto.randomUUID()}`;
  const a = await live.customers.create({ name: "k" }, { idempotencyKey: key });
  const b = await t.stripe.customers.create({ name: "k" }, { idempotencyKey: key });
  assert.notEqual(a.id, b.id);
  assert.equal(responseHeader(b, "idempotent-replayed"), null);

  const bad = await stripeError(client("pk_live_emulator").customers.list());
  assert.equal(bad.statusCode, 401);
  assert.ok(!bad.message.includes("emulator"), "the key is not echoed");
});

emulatorTest(
  "line edits emit invoiceitem.updated, even when the invoice total stays",
  async (t) => {
    const c = await t.stripe.customers.create({ name: "line-edits" });
    const inv = await t.stripe.invoices.create({ customer: c.id, auto_advance: false });
    const withLines = await t.stripe.invoices.addLines(inv.id!, {
      lines: [{ amount: 500, description: "a" }, { amount: 700, description: "b" }],
    });
    const [first, second] = withLines.lines.data;
    const itemOf = (l: Stripe.InvoiceLineItem) => l.parent!.invoice_item_details!.invoice_item!;
    // Three ways to edit an item: the item itself, one line, several lines.
    await t.stripe.invoiceItems.update(itemOf(first), { description: "a, renamed" });
    await t.stripe.invoices.updateLineItem(inv.id!, first.id, { description: "a, again" });
    await t.stripe.invoices.updateLines(inv.id!, {
      lines: [{ id: second.id, description: "b, renamed" }],
    });
    const updated = await t.stripe.events.list({ type: "invoiceitem.updated", limit: 10 });
    const items = updated.data.map((e) => (e.data.object as Stripe.InvoiceItem).id).reverse();
    assert.deepEqual(items, [itemOf(first), itemOf(first), itemOf(second)]);
    assert.ok(
      updated.data.every((e) => (e.data.object as Stripe.InvoiceItem).invoice === inv.id),
      "each names its invoice",
    );
    assert.equal((await t.stripe.invoices.retrieve(inv.id!)).total, 1200);
  },
);
