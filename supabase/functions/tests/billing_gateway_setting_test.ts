// The gateway setting for `billing`: verify_jwt = false, because the function verifies every
// JWT itself (legacy HS256 and JWKS-signed ES256), which the platform check is documented not to
// do for the new signing keys. Through the gateway the function's own check is what answers.
import assert from "node:assert/strict";
import { mintUserJwt } from "../../../dev/functions-gateway/tokens.ts";
import { parseVerifyJwt } from "../../../dev/functions-gateway/config.ts";
import { HARNESS_TEST, makeTenantAdmin, withHarness } from "./billing_fixtures.ts";

Deno.test("config.toml: billing has verify_jwt = false (the function verifies JWTs itself)", async () => {
  const toml = await Deno.readTextFile(new URL("../../config.toml", import.meta.url));
  assert.equal(parseVerifyJwt(toml).get("billing"), false);
});

Deno.test({
  name:
    "through the gateway, billing's own JWT check answers: 401 in its shape, ES256 and HS256 pass",
  ...HARNESS_TEST,
  fn: withHarness(async (h) => {
    const a = await makeTenantAdmin(h, "gw");
    const post = (headers: Record<string, string>) =>
      fetch(`${h.gateway.url}/functions/v1/billing`, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: JSON.stringify({ operation: "list-tenant-invoices", tenant: a.tenant }),
      });
    const none = await post({});
    assert.equal(none.status, 401);
    assert.deepEqual((await none.json()).error.code, "unauthorized", "the function refused it");
    const es256 = await mintUserJwt({ sub: a.userId, key: h.gateway.signingKey });
    const ok = await post({ authorization: `Bearer ${es256}` });
    assert.equal(ok.status, 200, await ok.clone().text());
    await ok.body?.cancel();
    const hs256 = await post({ authorization: `Bearer ${await mintUserJwt({ sub: a.userId })}` });
    assert.equal(hs256.status, 200);
    await hs256.body?.cancel();
  }),
});
