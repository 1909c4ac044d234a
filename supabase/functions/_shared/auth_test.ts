import assert from "node:assert/strict";
import {
  AuthError,
  bearerToken,
  generateSigningKey,
  jwtKeysFromEnv,
  signJwt,
  verifyJwt,
  verifyUserJwt,
} from "./auth.ts";
import { envFromRecord } from "./http.ts";
import { toUnixSeconds } from "./units.ts";

const SECRET = "a-test-secret-that-is-long-enough-for-hs256";
const SUB = "6f1c2a1e-6f4b-4b7e-9a53-0c9a1b2c3d4e";

function session(claims: Record<string, unknown> = {}, secret = SECRET): Promise<string> {
  const now = toUnixSeconds(new Date());
  return signJwt({
    sub: SUB,
    aud: "authenticated",
    role: "authenticated",
    exp: now + 60,
    ...claims,
  }, {
    alg: "HS256",
    secret,
  });
}

async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof AuthError, String(err));
    return err.message;
  }
  throw new Error("expected an AuthError");
}

Deno.test("bearerToken() reads only `Authorization: Bearer <token>`", () => {
  const req = (h: Record<string, string>) => new Request("http://x/", { headers: h });
  assert.equal(bearerToken(req({ authorization: "Bearer abc.def.ghi" })), "abc.def.ghi");
  assert.equal(bearerToken(req({ authorization: "bearer abc" })), "abc");
  assert.equal(bearerToken(req({ authorization: "Basic abc" })), null);
  assert.equal(bearerToken(req({ apikey: "abc" })), null);
  assert.equal(bearerToken(req({})), null);
});

Deno.test("verifyUserJwt() accepts a signed-in user's session", async () => {
  const user = await verifyUserJwt(await session({ email: "u@x" }), { secret: SECRET });
  assert.equal(user.sub, SUB);
  assert.equal(user.email, "u@x");
  assert.equal(user.claims.role, "authenticated");
});

Deno.test("verifyUserJwt() refuses forged, expired, foreign and non-user tokens", async () => {
  const keys = { secret: SECRET };
  const now = toUnixSeconds(new Date());
  const cases: [string, Promise<string>, RegExp][] = [
    ["forged", session({}, "another-secret-another-secret-another"), /signature/],
    ["expired", session({ exp: now - 10 }), /expired/],
    ["no expiry", session({ exp: undefined }), /expiry/],
    ["wrong audience", session({ aud: "other" }), /audience/],
    ["anon key", session({ role: "anon", aud: undefined, sub: undefined }), /signed-in user/],
    ["service role", session({ role: "service_role" }), /signed-in user/],
    ["no user ID", session({ sub: "not-a-uuid" }), /user ID/],
    ["not yet valid", session({ nbf: now + 600 }), /nbf/],
  ];
  for (const [label, token, message] of cases) {
    assert.match(await refusal(verifyUserJwt(await token, keys)), message, label);
  }
  assert.match(await refusal(verifyUserJwt("not-a-jwt", keys)), /malformed/);
  const unsigned = `${btoa('{"alg":"none"}')}.${btoa(`{"sub":"${SUB}"}`)}.`;
  assert.match(await refusal(verifyUserJwt(unsigned, keys)), /algorithm/);
});

Deno.test("verifyJwt() checks ES256 tokens against the JWKS, never the HS256 secret", async () => {
  const { key, jwks } = await generateSigningKey("ES256", "k1");
  const other = await generateSigningKey("ES256", "k1");
  const exp = toUnixSeconds(new Date()) + 60;
  const token = await signJwt({ sub: SUB, role: "authenticated", aud: "authenticated", exp }, key);
  assert.equal((await verifyJwt(token, { jwks })).sub, SUB);
  assert.match(await refusal(verifyJwt(token, { jwks: other.jwks })), /signature/);
  assert.match(await refusal(verifyJwt(token, { secret: SECRET })), /no JWKS/);
});

Deno.test("jwtKeysFromEnv() reads the secret, the inline JWKS, else the JWKS URL", () => {
  const keys = jwtKeysFromEnv(envFromRecord({
    SUPABASE_JWT_SECRET: "s",
    SUPABASE_URL: "https://ref.supabase.co",
  }));
  assert.equal(keys.secret, "s");
  assert.equal(keys.jwksUrl?.href, "https://ref.supabase.co/auth/v1/.well-known/jwks.json");
  const legacy = jwtKeysFromEnv(envFromRecord({ JWT_SECRET: "t", SUPABASE_JWKS: '{"keys":[]}' }));
  assert.equal(legacy.secret, "t");
  assert.deepEqual(legacy.jwks, { keys: [] });
  assert.equal(jwtKeysFromEnv(envFromRecord({ SUPABASE_JWKS: "{bad" })).jwks, undefined);
});
