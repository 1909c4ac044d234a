// Bad input never answers 500: out-of-range dates get 400 naming the field in `billing` and
// `publish-invoices`; a correctly signed but unusable webhook event is acknowledged and recorded
// as rejected; oversized webhook bodies are refused before they are read; signatures dated in
// the future beyond the tolerance are refused.
import assert from "node:assert/strict";
import { signPayload } from "../../../dev/stripe-emulator/webhooks.ts";
import { envFromRecord } from "../_shared/http.ts";
import { toUnixSeconds } from "../_shared/units.ts";
import { createPublishApp } from "../publish-invoices/handler.ts";
import {
  client,
  type Harness,
  HARNESS_TEST,
  invoke,
  makeTenantAdmin,
  withHarness,
} from "./billing_fixtures.ts";
import { IO, makeTenant, openWorld } from "./publish_helpers.ts";

const PUBLISH_ENV = envFromRecord({ SUPABASE_SERVICE_ROLE_KEY: "service-role-jwt-for-bad-input" });

Deno.test({
  name: "publish-invoices: an out-of-range month is a 400 naming month, and no run is made",
  ...IO,
  async fn() {
    const w = await openWorld();
    const app = createPublishApp(PUBLISH_ENV, { sql: w.sql, stripe: w.stripe, budgetMs: 10_000 });
    try {
      const tenant = await makeTenant(w.sql, { prefix: "badmonth" });
      for (const month of ["0000-05", "0000-01", "0001-12", "1969-12"]) {
        const res = await app.fetch(
          new Request("http://localhost/publish-invoices", {
            method: "POST",
            headers: {
              "content-type": "application/json",
              authorization: "Bearer service-role-jwt-for-bad-input",
            },
            body: JSON.stringify({ month, tenants: [tenant], dry_run: true }),
          }),
        );
        const body = await res.json();
        assert.equal(res.status, 400, `${month}: ${JSON.stringify(body)}`);
        assert.equal(body.error.field, "month", month);
        assert.match(body.error.message, /^month: /, month);
      }
      const runs = await w.sql`select 1 from internal.publish_runs
        where ${tenant} = any(tenants)`;
      assert.equal(runs.length, 0, "no run was enqueued");
    } finally {
      await app.close();
      await w.close();
    }
  },
});

Deno.test({
  name: "billing: year 0000 and other out-of-range dates are a 400 naming the field",
  ...HARNESS_TEST,
  fn: withHarness(async (h) => {
    const a = await makeTenantAdmin(h, "baddate");
    const c = client(h, a.token);
    const base = { operation: "get-tenant-invoice", tenant: a.tenant, type: "manual" };
    const cases: [Record<string, unknown>, string][] = [
      [{ ...base, date_start: "0000-01-01", date_end: "2030-01-31" }, "date_start"],
      [{ ...base, date_start: "2030-01-01", date_end: "0000-12-31" }, "date_end"],
      [{ ...base, date_start: "0001-01-01", date_end: "2030-01-31" }, "date_start"],
    ];
    for (const [body, field] of cases) {
      const res = await invoke(c, "billing", body);
      assert.equal(res.status, 400, `${JSON.stringify(body)}: ${JSON.stringify(res.body)}`);
      const error = res.body.error as { field: string; message: string };
      assert.equal(error.field, field);
      assert.match(error.message, new RegExp(`^${field}: `));
    }
  }),
});

async function postWebhook(h: Harness, payload: string, signature: string) {
  const res = await fetch(`${h.gateway.url}/functions/v1/stripe-webhook`, {
    method: "POST",
    headers: { "content-type": "application/json", "stripe-signature": signature },
    body: payload,
  });
  return { status: res.status, body: await res.json() };
}

function eventId(label: string): string {
  return `evt_${label}${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
}

function invoiceEvent(id: string, created: unknown, invoice: Record<string, unknown>): string {
  return JSON.stringify({
    id,
    object: "event",
    type: "invoice.paid",
    created,
    livemode: false,
    data: {
      object: {
        id: `in_${id.slice(4)}`,
        object: "invoice",
        status: "paid",
        customer: "cus_badinput",
        amount_due: 100,
        total: 100,
        currency: "usd",
        ...invoice,
      },
    },
  });
}

Deno.test({
  name: "stripe-webhook: a signed but unusable event is acknowledged and recorded as rejected",
  ...HARNESS_TEST,
  fn: withHarness(async (h) => {
    const now = toUnixSeconds(new Date());
    const cases: [string, string, string][] = [];
    for (
      const [label, created, invoice, field] of <[
        string,
        unknown,
        Record<string, unknown>,
        string,
      ][]> [
        ["createdhuge", 1e300, {}, "created"],
        ["creatednegative", -99999999999999, {}, "created"],
        ["amounttext", now, { amount_due: "a lot" }, "data.object.amount_due"],
        ["totalfraction", now, { total: 10.5 }, "data.object.total"],
        ["statusbogus", now, { status: "refunded-ish" }, "data.object.status"],
      ]
    ) {
      const id = eventId(label);
      cases.push([id, invoiceEvent(id, created, invoice), field]);
    }
    for (const [id, payload, field] of cases) {
      const res = await postWebhook(h, payload, await signPayload(payload, h.webhookSecret, now));
      assert.equal(res.status, 200, `${id}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.outcome, "rejected", id);
      assert.equal(res.body.field, field, id);
      const [rejected] = await h.sql<{ field: string; reason: string }[]>`
        select field, reason from internal.stripe_rejected_events where event_id = ${id}`;
      assert.equal(rejected?.field, field, `${id} is recorded as rejected`);
      const stored = await h.sql`select 1 from internal.stripe_events where id = ${id}`;
      assert.equal(stored.length, 0, `${id} is not applied`);
    }
  }),
});

Deno.test({
  name: "stripe-webhook: oversized bodies get 413 and future-dated signatures get 400",
  ...HARNESS_TEST,
  fn: withHarness(async (h) => {
    const now = toUnixSeconds(new Date());
    const id = eventId("huge");
    const payload = invoiceEvent(id, now, { description: "x".repeat(2 * 1024 * 1024) });
    const big = await postWebhook(h, payload, await signPayload(payload, h.webhookSecret, now));
    assert.equal(big.status, 413, JSON.stringify(big.body).slice(0, 200));
    assert.equal((big.body.error as { code: string }).code, "payload_too_large");

    const futureId = eventId("future");
    const future = invoiceEvent(futureId, now, {});
    const res = await postWebhook(
      h,
      future,
      await signPayload(future, h.webhookSecret, now + 3600),
    );
    assert.equal(res.status, 400, JSON.stringify(res.body));
    assert.equal((res.body.error as { code: string }).code, "invalid_signature");
    const stored = await h.sql`select 1 from internal.stripe_events where id = ${futureId}`;
    assert.equal(stored.length, 0, "a future-dated delivery is not stored");

    // Within the tolerance (a few seconds of clock skew) is still accepted.
    const skewed = invoiceEvent(eventId("skew"), now, {});
    const ok = await postWebhook(h, skewed, await signPayload(skewed, h.webhookSecret, now + 10));
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
  }),
});
