import assert from "node:assert/strict";
import { describeStripeError, tagStripeEndpoint } from "./stripe_errors.ts";
import { Stripe } from "./stripe_client.ts";

function sdkError(status: number, code: string | undefined, message: string, requestId: string) {
  return Stripe.errors.StripeError.generate({
    type: status >= 500 ? "api_error" : "invalid_request_error",
    code,
    message,
    statusCode: status,
    requestId,
  } as never);
}

Deno.test("a Stripe error names the call, status, code, message and request ID", () => {
  const err = sdkError(500, undefined, "An unknown error occurred", "req_abc123");
  tagStripeEndpoint(err, "GET /v1/invoices");
  assert.equal(
    describeStripeError(undefined, err),
    'GET /v1/invoices: HTTP 500 "An unknown error occurred" (request req_abc123)',
  );
  const refused = sdkError(400, "invoice_not_editable", "This invoice is not editable", "req_9");
  assert.equal(
    describeStripeError("POST /v1/invoices/:id", refused),
    'POST /v1/invoices/:id: HTTP 400 invoice_not_editable "This invoice is not editable" ' +
      "(request req_9)",
  );
});

Deno.test("a give-up after 429s shows Stripe's last answer and the give-up", () => {
  const last = sdkError(429, "rate_limit", "Too many requests", "req_429");
  const wrapped = Object.assign(new Error("Stripe kept answering 429 after 6 attempts"), {
    name: "StripeThrottledError",
    endpoint: "GET /v1/customers/search",
    cause: last,
  });
  assert.equal(
    describeStripeError(undefined, wrapped),
    'GET /v1/customers/search: HTTP 429 rate_limit "Too many requests" (request req_429); ' +
      "Stripe kept answering 429 after 6 attempts",
  );
});

Deno.test("other errors keep their name; a key in a message is masked", () => {
  assert.equal(
    describeStripeError(undefined, new TypeError("bad thing with sk_live_abcdef123 inside")),
    "TypeError: bad thing with sk_live_*** inside",
  );
});
