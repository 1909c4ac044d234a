// A malformed SUPABASE_DB_URL never puts its password in an error (and so in a log or the CLI's
// output): the error names the variable and what is wrong instead.
import assert from "node:assert/strict";
import { createDb, redactConnectionString } from "./db.ts";

const PASSWORD = "hunter2-Very-Secret";

Deno.test("createDb refuses a malformed URL without echoing the password", async () => {
  const cases: [string, RegExp][] = [
    [`postgresql://postgres:${PASSWORD}#x@127.0.0.1:5432/postgres`, /unencoded/],
    [`postgresql://postgres:${PASSWORD}@127.0.0.1:port/postgres`, /port/],
    [`postgresql://postgres:${PASSWORD}%zz@127.0.0.1:5432/postgres`, /percent/],
    [`postgresql://postgres:${PASSWORD}@[::1/postgres`, /not a valid/],
  ];
  for (const [url, hint] of cases) {
    let message = "";
    try {
      const sql = createDb(url);
      await sql`select 1`;
      await sql.end();
    } catch (err) {
      message = `${(err as Error).name}: ${(err as Error).message} ${String(err)} ${
        (err as Error).stack ?? ""
      }`;
    }
    assert.ok(message !== "", `${url} must be refused`);
    assert.ok(!message.includes(PASSWORD), `the password leaked: ${message}`);
    assert.ok(!message.includes("hunter2"), `part of the password leaked: ${message}`);
    assert.match(message, /SUPABASE_DB_URL/);
    assert.match(message, hint);
  }
});

Deno.test("redactConnectionString hides passwords in any text", () => {
  assert.equal(
    redactConnectionString(`could not use postgresql://postgres:${PASSWORD}@db.host:5432/postgres`),
    "could not use postgresql://postgres:***@db.host:5432/postgres",
  );
  assert.equal(
    redactConnectionString(`postgres://u:p#a@ss@h/db and postgres://u:q@h/db`),
    "postgres://u:***@h/db and postgres://u:***@h/db",
  );
  assert.equal(redactConnectionString("postgresql://postgres@h/db"), "postgresql://postgres@h/db");
});
