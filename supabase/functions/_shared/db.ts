/**
 * The only module that imports the Postgres driver. Connections are made safe for Supabase's
 * transaction-mode pooler: no prepared statements, no session state relied upon.
 */
import postgres from "npm:postgres@3.4.9";
import { redactConnectionString } from "./http.ts";

export { postgres, redactConnectionString };

/** A connection pool. */
export type Sql = postgres.Sql<Record<string, never>>;

/** Options for {@link createDb}. */
export interface DbOptions {
  /** Pool size; Edge Functions should keep this small. */
  max?: number;
  /** Application name shown in pg_stat_activity. */
  applicationName?: string;
}

/** SUPABASE_DB_URL cannot be used; the message says why and never contains the URL. */
export class DbUrlError extends Error {
  constructor(problem: string) {
    super(`SUPABASE_DB_URL is not a valid connection string: ${problem}`);
    this.name = "DbUrlError";
  }
}

/** What is wrong with a connection string, in words that never quote it; null when usable. */
export function dbUrlProblem(url: string): string | null {
  const authority = /^[a-z][a-z0-9+.-]*:\/\/([^]*)$/i.exec(url)?.[1] ?? "";
  const userinfo = authority.includes("@") ? authority.slice(0, authority.lastIndexOf("@")) : "";
  if (/[#?/]/.test(userinfo)) {
    return "the user or password contains an unencoded #, ? or / (percent-encode it, e.g. # as %23)";
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    const hostPort = authority.slice(authority.lastIndexOf("@") + 1).split("/")[0];
    if (/^[^:[\]]+:[^:]*$/.test(hostPort) && !/^[^:]+:\d*$/.test(hostPort)) {
      return "the port is not a number";
    }
    return "it is not a valid URL (postgresql://USER:PASSWORD@HOST:PORT/DATABASE)";
  }
  if (!/^postgres(ql)?:$/.test(parsed.protocol)) return "the scheme must be postgresql://";
  if (parsed.hash) return "it contains an unencoded # (percent-encode it as %23)";
  try {
    decodeURIComponent(parsed.username);
    decodeURIComponent(parsed.password);
  } catch {
    return "the user or password has a malformed percent-escape (write % itself as %25)";
  }
  return null;
}

/** Opens a pool to `url` (SUPABASE_DB_URL or the local stack). */
export function createDb(url: string, options: DbOptions = {}): Sql {
  const problem = dbUrlProblem(url);
  if (problem) throw new DbUrlError(problem);
  try {
    return postgres(url, {
      max: options.max ?? 4,
      prepare: false,
      idle_timeout: 20,
      connect_timeout: 10,
      onnotice: () => {},
      connection: { application_name: options.applicationName ?? "billing" },
    }) as unknown as Sql;
  } catch (err) {
    // The driver's parse errors quote the URL, password included.
    throw new DbUrlError(redactConnectionString((err as Error).name ?? "parse error"));
  }
}

/** The default local stack's database URL (port 54322). */
export const LOCAL_DB_URL = "postgresql://postgres@127.0.0.1:54322/postgres?sslmode=disable";

/** The local stack's database URL on STACK_PORT (default 54322), as dev/stack.sh makes it. */
export function localDbUrl(env: { get(name: string): string | undefined }): string {
  const port = env.get("STACK_PORT") || "54322";
  if (!/^[0-9]{1,5}$/.test(port)) {
    throw new Error(`STACK_PORT must be a port number, got "${port}"`);
  }
  return `postgresql://postgres@127.0.0.1:${port}/postgres?sslmode=disable`;
}

/** SUPABASE_DB_URL, else the local stack on STACK_PORT. */
export function dbUrlFromEnv(env: { get(name: string): string | undefined }): string {
  return env.get("SUPABASE_DB_URL") || localDbUrl(env);
}
