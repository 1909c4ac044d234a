/**
 * HTTP plumbing shared by the Edge Functions: CORS (browsers preflight supabase-js calls), JSON
 * responses, and errors that say which field was wrong without echoing secrets.
 */

/** Where a function reads its configuration: `Deno.env` when deployed, a map under the gateway. */
export interface Env {
  get(name: string): string | undefined;
}

/** A request handler. */
export type Handler = (req: Request) => Promise<Response>;

/** What each function's handler.ts builds: a handler plus the resources it must release. */
export interface FunctionApp {
  fetch: Handler;
  /** Closes pools and clients; tests and the gateway call it, the platform never does. */
  close(): Promise<void>;
}

/** Headers `supabase.functions.invoke` sends from a browser, so the preflight must allow them. */
export const CORS_HEADERS: Readonly<Record<string, string>> = {
  "Access-Control-Allow-Origin": "*",
  "Access-Control-Allow-Headers": "authorization, x-client-info, apikey, content-type",
  "Access-Control-Allow-Methods": "POST, OPTIONS",
};

/** A failure the caller caused or may see: status, a stable code, and the field at fault. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field?: string,
  ) {
    super(message);
    this.name = "HttpError";
  }
}

/** A JSON response with CORS headers. */
export function json(body: unknown, status = 200, headers: HeadersInit = {}): Response {
  const h = new Headers(headers);
  for (const [k, v] of Object.entries(CORS_HEADERS)) h.set(k, v);
  h.set("Content-Type", "application/json");
  return new Response(JSON.stringify(body), { status, headers: h });
}

/** The error body every function returns: `{error: {code, message, field?}}`. */
export function errorResponse(err: HttpError): Response {
  const error: Record<string, string> = { code: err.code, message: err.message };
  if (err.field) error.field = err.field;
  return json({ error }, err.status);
}

/** Replaces the password of every connection string in `text` with `***`. */
export function redactConnectionString(text: string): string {
  // Greedy to the token's last "@": an unencoded "@" may sit inside the password.
  return text.replace(/(postgres(?:ql)?:\/\/[^\s:/@]*:)\S*@/g, "$1***@");
}

/**
 * Wraps a handler: answers preflights, adds CORS headers to every response, turns HttpErrors into
 * JSON and anything else into a 500 that reveals nothing (the log gets the name and message).
 */
export function withCors(name: string, handler: Handler): Handler {
  return async (req) => {
    if (req.method === "OPTIONS") return new Response("ok", { headers: CORS_HEADERS });
    try {
      const res = await handler(req);
      for (const [k, v] of Object.entries(CORS_HEADERS)) {
        if (!res.headers.has(k)) res.headers.set(k, v);
      }
      return res;
    } catch (err) {
      if (err instanceof HttpError) return errorResponse(err);
      const e = err instanceof Error ? err : new Error(String(err));
      console.error(`${name}: ${e.name}: ${redactConnectionString(e.message)}`);
      return errorResponse(new HttpError(500, "internal_error", "internal error"));
    }
  };
}

/** Reads a JSON object body; 400 when it is not one. */
export async function readJsonObject(req: Request): Promise<Record<string, unknown>> {
  let body: unknown;
  try {
    body = await req.json();
  } catch {
    throw new HttpError(400, "invalid_json", "request body must be a JSON object", "body");
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new HttpError(400, "invalid_json", "request body must be a JSON object", "body");
  }
  return body as Record<string, unknown>;
}

/**
 * Reads a body as text, refusing with 413 once it exceeds `maxBytes`: a declared Content-Length
 * over the cap is refused unread, and a chunked body is read only up to the cap.
 */
export async function readCappedText(req: Request, maxBytes: number): Promise<string> {
  const tooLarge = () =>
    new HttpError(413, "payload_too_large", `request body exceeds ${maxBytes} bytes`, "body");
  const declared = Number(req.headers.get("content-length"));
  if (Number.isFinite(declared) && declared > maxBytes) {
    await req.body?.cancel().catch(() => {});
    throw tooLarge();
  }
  if (!req.body) return "";
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel().catch(() => {});
      throw tooLarge();
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return new TextDecoder().decode(bytes);
}

/** An {@link Env} over a plain record (the gateway and tests use it). */
export function envFromRecord(values: Record<string, string | undefined>): Env {
  return { get: (name) => values[name] };
}
