/**
 * Local keys and tokens, as `supabase start` makes them: the demo JWT secret, HS256 anon and
 * service_role keys with `iss: "supabase-demo"`, the fixed publishable and secret API keys, and
 * user session tokens for tests (valid, expired, forged, for the wrong audience).
 */
import { type SigningKey, signJwt } from "../../supabase/functions/_shared/auth.ts";
import { toUnixSeconds } from "../../supabase/functions/_shared/units.ts";

/** The local stack's JWT secret (Supabase CLI default). */
export const LOCAL_JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long";
/** The CLI's fixed local API keys (not JWTs; they belong in `apikey`, never in Authorization). */
export const LOCAL_PUBLISHABLE_KEY = "sb_publishable_ACJWlzQHlZjBrEguHvfOxg_3BJgxAaH";
export const LOCAL_SECRET_KEY = "sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz";

/** Expiry of the CLI's demo API-key JWTs (2032). */
const DEMO_KEY_EXP = 1983812996;

/** The legacy HS256 API key JWT for `anon` or `service_role`. */
export function legacyApiKey(
  role: "anon" | "service_role",
  secret = LOCAL_JWT_SECRET,
): Promise<string> {
  return signJwt({ iss: "supabase-demo", role, exp: DEMO_KEY_EXP }, { alg: "HS256", secret });
}

/** Options for {@link mintUserJwt}. */
export interface UserTokenOptions {
  /** The user ID (`sub`). */
  sub: string;
  email?: string;
  /** Seconds until expiry; negative for an expired token. Default one hour. */
  expiresIn?: number;
  /** Default "authenticated". */
  audience?: string;
  /** Default "authenticated". */
  role?: string;
  /** Default the local HS256 secret; pass another secret (forged) or an asymmetric key. */
  key?: SigningKey;
  /** Base URL of the project, for `iss` (`<url>/auth/v1`). */
  projectUrl?: string;
  /** Clock, for tests that fix time. */
  now?: number;
}

/** A session token shaped like GoTrue's (docs `guides/auth/jwt-fields`). */
export function mintUserJwt(options: UserTokenOptions): Promise<string> {
  const iat = toUnixSeconds(new Date(options.now ?? Date.now()));
  const exp = iat + (options.expiresIn ?? 3600);
  return signJwt({
    iss: `${options.projectUrl ?? "http://127.0.0.1:54321"}/auth/v1`,
    sub: options.sub,
    aud: options.audience ?? "authenticated",
    exp,
    iat: options.expiresIn !== undefined && options.expiresIn < 0 ? exp - 3600 : iat,
    email: options.email ?? "",
    phone: "",
    role: options.role ?? "authenticated",
    aal: "aal1",
    amr: [{ method: "password", timestamp: iat }],
    session_id: crypto.randomUUID(),
    is_anonymous: false,
    app_metadata: { provider: "email", providers: ["email"] },
    user_metadata: {},
  }, options.key ?? { alg: "HS256", secret: LOCAL_JWT_SECRET });
}
