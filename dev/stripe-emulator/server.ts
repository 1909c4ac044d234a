/**
 * The HTTP layer: Stripe's request pipeline (auth, limiters, faults, idempotency, execution,
 * call log) over node:http, which exposes the raw socket needed to drop connections.
 */
import http from "node:http";
import type { Socket } from "node:net";
import { handleControl } from "./control_api.ts";
import { EmulatorControl } from "./control.ts";
import { DEFAULT_API_VERSION, Emulator } from "./emulator.ts";
import { ApiError, apiError } from "./errors.ts";
import { replaysError } from "./faults.ts";
import type { ActiveFault } from "./faults.ts";
import { canonicalForm, type FormMap, parseForm } from "./form.ts";
import { newId } from "./ids.ts";
import type { JsonObject } from "./json.ts";
import { Params } from "./params.ts";

export interface EmulatorOptions {
  /** 0 picks a free port. Default 12111. */
  port?: number;
  /** Default 127.0.0.1; the emulator never binds other interfaces unless told to. */
  hostname?: string;
  webhookUrl?: string;
  webhookSecret?: string;
  /** Webhook attempts per event (default 4). */
  webhookMaxAttempts?: number;
  webhookRetryDelaysMs?: number[];
  /** The account id `GET /v1/account` reports (default: a new id for each instance). */
  accountId?: string;
}

export interface RunningEmulator {
  url: string;
  port: number;
  /** Direct in-process access to state and knobs. */
  emulator: Emulator;
  /** The HTTP control client, bound to this server. */
  control: EmulatorControl;
  close(): Promise<void>;
}

interface Reply {
  status: number;
  body: string;
  headers: Record<string, string>;
}

/** Secret and restricted keys, test or live mode. */
const API_KEY = /^(sk|rk)_(test|live)_[A-Za-z0-9_]{1,247}$/;

/** The mode a key's prefix names (only called on keys that passed `checkAuth`). */
function keyLivemode(header: string | undefined): boolean {
  let key = "";
  if (header && /^bearer /i.test(header)) key = header.slice(7).trim();
  else if (header && /^basic /i.test(header)) {
    try {
      key = atob(header.slice(6).trim()).split(":")[0];
    } catch {
      key = "";
    }
  }
  return /^(sk|rk)_live_/.test(key);
}

/** Serializes a response so every `livemode` reports the mode of the key that asked. */
function stringifyFor(result: JsonObject, livemode: boolean): string {
  if (!livemode) return JSON.stringify(result, null, 2);
  return JSON.stringify(
    result,
    (k, v) => (k === "livemode" && typeof v === "boolean" ? true : v),
    2,
  );
}

function errorReply(err: ApiError, requestId: string): Reply {
  return {
    status: err.status,
    body: JSON.stringify(err.toBody(requestId), null, 2),
    headers: { ...err.headers },
  };
}

function authError(message: string): ApiError {
  return new ApiError({ status: 401, type: "invalid_request_error", message });
}

/** Checks `Authorization`; messages never contain any part of the key. */
function checkAuth(header: string | undefined): ApiError | null {
  if (!header) {
    return authError(
      "You did not provide an API key. You need to provide your API key in the Authorization " +
        "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See " +
        "https://stripe.com/docs/api#authentication for details, or we can help at " +
        "https://support.stripe.com/.",
    );
  }
  let key = "";
  if (/^bearer /i.test(header)) key = header.slice(7).trim();
  else if (/^basic /i.test(header)) {
    try {
      key = atob(header.slice(6).trim()).split(":")[0];
    } catch {
      key = "";
    }
  }
  if (!API_KEY.test(key)) {
    const shown = /^(sk|rk)_(test|live)_/.test(key) ? `${key.slice(0, 8)}********` : "********";
    return authError(`Invalid API Key provided: ${shown}`);
  }
  return null;
}

function rateLimitError(reason: string, search: boolean): ApiError {
  return new ApiError({
    status: 429,
    type: "invalid_request_error",
    code: "rate_limit",
    message: `Request rate limit exceeded${search ? " for the Search API" : ""}. Learn more ` +
      "about rate limits here https://stripe.com/docs/rate-limits.",
    headers: { "Stripe-Rate-Limited-Reason": reason },
  });
}

function faultError(f: ActiveFault): ApiError {
  const headers: Record<string, string> = {};
  if (f.kind === "rate_limit") return rateLimitError(f.reason ?? "global-rate", false);
  if (f.kind === "lock_timeout") {
    if (f.shouldRetry ?? true) headers["Stripe-Should-Retry"] = "true";
    return new ApiError({
      status: 429,
      type: "invalid_request_error",
      code: "lock_timeout",
      message: f.message ??
        "This object cannot be accessed right now because another API request or Stripe " +
          "process is currently accessing it. If you see this error intermittently, retry the " +
          "request. If you see this error frequently and are making multiple concurrent " +
          "requests to a single object, make your requests serially or at a lower rate.",
      headers,
    });
  }
  if (f.shouldRetry !== undefined) headers["Stripe-Should-Retry"] = String(f.shouldRetry);
  const err = apiError(f.status ?? 500, f.message);
  return new ApiError({ status: err.status, type: err.type, message: err.message, headers });
}

function faultLabel(f: ActiveFault): string {
  if (f.kind === "error") return `error:${f.status ?? 500}`;
  if (f.kind === "drop") return `drop:${f.mode ?? "after_headers"}`;
  if (f.kind === "slow") return `slow:${f.writeAt ?? "after_delay"}`;
  return f.kind;
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    req.on("data", (c: Uint8Array) => chunks.push(c));
    req.on("end", () => {
      const total = chunks.reduce((n, c) => n + c.length, 0);
      const all = new Uint8Array(total);
      let off = 0;
      for (const c of chunks) {
        all.set(c, off);
        off += c.length;
      }
      resolve(new TextDecoder().decode(all));
    });
    req.on("error", reject);
  });
}

export class EmulatorServer {
  private sockets = new Set<Socket>();
  private timers = new Set<ReturnType<typeof setTimeout>>();
  private server: http.Server;

  constructor(readonly emu: Emulator) {
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch(() => {
        if (!res.headersSent) {
          res.writeHead(500, { "Content-Type": "application/json" });
          res.end(JSON.stringify(apiError(500).toBody(null)));
        }
      });
    });
    this.server.on("connection", (s: Socket) => {
      this.sockets.add(s);
      s.on("close", () => this.sockets.delete(s));
    });
  }

  listen(port: number, hostname: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, hostname, () => {
        const addr = this.server.address();
        resolve(typeof addr === "object" && addr ? addr.port : port);
      });
    });
  }

  private sleep(ms: number): Promise<void> {
    if (ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.timers.delete(t);
        resolve();
      }, ms);
      this.timers.add(t);
    });
  }

  private later(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const rawUrl = req.url ?? "/";
    const q = rawUrl.indexOf("?");
    const path = q < 0 ? rawUrl : rawUrl.slice(0, q);
    const query = q < 0 ? "" : rawUrl.slice(q + 1);
    const body = await readBody(req);
    if (path.startsWith("/_emulator/") || path === "/_emulator") {
      const out = await handleControl(this.emu, req.method ?? "GET", path, query, body);
      res.writeHead(out.status, { "Content-Type": "application/json" });
      res.end(JSON.stringify(out.body));
      return;
    }
    await this.handleApi(req, res, path, query, body);
  }

  private async handleApi(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    path: string,
    query: string,
    body: string,
  ): Promise<void> {
    const emu = this.emu;
    const at = Date.now();
    const started = performance.now();
    const method = (req.method ?? "GET").toUpperCase();
    const requestId = newId("req");
    const header = (name: string) => {
      const v = req.headers[name];
      return Array.isArray(v) ? v[0] : v;
    };
    const key = method === "POST" ? header("idempotency-key") ?? null : null;
    const echoKey = header("idempotency-key");
    const match = emu.router.match(method, path);
    const route = `${method} ${match ? match.route.template : path}`;
    const search = path.endsWith("/search");
    let replayed = false;
    let originalRequestId: string | null = null;
    let executed = false;
    let fault: string | null = null;

    const baseHeaders: Record<string, string> = {
      "Content-Type": "application/json",
      "Request-Id": requestId,
      "Stripe-Version": header("stripe-version") ?? emu.behaviour.apiVersion ??
        DEFAULT_API_VERSION,
      "Cache-Control": "no-cache, no-store",
      // Stripe's clock, as real Stripe's Date header is (the emulator's may run ahead).
      "Date": new Date(emu.clock.nowMs()).toUTCString(),
    };
    if (echoKey) baseHeaders["Idempotency-Key"] = echoKey;

    const log = (status: number) =>
      emu.calls.record({
        at,
        method,
        route,
        path,
        status,
        requestId,
        idempotencyKey: echoKey ?? null,
        replayed,
        originalRequestId,
        executed,
        fault,
        search,
        write: method === "POST" || method === "DELETE",
        durationMs: performance.now() - started,
      });
    const send = (reply: Reply) => {
      res.writeHead(reply.status, { ...baseHeaders, ...reply.headers });
      res.end(reply.body);
      log(reply.status);
    };
    const fail = (err: ApiError) => send(errorReply(err, requestId));

    const authErr = checkAuth(header("authorization"));
    if (authErr) return fail(authErr);
    const livemode = keyLivemode(header("authorization"));
    // Keys are scoped to the account's mode: a test key never replays a live request.
    const idemKey = key === null ? null : `${livemode ? "live" : "test"}:${key}`;
    if (!match) {
      return fail(
        new ApiError({
          status: 404,
          type: "invalid_request_error",
          message: `Unrecognized request URL (${method}: ${path}). Please see ` +
            "https://stripe.com/docs or we can help at https://support.stripe.com/.",
        }),
      );
    }
    const limited = emu.faults.checkRate(search, route);
    if (limited) {
      fault = `limiter:${limited}`;
      return fail(rateLimitError(limited, search && limited === "endpoint-rate"));
    }
    const edge = emu.faults.take("edge", method, path);
    if (edge) {
      fault = faultLabel(edge);
      return fail(faultError(edge));
    }

    let tree: FormMap;
    try {
      tree = parseForm(method === "POST" ? body : query);
    } catch (e) {
      if (e instanceof ApiError) return fail(e);
      throw e;
    }

    if (key !== null && key.length > 255) {
      return fail(
        new ApiError({
          status: 400,
          type: "invalid_request_error",
          message: "Idempotency-Key is too long: keys can be at most 255 characters.",
        }),
      );
    }
    if (key !== null) {
      const endpoint = `${method} ${path}`;
      const found = emu.idempotency.begin(idemKey!, endpoint, canonicalForm(tree));
      switch (found.kind) {
        case "replay":
          replayed = true;
          originalRequestId = found.response.requestId;
          // A replayed injected error keeps its label, so the log shows what is replayed.
          fault = found.response.fault;
          return send({
            status: found.response.status,
            body: found.response.body,
            headers: {
              ...found.response.headers,
              "Idempotent-Replayed": "true",
              "Original-Request": found.response.requestId,
            },
          });
        case "in_flight":
          return fail(
            new ApiError({
              status: 409,
              type: "invalid_request_error",
              code: "idempotency_key_in_use",
              message: "There is currently another in-progress request using this Idempotent " +
                "Key (that probably means you submitted twice, and the other request is still " +
                "going through): " + key + ". Please try again later.",
            }),
          );
        case "other_endpoint":
          return fail(
            new ApiError({
              status: 400,
              type: "idempotency_error",
              message: `Keys for idempotent requests can only be used for the same endpoint ` +
                `they were first used for ('${found.endpoint}' vs '${endpoint}'). Try using a ` +
                `key other than '${key}' if you meant to execute a different request.`,
            }),
          );
        case "other_params":
          return fail(
            new ApiError({
              status: 400,
              type: "idempotency_error",
              message: "Keys for idempotent requests can only be used with the same parameters " +
                `they were first used with. Try using a key other than '${key}' if you meant ` +
                "to execute a different request.",
            }),
          );
      }
    }

    await this.sleep(emu.faults.latencyMs());
    const exec = emu.faults.take("execution", method, path);
    if (exec) fault = faultLabel(exec);
    const answersError = exec?.kind === "error" || exec?.kind === "lock_timeout" ||
      exec?.kind === "rate_limit";
    const slowMs = exec?.kind === "slow" ? exec.delayMs ?? 0 : 0;
    const writeFirst = exec?.kind === "slow" && exec.writeAt === "before_delay";
    const runsHandler = !exec || exec.kind === "slow" ||
      (exec.kind === "drop"
        ? exec.applyWrite ?? true
        : (exec.kind === "error" || exec.kind === "timeout") && (exec.applyWrite ?? false));
    // A slow call holds its key in flight while it waits (a same-key retry gets a 409).
    if (slowMs > 0 && !writeFirst) await this.sleep(slowMs);

    let reply: Reply | null = null;
    let store = true;
    if (runsHandler) {
      executed = true;
      try {
        const result: JsonObject = match.route.handler({
          emu,
          params: new Params(tree),
          path: match.params,
          request: { id: requestId, idempotencyKey: echoKey ?? null, livemode },
        });
        reply = { status: 200, body: stringifyFor(result, livemode), headers: {} };
      } catch (e) {
        const err = e instanceof ApiError ? e : apiError(500);
        if (!(e instanceof ApiError)) console.error("stripe-emulator: handler crashed", e);
        reply = errorReply(err, requestId);
        // Validation failures never began executing: Stripe does not save them.
        if (err.validation) store = false;
      }
    }
    if (exec && answersError) {
      reply = errorReply(faultError(exec), requestId);
      store = replaysError(exec);
    }
    if (key !== null) {
      if (reply && store) {
        emu.idempotency.complete(idemKey!, {
          ...reply,
          requestId,
          fault: exec && answersError ? fault : null,
        });
      } else {
        emu.idempotency.abandon(idemKey!);
      }
    }
    if (slowMs > 0 && writeFirst) await this.sleep(slowMs);

    if (exec?.kind === "timeout") {
      // Hold the request past the client's timeout, then hang up without answering.
      this.later(exec.holdMs ?? 30_000, () => req.socket.destroy());
      log(0);
      return;
    }
    if (exec?.kind === "drop" && reply) {
      if ((exec.mode ?? "after_headers") === "before_response") {
        req.socket.destroy();
        log(0);
        return;
      }
      res.writeHead(reply.status, {
        ...baseHeaders,
        ...reply.headers,
        "Content-Length": String(new TextEncoder().encode(reply.body).length),
      });
      res.flushHeaders();
      this.later(20, () => req.socket.destroy());
      log(reply.status);
      return;
    }
    if (exec?.kind === "drop") {
      req.socket.destroy();
      log(0);
      return;
    }
    send(reply!);
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    await closed;
  }
}

/** Starts an emulator; tests pass `port: 0` for a free port. */
export async function startStripeEmulator(opts: EmulatorOptions = {}): Promise<RunningEmulator> {
  const emulator = new Emulator({ accountId: opts.accountId });
  if (opts.webhookUrl || opts.webhookSecret) {
    emulator.webhooks.configure({
      url: opts.webhookUrl ?? null,
      secret: opts.webhookSecret ?? null,
      ...(opts.webhookMaxAttempts ? { maxAttempts: opts.webhookMaxAttempts } : {}),
      ...(opts.webhookRetryDelaysMs ? { retryDelaysMs: opts.webhookRetryDelaysMs } : {}),
    });
  }
  const server = new EmulatorServer(emulator);
  const hostname = opts.hostname ?? "127.0.0.1";
  const port = await server.listen(opts.port ?? 12111, hostname);
  const url = `http://${hostname}:${port}`;
  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    emulator,
    control: new EmulatorControl(url),
    close: () => {
      // Idempotent: tests may close early and again in a finally block.
      closing ??= emulator.webhooks.close().then(() => server.close());
      return closing;
    },
  };
}
