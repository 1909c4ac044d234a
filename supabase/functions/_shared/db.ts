/**
 * The only module that imports the Postgres driver. Connections are made safe for Supabase's
 * transaction-mode pooler: no prepared statements, no session state relied upon.
 */
import postgres from "npm:postgres@3.4.9";

export { postgres };

/** A connection pool. */
export type Sql = postgres.Sql<Record<string, never>>;

/** Options for {@link createDb}. */
export interface DbOptions {
  /** Pool size; Edge Functions should keep this small. */
  max?: number;
  /** Application name shown in pg_stat_activity. */
  applicationName?: string;
}

/** Opens a pool to `url` (SUPABASE_DB_URL or the local stack). */
export function createDb(url: string, options: DbOptions = {}): Sql {
  return postgres(url, {
    max: options.max ?? 4,
    prepare: false,
    idle_timeout: 20,
    connect_timeout: 10,
    onnotice: () => {},
    connection: { application_name: options.applicationName ?? "billing" },
  }) as unknown as Sql;
}

/** The local stack's database URL, used when SUPABASE_DB_URL is not set. */
export const LOCAL_DB_URL = "postgresql://postgres@127.0.0.1:54322/postgres?sslmode=disable";

/** SUPABASE_DB_URL, else the local stack. */
export function dbUrlFromEnv(env: { get(name: string): string | undefined }): string {
  return env.get("SUPABASE_DB_URL") ?? LOCAL_DB_URL;
}
