/**
 * The only module that imports `jose`. Verifies Supabase JWTs the way the platform does (HS256
 * with the project's JWT secret, ES256/RS256 against its JWKS), so a function never trusts a
 * token just because a gateway let it through; also signs tokens for the local gateway and tests.
 */
import * as jose from "npm:jose@6.2.18";
import type { Env } from "./http.ts";

/** A token was missing, malformed, forged, expired or of the wrong kind. */
export class AuthError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AuthError";
  }
}

/** Keys a token may be signed with. */
export interface JwtKeys {
  /** The legacy symmetric JWT secret (HS256). */
  secret?: string;
  /** The project's public signing keys (ES256/RS256), as SUPABASE_JWKS carries them. */
  jwks?: jose.JSONWebKeySet;
  /** Where to fetch the JWKS when it is not inline (GoTrue's well-known endpoint). */
  jwksUrl?: URL;
}

/** Claims of a verified user session. */
export interface UserClaims {
  sub: string;
  role: "authenticated";
  email?: string;
  /** Every claim, as PostgREST would put it into request.jwt.claims. */
  claims: jose.JWTPayload;
}

const ASYMMETRIC = new Set(["ES256", "RS256"]);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const encoder = new TextEncoder();

/**
 * Keys from the environment Supabase injects: SUPABASE_JWT_SECRET (or JWT_SECRET, the name a
 * hosted project can set, since custom secrets may not start with SUPABASE_), SUPABASE_JWKS, and
 * else the JWKS endpoint under SUPABASE_URL.
 */
export function jwtKeysFromEnv(env: Env): JwtKeys {
  const keys: JwtKeys = {};
  const secret = env.get("SUPABASE_JWT_SECRET") ?? env.get("JWT_SECRET");
  if (secret) keys.secret = secret;
  const jwks = env.get("SUPABASE_JWKS");
  if (jwks) {
    try {
      const parsed = JSON.parse(jwks);
      if (Array.isArray(parsed?.keys)) keys.jwks = parsed as jose.JSONWebKeySet;
    } catch {
      // A malformed JWKS verifies nothing; asymmetric tokens are then rejected.
    }
  }
  const url = env.get("SUPABASE_URL");
  if (!keys.jwks && url) keys.jwksUrl = new URL("/auth/v1/.well-known/jwks.json", url);
  return keys;
}

/** The token of `Authorization: Bearer <token>`, or null. */
export function bearerToken(req: Request): string | null {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.get("authorization") ?? "");
  return m ? m[1] : null;
}

const remoteSets = new Map<string, ReturnType<typeof jose.createRemoteJWKSet>>();

/**
 * Verifies signature and time claims (exp, nbf) as the platform's verify_jwt check does, and
 * returns the payload. Throws {@link AuthError}.
 */
export async function verifyJwt(
  token: string,
  keys: JwtKeys,
  options: { audience?: string } = {},
): Promise<jose.JWTPayload> {
  let alg: string | undefined;
  try {
    alg = jose.decodeProtectedHeader(token).alg;
  } catch {
    throw new AuthError("malformed token");
  }
  const verifyOptions: jose.JWTVerifyOptions = { audience: options.audience };
  try {
    if (alg === "HS256") {
      if (!keys.secret) throw new AuthError("no JWT secret configured");
      const { payload } = await jose.jwtVerify(token, encoder.encode(keys.secret), {
        ...verifyOptions,
        algorithms: ["HS256"],
      });
      return payload;
    }
    if (alg && ASYMMETRIC.has(alg)) {
      const algorithms = [alg];
      if (keys.jwks) {
        const { payload } = await jose.jwtVerify(token, jose.createLocalJWKSet(keys.jwks), {
          ...verifyOptions,
          algorithms,
        });
        return payload;
      }
      if (keys.jwksUrl) {
        const href = keys.jwksUrl.href;
        let set = remoteSets.get(href);
        if (!set) remoteSets.set(href, set = jose.createRemoteJWKSet(keys.jwksUrl));
        const { payload } = await jose.jwtVerify(token, set, { ...verifyOptions, algorithms });
        return payload;
      }
      throw new AuthError("no JWKS configured");
    }
  } catch (err) {
    if (err instanceof AuthError) throw err;
    if (err instanceof jose.errors.JWTExpired) throw new AuthError("token expired");
    if (err instanceof jose.errors.JWTClaimValidationFailed) {
      throw new AuthError(`token claim ${err.claim} is invalid`);
    }
    throw new AuthError("invalid token signature");
  }
  throw new AuthError(`unsupported token algorithm ${alg ?? "none"}`);
}

/**
 * Verifies a signed-in user's session token: signature, expiry (required), audience
 * "authenticated", role "authenticated" and a user ID in `sub`. API keys (anon, service_role)
 * are valid JWTs but not users, and are refused.
 */
export async function verifyUserJwt(token: string, keys: JwtKeys): Promise<UserClaims> {
  const claims = await verifyJwt(token, keys);
  if (typeof claims.exp !== "number") throw new AuthError("token has no expiry");
  if (claims.role !== "authenticated") throw new AuthError("a signed-in user is required");
  const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  if (!aud.includes("authenticated")) throw new AuthError("token audience is not authenticated");
  if (typeof claims.sub !== "string" || !UUID.test(claims.sub)) {
    throw new AuthError("token has no user ID");
  }
  const email = typeof claims.email === "string" ? claims.email : undefined;
  return { sub: claims.sub, role: "authenticated", email, claims };
}

/** A signing key: the HS256 secret, or an asymmetric private key with its key ID. */
export type SigningKey =
  | { alg: "HS256"; secret: string }
  | { alg: "ES256" | "RS256"; privateKey: CryptoKey; kid: string };

/** Signs `claims` as a compact JWT (gateway API keys and test sessions). */
export async function signJwt(claims: jose.JWTPayload, key: SigningKey): Promise<string> {
  if (key.alg === "HS256") {
    return await new jose.SignJWT(claims).setProtectedHeader({ alg: "HS256", typ: "JWT" })
      .sign(encoder.encode(key.secret));
  }
  return await new jose.SignJWT(claims)
    .setProtectedHeader({ alg: key.alg, typ: "JWT", kid: key.kid })
    .sign(key.privateKey);
}

/** Makes an asymmetric signing key and the JWKS that publishes its public half. */
export async function generateSigningKey(
  alg: "ES256" | "RS256",
  kid: string,
): Promise<{ key: SigningKey; jwks: jose.JSONWebKeySet }> {
  const { privateKey, publicKey } = await jose.generateKeyPair(alg);
  const jwk = await jose.exportJWK(publicKey);
  return {
    key: { alg, privateKey, kid },
    jwks: { keys: [{ ...jwk, kid, alg, use: "sig" }] },
  };
}
