// A malformed SUPABASE_DB_URL: the CLI exits with an error naming the variable, and never prints
// the password (nor does the publish-invoices function log it).
import assert from "node:assert/strict";
import { envFromRecord } from "../supabase/functions/_shared/http.ts";
import { createPublishApp } from "../supabase/functions/publish-invoices/handler.ts";

const MAIN = new URL("./main.ts", import.meta.url).pathname;
const PASSWORD = "s3cr3t-Do-Not-Print";
const BAD_URLS = [
  `postgresql://postgres:${PASSWORD}#1@127.0.0.1:54322/postgres`,
  `postgresql://postgres:${PASSWORD}@127.0.0.1:5432x/postgres`,
];

Deno.test("the CLI never prints a malformed SUPABASE_DB_URL's password", async () => {
  for (const url of BAD_URLS) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", MAIN, "runs"],
      env: { SUPABASE_DB_URL: url, STRIPE_SECRET_KEY: "sk_test_x", NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.notEqual(out.code, 0, text);
    assert.ok(!text.includes(PASSWORD), `the password was printed: ${text}`);
    assert.match(text, /SUPABASE_DB_URL/);
  }
});

Deno.test("publish-invoices never logs a malformed SUPABASE_DB_URL's password", async () => {
  for (const url of BAD_URLS) {
    const logged: string[] = [];
    const original = { error: console.error, warn: console.warn, log: console.log };
    console.error = console.warn = console.log = (...args: unknown[]) => {
      logged.push(args.map(String).join(" "));
    };
    let status = 0;
    let body = "";
    try {
      const app = createPublishApp(
        envFromRecord({ SUPABASE_DB_URL: url, SUPABASE_SERVICE_ROLE_KEY: "svc-key" }),
        { stripe: undefined },
      );
      const res = await app.fetch(
        new Request("http://localhost/publish-invoices", {
          method: "POST",
          headers: { authorization: "Bearer svc-key", "content-type": "application/json" },
          body: JSON.stringify({ month: "2030-01", dry_run: true }),
        }),
      );
      status = res.status;
      body = await res.text();
      await app.close().catch(() => {});
    } finally {
      Object.assign(console, original);
    }
    assert.equal(status, 500, body);
    const all = logged.join("\n") + body;
    assert.ok(logged.length > 0, "the failure is logged");
    assert.ok(!all.includes(PASSWORD), `the password was logged: ${all}`);
    assert.match(logged.join("\n"), /SUPABASE_DB_URL/);
  }
});
