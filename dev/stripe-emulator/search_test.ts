import assert from "node:assert/strict";
import { ApiError } from "./errors.ts";
import {
  CUSTOMER_SEARCH_FIELDS,
  INVOICE_SEARCH_FIELDS,
  parseQuery,
  type SearchDoc,
  SearchIndex,
} from "./search.ts";

function doc(id: string, seq: number, fields: SearchDoc["fields"], metadata = {}): SearchDoc {
  return { id, created: 100, seq, fields, metadata };
}

function index(): SearchIndex {
  const ix = new SearchIndex(INVOICE_SEARCH_FIELDS, ["customer", "currency"]);
  const docs = [
    doc("in_1", 1, { customer: "cus_a", status: "open", total: 500, currency: "usd" }, {
      bill: "B-1",
    }),
    doc("in_2", 2, { customer: "cus_a", status: "paid", total: 1500, currency: "eur" }, {
      bill: "B-2",
    }),
    doc("in_3", 3, { customer: "cus_b", status: "draft", total: 0, currency: "usd" }),
  ];
  for (const d of docs) ix.write(d.id, d, 0, 0);
  return ix;
}

const ids = (ix: SearchIndex, q: string) =>
  ix.search(parseQuery(q, INVOICE_SEARCH_FIELDS)).map((d) => d.id);

Deno.test("search: exact, case-insensitive tokens and metadata; newest first", () => {
  const ix = index();
  assert.deepEqual(ids(ix, `customer:"CUS_A"`), ["in_2", "in_1"]);
  assert.deepEqual(ids(ix, `metadata["bill"]:"b-2"`), ["in_2"]);
  assert.deepEqual(ids(ix, `metadata['bill']:'B-1'`), ["in_1"]);
});

Deno.test("search: numeric comparisons, negation, OR, null", () => {
  const ix = index();
  assert.deepEqual(ids(ix, "total>=500 AND total<1500"), ["in_1"]);
  assert.deepEqual(ids(ix, `-status:"open" customer:"cus_a"`), ["in_2"]);
  assert.deepEqual(ids(ix, `status:"draft" OR status:"paid"`), ["in_3", "in_2"]);
  assert.deepEqual(ids(ix, `metadata["bill"]:null`), ["in_3"]);
  assert.deepEqual(ids(ix, `-metadata["bill"]:null`), ["in_2", "in_1"]);
});

Deno.test("search: grammar errors are 400s", () => {
  const bad = [
    `a:"b" AND c:"d" OR e:"f"`,
    `status:open`,
    `color:"red"`,
    `customer>"cus_a"`,
    `number~"ab"`,
    `total:"abc"`,
    `metadata:"x"`,
    `status:"unterminated`,
  ];
  for (const q of bad) {
    assert.throws(
      () => parseQuery(q, INVOICE_SEARCH_FIELDS),
      (e: ApiError) => e.status === 400 && e.param === "query",
      q,
    );
  }
});

Deno.test("search: string fields match words in order; ~ is a substring", () => {
  const ix = new SearchIndex(CUSTOMER_SEARCH_FIELDS, []);
  ix.write("cus_1", doc("cus_1", 1, { name: "One Two Three Four", email: "amy@x.io" }), 0, 0);
  const q = (s: string) => ix.search(parseQuery(s, CUSTOMER_SEARCH_FIELDS)).length;
  assert.equal(q(`name:"one two three"`), 1);
  assert.equal(q(`name:"three one"`), 0);
  assert.equal(q(`email~"amy"`), 1);
  assert.equal(q(`email:"AMY@X.IO"`), 1);
});

Deno.test("search: lagged writes become visible in order", () => {
  const ix = new SearchIndex(CUSTOMER_SEARCH_FIELDS, []);
  ix.write("cus_1", doc("cus_1", 1, {}, { k: "old" }), 1000, 0);
  ix.write("cus_1", doc("cus_1", 1, {}, { k: "new" }), 2000, 0);
  const q = (v: string) => ix.search(parseQuery(`metadata["k"]:"${v}"`, CUSTOMER_SEARCH_FIELDS));
  assert.equal(q("old").length, 0);
  ix.catchUp(1500);
  assert.equal(q("old").length, 1);
  ix.catchUp(2500);
  assert.equal(q("old").length, 0);
  assert.equal(q("new").length, 1);
});
