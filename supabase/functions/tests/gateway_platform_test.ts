// The local functions gateway behaves like Supabase's: routes /functions/v1/<name> to the
// handler with the path `/<name>/...`, injects the platform environment, and applies verify_jwt
// per config.toml (OPTIONS exempt, Bearer JWT required, an apikey alone not accepted).
import assert from "node:assert/strict";
import { parseVerifyJwt } from "../../../dev/functions-gateway/config.ts";
import { startFunctionsGateway } from "../../../dev/functions-gateway/gateway.ts";
import { dashboardClient } from "../../../dev/functions-gateway/supabase_client.ts";
import { LOCAL_JWT_SECRET, mintUserJwt } from "../../../dev/functions-gateway/tokens.ts";
import { verifyJwt } from "../_shared/auth.ts";

Deno.test("parseVerifyJwt() reads per-function verify_jwt and defaults to true", () => {
  const settings = parseVerifyJwt(`
[functions.a]
verify_jwt = false # Stripe calls this
[functions.b]
import_map = "x"
[functions."c"]
verify_jwt = true
[api]
verify_jwt = false
`);
  assert.deepEqual([...settings], [["a", false], ["b", true], ["c", true]]);
});

Deno.test("the repository's config.toml: no function relies on the gateway's JWT check", async () => {
  const settings = parseVerifyJwt(
    await Deno.readTextFile(new URL("../../config.toml", import.meta.url)),
  );
  // billing verifies JWTs itself (HS256 and JWKS), which the gateway check may not (new keys).
  assert.equal(settings.get("billing"), false);
  assert.equal(settings.get("stripe-webhook"), false);
});

/** A functions directory with one echo function, to see what a handler receives. */
async function echoFunctions(): Promise<URL> {
  const dir = await Deno.makeTempDir({ prefix: "gateway-test-" });
  for (const name of ["echo", "open"]) {
    await Deno.mkdir(`${dir}/${name}`);
    await Deno.writeTextFile(
      `${dir}/${name}/handler.ts`,
      `export function createApp(env) {
        return {
          fetch: async (req) => Response.json({
            url: req.url, method: req.method, body: await req.text(),
            authorization: req.headers.get("authorization"), apikey: req.headers.get("apikey"),
            clientInfo: req.headers.get("x-client-info"),
            env: Object.fromEntries(["SUPABASE_URL", "SUPABASE_DB_URL", "SUPABASE_ANON_KEY",
              "SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_JWT_SECRET", "SUPABASE_JWKS",
              "SUPABASE_PUBLISHABLE_KEYS", "SUPABASE_SECRET_KEYS", "MY_SECRET"]
              .map((k) => [k, env.get(k)])),
          }),
          close: async () => {},
        };
      }\n`,
    );
  }
  const toml = `${dir}/config.toml`;
  await Deno.writeTextFile(toml, "[functions.open]\nverify_jwt = false\n");
  return new URL(`file://${dir}/`);
}

Deno.test("the gateway hands the function /<name>/... and the platform environment", async () => {
  const dir = await echoFunctions();
  const gw = await startFunctionsGateway({
    port: 0,
    functionsDir: dir,
    configToml: new URL("config.toml", dir),
    dbUrl: "postgresql://postgres@127.0.0.1:5/x",
    secrets: { MY_SECRET: "s3cret" },
  });
  try {
    const token = await mintUserJwt({ sub: crypto.randomUUID(), projectUrl: gw.url });
    const res = await fetch(`${gw.url}/functions/v1/echo/sub/path?x=1`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}` },
      body: "raw body",
    });
    assert.equal(res.status, 200);
    const seen = await res.json();
    assert.equal(new URL(seen.url).pathname + new URL(seen.url).search, "/echo/sub/path?x=1");
    assert.equal(seen.body, "raw body");
    assert.equal(seen.env.SUPABASE_URL, gw.url);
    assert.equal(seen.env.SUPABASE_DB_URL, "postgresql://postgres@127.0.0.1:5/x");
    assert.equal(seen.env.SUPABASE_JWT_SECRET, LOCAL_JWT_SECRET);
    assert.equal(seen.env.MY_SECRET, "s3cret");
    assert.deepEqual(JSON.parse(seen.env.SUPABASE_PUBLISHABLE_KEYS), {
      default: gw.publishableKey,
    });
    assert.deepEqual(JSON.parse(seen.env.SUPABASE_SECRET_KEYS), { default: gw.secretKey });
    assert.ok(JSON.parse(seen.env.SUPABASE_JWKS).keys.length > 0);
    // The legacy API keys are HS256 JWTs signed with the local secret, iss supabase-demo.
    for (
      const [key, role] of [[seen.env.SUPABASE_ANON_KEY, "anon"], [
        seen.env.SUPABASE_SERVICE_ROLE_KEY,
        "service_role",
      ]]
    ) {
      const claims = await verifyJwt(key, { secret: LOCAL_JWT_SECRET });
      assert.equal(claims.role, role);
      assert.equal(claims.iss, "supabase-demo");
    }
  } finally {
    await gw.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("verify_jwt: Bearer JWT required, apikey alone refused, OPTIONS exempt", async () => {
  const dir = await echoFunctions();
  const gw = await startFunctionsGateway({
    port: 0,
    functionsDir: dir,
    configToml: new URL("config.toml", dir),
  });
  const call = async (path: string, init: RequestInit = {}) => {
    const res = await fetch(`${gw.url}/functions/v1/${path}`, { method: "POST", ...init });
    return { status: res.status, body: await res.text(), headers: res.headers };
  };
  const sub = crypto.randomUUID();
  try {
    const invalid = JSON.stringify({ msg: "Invalid JWT" });
    const cases: [string, HeadersInit, number][] = [
      ["no credentials", {}, 401],
      ["apikey only (publishable)", { apikey: gw.publishableKey }, 401],
      ["apikey only (legacy anon JWT)", { apikey: gw.anonKey }, 401],
      ["publishable key as Bearer", { authorization: `Bearer ${gw.publishableKey}` }, 401],
      ["Basic auth", { authorization: `Basic ${btoa("a:b")}` }, 401],
      ["forged signature", {
        authorization: `Bearer ${await mintUserJwt({
          sub,
          key: { alg: "HS256", secret: "not-the-project-secret-not-the-project" },
        })}`,
      }, 401],
      ["expired", { authorization: `Bearer ${await mintUserJwt({ sub, expiresIn: -60 })}` }, 401],
      ["anon key as Bearer", { authorization: `Bearer ${gw.anonKey}` }, 200],
      ["user session (HS256)", { authorization: `Bearer ${await mintUserJwt({ sub })}` }, 200],
      ["user session (ES256, JWKS)", {
        authorization: `Bearer ${await mintUserJwt({ sub, key: gw.signingKey })}`,
      }, 200],
    ];
    for (const [label, headers, status] of cases) {
      const res = await call("echo", { headers });
      assert.equal(res.status, status, label);
      if (status === 401) {
        assert.equal(res.body, invalid, label);
        assert.equal(res.headers.get("access-control-allow-origin"), "*", label);
      }
    }
    const preflight = await call("echo", { method: "OPTIONS" });
    assert.equal(preflight.status, 200, "preflight skips verify_jwt");
    assert.equal((await call("open", {})).status, 200, "verify_jwt = false lets anyone through");
    assert.equal((await call("missing", {})).status, 401, "unknown functions still need a JWT");
    const notFound = await call("missing", {
      headers: { authorization: `Bearer ${gw.anonKey}` },
    });
    assert.equal(notFound.status, 404);
    const other = await fetch(`${gw.url}/rest/v1/tenants`);
    assert.equal(other.status, 404, "only /functions/v1 is served");
    await other.body?.cancel();
  } finally {
    await gw.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("supabase-js functions.invoke reaches the function as the dashboard sends it", async () => {
  const dir = await echoFunctions();
  const gw = await startFunctionsGateway({
    port: 0,
    functionsDir: dir,
    configToml: new URL("config.toml", dir),
  });
  try {
    const token = await mintUserJwt({ sub: crypto.randomUUID() });
    const signedIn = dashboardClient(gw.url, gw.publishableKey, { accessToken: token });
    const { data, error } = await signedIn.functions.invoke("echo", { body: { hello: 1 } });
    assert.equal(error, null);
    assert.equal(data.method, "POST");
    assert.equal(new URL(data.url).pathname, "/echo");
    assert.deepEqual(JSON.parse(data.body), { hello: 1 });
    assert.equal(data.authorization, `Bearer ${token}`);
    assert.equal(data.apikey, gw.publishableKey);
    assert.match(data.clientInfo, /^supabase-js/);

    // Signed out with a publishable key, supabase-js sends no Bearer: the gateway refuses.
    const signedOut = dashboardClient(gw.url, gw.publishableKey);
    const out = await signedOut.functions.invoke("echo", { body: {} });
    assert.equal((out.error as { context?: Response }).context?.status, 401);
    await (out.error as { context: Response }).context.body?.cancel();
  } finally {
    await gw.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("every function in supabase/functions boots under the gateway with its own auth", async () => {
  const gw = await startFunctionsGateway({ port: 0 });
  try {
    const names: string[] = [];
    for await (const e of Deno.readDir(new URL("../", import.meta.url))) {
      if (!e.isDirectory || e.name.startsWith("_") || e.name === "tests") continue;
      names.push(e.name);
    }
    assert.ok(names.includes("billing") && names.includes("stripe-webhook"));
    for (const name of names.sort()) {
      const preflight = await fetch(`${gw.url}/functions/v1/${name}`, { method: "OPTIONS" });
      await preflight.body?.cancel();
      assert.equal(preflight.status, 200, `${name} answers the preflight`);
      assert.equal(preflight.headers.get("access-control-allow-origin"), "*", name);
    }
    // verify_jwt = false: the gateway lets anyone through, and the function refuses by itself.
    const publish = await fetch(`${gw.url}/functions/v1/publish-invoices`, {
      method: "POST",
      body: "{}",
    });
    assert.equal(publish.status, 401);
    assert.notDeepEqual(await publish.json(), { msg: "Invalid JWT" }, "the function answered");
  } finally {
    await gw.close();
  }
});
