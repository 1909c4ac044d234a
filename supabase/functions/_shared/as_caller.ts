/**
 * Reads as the signed-in caller, the way PostgREST does: inside one transaction, switch to the
 * `authenticated` role and set `request.jwt.claims`, so RLS, view authorization and auth.uid()
 * are the database's decisions, not the function's.
 */
import type { postgres, Sql } from "./db.ts";
import { HttpError } from "./http.ts";

/** A transaction of the function's pool. */
export type Tx = postgres.TransactionSql<Record<string, never>>;

/** Runs `fn` in a transaction as `authenticated` with the caller's verified claims. */
export async function asCaller<T>(
  sql: Sql,
  claims: Record<string, unknown>,
  fn: (tx: Tx) => Promise<T>,
): Promise<T> {
  return await sql.begin(async (tx) => {
    await tx`select set_config('role', 'authenticated', true),
      set_config('request.jwt.claims', ${JSON.stringify(claims)}, true)`;
    return await fn(tx as Tx);
  }) as T;
}

/** Runs `fn` in a transaction as `service_role`, the role the internal functions are granted to. */
export async function asService<T>(sql: Sql, fn: (tx: Tx) => Promise<T>): Promise<T> {
  return await sql.begin(async (tx) => {
    await tx`select set_config('role', 'service_role', true),
      set_config('request.jwt.claims', '{"role":"service_role"}', true)`;
    return await fn(tx as Tx);
  }) as T;
}

/**
 * 403 unless the caller holds `admin` on a prefix of `tenant` (asked as the caller, through
 * public.auth_roles); then 404 unless the tenant exists. Forbidden comes first so that callers
 * cannot probe which tenants exist.
 */
export async function requireTenantAdmin(tx: Tx, tenant: string): Promise<void> {
  const [row] = await tx<{ admin: boolean; exists: boolean }[]>`
    select
      exists (select 1 from public.auth_roles('admin') r where ${tenant}::text ^@ r.role_prefix)
        as admin,
      exists (select 1 from public.tenants t where t.tenant = ${tenant}) as exists`;
  if (!row.admin) {
    throw new HttpError(403, "forbidden", `admin capability on ${tenant} is required`, "tenant");
  }
  if (!row.exists) throw new HttpError(404, "tenant_not_found", `no tenant ${tenant}`, "tenant");
}
