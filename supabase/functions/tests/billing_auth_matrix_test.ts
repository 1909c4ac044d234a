// Who may call each billing operation, through supabase-js and the gateway as the dashboard
// does: signed out, forged, expired, wrong audience, a plain API key, no grant, a read grant,
// admin of another tenant, and the tenant's admin. Refused calls reach no Stripe endpoint and
// write nothing. Also: the function verifies tokens itself, without the gateway.
import assert from "node:assert/strict";
import { createClient } from "../../../dev/functions-gateway/supabase_client.ts";
import { mintUserJwt } from "../../../dev/functions-gateway/tokens.ts";
import { generateSigningKey } from "../_shared/auth.ts";
import { envFromRecord } from "../_shared/http.ts";
import { createApp } from "../billing/handler.ts";
import {
  client,
  grant,
  type Harness,
  HARNESS_TEST,
  invoke,
  makeManualBill,
  makeTenantAdmin,
  makeUser,
  storedCustomer,
  withHarness,
} from "./billing_fixtures.ts";

const OPERATIONS = [
  "setup-intent",
  "get-tenant-payment-methods",
  "set-tenant-primary-payment-method",
  "delete-tenant-payment-method",
  "get-tenant-invoice",
  "list-tenant-invoices",
] as const;

/** A tenant with a stored customer, three cards (the first primary) and one open invoice. */
async function billedTenant(h: Harness) {
  const admin = await makeTenantAdmin(h, "mx");
  const customer = await storedCustomer(h, admin.tenant);
  const cards: string[] = [];
  for (const last4 of ["4242", "4444", "0005"]) {
    const pm = await h.emu.control.createPaymentMethod({
      customer,
      last4,
      default: cards.length === 0,
    });
    cards.push(pm.id as string);
  }
  const invoice = await h.emu.control.createInvoice({
    customer,
    status: "open",
    collection_method: "send_invoice",
    days_until_due: 30,
    lines: [{ amount: 12_300, description: "contract" }],
  });
  const billId = await makeManualBill(h.sql, admin.tenant, {
    cents: 12_300,
    start: "2030-01-01",
    end: "2030-02-01",
    invoiceId: invoice.id as string,
  });
  return { ...admin, customer, cards, billId };
}

Deno.test({
  name: "every billing operation: 401 without a valid session, 403 without admin, 200 for admin",
  ...HARNESS_TEST,
  fn: withHarness(async (h) => {
    const a = await billedTenant(h);
    const other = await makeTenantAdmin(h, "mxo");
    const body = (op: (typeof OPERATIONS)[number]): Record<string, unknown> => {
      const base = { operation: op, tenant: a.tenant };
      switch (op) {
        case "set-tenant-primary-payment-method":
          return { ...base, payment_method_id: a.cards[1] };
        case "delete-tenant-payment-method":
          return { ...base, payment_method_id: a.cards[2] };
        case "get-tenant-invoice":
          return { ...base, bill_id: a.billId };
        default:
          return base;
      }
    };

    const noGrant = await makeUser(h.sql);
    const reader = await makeUser(h.sql);
    await grant(h.sql, reader, a.tenant, "read");
    const writer = await makeUser(h.sql);
    await grant(h.sql, writer, a.tenant, "write");
    const url = h.gateway.url;
    const session = (sub: string, extra = {}) =>
      mintUserJwt({ sub, projectUrl: url, ...extra }).then((t) => client(h, t));
    const forgedKey = { alg: "HS256" as const, secret: "x".repeat(40) };

    const denied: [string, () => Promise<ReturnType<typeof client>>, number, unknown?][] = [
      // billing has verify_jwt = false: the function itself refuses every one of these.
      ["signed out", () => Promise.resolve(client(h)), 401],
      ["forged signature", () => session(a.userId, { key: forgedKey }), 401],
      ["expired session", () => session(a.userId, { expiresIn: -30 }), 401],
      ["wrong audience", () => session(a.userId, { audience: "other-app" }), 401],
      [
        "legacy anon key, signed out",
        () =>
          Promise.resolve(
            createClient(url, h.gateway.anonKey, { auth: { persistSession: false } }),
          ),
        401,
      ],
      ["user without a grant", () => session(noGrant), 403],
      ["read grant only", () => session(reader), 403],
      ["write grant only", () => session(writer), 403],
      ["admin of another tenant", () => session(other.userId), 403],
    ];

    const callsBefore = (await h.emu.control.callSummary()).total;
    for (const [label, makeClient, status, exact] of denied) {
      for (const op of OPERATIONS) {
        const res = await invoke(await makeClient(), "billing", body(op));
        assert.equal(res.status, status, `${label} / ${op}: ${JSON.stringify(res.body)}`);
        if (exact) assert.deepEqual(res.body, exact, `${label} / ${op}`);
        else {
          const code = status === 401 ? "unauthorized" : "forbidden";
          assert.equal((res.body.error as { code: string }).code, code, `${label} / ${op}`);
        }
      }
    }
    assert.equal(
      (await h.emu.control.callSummary()).total,
      callsBefore,
      "refused calls reach Stripe",
    );
    const [tenantRow] = await h.sql`select stripe_customer_id from public.tenants
      where tenant = ${other.tenant}`;
    assert.equal(tenantRow.stripe_customer_id, null, "refused calls store nothing");

    const admin = await session(a.userId);
    for (const op of OPERATIONS) {
      const res = await invoke(admin, "billing", body(op));
      assert.equal(res.status, 200, `admin / ${op}: ${JSON.stringify(res.body)}`);
    }
    // Admin's results are the tenant's own.
    const methods = await invoke(admin, "billing", body("get-tenant-payment-methods"));
    assert.equal(methods.body.primary, a.cards[1]);
    assert.deepEqual(
      (methods.body.payment_methods as { id: string }[]).map((m) => m.id).sort(),
      [a.cards[0], a.cards[1]].sort(),
    );
  }),
});

Deno.test({
  name: "the billing function verifies the JWT itself (no gateway in front)",
  ...HARNESS_TEST,
  fn: withHarness(async (h) => {
    const a = await makeTenantAdmin(h, "mxd");
    const app = createApp(envFromRecord(h.gateway.env));
    const { key: strangerKey } = await generateSigningKey("ES256", "local-gateway-es256");
    const post = (token: string | null) =>
      app.fetch(
        new Request(`${h.gateway.url}/billing`, {
          method: "POST",
          headers: token ? { authorization: `Bearer ${token}` } : {},
          body: JSON.stringify({ operation: "list-tenant-invoices", tenant: a.tenant }),
        }),
      );
    try {
      const cases: [string, string | null, number][] = [
        ["no token", null, 401],
        ["not a JWT", "abc.def", 401],
        [
          "forged HS256",
          await mintUserJwt({ sub: a.userId, key: { alg: "HS256", secret: "y".repeat(40) } }),
          401,
        ],
        ["expired", await mintUserJwt({ sub: a.userId, expiresIn: -1 }), 401],
        ["wrong audience", await mintUserJwt({ sub: a.userId, audience: "x" }), 401],
        ["role anon", await mintUserJwt({ sub: a.userId, role: "anon" }), 401],
        ["service_role key", h.gateway.serviceRoleKey, 401],
        ["anon key", h.gateway.anonKey, 401],
        [
          "ES256 from an unknown key with a known kid",
          await mintUserJwt({ sub: a.userId, key: strangerKey }),
          401,
        ],
        [
          "ES256 from the project's key",
          await mintUserJwt({ sub: a.userId, key: h.gateway.signingKey }),
          200,
        ],
        ["HS256 session", await mintUserJwt({ sub: a.userId }), 200],
      ];
      for (const [label, token, status] of cases) {
        const res = await post(token);
        const text = await res.text();
        assert.equal(res.status, status, `${label}: ${text}`);
        assert.equal(res.headers.get("access-control-allow-origin"), "*", label);
        if (token) assert.ok(!text.includes(token), `${label}: the token is not echoed`);
      }
    } finally {
      await app.close();
    }
  }),
});

Deno.test({
  name: "CORS: the preflight is answered and every response, errors included, allows the origin",
  ...HARNESS_TEST,
  fn: withHarness(async (h) => {
    const preflight = await fetch(`${h.gateway.url}/functions/v1/billing`, {
      method: "OPTIONS",
      headers: {
        origin: "https://dashboard.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, x-client-info, apikey, content-type",
      },
    });
    await preflight.body?.cancel();
    assert.equal(preflight.status, 200);
    assert.equal(preflight.headers.get("access-control-allow-origin"), "*");
    const allowed = preflight.headers.get("access-control-allow-headers")!.split(/,\s*/);
    for (const header of ["authorization", "x-client-info", "apikey", "content-type"]) {
      assert.ok(allowed.includes(header), header);
    }
    assert.match(preflight.headers.get("access-control-allow-methods")!, /POST/);

    const a = await makeTenantAdmin(h, "mxc");
    for (
      const [token, body, status] of [
        [undefined, {}, 401],
        [a.token, { operation: "nope", tenant: a.tenant }, 400],
        [a.token, { operation: "list-tenant-invoices", tenant: "someone-else/" }, 403],
        [a.token, { operation: "list-tenant-invoices", tenant: a.tenant }, 200],
      ] as const
    ) {
      const res = await fetch(`${h.gateway.url}/functions/v1/billing`, {
        method: "POST",
        headers: {
          origin: "https://dashboard.example",
          "content-type": "application/json",
          ...(token ? { authorization: `Bearer ${token}` } : {}),
        },
        body: JSON.stringify(body),
      });
      await res.body?.cancel();
      assert.equal(res.status, status);
      assert.equal(res.headers.get("access-control-allow-origin"), "*", `status ${status}`);
    }
  }),
});
