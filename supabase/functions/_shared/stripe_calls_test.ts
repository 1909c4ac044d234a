import assert from "node:assert/strict";
import {
  addStats,
  emptyStats,
  isRetryableStripeError,
  isStripeNotFound,
  StripeCaller,
  StripeThrottledError,
} from "./stripe_calls.ts";
import { Stripe } from "./stripe_client.ts";

const stripe = new Stripe("sk_test_unit", { maxNetworkRetries: 0 });

function stripeError(statusCode: number, code?: string): Error {
  return Stripe.errors.StripeError.generate({
    statusCode,
    code,
    type: statusCode >= 500 ? "api_error" : "invalid_request_error",
    message: `status ${statusCode}`,
  }) as unknown as Error;
}

/** A fake clock: sleeping advances time instantly and records the delays asked for. */
function fakeTime() {
  let t = 0;
  const sleeps: number[] = [];
  return {
    now: () => t,
    sleep: (ms: number) => {
      sleeps.push(ms);
      t += ms;
      return Promise.resolve();
    },
    sleeps,
    elapsed: () => t,
  };
}

Deno.test("isRetryableStripeError() retries 429, 409, 5xx and lost connections only", () => {
  const cases: [Error, boolean][] = [
    [stripeError(429, "rate_limit"), true],
    [stripeError(409, "idempotency_key_in_use"), true],
    [stripeError(500), true],
    [stripeError(503), true],
    [new Stripe.errors.StripeConnectionError({ message: "socket hang up" }), true],
    [stripeError(400, "parameter_invalid_integer"), false],
    [stripeError(402, "card_declined"), false],
    [stripeError(404, "resource_missing"), false],
    [new TypeError("not a Stripe error"), false],
  ];
  for (const [err, expected] of cases) {
    assert.equal(isRetryableStripeError(err), expected, err.message);
  }
  assert.equal(isStripeNotFound(stripeError(404, "resource_missing")), true);
  assert.equal(isStripeNotFound(stripeError(400)), false);
});

Deno.test("call() retries with one idempotency key for every attempt of a write", async () => {
  const time = fakeTime();
  const caller = new StripeCaller(stripe, { ...time, random: () => 1, ratePerSecond: 1000 });
  const keys: (string | undefined)[] = [];
  let attempts = 0;
  const result = await caller.call("POST /v1/invoices", (_s, opts) => {
    keys.push(opts.idempotencyKey);
    attempts++;
    if (attempts < 3) return Promise.reject(stripeError(500));
    return Promise.resolve("created");
  });
  assert.equal(result, "created");
  assert.equal(keys.length, 3);
  assert.ok(keys[0]);
  assert.deepEqual(new Set(keys).size, 1, "all attempts share the key");
  const stats = caller.stats();
  assert.equal(stats.total, 3);
  assert.equal(stats.retries, 2);
  assert.equal(stats.writes, 3);
  assert.deepEqual(stats.byEndpoint, { "POST /v1/invoices": 3 });
});

Deno.test("call() keeps a caller-supplied idempotency key and sends none on GET", async () => {
  const caller = new StripeCaller(stripe, { ...fakeTime(), ratePerSecond: 1000 });
  let postKey: string | undefined;
  await caller.call("POST /v1/customers", (_s, opts) => {
    postKey = opts.idempotencyKey;
    return Promise.resolve(null);
  }, { idempotencyKey: "flow-customer-create:acmeCo/" });
  assert.equal(postKey, "flow-customer-create:acmeCo/");
  let getKey: string | undefined = "unset";
  await caller.call("GET /v1/invoices/:id", (_s, opts) => {
    getKey = opts.idempotencyKey;
    return Promise.resolve(null);
  });
  assert.equal(getKey, undefined);
});

Deno.test("call() does not retry a 400 and rethrows it", async () => {
  const caller = new StripeCaller(stripe, { ...fakeTime(), ratePerSecond: 1000 });
  let attempts = 0;
  await assert.rejects(
    caller.call("POST /v1/invoices/:id/finalize", () => {
      attempts++;
      return Promise.reject(stripeError(400, "invoice_not_editable"));
    }),
    (err: Error) => (err as unknown as { code: string }).code === "invoice_not_editable",
  );
  assert.equal(attempts, 1);
});

Deno.test("call() gives up on persistent 429s with StripeThrottledError and shrinks its rate", async () => {
  const time = fakeTime();
  const caller = new StripeCaller(stripe, {
    ...time,
    random: () => 1,
    maxAttempts: 4,
    ratePerSecond: 100,
  });
  await assert.rejects(
    caller.call("GET /v1/customers/search", () => Promise.reject(stripeError(429, "rate_limit"))),
    StripeThrottledError,
  );
  const stats = caller.stats();
  assert.equal(stats.total, 4);
  assert.equal(stats.throttled, 4);
  assert.equal(stats.search, 4);
  assert.ok(caller.currentRate() < 100, "429s shrink the client-side rate");
  // Exponential backoff between attempts: 500, 1000, 2000 ms (jitter factor 1).
  const backoffs = time.sleeps.filter((ms) => ms >= 500);
  assert.deepEqual(backoffs, [500, 1000, 2000]);
});

Deno.test("the limiter spaces requests at the configured rate", async () => {
  const time = fakeTime();
  const caller = new StripeCaller(stripe, { ...time, ratePerSecond: 10 });
  for (let i = 0; i < 21; i++) {
    await caller.call("GET /v1/invoices/:id", () => Promise.resolve(i));
  }
  // One token to start, then 20 more at 10/s: two seconds.
  assert.ok(time.elapsed() >= 1990 && time.elapsed() <= 2010, `elapsed ${time.elapsed()} ms`);
});

Deno.test("addStats() sums counts per endpoint", () => {
  const a = {
    ...emptyStats(),
    total: 2,
    writes: 1,
    byEndpoint: { "POST /v1/invoices": 1, "GET /v1/x": 1 },
  };
  const b = { ...emptyStats(), total: 1, search: 1, byEndpoint: { "POST /v1/invoices": 1 } };
  assert.deepEqual(addStats(a, b), {
    total: 3,
    byEndpoint: { "POST /v1/invoices": 2, "GET /v1/x": 1 },
    search: 1,
    writes: 1,
    retries: 0,
    throttled: 0,
  });
});

Deno.test("setShare() changes the ceiling but keeps a slowdown caused by 429s", async () => {
  const time = fakeTime();
  const caller = new StripeCaller(stripe, {
    ...time,
    random: () => 1,
    maxAttempts: 2,
    ratePerSecond: 100,
  });
  await assert.rejects(
    caller.call("GET /v1/invoices", () => Promise.reject(stripeError(429, "rate_limit"))),
    StripeThrottledError,
  );
  const slowed = caller.currentRate();
  assert.ok(slowed < 100);
  caller.setShare(200, 20);
  assert.equal(caller.currentRate(), slowed, "a larger share does not undo the slowdown");
  caller.setShare(10, 2);
  assert.equal(caller.currentRate(), 10, "a smaller share lowers the rate at once");
});
