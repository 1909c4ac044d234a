// The stripe-webhook function, fed by the emulator's signed deliveries through the gateway:
// forged or missing signatures get 400 and write nothing; each event is stored once and applied
// once however often it is delivered; events delivered out of order leave the newest state;
// unfollowed types are acknowledged and not stored.
import assert from "node:assert/strict";
import { signPayload } from "../../../dev/stripe-emulator/webhooks.ts";
import { toUnixSeconds } from "../_shared/units.ts";
import {
  client,
  type Harness,
  HARNESS_TEST,
  invoke,
  makeManualBill,
  makeTenant,
  makeTenantAdmin,
  storedCustomer,
  withHarness,
} from "./billing_fixtures.ts";

interface Mirrored {
  status: string | null;
  deleted: boolean;
  amount_due: string | null;
  source: string;
  synced_at: Date;
}

async function mirrored(h: Harness, invoiceId: string): Promise<Mirrored | undefined> {
  const [row] = await h.sql<Mirrored[]>`
    select status, deleted, amount_due::text, source, synced_at
    from internal.stripe_invoice_state where stripe_invoice_id = ${invoiceId}`;
  return row;
}

async function storedEvents(h: Harness, ids: string[]) {
  return await h.sql<{ id: string; deliveries: number; outcome: string; applied_at: Date }[]>`
    select id, deliveries, outcome, applied_at from internal.stripe_events
    where id = any(${ids}::text[]) order by id`;
}

async function post(h: Harness, payload: string, signature: string | null) {
  const res = await fetch(`${h.gateway.url}/functions/v1/stripe-webhook`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      ...(signature === null ? {} : { "stripe-signature": signature }),
    },
    body: payload,
  });
  return { status: res.status, body: await res.json() };
}

/** An invoice event as Stripe would send it, for a given invoice. */
function invoiceEvent(id: string, type: string, invoice: Record<string, unknown>): string {
  return JSON.stringify(
    {
      id,
      object: "event",
      api_version: "2026-10-28.endive",
      created: toUnixSeconds(new Date()),
      livemode: false,
      pending_webhooks: 1,
      request: { id: null, idempotency_key: null },
      type,
      data: { object: { object: "invoice", ...invoice } },
    },
    null,
    2,
  );
}

const now = () => toUnixSeconds(new Date());

Deno.test({
  name: "forged, missing, stale or re-signed signatures get 400 and write nothing",
  ...HARNESS_TEST,
  fn: withHarness(async (h) => {
    const invoiceId = `in_forged${crypto.randomUUID().replaceAll("-", "").slice(0, 10)}`;
    const eventId = `evt_forged${crypto.randomUUID().replaceAll("-", "").slice(0, 10)}`;
    const payload = invoiceEvent(eventId, "invoice.paid", {
      id: invoiceId,
      status: "paid",
      amount_due: 0,
      customer: "cus_attacker",
    });
    const cases: [string, string | null][] = [
      ["no Stripe-Signature header", null],
      ["empty header", ""],
      ["garbage header", "t=abc,v1=zzz"],
      ["signed with another secret", await signPayload(payload, "whsec_not_ours", now())],
      [
        "signed for another body",
        await signPayload(payload.replace("paid", "open"), h.webhookSecret, now()),
      ],
      [
        "signed an hour ago (replayed capture)",
        await signPayload(payload, h.webhookSecret, now() - 3600),
      ],
      [
        "v0 scheme only",
        (await signPayload(payload, h.webhookSecret, now())).replace("v1=", "v0="),
      ],
    ];
    for (const [label, signature] of cases) {
      const res = await post(h, payload, signature);
      assert.equal(res.status, 400, label);
      assert.ok(["missing_signature", "invalid_signature"].includes(res.body.error.code), label);
      assert.ok(!JSON.stringify(res.body).includes(h.webhookSecret), `${label}: secret not echoed`);
    }
    // Re-serialized JSON fails too: the signature covers the raw bytes.
    const compact = JSON.stringify(JSON.parse(payload));
    const reSerialized = await post(h, compact, await signPayload(payload, h.webhookSecret, now()));
    assert.equal(reSerialized.status, 400, "re-serialized body");

    assert.equal((await storedEvents(h, [eventId])).length, 0, "no event was stored");
    assert.equal(await mirrored(h, invoiceId), undefined, "the mirror was not touched");

    // The same payload, properly signed, is accepted: the refusals were about the signature.
    const good = await post(h, payload, await signPayload(payload, h.webhookSecret, now()));
    assert.equal(good.status, 200);
    assert.equal(good.body.outcome, "applied");
    assert.equal((await mirrored(h, invoiceId))?.status, "paid");
  }),
});

Deno.test({
  name: "a replayed event is acknowledged and applied once",
  ...HARNESS_TEST,
  fn: withHarness(async (h) => {
    const tenant = await makeTenant(h.sql, "wr");
    const customer = await storedCustomer(h, tenant);
    const inv = await h.emu.control.createInvoice({
      customer,
      status: "open",
      collection_method: "send_invoice",
      days_until_due: 30,
      lines: [{ amount: 7_700 }],
    });
    await makeManualBill(h.sql, tenant, {
      cents: 7_700,
      start: "2031-01-01",
      end: "2031-02-01",
      invoiceId: inv.id as string,
    });
    await h.emu.control.flushWebhooks();
    const [finalized] = (await h.emu.control.events("invoice.finalized"))
      .filter((e) => e.data.object.id === inv.id);
    const [before] = await storedEvents(h, [finalized.id]);
    assert.equal(before.deliveries, 1);
    assert.equal(before.outcome, "applied");
    const mirrorBefore = (await mirrored(h, inv.id as string))!;
    assert.equal(mirrorBefore.status, "open");
    assert.equal(mirrorBefore.source, `webhook:${finalized.id}`);

    // Stripe redelivers (the emulator signs afresh each time), and a copy arrives directly.
    const redelivered = await h.emu.control.redeliverEvent(finalized.id);
    assert.equal(redelivered.ok, true);
    assert.equal(redelivered.status, 200);
    const payload = JSON.stringify(finalized, null, 2);
    const direct = await post(h, payload, await signPayload(payload, h.webhookSecret, now()));
    assert.equal(direct.status, 200);
    assert.equal(direct.body.outcome, "duplicate");

    const [after] = await storedEvents(h, [finalized.id]);
    assert.equal(after.deliveries, 3, "every delivery is counted");
    assert.equal(after.applied_at.getTime(), before.applied_at.getTime(), "applied once");
    const mirrorAfter = (await mirrored(h, inv.id as string))!;
    assert.equal(mirrorAfter.synced_at.getTime(), mirrorBefore.synced_at.getTime());
    const [{ n }] = await h.sql`select count(*)::int as n from internal.stripe_events
      where id = ${finalized.id}`;
    assert.equal(n, 1, "stored once");
  }),
});

Deno.test({
  name: "events delivered out of order leave the newest state",
  ...HARNESS_TEST,
  fn: withHarness(async (h) => {
    const tenant = await makeTenant(h.sql, "wo");
    const customer = await storedCustomer(h, tenant);
    await h.emu.control.flushWebhooks();
    await h.emu.control.pauseWebhooks();
    const pm = await h.emu.control.createPaymentMethod({ customer, default: true });

    // Two invoices: one whose transitions are seconds apart, one within the same second.
    const spaced = await h.emu.control.createInvoice({ customer, lines: [{ amount: 3_000 }] });
    await h.emu.control.advanceClock(5);
    await h.emu.control.finalizeInvoice(spaced.id as string);
    await h.emu.control.advanceClock(5);
    await h.emu.control.payInvoice(spaced.id as string, { payment_method: pm.id });
    const burst = await h.emu.control.createInvoice({
      customer,
      status: "void",
      lines: [{ amount: 1_000 }],
    });

    const events = (await h.emu.control.events())
      .filter((e) => [spaced.id, burst.id].includes(e.data?.object?.id));
    const followed = events.filter((e) => e.type.startsWith("invoice."));
    assert.ok(followed.length >= 5, `events: ${followed.map((e) => e.type)}`);
    const newestFirst = [...events].reverse().map((e) => e.id as string);
    const results = await h.emu.control.deliverEvents(newestFirst);
    assert.ok(results.every((r) => r.ok), JSON.stringify(results));
    await h.emu.control.resumeWebhooks();

    assert.equal((await mirrored(h, spaced.id as string))?.status, "paid");
    assert.equal((await mirrored(h, burst.id as string))?.status, "void");
    const outcomes = await h.sql<{ type: string; outcome: string }[]>`
      select type, outcome from internal.stripe_events
      where payload -> 'data' -> 'object' ->> 'id' = ${spaced.id as string}
      order by created`;
    const byType = Object.fromEntries(outcomes.map((o) => [o.type, o.outcome]));
    assert.equal(byType["invoice.paid"], "applied", JSON.stringify(byType));
    assert.equal(byType["invoice.finalized"], "stale", JSON.stringify(byType));
    assert.equal(byType["invoice.created"], "stale", JSON.stringify(byType));
    assert.equal(byType["invoice.payment_succeeded"], undefined, "unfollowed: not stored");
  }),
});

Deno.test({
  name: "voided, uncollectible, deleted invoices and deleted customers reach the mirror",
  ...HARNESS_TEST,
  fn: withHarness(async (h) => {
    const tenant = await makeTenant(h.sql, "wl");
    const customer = await storedCustomer(h, tenant);
    const voided = await h.emu.control.createInvoice({
      customer,
      status: "void",
      lines: [{ amount: 10 }],
    });
    const bad = await h.emu.control.createInvoice({
      customer,
      status: "uncollectible",
      lines: [{ amount: 20 }],
    });
    const draft = await h.emu.control.createInvoice({ customer, lines: [{ amount: 30 }] });
    await h.emu.control.deleteInvoice(draft.id as string);
    const leaving = await h.emu.control.createCustomer({ name: "leaving" });
    await h.emu.control.deleteCustomer(leaving.id as string);
    await h.emu.control.flushWebhooks();

    assert.equal((await mirrored(h, voided.id as string))?.status, "void");
    assert.equal((await mirrored(h, bad.id as string))?.status, "uncollectible");
    assert.equal((await mirrored(h, draft.id as string))?.deleted, true);
    const [gone] = await h.sql`select customer_id from internal.stripe_deleted_customers
      where customer_id = ${leaving.id as string}`;
    assert.ok(gone, "customer.deleted is recorded");

    // Unfollowed types (customer.created, payment_method.*, ...) were acknowledged, not stored.
    const deliveries = (await h.emu.control.webhooks()).deliveries;
    const unfollowed = deliveries.filter((d) =>
      !d.type.startsWith("invoice.") &&
      d.type !== "customer.deleted"
    );
    assert.ok(unfollowed.length > 0);
    assert.ok(unfollowed.every((d) => d.status === 200), JSON.stringify(unfollowed));
    assert.equal((await storedEvents(h, unfollowed.map((d) => d.eventId))).length, 0);
  }),
});

Deno.test({
  name: "a dashboard retrieve never outranks a webhook event that comes after it",
  ...HARNESS_TEST,
  fn: withHarness(async (h) => {
    const a = await makeTenantAdmin(h, "wt");
    const customer = await storedCustomer(h, a.tenant);
    const pm = await h.emu.control.createPaymentMethod({ customer, default: true });
    const inv = await h.emu.control.createInvoice({
      customer,
      status: "open",
      lines: [{ amount: 2_500 }],
    });
    const billId = await makeManualBill(h.sql, a.tenant, {
      cents: 2_500,
      start: "2031-03-01",
      end: "2031-04-01",
      invoiceId: inv.id as string,
    });
    await h.emu.control.flushWebhooks();
    await h.emu.control.pauseWebhooks();

    // The admin opens the invoice; then it is paid within the same Stripe second.
    const opened = await invoke(client(h, a.token), "billing", {
      operation: "get-tenant-invoice",
      tenant: a.tenant,
      bill_id: billId,
    });
    assert.equal((opened.body.invoice as { status: string }).status, "open");
    await h.emu.control.payInvoice(inv.id as string, { payment_method: pm.id });
    await h.emu.control.flushWebhooks();
    await h.emu.control.resumeWebhooks();

    const state = await mirrored(h, inv.id as string);
    assert.equal(state?.status, "paid", "the later event wins over the earlier retrieve");
  }),
});
