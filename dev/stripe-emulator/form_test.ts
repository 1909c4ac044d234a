import assert from "node:assert/strict";
import { canonicalForm, formFromJson, parseForm } from "./form.ts";
import { applyMetadata, Params } from "./params.ts";
import { ApiError } from "./errors.ts";

Deno.test("form: indexed brackets, raw or escaped, become nested arrays and hashes", () => {
  const raw = parseForm(
    "lines[0][amount]=500&lines[0][description]=a+b&lines[1][invoice_item]=ii_1&expand[0]=x",
  );
  const escaped = parseForm(
    "lines%5B0%5D%5Bamount%5D=500&lines%5B0%5D%5Bdescription%5D=a%20b" +
      "&lines%5B1%5D%5Binvoice_item%5D=ii_1&expand%5B%5D=x",
  );
  const expected = {
    lines: [{ amount: "500", description: "a b" }, { invoice_item: "ii_1" }],
    expand: ["x"],
  };
  assert.deepEqual(JSON.parse(JSON.stringify(raw)), expected);
  assert.deepEqual(JSON.parse(JSON.stringify(escaped)), expected);
});

Deno.test("form: empty values are kept (they mean unset); [] appends", () => {
  const f = parseForm("metadata=&description=&expand[]=a&expand[]=b");
  assert.equal(f.metadata, "");
  assert.equal(f.description, "");
  assert.deepEqual(f.expand, ["a", "b"]);
});

Deno.test("form: prototype keys are plain data", () => {
  const f = parseForm("metadata[__proto__]=x&metadata[constructor]=y");
  assert.deepEqual(Object.keys(f.metadata as object).sort(), ["__proto__", "constructor"]);
  assert.equal(({} as Record<string, unknown>).x, undefined);
});

Deno.test("form: canonical form ignores key order; JSON converts like stripe-node", () => {
  assert.equal(canonicalForm(parseForm("a=1&b=2")), canonicalForm(parseForm("b=2&a=1")));
  assert.notEqual(canonicalForm(parseForm("a=1")), canonicalForm(parseForm("a=2")));
  assert.deepEqual(
    JSON.parse(JSON.stringify(formFromJson({ a: 1, b: true, c: null, d: [{ e: 2 }] }))),
    { a: "1", b: "true", c: "", d: [{ e: "2" }] },
  );
});

Deno.test("params: metadata set/unset/clear and the 50-key limit", () => {
  const p = new Params(parseForm("metadata[a]=1&metadata[b]="));
  assert.deepEqual(applyMetadata({ b: "x", c: "y" }, p.metadata()), { a: "1", c: "y" });
  const clear = new Params(parseForm("metadata="));
  assert.deepEqual(applyMetadata({ b: "x" }, clear.metadata()), {});
  const many = Array.from({ length: 51 }, (_, i) => `metadata[k${i}]=v`).join("&");
  assert.throws(() => applyMetadata({}, new Params(parseForm(many)).metadata()), ApiError);
});

Deno.test("params: unknown, missing, invalid integer", () => {
  const p = new Params(parseForm("limit=abc&extra=1"));
  assert.throws(() => p.only(["limit"]), (e: ApiError) => e.code === "parameter_unknown");
  assert.throws(() => p.int("limit"), (e: ApiError) => e.code === "parameter_invalid_integer");
  assert.throws(
    () => p.str("customer", { required: true }),
    (e: ApiError) => e.code === "parameter_missing" && e.validation,
  );
});
