/**
 * The control API under `/_emulator/` (JSON in, JSON out). The SDK never calls it. See
 * README.md for the endpoint list; control.ts is the typed client.
 */
import type { Behaviour, Emulator } from "./emulator.ts";
import { DASHBOARD } from "./emulator.ts";
import { ApiError } from "./errors.ts";
import type { FaultSpec } from "./faults.ts";
import { formFromJson, type FormMap } from "./form.ts";
import type { JsonObject } from "./json.ts";
import { invoiceAmounts, renderCustomer, renderInvoice, renderInvoiceItem } from "./render.ts";
import { renderPaymentMethod, renderProduct, renderSetupIntent } from "./render.ts";
import {
  attachPaymentMethod,
  createCard,
  detachPaymentMethod,
  getPaymentMethod,
} from "./routes/payment_methods.ts";
import { getLiveCustomer } from "./routes/common.ts";
import type { WebhookConfig } from "./webhooks.ts";

export interface ControlReply {
  status: number;
  body: unknown;
}

class ControlError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

function obj(value: unknown): Record<string, unknown> {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return {};
  return value as Record<string, unknown>;
}

function num(value: unknown, name: string): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new ControlError(400, `${name} must be a number`);
  }
  return value;
}

function form(value: unknown): FormMap {
  const f = formFromJson(obj(value));
  return f as FormMap;
}

/** Creates an invoice "by hand": any metadata, any lines, then moved to the wanted status. */
function dashboardInvoice(emu: Emulator, input: Record<string, unknown>): JsonObject {
  const { status = "draft", lines, ...params } = input;
  const created = emu.invoke("POST", "/v1/invoices", form(params));
  const id = created.id as string;
  if (Array.isArray(lines) && lines.length > 0) {
    emu.invoke("POST", `/v1/invoices/${id}/add_lines`, form({ lines }));
  }
  const act = (action: string, p: Record<string, unknown> = {}) =>
    emu.invoke("POST", `/v1/invoices/${id}/${action}`, form(p));
  switch (status) {
    case "draft":
      break;
    case "open":
      act("finalize");
      break;
    case "paid": {
      const inv = act("finalize");
      if (inv.status !== "paid") act("pay", { paid_out_of_band: true });
      break;
    }
    case "void":
      act("finalize");
      act("void");
      break;
    case "uncollectible":
      act("finalize");
      act("mark_uncollectible");
      break;
    default:
      throw new ControlError(400, `unknown status ${String(status)}`);
  }
  return emu.invoke("GET", `/v1/invoices/${id}`, form({}));
}

function stateDump(emu: Emulator): JsonObject {
  const s = emu.store;
  return {
    customers: [...s.customers.values()].map((c) => ({
      ...renderCustomer(c, true),
      deleted: c.deleted,
    })),
    invoices: [...s.invoices.values()].map((inv) => ({
      ...renderInvoice(emu, inv, true),
      // Full line list, not only the embedded first page.
      line_ids: inv.items.map((id) => s.items.get(id)!.lineId),
      amount_due_computed: invoiceAmounts(emu, inv).amountDue,
      deleted: inv.deleted,
    })),
    invoice_items: [...s.items.values()].map((i) => ({
      ...renderInvoiceItem(i, true),
      deleted: i.deleted,
    })),
    payment_methods: [...s.paymentMethods.values()].map(renderPaymentMethod),
    setup_intents: [...s.setupIntents.values()].map(renderSetupIntent),
    products: [...s.products.values()].map((p) => ({ ...renderProduct(p), origin: p.origin })),
    product_count: s.products.size,
    event_count: s.events.size,
  };
}

type Handler = (
  emu: Emulator,
  body: Record<string, unknown>,
  params: Record<string, string>,
  query: URLSearchParams,
) => unknown | Promise<unknown>;

const routes: [string, string, Handler][] = [
  ["GET", "/_emulator/health", () => ({ ok: true })],
  ["POST", "/_emulator/reset", (emu) => {
    emu.reset();
    return { ok: true };
  }],
  ["GET", "/_emulator/config", (emu) => ({
    account_id: emu.accountId,
    latency: emu.faults.latency,
    rate_limits: emu.faults.rateLimits,
    search: emu.searchKnobs,
    idempotency: { ttlSeconds: emu.idempotency.ttlSeconds },
    behaviour: emu.behaviour,
    webhooks: emu.webhooks.publicConfig(),
    clock: { now: emu.clock.nowSeconds(), offsetSeconds: emu.clock.offsetSeconds() },
  })],
  ["POST", "/_emulator/latency", (emu, b) =>
    emu.faults.setLatency({
      fixedMs: num(b.fixedMs, "fixedMs"),
      minMs: num(b.minMs, "minMs"),
      maxMs: num(b.maxMs, "maxMs"),
    })],
  ["POST", "/_emulator/rate_limits", (emu, b) => {
    const patch: Record<string, number | null> = {};
    for (const k of ["globalPerSecond", "searchPerSecond", "endpointPerSecond", "burstSeconds"]) {
      if (k in b) patch[k] = b[k] === null ? null : num(b[k], k)!;
    }
    return emu.faults.setRateLimits(patch);
  }],
  ["POST", "/_emulator/search", (emu, b) => {
    const lag = num(b.lagSeconds, "lagSeconds");
    const drop = num(b.dropProbability, "dropProbability");
    if (lag !== undefined) emu.searchKnobs.lagSeconds = Math.max(0, lag);
    if (drop !== undefined) emu.searchKnobs.dropProbability = Math.min(1, Math.max(0, drop));
    return emu.searchKnobs;
  }],
  ["POST", "/_emulator/idempotency", (emu, b) => {
    const ttl = num(b.ttlSeconds, "ttlSeconds");
    if (ttl !== undefined) emu.idempotency.ttlSeconds = ttl;
    return { ttlSeconds: emu.idempotency.ttlSeconds };
  }],
  ["POST", "/_emulator/behaviour", (emu, b) => {
    emu.behaviour = { ...emu.behaviour, ...(b as Partial<Behaviour>) };
    return emu.behaviour;
  }],
  ["GET", "/_emulator/faults", (emu) => emu.faults.list()],
  ["POST", "/_emulator/faults", (emu, b) => {
    try {
      return emu.faults.add(b as unknown as FaultSpec);
    } catch (e) {
      throw new ControlError(400, (e as Error).message);
    }
  }],
  ["DELETE", "/_emulator/faults", (emu) => {
    emu.faults.clearFaults();
    return { ok: true };
  }],
  ["DELETE", "/_emulator/faults/:id", (emu, _b, p) => ({ removed: emu.faults.remove(p.id) })],
  ["GET", "/_emulator/clock", (emu) => ({
    now: emu.clock.nowSeconds(),
    offsetSeconds: emu.clock.offsetSeconds(),
  })],
  ["POST", "/_emulator/clock/advance", (emu, b) => {
    emu.clock.advance(num(b.seconds, "seconds") ?? 0);
    return { now: emu.clock.nowSeconds(), offsetSeconds: emu.clock.offsetSeconds() };
  }],
  ["GET", "/_emulator/calls", (emu, _b, _p, q) => emu.calls.list(Number(q.get("since") ?? 0))],
  ["GET", "/_emulator/calls/summary", (emu) => emu.calls.summary()],
  ["DELETE", "/_emulator/calls", (emu) => {
    emu.calls.reset();
    return { ok: true };
  }],
  ["GET", "/_emulator/state", (emu) => stateDump(emu)],
  ["GET", "/_emulator/events", (emu, _b, _p, q) => {
    const type = q.get("type");
    return [...emu.store.events.values()]
      .filter((e) => !type || e.type === type)
      .map((e) => e.body);
  }],
  ["GET", "/_emulator/webhooks", (emu) => ({
    config: emu.webhooks.publicConfig(),
    pending: emu.webhooks.pending(),
    deliveries: emu.webhooks.deliveries,
  })],
  ["POST", "/_emulator/webhooks", (emu, b) => emu.webhooks.configure(b as Partial<WebhookConfig>)],
  ["POST", "/_emulator/webhooks/pause", (emu) => emu.webhooks.configure({ autoDeliver: false })],
  ["POST", "/_emulator/webhooks/resume", (emu) => emu.webhooks.configure({ autoDeliver: true })],
  ["POST", "/_emulator/webhooks/flush", async (emu) => {
    await emu.webhooks.flush();
    return { pending: emu.webhooks.pending() };
  }],
  ["POST", "/_emulator/webhooks/deliver", (emu, b) => {
    const ids = b.eventIds;
    if (!Array.isArray(ids) || ids.some((x) => typeof x !== "string")) {
      throw new ControlError(400, "eventIds must be an array of event ids");
    }
    return emu.webhooks.deliver(ids as string[], b.dequeue !== false);
  }],
  // "By hand" changes, as a person in the Stripe dashboard would make them.
  [
    "POST",
    "/_emulator/dashboard/customers",
    (emu, b) => emu.invoke("POST", "/v1/customers", form(b)),
  ],
  [
    "POST",
    "/_emulator/dashboard/customers/:id",
    (emu, b, p) => emu.invoke("POST", `/v1/customers/${p.id}`, form(b)),
  ],
  [
    "DELETE",
    "/_emulator/dashboard/customers/:id",
    (emu, _b, p) => emu.invoke("DELETE", `/v1/customers/${p.id}`, form({})),
  ],
  ["POST", "/_emulator/dashboard/customers/:id/default_payment_method", (emu, b, p) =>
    emu.invoke(
      "POST",
      `/v1/customers/${p.id}`,
      form({ invoice_settings: { default_payment_method: b.payment_method ?? null } }),
    )],
  ["POST", "/_emulator/dashboard/payment_methods", (emu, b) => {
    const customer = typeof b.customer === "string" ? b.customer : undefined;
    const c = customer ? getLiveCustomer(emu, customer, "customer") : undefined;
    const pm = createCard(emu, {
      brand: b.brand as string | undefined,
      last4: b.last4 as string | undefined,
      exp_month: num(b.exp_month, "exp_month"),
      exp_year: num(b.exp_year, "exp_year"),
      funding: b.funding as string | undefined,
      country: b.country as string | undefined,
      declines: b.declines === true,
      metadata: obj(b.metadata) as Record<string, string>,
    });
    if (c) attachPaymentMethod(emu, pm, c, DASHBOARD);
    if (c && b.default === true) {
      emu.invoke(
        "POST",
        `/v1/customers/${c.id}`,
        form({ invoice_settings: { default_payment_method: pm.id } }),
      );
    }
    return renderPaymentMethod(pm);
  }],
  [
    "POST",
    "/_emulator/dashboard/payment_methods/:id/attach",
    (emu, b, p) => emu.invoke("POST", `/v1/payment_methods/${p.id}/attach`, form(b)),
  ],
  ["POST", "/_emulator/dashboard/payment_methods/:id/detach", (emu, _b, p) => {
    const pm = getPaymentMethod(emu, p.id);
    detachPaymentMethod(emu, pm, DASHBOARD);
    return renderPaymentMethod(pm);
  }],
  ["POST", "/_emulator/dashboard/invoices", (emu, b) => dashboardInvoice(emu, b)],
  [
    "POST",
    "/_emulator/dashboard/invoices/:id",
    (emu, b, p) => emu.invoke("POST", `/v1/invoices/${p.id}`, form(b)),
  ],
  [
    "DELETE",
    "/_emulator/dashboard/invoices/:id",
    (emu, _b, p) => emu.invoke("DELETE", `/v1/invoices/${p.id}`, form({})),
  ],
  [
    "POST",
    "/_emulator/dashboard/invoices/:id/lines",
    (emu, b, p) => emu.invoke("POST", `/v1/invoices/${p.id}/add_lines`, form(b)),
  ],
  ["POST", "/_emulator/dashboard/invoices/:id/:action", (emu, b, p) => {
    const actions = ["finalize", "void", "pay", "mark_uncollectible", "send"];
    if (!actions.includes(p.action)) throw new ControlError(404, `unknown action ${p.action}`);
    // A person marking an invoice paid in the dashboard records an out-of-band payment.
    const body = p.action === "pay" && !("paid_out_of_band" in b) && !("payment_method" in b)
      ? { ...b, paid_out_of_band: true }
      : b;
    return emu.invoke("POST", `/v1/invoices/${p.id}/${p.action}`, form(body));
  }],
  [
    "POST",
    "/_emulator/dashboard/invoiceitems",
    (emu, b) => emu.invoke("POST", "/v1/invoiceitems", form(b)),
  ],
  ["POST", "/_emulator/dashboard/setup_intents/:id/succeed", (emu, b, p) => {
    const si = emu.store.setupIntents.get(p.id);
    if (!si) throw new ControlError(404, `no setup intent ${p.id}`);
    const pm = typeof b.payment_method === "string"
      ? getPaymentMethod(emu, b.payment_method, "payment_method")
      : createCard(emu, obj(b.card));
    if (si.customer) {
      attachPaymentMethod(emu, pm, getLiveCustomer(emu, si.customer, "customer"), DASHBOARD);
    }
    si.paymentMethod = pm.id;
    si.status = "succeeded";
    emu.emit("setup_intent.succeeded", renderSetupIntent(si), DASHBOARD);
    return renderSetupIntent(si);
  }],
];

function matchRoute(method: string, path: string) {
  const segs = path.split("/");
  for (const [m, template, handler] of routes) {
    if (m !== method) continue;
    const want = template.split("/");
    if (want.length !== segs.length) continue;
    const params: Record<string, string> = {};
    let ok = true;
    for (let i = 0; i < want.length && ok; i++) {
      if (want[i].startsWith(":")) params[want[i].slice(1)] = decodeURIComponent(segs[i]);
      else ok = want[i] === segs[i];
    }
    if (ok) return { handler, params };
  }
  return undefined;
}

export async function handleControl(
  emu: Emulator,
  method: string,
  path: string,
  query: string,
  body: string,
): Promise<ControlReply> {
  const m = matchRoute(method, path);
  if (!m) return { status: 404, body: { error: `no control endpoint ${method} ${path}` } };
  let input: Record<string, unknown> = {};
  if (body.trim()) {
    try {
      input = obj(JSON.parse(body));
    } catch {
      return { status: 400, body: { error: "body must be JSON" } };
    }
  }
  try {
    const out = await m.handler(emu, input, m.params, new URLSearchParams(query));
    return { status: 200, body: out ?? { ok: true } };
  } catch (e) {
    if (e instanceof ApiError) return { status: e.status, body: e.toBody(null) };
    if (e instanceof ControlError) return { status: e.status, body: { error: e.message } };
    return { status: 500, body: { error: (e as Error).message } };
  }
}
