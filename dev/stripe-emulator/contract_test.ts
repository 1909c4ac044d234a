/**
 * The contract suite: the same assertions through the official SDK against the emulator and,
 * with STRIPE_SECRET_KEY=sk_test_..., against real Stripe. Emulator-only knobs live in
 * knobs_test.ts and webhooks_test.ts.
 */
import assert from "node:assert/strict";
import {
  createStripe,
  Stripe,
  STRIPE_API_VERSION,
} from "../../supabase/functions/_shared/stripe_client.ts";
import { contractTest, responseHeader, stripeError, type Target } from "./test_support.ts";

// ---------------------------------------------------------------------------------------------
// Customers

contractTest(
  "customers: create, retrieve, update metadata, delete, retrieve deleted",
  async (t) => {
    const c = await t.customer({
      name: "acme",
      email: `${t.tag}@example.com`,
      metadata: { tenant: "acme", keep: "yes", drop: "me" },
    });
    assert.match(c.id, /^cus_/);
    assert.equal(c.object, "customer");
    assert.equal(c.balance, 0);
    assert.equal(c.livemode, false);
    assert.deepEqual(c.metadata, { tenant: "acme", keep: "yes", drop: "me" });

    const got = await t.stripe.customers.retrieve(c.id);
    assert.ok(!("deleted" in got && got.deleted));
    assert.equal((got as Stripe.Customer).email, `${t.tag}@example.com`);

    // `metadata[drop]=` deletes one key; other keys stay.
    const updated = await t.stripe.customers.update(c.id, {
      name: "acme-renamed",
      metadata: { drop: "", added: "1" },
    });
    assert.equal(updated.name, "acme-renamed");
    assert.deepEqual(updated.metadata, { tenant: "acme", keep: "yes", added: "1" });

    // `metadata=` clears every key.
    const cleared = await t.stripe.customers.update(c.id, { metadata: "" as unknown as undefined });
    assert.deepEqual(cleared.metadata, {});

    const deleted = await t.stripe.customers.del(c.id);
    assert.deepEqual({ ...deleted }, { id: c.id, object: "customer", deleted: true });
    const again = await t.stripe.customers.retrieve(c.id);
    assert.deepEqual({ ...again }, { id: c.id, object: "customer", deleted: true });
  },
);

contractTest("customers: unknown customer is a 404 resource_missing with a doc_url", async (t) => {
  const err = await stripeError(t.stripe.customers.retrieve("cus_doesnotexist000"));
  assert.equal(err.statusCode, 404);
  assert.equal(err.rawType, "invalid_request_error");
  assert.equal(err.code, "resource_missing");
  assert.equal(err.param, "id");
  assert.equal(err.message, "No such customer: 'cus_doesnotexist000'");
  assert.equal(err.doc_url, "https://stripe.com/docs/error-codes/resource-missing");
  assert.ok(err.requestId?.startsWith("req_"));
});

/** Creates `n` customers sharing one email (a filter that isolates them in a real account). */
async function customersWithEmail(t: Target, n: number): Promise<string> {
  const email = `${t.tag}@example.com`;
  for (let i = 0; i < n; i++) await t.customer({ email, name: `c${i}` });
  return email;
}

contractTest("customers: list pagination in both directions and the auto-pager", async (t) => {
  const email = await customersWithEmail(t, 5);
  const all = (await t.stripe.customers.list({ email, limit: 100 })).data.map((c) => c.id);
  assert.equal(all.length, 5);
  if (t.name === "emulator") {
    // Newest first, deterministic even within one second.
    assert.deepEqual(all, [...t.cleanup.customers].reverse());
  }
  const p1 = await t.stripe.customers.list({ email, limit: 2 });
  assert.equal(p1.object, "list");
  assert.equal(p1.url, "/v1/customers");
  assert.deepEqual(p1.data.map((c) => c.id), all.slice(0, 2));
  assert.equal(p1.has_more, true);
  const p2 = await t.stripe.customers.list({ email, limit: 2, starting_after: all[1] });
  assert.deepEqual(p2.data.map((c) => c.id), all.slice(2, 4));
  assert.equal(p2.has_more, true);
  const p3 = await t.stripe.customers.list({ email, limit: 2, starting_after: all[3] });
  assert.deepEqual(p3.data.map((c) => c.id), all.slice(4));
  assert.equal(p3.has_more, false);

  // ending_before: the objects just newer than the cursor, still newest first.
  const b1 = await t.stripe.customers.list({ email, limit: 2, ending_before: all[4] });
  assert.deepEqual(b1.data.map((c) => c.id), all.slice(2, 4));
  assert.equal(b1.has_more, true);
  const b2 = await t.stripe.customers.list({ email, limit: 2, ending_before: all[2] });
  assert.deepEqual(b2.data.map((c) => c.id), all.slice(0, 2));
  assert.equal(b2.has_more, false);

  const forward = await t.stripe.customers.list({ email, limit: 2 }).autoPagingToArray({
    limit: 100,
  });
  assert.deepEqual(forward.map((c) => c.id), all);
  // The auto-pager walks each page from its end and pages with data[0] as ending_before.
  const backward = await t.stripe.customers.list({ email, limit: 2, ending_before: all[4] })
    .autoPagingToArray({ limit: 100 });
  assert.deepEqual(backward.map((c) => c.id), all.slice(0, 4).reverse());

  const err = await stripeError(
    t.stripe.customers.list({ email, starting_after: all[0], ending_before: all[1] }),
  );
  assert.equal(err.statusCode, 400);
});

contractTest("customers: list by created range", async (t) => {
  const email = await customersWithEmail(t, 2);
  const all = (await t.stripe.customers.list({ email })).data;
  const created = all[0].created;
  const inRange = await t.stripe.customers.list({ email, created: { gte: created, lte: created } });
  assert.ok(inRange.data.some((c) => c.id === all[0].id));
  const later = await t.stripe.customers.list({ email, created: { gt: created + 3600 } });
  assert.equal(later.data.length, 0);
});

contractTest("customers: search grammar (metadata, email ~, negation, OR, quotes)", async (t) => {
  const a = await t.customer({
    name: "Alpha Beta Gamma",
    email: `${t.tag}.alpha@example.com`,
    metadata: { tag: t.tag, kind: "a" },
  });
  const b = await t.customer({
    name: "Delta",
    email: `${t.tag}.delta@example.com`,
    metadata: { tag: t.tag, kind: "b" },
  });
  const ids = (r: Stripe.ApiSearchResult<Stripe.Customer>) => r.data.map((c) => c.id).sort();
  const both = [a.id, b.id].sort();

  const byTag = await t.eventually(
    () => t.stripe.customers.search({ query: `metadata["tag"]:"${t.tag}"` }),
    (r) => r.data.length === 2,
  );
  assert.equal(byTag.object, "search_result");
  assert.equal(byTag.url, "/v1/customers/search");
  assert.deepEqual(ids(byTag), both);

  const single = await t.stripe.customers.search({
    query: `metadata['tag']:'${t.tag}' AND metadata["kind"]:"a"`,
  });
  assert.deepEqual(ids(single), [a.id]);
  const negated = await t.stripe.customers.search({
    query: `metadata["tag"]:"${t.tag}" -metadata["kind"]:"a"`,
  });
  assert.deepEqual(ids(negated), [b.id]);
  const either = await t.stripe.customers.search({
    query: `email:"${t.tag}.alpha@example.com" OR email:"${t.tag}.delta@example.com"`,
  });
  assert.deepEqual(ids(either), both);
  const substring = await t.stripe.customers.search({
    query: `email~"${t.tag}.del" AND metadata["tag"]:"${t.tag}"`,
  });
  assert.deepEqual(ids(substring), [b.id]);
  const name = await t.stripe.customers.search({
    query: `name:"alpha beta" AND metadata["tag"]:"${t.tag}"`,
  });
  assert.deepEqual(ids(name), [a.id]);

  const phone = await t.customer({ phone: "+15550001234", metadata: { tag: t.tag } });
  const byPhone = await t.eventually(
    () =>
      t.stripe.customers.search({
        query: `phone:"+15550001234" AND metadata["tag"]:"${t.tag}"`,
      }),
    (r) => r.data.length === 1,
  );
  assert.deepEqual(ids(byPhone), [phone.id]);
  const recent = await t.stripe.customers.search({
    query: `created>=${a.created - 1} AND metadata["tag"]:"${t.tag}" AND -phone:"+15550001234"`,
  });
  assert.deepEqual(ids(recent), both);

  const mixed = await stripeError(
    t.stripe.customers.search({ query: `name:"a" AND email:"b" OR phone:"c"` }),
  );
  assert.equal(mixed.statusCode, 400);
  const badField = await stripeError(t.stripe.customers.search({ query: `color:"red"` }));
  assert.equal(badField.statusCode, 400);
});

contractTest("customers: search pages with an opaque next_page", async (t) => {
  for (let i = 0; i < 3; i++) await t.customer({ metadata: { tag: t.tag } });
  const query = `metadata["tag"]:"${t.tag}"`;
  await t.eventually(() => t.stripe.customers.search({ query }), (r) => r.data.length === 3);
  const first = await t.stripe.customers.search({ query, limit: 2 });
  assert.equal(first.data.length, 2);
  assert.equal(first.has_more, true);
  assert.equal(typeof first.next_page, "string");
  const second = await t.stripe.customers.search({ query, limit: 2, page: first.next_page! });
  assert.equal(second.data.length, 1);
  assert.equal(second.has_more, false);
  assert.equal(second.next_page, null);
  const all = await t.stripe.customers.search({ query, limit: 1 }).autoPagingToArray({
    limit: 10,
  });
  assert.equal(new Set(all.map((c) => c.id)).size, 3);
});

// ---------------------------------------------------------------------------------------------
// Request conventions

contractTest("errors: unknown and missing params, expand errors, auth", async (t) => {
  const unknown = await stripeError(
    t.stripe.customers.create({ nonsense: "x" } as Stripe.CustomerCreateParams),
  );
  assert.equal(unknown.statusCode, 400);
  assert.equal(unknown.code, "parameter_unknown");
  assert.equal(unknown.param, "nonsense");
  assert.equal(unknown.message, "Received unknown parameter: nonsense");

  const missing = await stripeError(
    t.stripe.invoices.create({} as Stripe.InvoiceCreateParams),
  );
  assert.equal(missing.statusCode, 400);
  assert.equal(missing.code, "parameter_missing");
  assert.equal(missing.param, "customer");

  const noCustomer = await stripeError(t.stripe.invoices.create({ customer: "cus_nope0000000" }));
  assert.equal(noCustomer.statusCode, 400);
  assert.equal(noCustomer.code, "resource_missing");
  assert.equal(noCustomer.param, "customer");

  const c = await t.customer({});
  const badExpand = await stripeError(t.stripe.customers.retrieve(c.id, { expand: ["name"] }));
  assert.equal(badExpand.statusCode, 400);

  const host = t.emu ? { host: "127.0.0.1", port: t.emu.port, protocol: "http" as const } : {};
  const badKey = createStripe({ secretKey: "not_a_key_wrongwrongwrong", ...host });
  const auth = await stripeError(badKey.customers.list());
  assert.equal(auth.statusCode, 401);
  assert.equal(auth.type, "StripeAuthenticationError");
  assert.ok(!auth.message.includes("wrongwrongwrong"), "the key must not be echoed");
});

contractTest("conventions: headers, expand[] on objects and lists", async (t) => {
  const c = await t.stripe.customers.create({ name: "expand-me" });
  t.cleanup.customers.push(c.id);
  assert.ok(c.lastResponse.requestId.startsWith("req_"));
  assert.equal(c.lastResponse.apiVersion, STRIPE_API_VERSION);
  const key = `ct-${crypto.randomUUID()}`;
  const inv = await t.stripe.invoices.create({ customer: c.id }, { idempotencyKey: key });
  t.cleanup.invoices.push(inv.id);
  assert.equal(inv.lastResponse.idempotencyKey, key);

  const expanded = await t.stripe.invoices.retrieve(inv.id, { expand: ["customer"] });
  assert.equal(typeof expanded.customer, "object");
  assert.equal((expanded.customer as Stripe.Customer).name, "expand-me");
  const listed = await t.stripe.invoices.list({ customer: c.id, expand: ["data.customer"] });
  assert.equal((listed.data[0].customer as Stripe.Customer).id, c.id);

  const inv2 = await t.invoice({ customer: (await t.customer({})).id });
  assert.equal(typeof inv2.customer, "string");

  // An invoice whose customer was deleted expands it to the deleted stub.
  await t.stripe.invoices.addLines(inv.id, { lines: [{ amount: 100 }] });
  await t.stripe.invoices.finalizeInvoice(inv.id);
  await t.stripe.customers.del(c.id);
  const orphan = await t.stripe.invoices.retrieve(inv.id, { expand: ["customer"] });
  assert.deepEqual({ ...(orphan.customer as Stripe.DeletedCustomer) }, {
    id: c.id,
    object: "customer",
    deleted: true,
  });
});

// ---------------------------------------------------------------------------------------------
// Idempotency

contractTest("idempotency: replay, different params, validation errors not saved", async (t) => {
  const key = `ct-${crypto.randomUUID()}`;
  const first = await t.stripe.customers.create({ name: "idem" }, { idempotencyKey: key });
  t.cleanup.customers.push(first.id);
  assert.equal(responseHeader(first, "idempotent-replayed"), null);
  const replay = await t.stripe.customers.create({ name: "idem" }, { idempotencyKey: key });
  assert.equal(replay.id, first.id);
  assert.equal(responseHeader(replay, "idempotent-replayed"), "true");

  const mismatch = await stripeError(
    t.stripe.customers.create({ name: "other" }, { idempotencyKey: key }),
  );
  assert.equal(mismatch.statusCode, 400);
  assert.equal(mismatch.rawType, "idempotency_error");
  assert.equal(mismatch.type, "StripeIdempotencyError");

  // A parameter-validation failure is not saved: the key can then be used for a real request.
  const key2 = `ct-${crypto.randomUUID()}`;
  const bad = await stripeError(
    t.stripe.customers.create({ bogus: 1 } as Stripe.CustomerCreateParams, {
      idempotencyKey: key2,
    }),
  );
  assert.equal(bad.code, "parameter_unknown");
  const ok = await t.stripe.customers.create({ name: "after" }, { idempotencyKey: key2 });
  t.cleanup.customers.push(ok.id);
  assert.equal(ok.name, "after");
  assert.equal(responseHeader(ok, "idempotent-replayed"), null);
});

contractTest("idempotency: a state error (execution began) is saved and replayed", async (t) => {
  const c = await t.customer({});
  const inv = await t.invoice({ customer: c.id });
  await t.stripe.invoices.finalizeInvoice(inv.id); // $0 -> paid
  const key = `ct-${crypto.randomUUID()}`;
  const e1 = await stripeError(t.stripe.invoices.pay(inv.id, {}, { idempotencyKey: key }));
  const e2 = await stripeError(t.stripe.invoices.pay(inv.id, {}, { idempotencyKey: key }));
  assert.equal(e1.statusCode, 400);
  assert.equal(e2.message, e1.message);
  assert.equal(responseHeader(e2, "idempotent-replayed"), "true");
});

// ---------------------------------------------------------------------------------------------
// Invoices

contractTest("invoices: a fresh draft has the documented shape", async (t) => {
  const c = await t.customer({ name: "shape", email: "shape@example.com" });
  const inv = await t.invoice({ customer: c.id, currency: "usd", metadata: { bill: "1" } });
  assert.match(inv.id, /^in_/);
  assert.equal(inv.object, "invoice");
  assert.equal(inv.status, "draft");
  assert.equal(inv.number, null);
  assert.equal(inv.hosted_invoice_url, null);
  assert.equal(inv.invoice_pdf, null);
  assert.equal(inv.effective_at, null);
  assert.equal(inv.auto_advance, false);
  assert.equal(inv.billing_reason, "manual");
  assert.equal(inv.collection_method, "charge_automatically");
  assert.equal(inv.amount_due, 0);
  assert.equal(inv.total, 0);
  assert.equal(inv.lines.object, "list");
  assert.deepEqual(inv.lines.data, []);
  assert.equal(inv.lines.url, `/v1/invoices/${inv.id}/lines`);
  assert.equal(inv.customer_name, "shape");
  assert.equal(inv.customer_email, "shape@example.com");
  assert.deepEqual(inv.status_transitions, {
    finalized_at: null,
    marked_uncollectible_at: null,
    paid_at: null,
    voided_at: null,
  });
  assert.deepEqual(inv.metadata, { bill: "1" });
  assert.equal(inv.parent, null);
});

contractTest("invoices: add, list, update and remove lines; totals follow", async (t) => {
  const c = await t.customer({});
  const inv = await t.invoice({ customer: c.id, currency: "usd" });
  const added = await t.stripe.invoices.addLines(inv.id, {
    lines: [
      { amount: 1500, description: "usage", metadata: { k: "v" } },
      {
        price_data: { currency: "usd", product_data: { name: "seat" }, unit_amount: 250 },
        quantity: 3,
        description: "seats",
      } as Stripe.InvoiceAddLinesParams.Line,
      { amount: -200, description: "credit" },
    ],
    invoice_metadata: { lines: "3" },
  });
  assert.equal(added.subtotal, 2050);
  assert.equal(added.total, 2050);
  assert.equal(added.amount_due, 2050);
  assert.equal(added.amount_remaining, 2050);
  assert.equal(added.metadata?.lines, "3");
  const lines = (await t.stripe.invoices.listLineItems(inv.id)).data;
  assert.equal(lines.length, 3);
  assert.deepEqual(lines.map((l) => l.amount), [1500, 750, -200]);
  for (const l of lines) {
    assert.match(l.id, /^il_/);
    assert.equal(l.object, "line_item");
    assert.equal(l.invoice, inv.id);
    assert.match(l.parent?.invoice_item_details?.invoice_item ?? "", /^ii_/);
  }
  assert.equal(lines[1].quantity, 3);
  assert.equal(lines[1].pricing?.unit_amount_decimal?.toString(), "250");

  const updated = await t.stripe.invoices.updateLines(inv.id, {
    lines: [{ id: lines[0].id, amount: 1000, metadata: { extra: "1" } }],
  });
  assert.equal(updated.total, 1550);
  const l0 = (await t.stripe.invoices.listLineItems(inv.id)).data[0];
  assert.deepEqual(l0.metadata, { k: "v", extra: "1" }, "line metadata is merged");

  const single = await t.stripe.invoices.updateLineItem(inv.id, lines[2].id, {
    description: "bigger credit",
    amount: -300,
  });
  assert.equal(single.object, "line_item");
  assert.equal(single.amount, -300);

  const removed = await t.stripe.invoices.removeLines(inv.id, {
    lines: [
      { id: lines[1].id, behavior: "delete" },
      { id: lines[2].id, behavior: "unassign" },
    ],
  });
  assert.equal(removed.total, 1000);
  const pending = await t.stripe.invoiceItems.list({ customer: c.id, pending: true });
  assert.deepEqual(
    pending.data.map((i) => i.id),
    [lines[2].parent!.invoice_item_details!.invoice_item],
  );
  const deletedItem = lines[1].parent!.invoice_item_details!.invoice_item;
  const err = await stripeError(t.stripe.invoiceItems.retrieve(deletedItem));
  assert.equal(err.statusCode, 404);

  // The unassigned item can be added back by its ii_ id (a line id is not accepted).
  const readded = await t.stripe.invoices.addLines(inv.id, {
    lines: [{ invoice_item: lines[2].parent!.invoice_item_details!.invoice_item }],
  });
  assert.equal(readded.total, 700);
  const wrong = await stripeError(
    t.stripe.invoices.addLines(inv.id, { lines: [{ invoice_item: lines[0].id }] }),
  );
  assert.equal(wrong.statusCode, 400);
});

// ---------------------------------------------------------------------------------------------
// Decimal quantities and prices (values chosen so no product ends in exactly half a cent: real
// Stripe's tie rounding is not pinned; knobs_test.ts covers the emulator's tie rule).

const dec = (v: string) => Stripe.Decimal.from(v);

contractTest("lines: quantity_decimal × unit_amount_decimal, rounded to the cent", async (t) => {
  const c = await t.customer({});
  const product = await t.product({ name: `usage ${t.tag}` });
  const inv = await t.invoice({ customer: c.id, currency: "usd" });
  const added = await t.stripe.invoices.addLines(inv.id, {
    lines: [{
      price_data: { currency: "usd", product: product.id, unit_amount_decimal: dec("14.2") },
      quantity_decimal: dec("100.25"),
      description: "100.25 h",
    }],
  });
  // 100.25 × 14.2¢ = 1423.55¢ -> 1424¢
  assert.equal(added.total, 1424);
  const [line] = (await t.stripe.invoices.listLineItems(inv.id)).data;
  assert.equal(line.amount, 1424);
  assert.equal(line.quantity, 100, "quantity is the truncated integer");
  assert.equal(String(line.quantity_decimal), "100.25");
  assert.equal(String(line.pricing?.unit_amount_decimal), "14.2");
  assert.equal(line.pricing?.price_details?.product, product.id);

  // update_lines: 0.5 × 14.2¢ = 7.1¢ -> 7¢
  const updated = await t.stripe.invoices.updateLines(inv.id, {
    lines: [{ id: line.id, quantity_decimal: dec("0.5") }],
  });
  assert.equal(updated.total, 7);
  // single line: 3.333 × 14.2¢ = 47.3286¢ -> 47¢, quantity 3
  const single = await t.stripe.invoices.updateLineItem(inv.id, line.id, {
    quantity_decimal: dec("3.333"),
  });
  assert.equal(single.amount, 47);
  assert.equal(single.quantity, 3);
  assert.equal(String(single.quantity_decimal), "3.333");

  // invoice items: 1000.4 × 0.0125¢ = 12.505¢ -> 13¢
  const item = await t.stripe.invoiceItems.create({
    customer: c.id,
    invoice: inv.id,
    currency: "usd",
    unit_amount_decimal: dec("0.0125"),
    quantity_decimal: dec("1000.4"),
  });
  assert.equal(item.amount, 13);
  assert.equal(item.quantity, 1000);
  assert.equal(String(item.quantity_decimal), "1000.4");
  assert.equal(String(item.pricing?.unit_amount_decimal), "0.0125");
  // 2.75 × 0.0125¢ = 0.034375¢ -> 0¢
  const smaller = await t.stripe.invoiceItems.update(item.id, { quantity_decimal: dec("2.75") });
  assert.equal(smaller.amount, 0);
  assert.equal((await t.stripe.invoices.retrieve(inv.id)).total, 47);

  // quantity and quantity_decimal together are refused; nothing is added.
  const both = await stripeError(
    t.stripe.invoices.addLines(inv.id, {
      lines: [{
        price_data: { currency: "usd", product: product.id, unit_amount: 10 },
        quantity: 2,
        quantity_decimal: dec("2"),
      }],
    }),
  );
  assert.equal(both.statusCode, 400);
  assert.equal(both.rawType, "invalid_request_error");
  assert.equal((await t.stripe.invoices.retrieve(inv.id)).lines.data.length, 2);
});

// ---------------------------------------------------------------------------------------------
// Products

contractTest("products: create (idempotent), retrieve, list by ids, update", async (t) => {
  const key = `k-${t.tag}`;
  const p = await t.product({ name: `Usage ${t.tag}`, metadata: { tag: t.tag } }, {
    idempotencyKey: key,
  });
  assert.match(p.id, /^prod_/);
  assert.equal(p.object, "product");
  assert.equal(p.name, `Usage ${t.tag}`);
  assert.equal(p.active, true);
  assert.equal(p.livemode, false);
  assert.deepEqual(p.metadata, { tag: t.tag });
  const replay = await t.product({ name: `Usage ${t.tag}`, metadata: { tag: t.tag } }, {
    idempotencyKey: key,
  });
  assert.equal(replay.id, p.id);
  assert.equal(responseHeader(replay, "idempotent-replayed"), "true");

  const got = await t.stripe.products.retrieve(p.id);
  assert.equal(got.name, p.name);
  const other = await t.product({ name: `Other ${t.tag}` });
  const listed = await t.stripe.products.list({ ids: [p.id, other.id], limit: 10 });
  assert.deepEqual(listed.data.map((x) => x.id).sort(), [p.id, other.id].sort());

  const renamed = await t.stripe.products.update(p.id, { name: `Renamed ${t.tag}` });
  assert.equal(renamed.name, `Renamed ${t.tag}`);
  const missing = await stripeError(t.stripe.products.retrieve("prod_doesnotexist000"));
  assert.equal(missing.statusCode, 404);
  assert.equal(missing.code, "resource_missing");
});

contractTest("products: price_data.product must name an existing product", async (t) => {
  const c = await t.customer({});
  const inv = await t.invoice({ customer: c.id, currency: "usd" });
  const err = await stripeError(
    t.stripe.invoices.addLines(inv.id, {
      lines: [{
        price_data: { currency: "usd", product: "prod_doesnotexist000", unit_amount: 100 },
        quantity: 1,
      }],
    }),
  );
  assert.equal(err.statusCode, 400);
  assert.equal(err.code, "resource_missing");
  assert.equal(err.param, "lines[0][price_data][product]");
  assert.equal((await t.stripe.invoices.retrieve(inv.id)).total, 0);
});

contractTest("invoices: lines paginate in both directions", async (t) => {
  const c = await t.customer({});
  const inv = await t.invoice({ customer: c.id, currency: "usd" });
  await t.stripe.invoices.addLines(inv.id, {
    lines: Array.from({ length: 12 }, (_, i) => ({ amount: 100 + i, description: `l${i}` })),
  });
  const got = await t.stripe.invoices.retrieve(inv.id);
  assert.equal(got.lines.data.length, 10, "the first 10 lines are embedded");
  assert.equal(got.lines.has_more, true);
  assert.equal(got.total, 12 * 100 + 66);
  const all = await t.stripe.invoices.listLineItems(inv.id, { limit: 5 }).autoPagingToArray({
    limit: 100,
  });
  assert.deepEqual(all.map((l) => l.amount), Array.from({ length: 12 }, (_, i) => 100 + i));
  const p2 = await t.stripe.invoices.listLineItems(inv.id, { limit: 5, starting_after: all[4].id });
  assert.deepEqual(p2.data.map((l) => l.id), all.slice(5, 10).map((l) => l.id));
  const back = await t.stripe.invoices.listLineItems(inv.id, {
    limit: 5,
    ending_before: all[10].id,
  });
  assert.deepEqual(back.data.map((l) => l.id), all.slice(5, 10).map((l) => l.id));
  assert.equal(back.has_more, true);
});

contractTest(
  "invoices: finalize assigns number and URLs; finalized invoices are frozen",
  async (t) => {
    const c = await t.customer({ name: "final" });
    const inv = await t.invoice({ customer: c.id, currency: "usd" });
    await t.stripe.invoices.addLines(inv.id, { lines: [{ amount: 1234 }] });
    const fin = await t.stripe.invoices.finalizeInvoice(inv.id);
    assert.equal(fin.status, "open");
    assert.ok(fin.number);
    assert.ok(fin.hosted_invoice_url?.startsWith("https://"));
    assert.ok(fin.invoice_pdf?.startsWith("https://"));
    assert.ok(fin.status_transitions.finalized_at);
    assert.equal(fin.effective_at, fin.status_transitions.finalized_at);
    assert.equal(fin.amount_due, 1234);

    const lineEdit = await stripeError(
      t.stripe.invoices.addLines(inv.id, { lines: [{ amount: 1 }] }),
    );
    assert.equal(lineEdit.statusCode, 400);
    assert.equal(lineEdit.code, "invoice_not_editable");
    const lineId = fin.lines.data[0].id;
    const upd = await stripeError(
      t.stripe.invoices.updateLines(inv.id, { lines: [{ id: lineId, amount: 5 }] }),
    );
    assert.equal(upd.code, "invoice_not_editable");
    const rem = await stripeError(
      t.stripe.invoices.removeLines(inv.id, { lines: [{ id: lineId, behavior: "delete" }] }),
    );
    assert.equal(rem.code, "invoice_not_editable");

    const meta = await t.stripe.invoices.update(inv.id, { metadata: { after: "final" } });
    assert.equal(meta.metadata?.after, "final");
    const method = await stripeError(
      t.stripe.invoices.update(inv.id, { collection_method: "send_invoice", days_until_due: 3 }),
    );
    assert.equal(method.statusCode, 400);

    assert.equal((await stripeError(t.stripe.invoices.finalizeInvoice(inv.id))).statusCode, 400);
    assert.equal((await stripeError(t.stripe.invoices.del(inv.id))).statusCode, 400);
  },
);

contractTest("invoices: status transitions (void, uncollectible, pay out of band)", async (t) => {
  const c = await t.customer({});
  const make = async () => {
    const inv = await t.invoice({ customer: c.id, currency: "usd" });
    await t.stripe.invoices.addLines(inv.id, { lines: [{ amount: 500 }] });
    return inv;
  };
  const draft = await make();
  assert.equal((await stripeError(t.stripe.invoices.voidInvoice(draft.id))).statusCode, 400);
  assert.equal((await stripeError(t.stripe.invoices.markUncollectible(draft.id))).statusCode, 400);

  const open = await make();
  await t.stripe.invoices.finalizeInvoice(open.id);
  const voided = await t.stripe.invoices.voidInvoice(open.id);
  assert.equal(voided.status, "void");
  assert.ok(voided.status_transitions.voided_at);
  assert.equal((await stripeError(t.stripe.invoices.voidInvoice(open.id))).statusCode, 400);
  assert.equal((await stripeError(t.stripe.invoices.pay(open.id))).statusCode, 400);

  const unc = await make();
  await t.stripe.invoices.finalizeInvoice(unc.id);
  const marked = await t.stripe.invoices.markUncollectible(unc.id);
  assert.equal(marked.status, "uncollectible");
  assert.ok(marked.status_transitions.marked_uncollectible_at);
  const paid = await t.stripe.invoices.pay(unc.id, { paid_out_of_band: true });
  assert.equal(paid.status, "paid");
  assert.equal(paid.amount_remaining, 0);
  assert.ok(paid.status_transitions.paid_at);
  const again = await stripeError(t.stripe.invoices.pay(unc.id, { paid_out_of_band: true }));
  assert.equal(again.statusCode, 400);
  assert.equal(again.message, "Invoice is already paid");
  assert.equal((await stripeError(t.stripe.invoices.voidInvoice(unc.id))).statusCode, 400);

  const unc2 = await make();
  await t.stripe.invoices.finalizeInvoice(unc2.id);
  await t.stripe.invoices.markUncollectible(unc2.id);
  assert.equal((await t.stripe.invoices.voidInvoice(unc2.id)).status, "void");
});

contractTest("invoices: zero and negative totals finalize straight to paid", async (t) => {
  const c = await t.customer({});
  const zero = await t.invoice({ customer: c.id, currency: "usd" });
  const fin = await t.stripe.invoices.finalizeInvoice(zero.id);
  assert.equal(fin.status, "paid");
  assert.equal(fin.amount_due, 0);
  const err = await stripeError(t.stripe.invoices.pay(zero.id));
  assert.equal(err.message, "Invoice is already paid");

  const negative = await t.invoice({ customer: c.id, currency: "usd" });
  const withLines = await t.stripe.invoices.addLines(negative.id, {
    lines: [{ amount: 100 }, { amount: -400 }],
  });
  assert.equal(withLines.total, -300);
  assert.equal(withLines.amount_due, 0);
  assert.equal((await t.stripe.invoices.finalizeInvoice(negative.id)).status, "paid");
});

contractTest("invoices: delete drafts only; a deleted invoice is a 404", async (t) => {
  const c = await t.customer({});
  const inv = await t.invoice({ customer: c.id });
  const del = await t.stripe.invoices.del(inv.id);
  assert.deepEqual({ ...del }, { id: inv.id, object: "invoice", deleted: true });
  const err = await stripeError(t.stripe.invoices.retrieve(inv.id));
  assert.equal(err.statusCode, 404);
  assert.equal(err.code, "resource_missing");
  assert.equal(err.param, "id");
  assert.equal(err.message, `No such invoice: '${inv.id}'`);
  assert.equal((await stripeError(t.stripe.invoices.del(inv.id))).statusCode, 404);
});

contractTest(
  "invoices: list by customer / status / collection_method, both directions",
  async (t) => {
    const c = await t.customer({});
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push((await t.invoice({ customer: c.id, currency: "usd" })).id);
    await t.stripe.invoices.addLines(ids[1], { lines: [{ amount: 100 }] });
    await t.stripe.invoices.finalizeInvoice(ids[1]);
    const sendInv = await t.invoice({
      customer: c.id,
      currency: "usd",
      collection_method: "send_invoice",
      days_until_due: 30,
    });

    const all = (await t.stripe.invoices.list({ customer: c.id, limit: 100 })).data.map((i) =>
      i.id
    );
    assert.equal(all.length, 5);
    if (t.name === "emulator") assert.deepEqual(all, [sendInv.id, ...[...ids].reverse()]);
    const open = await t.stripe.invoices.list({ customer: c.id, status: "open" });
    assert.deepEqual(open.data.map((i) => i.id), [ids[1]]);
    const drafts = await t.stripe.invoices.list({ customer: c.id, status: "draft", limit: 100 });
    assert.equal(drafts.data.length, 4);
    const send = await t.stripe.invoices.list({
      customer: c.id,
      collection_method: "send_invoice",
    });
    assert.deepEqual(send.data.map((i) => i.id), [sendInv.id]);
    assert.equal(sendInv.due_date !== null, true);

    const p = await t.stripe.invoices.list({ customer: c.id, limit: 2, starting_after: all[1] });
    assert.deepEqual(p.data.map((i) => i.id), all.slice(2, 4));
    const b = await t.stripe.invoices.list({ customer: c.id, limit: 2, ending_before: all[3] });
    assert.deepEqual(b.data.map((i) => i.id), all.slice(1, 3));
    assert.equal(b.has_more, true);
    const back = await t.stripe.invoices.list({ customer: c.id, limit: 2, ending_before: all[4] })
      .autoPagingToArray({ limit: 100 });
    assert.deepEqual(back.map((i) => i.id), all.slice(0, 4).reverse());
    const unknown = await stripeError(
      t.stripe.invoices.list({ metadata: { a: "b" } } as Stripe.InvoiceListParams),
    );
    assert.equal(unknown.code, "parameter_unknown");
  },
);

contractTest("invoices: a due_date in the past is refused on create and update", async (t) => {
  const c = await t.customer({});
  const now = Math.floor(Date.now() / 1000);
  const past = await stripeError(
    t.stripe.invoices.create({
      customer: c.id,
      currency: "usd",
      collection_method: "send_invoice",
      due_date: now - 3600,
    }),
  );
  assert.equal(past.statusCode, 400);
  assert.equal(past.rawType, "invalid_request_error");
  assert.equal(past.param, "due_date");
  assert.match(past.message, /future/);

  const inv = await t.invoice({
    customer: c.id,
    currency: "usd",
    collection_method: "send_invoice",
    due_date: now + 7 * 86_400,
  });
  assert.equal(inv.due_date, now + 7 * 86_400);
  const stale = await stripeError(t.stripe.invoices.update(inv.id, { due_date: now - 86_400 }));
  assert.equal(stale.statusCode, 400);
  assert.equal(stale.param, "due_date");
  assert.match(stale.message, /future/);
  // Nothing was written.
  assert.equal((await t.stripe.invoices.retrieve(inv.id)).due_date, now + 7 * 86_400);
  const later = await t.stripe.invoices.update(inv.id, { due_date: now + 14 * 86_400 });
  assert.equal(later.due_date, now + 14 * 86_400);
});

contractTest("invoices: search by metadata, customer, status, total", async (t) => {
  const c = await t.customer({});
  const a = await t.invoice({ customer: c.id, currency: "usd", metadata: { tag: t.tag, n: "1" } });
  await t.stripe.invoices.addLines(a.id, { lines: [{ amount: 5000 }] });
  const b = await t.invoice({ customer: c.id, currency: "usd", metadata: { tag: t.tag, n: "2" } });
  const found = await t.eventually(
    () => t.stripe.invoices.search({ query: `metadata["tag"]:"${t.tag}"` }),
    (r) => r.data.length === 2 && r.data.some((i) => i.total === 5000),
  );
  assert.deepEqual(found.data.map((i) => i.id).sort(), [a.id, b.id].sort());
  const big = await t.stripe.invoices.search({
    query: `customer:"${c.id}" AND total>1000 AND status:"draft"`,
  });
  assert.deepEqual(big.data.map((i) => i.id), [a.id]);
  const fin = await t.stripe.invoices.finalizeInvoice(a.id);
  const byNumber = await t.eventually(
    () => t.stripe.invoices.search({ query: `number:"${fin.number}"` }),
    (r) => r.data.length === 1,
  );
  assert.deepEqual(byNumber.data.map((i) => i.id), [a.id]);
  assert.equal(byNumber.data[0].status, "open");
  const notTwo = await t.stripe.invoices.search({
    query: `metadata["tag"]:"${t.tag}" AND -metadata["n"]:"2" AND currency:"usd"`,
  });
  assert.deepEqual(notTwo.data.map((i) => i.id), [a.id]);
});

contractTest("invoices: pay with the default card, and a declined card", async (t) => {
  const c = await t.customer({});
  const pm = await t.card(c.id);
  const updated = await t.stripe.customers.update(c.id, {
    invoice_settings: { default_payment_method: pm },
  });
  assert.equal(updated.invoice_settings.default_payment_method, pm);
  const inv = await t.invoice({ customer: c.id, currency: "usd" });
  await t.stripe.invoices.addLines(inv.id, { lines: [{ amount: 2000 }] });
  await t.stripe.invoices.finalizeInvoice(inv.id);
  const paid = await t.stripe.invoices.pay(inv.id);
  assert.equal(paid.status, "paid");
  assert.equal(paid.amount_paid, 2000);
  assert.equal(paid.amount_remaining, 0);

  const c2 = await t.customer({});
  const bad = await t.card(c2.id, true);
  const inv2 = await t.invoice({ customer: c2.id, currency: "usd" });
  await t.stripe.invoices.addLines(inv2.id, { lines: [{ amount: 2000 }] });
  await t.stripe.invoices.finalizeInvoice(inv2.id);
  const declined = await stripeError(t.stripe.invoices.pay(inv2.id, { payment_method: bad }));
  assert.equal(declined.statusCode, 402);
  assert.equal(declined.type, "StripeCardError");
  const after = await t.stripe.invoices.retrieve(inv2.id);
  assert.equal(after.status, "open");
  assert.equal(after.attempt_count, 1);
});

contractTest("invoices: send emits invoice.sent for send_invoice invoices", async (t) => {
  const c = await t.customer({ email: `${t.tag}@example.com` });
  const inv = await t.invoice({
    customer: c.id,
    currency: "usd",
    collection_method: "send_invoice",
    days_until_due: 7,
  });
  await t.stripe.invoices.addLines(inv.id, { lines: [{ amount: 300 }] });
  await t.stripe.invoices.finalizeInvoice(inv.id);
  const sent = await t.stripe.invoices.sendInvoice(inv.id);
  assert.equal(sent.status, "open");
  const events = await t.eventually(
    () => t.stripe.events.list({ type: "invoice.sent", limit: 20 }),
    (r) => r.data.some((e) => (e.data.object as Stripe.Invoice).id === inv.id),
  );
  assert.ok(events.data.some((e) => (e.data.object as Stripe.Invoice).id === inv.id));
});

// ---------------------------------------------------------------------------------------------
// Invoice items

contractTest(
  "invoice items: amount, unit_amount_decimal, price_data; attach, update, delete",
  async (t) => {
    const c = await t.customer({});
    const a = await t.stripe.invoiceItems.create({
      customer: c.id,
      amount: 700,
      currency: "usd",
      description: "flat",
      period: { start: 1_700_000_000, end: 1_700_086_400 },
    });
    assert.match(a.id, /^ii_/);
    assert.equal(a.object, "invoiceitem");
    assert.equal(a.invoice, null);
    assert.equal(a.amount, 700);
    assert.deepEqual(a.period, { start: 1_700_000_000, end: 1_700_086_400 });
    assert.equal(typeof a.date, "number");

    const b = await t.stripe.invoiceItems.create({
      customer: c.id,
      currency: "usd",
      unit_amount_decimal: "12.5" as unknown as Stripe.Decimal,
      quantity: 4,
    } as Stripe.InvoiceItemCreateParams);
    assert.equal(b.amount, 50);
    assert.equal(b.quantity, 4);

    const inv = await t.invoice({
      customer: c.id,
      currency: "usd",
      pending_invoice_items_behavior: "include",
    });
    assert.equal(inv.total, 750, "pending items are pulled in with include");

    const d = await t.stripe.invoiceItems.create({
      customer: c.id,
      invoice: inv.id,
      currency: "usd",
      unit_amount_decimal: "100" as unknown as Stripe.Decimal,
      quantity: 2,
    } as Stripe.InvoiceItemCreateParams);
    assert.equal(d.invoice, inv.id);
    assert.equal(d.amount, 200);
    assert.equal((await t.stripe.invoices.retrieve(inv.id)).total, 950);

    const upd = await t.stripe.invoiceItems.update(a.id, { amount: 900, metadata: { m: "1" } });
    assert.equal(upd.amount, 900);
    assert.equal((await t.stripe.invoices.retrieve(inv.id)).total, 1150);

    const byInvoice = await t.stripe.invoiceItems.list({ invoice: inv.id, limit: 100 });
    assert.equal(byInvoice.data.length, 3);
    const got = await t.stripe.invoiceItems.retrieve(d.id);
    assert.equal(got.amount, 200);

    const del = await t.stripe.invoiceItems.del(b.id);
    assert.deepEqual({ ...del }, { id: b.id, object: "invoiceitem", deleted: true });
    assert.equal((await t.stripe.invoices.retrieve(inv.id)).total, 1100);

    await t.stripe.invoices.finalizeInvoice(inv.id);
    const frozen = await stripeError(t.stripe.invoiceItems.update(a.id, { amount: 1 }));
    assert.equal(frozen.statusCode, 400);
  },
);

// ---------------------------------------------------------------------------------------------
// Setup intents, payment methods, events

contractTest("setup intents: create and retrieve", async (t) => {
  const c = await t.customer({});
  const si = await t.stripe.setupIntents.create({
    customer: c.id,
    usage: "off_session",
    metadata: { tenant: "acme" },
    automatic_payment_methods: { enabled: true },
  });
  assert.match(si.id, /^seti_/);
  assert.equal(si.object, "setup_intent");
  assert.equal(si.status, "requires_payment_method");
  assert.equal(si.customer, c.id);
  assert.equal(si.usage, "off_session");
  assert.deepEqual(si.metadata, { tenant: "acme" });
  assert.ok(si.client_secret?.startsWith(`${si.id}_secret_`));
  const got = await t.stripe.setupIntents.retrieve(si.id);
  assert.equal(got.id, si.id);
});

contractTest("payment methods: list, retrieve, default must be attached, detach", async (t) => {
  const c = await t.customer({});
  const other = await t.customer({});
  const pm = await t.card(c.id);
  const foreign = await t.card(other.id);
  const list = await t.stripe.customers.listPaymentMethods(c.id);
  assert.deepEqual(list.data.map((p) => p.id), [pm]);
  assert.equal(list.data[0].type, "card");
  assert.equal(list.data[0].customer, c.id);
  const got = await t.stripe.paymentMethods.retrieve(pm);
  assert.ok(got.card?.last4);
  const viaCustomer = await t.stripe.customers.retrievePaymentMethod(c.id, pm);
  assert.equal(viaCustomer.id, pm);

  const err = await stripeError(
    t.stripe.customers.update(c.id, { invoice_settings: { default_payment_method: foreign } }),
  );
  assert.equal(err.statusCode, 400);
  const ok = await t.stripe.customers.update(c.id, {
    invoice_settings: { default_payment_method: pm },
  });
  assert.equal(ok.invoice_settings.default_payment_method, pm);

  const detached = await t.stripe.paymentMethods.detach(pm);
  assert.equal(detached.customer, null);
  assert.equal((await t.stripe.customers.listPaymentMethods(c.id)).data.length, 0);
  const cust = await t.stripe.customers.retrieve(c.id) as Stripe.Customer;
  assert.equal(cust.invoice_settings.default_payment_method, null);
});

contractTest("events: list by type and retrieve one", async (t) => {
  const c = await t.customer({ metadata: { tag: t.tag } });
  await t.stripe.customers.update(c.id, { metadata: { more: "1" } });
  const created = await t.eventually(
    () => t.stripe.events.list({ type: "customer.created", limit: 20 }),
    (r) => r.data.some((e) => (e.data.object as Stripe.Customer).id === c.id),
  );
  const evt = created.data.find((e) => (e.data.object as Stripe.Customer).id === c.id)!;
  assert.match(evt.id, /^evt_/);
  assert.equal(evt.object, "event");
  assert.equal(evt.type, "customer.created");
  const got = await t.stripe.events.retrieve(evt.id);
  assert.equal(got.id, evt.id);
  const updated = await t.eventually(
    () => t.stripe.events.list({ type: "customer.updated", limit: 20 }),
    (r) => r.data.some((e) => (e.data.object as Stripe.Customer).id === c.id),
  );
  const upd = updated.data.find((e) => (e.data.object as Stripe.Customer).id === c.id)!;
  assert.deepEqual(upd.data.previous_attributes, { metadata: { more: null } });
});

// ---------------------------------------------------------------------------------------------
// Account

contractTest("account: retrieve(null) with no id is the key's own account", async (t) => {
  const account = await t.stripe.accounts.retrieve(null);
  assert.match(account.id, /^acct_/);
  assert.equal(account.object, "account");
  assert.equal(typeof account.charges_enabled, "boolean");
  const same = await t.stripe.accounts.retrieve(account.id);
  assert.equal(same.id, account.id);
  if (t.emu) assert.equal(account.id, t.emu.emulator.accountId);
});
