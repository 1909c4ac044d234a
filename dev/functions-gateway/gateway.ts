/**
 * A local stand-in for Supabase's functions gateway: serves `/functions/v1/<name>` by importing
 * each function's handler.ts, hands it a request whose path is `/<name>/...` as the platform
 * does, injects the environment Supabase injects, and checks JWTs per function `verify_jwt`
 * (skipping OPTIONS; requiring `Authorization: Bearer <JWT>`, never accepting an apikey alone).
 *
 * Each function's handler.ts exports `createApp(env): FunctionApp` (or one `create<Name>App`),
 * and its index.ts is `Deno.serve(createApp(Deno.env).fetch)`. The gateway passes it an env
 * map instead of touching the process environment, so several gateways can run in one process
 * (tests under `deno test --parallel`).
 */
import {
  AuthError,
  bearerToken,
  generateSigningKey,
  type JwtKeys,
  type SigningKey,
  verifyJwt,
} from "../../supabase/functions/_shared/auth.ts";
import { dbUrlFromEnv } from "../../supabase/functions/_shared/db.ts";
import {
  CORS_HEADERS,
  type Env,
  envFromRecord,
  type FunctionApp,
} from "../../supabase/functions/_shared/http.ts";
import { parseVerifyJwt, verifyJwtFor } from "./config.ts";
import {
  legacyApiKey,
  LOCAL_JWT_SECRET,
  LOCAL_PUBLISHABLE_KEY,
  LOCAL_SECRET_KEY,
} from "./tokens.ts";

const REPO = new URL("../../", import.meta.url);

/** Options for {@link startFunctionsGateway}. */
export interface GatewayOptions {
  /** Default 54321; 0 picks a free port. */
  port?: number;
  /** Default 127.0.0.1. */
  hostname?: string;
  /** SUPABASE_DB_URL for the functions; default the local stack. */
  dbUrl?: string;
  /** Default the local stack's JWT secret. */
  jwtSecret?: string;
  /** Function secrets (what `supabase secrets set` would hold), e.g. STRIPE_SECRET_KEY. */
  secrets?: Record<string, string>;
  /** Directory holding `<name>/handler.ts`; default supabase/functions. */
  functionsDir?: URL;
  /** Default supabase/config.toml. */
  configToml?: URL;
  /** Respond 504 when a function has not answered within this time (platform: 150 s). */
  idleTimeoutMs?: number;
  /** Log one line per request. */
  log?: boolean;
}

/** A running gateway. */
export interface FunctionsGateway {
  /** Base URL, e.g. http://127.0.0.1:54321 (what SUPABASE_URL is set to). */
  url: string;
  port: number;
  /** What the functions see as their environment. */
  env: Readonly<Record<string, string>>;
  anonKey: string;
  serviceRoleKey: string;
  publishableKey: string;
  secretKey: string;
  jwtSecret: string;
  /** The asymmetric key whose public half is in SUPABASE_JWKS, for ES256 user tokens. */
  signingKey: SigningKey;
  /** Stops serving and closes every loaded function. */
  close(): Promise<void>;
}

type AppFactory = (env: Env) => FunctionApp;

/** `createApp`, else the one export named `create<Something>App` (e.g. createPublishApp). */
function appFactory(name: string, mod: Record<string, unknown>): AppFactory {
  if (typeof mod.createApp === "function") return mod.createApp as AppFactory;
  const named = Object.entries(mod)
    .filter(([k, v]) => /^create[A-Za-z]*App$/.test(k) && typeof v === "function");
  if (named.length !== 1) {
    throw new Error(`${name}/handler.ts must export createApp(env) (or one create<Name>App)`);
  }
  return named[0][1] as AppFactory;
}

function gatewayError(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json", ...CORS_HEADERS },
  });
}

const invalidJwt = () => gatewayError(401, { msg: "Invalid JWT" });

/** Starts the gateway; resolves once it listens. */
export async function startFunctionsGateway(
  options: GatewayOptions = {},
): Promise<FunctionsGateway> {
  const hostname = options.hostname ?? "127.0.0.1";
  const functionsDir = options.functionsDir ?? new URL("supabase/functions/", REPO);
  const configToml = options.configToml ?? new URL("supabase/config.toml", REPO);
  const verifySettings = parseVerifyJwt(await Deno.readTextFile(configToml));
  const jwtSecret = options.jwtSecret ?? LOCAL_JWT_SECRET;
  const idleTimeoutMs = options.idleTimeoutMs ?? 150_000;
  const { key: signingKey, jwks } = await generateSigningKey("ES256", "local-gateway-es256");
  const keys: JwtKeys = { secret: jwtSecret, jwks };
  const anonKey = await legacyApiKey("anon", jwtSecret);
  const serviceRoleKey = await legacyApiKey("service_role", jwtSecret);

  const env: Record<string, string> = {};
  const apps = new Map<string, Promise<FunctionApp | null>>();

  const loadApp = (name: string): Promise<FunctionApp | null> => {
    let app = apps.get(name);
    if (!app) {
      app = (async () => {
        const path = new URL(`${name}/handler.ts`, functionsDir);
        try {
          await Deno.stat(path);
        } catch {
          return null;
        }
        const mod = await import(path.href) as Record<string, unknown>;
        return appFactory(name, mod)(envFromRecord(env));
      })();
      apps.set(name, app);
    }
    return app;
  };

  const handle = async (req: Request): Promise<Response> => {
    const url = new URL(req.url);
    const m = /^\/functions\/v1\/([A-Za-z][A-Za-z0-9_-]*)(\/.*)?$/.exec(url.pathname);
    if (!m) return gatewayError(404, { msg: "no route matched" });
    const [, name, rest = ""] = m;

    if (req.method !== "OPTIONS" && verifyJwtFor(verifySettings, name)) {
      // The platform accepts a JWT in Authorization only; an apikey header is not a credential.
      const token = bearerToken(req);
      if (!token) return invalidJwt();
      try {
        await verifyJwt(token, keys);
      } catch (err) {
        if (err instanceof AuthError) return invalidJwt();
        throw err;
      }
    }

    let app: FunctionApp | null;
    try {
      app = await loadApp(name);
    } catch (err) {
      console.error(`functions-gateway: ${name} failed to boot: ${(err as Error).message}`);
      return gatewayError(503, { code: "BOOT_ERROR", message: "Worker failed to boot" });
    }
    if (!app) {
      return gatewayError(404, { code: "NOT_FOUND", message: "Requested function was not found" });
    }

    // A fresh request, not `new Request(url, req)`: that would also copy req.signal.
    const hasBody = req.method !== "GET" && req.method !== "HEAD";
    const inner = new Request(new URL(`/${name}${rest}${url.search}`, url.origin), {
      method: req.method,
      headers: req.headers,
      body: hasBody ? await req.arrayBuffer() : null,
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<Response>((resolve) => {
      timer = setTimeout(
        () => resolve(gatewayError(504, { code: "IDLE_TIMEOUT", message: "Function timed out" })),
        idleTimeoutMs,
      );
    });
    try {
      return await Promise.race([app.fetch(inner), timeout]);
    } catch (err) {
      console.error(`functions-gateway: ${name} threw: ${(err as Error).message}`);
      return gatewayError(500, {
        code: "WORKER_ERROR",
        message: "Function exited due to an error",
      });
    } finally {
      clearTimeout(timer);
    }
  };

  const server = Deno.serve({
    port: options.port ?? 54321,
    hostname,
    onListen: () => {},
  }, async (req) => {
    const started = performance.now();
    const res = await handle(req);
    if (options.log) {
      const ms = (performance.now() - started).toFixed(0);
      console.log(`${req.method} ${new URL(req.url).pathname} ${res.status} ${ms}ms`);
    }
    return res;
  });
  const port = server.addr.port;
  const url = `http://${hostname}:${port}`;

  Object.assign(env, options.secrets ?? {}, {
    SUPABASE_URL: url,
    SUPABASE_DB_URL: options.dbUrl ?? dbUrlFromEnv(Deno.env),
    SUPABASE_ANON_KEY: anonKey,
    SUPABASE_SERVICE_ROLE_KEY: serviceRoleKey,
    SUPABASE_JWT_SECRET: jwtSecret,
    SUPABASE_JWKS: JSON.stringify(jwks),
    SUPABASE_PUBLISHABLE_KEYS: JSON.stringify({ default: LOCAL_PUBLISHABLE_KEY }),
    SUPABASE_SECRET_KEYS: JSON.stringify({ default: LOCAL_SECRET_KEY }),
  });

  return {
    url,
    port,
    env,
    anonKey,
    serviceRoleKey,
    publishableKey: LOCAL_PUBLISHABLE_KEY,
    secretKey: LOCAL_SECRET_KEY,
    jwtSecret,
    signingKey,
    close: async () => {
      await server.shutdown();
      for (const app of apps.values()) {
        const loaded = await app.catch(() => null);
        await loaded?.close();
      }
    },
  };
}
