// Output helpers and configuration parsing: tables fit 100 columns, plurals, one money format,
// and .env read the way .env.example says.
import assert from "node:assert/strict";
import { count, money, table } from "./format.ts";
import { describeDbUrl, envWithDotEnv, parseDotEnv } from "./context.ts";

Deno.test("a table with a long wrapping column fits 100 columns and keeps every word", () => {
  const detail = "would create an invoice with 3 lines for 20650¢; " +
    "other customers carry tenant acmeCo/: cus_AAAAAAAAAAAAAA, cus_BBBBBBBBBBBBBB";
  const out = table([{ t: "acmeCo/", b: "final:12", d: detail }], [
    { header: "Tenant", value: (r) => r.t },
    { header: "Bill", value: (r) => r.b },
    { header: "Detail", value: (r) => r.d, wrap: true },
  ], 60);
  const lines = out.split("\n");
  assert.ok(lines.every((l) => l.length <= 60), out);
  assert.ok(lines.length > 3, "the detail wrapped onto more lines");
  assert.equal(lines.slice(2).map((l) => l.slice(19).trim()).join(" "), detail);
});

Deno.test("plurals and money", () => {
  assert.equal(count(1, "line"), "1 line");
  assert.equal(count(2, "line"), "2 lines");
  assert.equal(count(1200, "bill"), "1,200 bills");
  assert.equal(count(2, "search", "searches"), "2 searches");
  assert.equal(money(123456), "$1,234.56");
  assert.equal(money(-100), "-$1.00");
  assert.equal(money(5), "$0.05");
});

Deno.test(".env: values fill what the environment lacks; empty means unset; quotes and comments", () => {
  const parsed = parseDotEnv([
    "# comment",
    "SUPABASE_DB_URL=",
    'STRIPE_SECRET_KEY="sk_test_fromfile"',
    "BILLING_ACTOR=ops # who",
    "export STRIPE_RATE_LIMIT='5'",
  ].join("\n"));
  assert.deepEqual(parsed, {
    SUPABASE_DB_URL: "",
    STRIPE_SECRET_KEY: "sk_test_fromfile",
    BILLING_ACTOR: "ops",
    STRIPE_RATE_LIMIT: "5",
  });
  const dir = Deno.makeTempDirSync();
  try {
    Deno.writeTextFileSync(`${dir}/.env`, "STRIPE_SECRET_KEY=sk_test_fromfile\nBILLING_ACTOR=\n");
    const env = envWithDotEnv(
      { get: (k) => (k === "BILLING_ACTOR" ? "set" : undefined) },
      `${dir}/.env`,
    );
    assert.equal(env.get("STRIPE_SECRET_KEY"), "sk_test_fromfile");
    assert.equal(env.get("BILLING_ACTOR"), "set", "the environment wins");
    const none = envWithDotEnv({ get: () => undefined }, `${dir}/missing.env`);
    assert.equal(none.get("STRIPE_SECRET_KEY"), undefined);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a database URL is shown without its credentials", () => {
  assert.equal(
    describeDbUrl("postgresql://postgres.ref:s3cret@aws-0-eu.pooler.supabase.com:5432/postgres"),
    "aws-0-eu.pooler.supabase.com:5432/postgres",
  );
});

Deno.test("a below column prints under its row, indented and wrapped to the width", () => {
  const note = "created in_7vU22UPcKuHdcwFM4ibxhFQN with 2 lines; " + "x ".repeat(40);
  const out = table([{ b: "final:2", n: note }], [
    { header: "Bill", value: (r) => r.b },
    { header: "Note", value: (r) => r.n, below: true },
  ], 50).split("\n");
  assert.equal(out[0], "Bill");
  assert.equal(out[2], "final:2");
  assert.ok(out.slice(3).every((l) => l.startsWith("    ") && l.length <= 50), out.join("\n"));
  assert.equal(out.slice(3).map((l) => l.trim()).join(" "), note.trim());
});
