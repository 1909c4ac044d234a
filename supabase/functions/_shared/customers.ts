/**
 * Customer identity, one code path for every entry point (publish, dashboard, adoption): the
 * stored ID when there is one; else one Search to adopt a customer made before IDs were stored;
 * else a create whose idempotency key and body depend only on the tenant row. Every write of the
 * ID is a compare-and-set through internal.link_tenant_customer.
 */
import type { Sql } from "./db.ts";
import { customerCreateKey, INSTALLATION_KEY, installationId } from "./idempotency.ts";
import {
  CREATED_BY_AUTOMATION_KEY,
  CUSTOMER_NAME_KEY,
  customerSearchQuery,
  TENANT_NAME_KEY,
} from "./metadata.ts";
import type { StripeCaller } from "./stripe_calls.ts";
import type { Stripe } from "./stripe_client.ts";

/** The tenant columns a Stripe customer is made from. */
export interface TenantBillingRow {
  tenant: string;
  stripe_customer_id: string | null;
  billing_email: string | null;
  billing_name: string | null;
  billing_address: Record<string, string | null> | null;
  /** How many customers this tenant name has released (0 for nearly every tenant). */
  customer_generation: number;
}

/** How a tenant's customer was found. */
export interface CustomerResolution {
  /** Null only for a dry run that would create one. */
  customerId: string | null;
  source: "stored" | "adopted" | "created" | "would_create";
  /** Other customers carrying the tenant's metadata: reported, never linked. */
  duplicates: string[];
  /** Set when a concurrent writer stored another ID first; customerId is then the stored one. */
  conflict?: string;
}

/** What resolution needs: the database, a Stripe caller, and who is acting. */
export interface CustomerDeps {
  sql: Sql;
  caller: StripeCaller;
  /** Recorded in the audit: a run ID, "billing:<user id>", "cli:<user>". */
  actor: string;
  runId?: string;
}

/**
/**
 * The idempotency key of a tenant's customer create, shared by every entry point; it names the
 * installation, so two databases on one Stripe account never share a customer by replay. A
 * tenant name that released a customer gets a new key, so its create never replays that one.
 */
export function customerCreateIdempotencyKey(
  installation: string,
  tenant: string,
  generation = 0,
): string {
  const key = customerCreateKey(installation, tenant);
  return generation === 0 ? key : `${key}#${generation}`;
}

const ADDRESS_FIELDS = ["line1", "line2", "city", "state", "postal_code", "country"] as const;

/** The create body; it depends only on the tenant row, so two entry points send the same one. */
export function customerCreateParams(
  row: TenantBillingRow,
  installation: string,
): Stripe.CustomerCreateParams {
  const params: Stripe.CustomerCreateParams = {
    name: row.tenant,
    description: `Represents the billing entity for Flow tenant '${row.tenant}'`,
    metadata: {
      [TENANT_NAME_KEY]: row.tenant,
      [CREATED_BY_AUTOMATION_KEY]: "true",
      [INSTALLATION_KEY]: installation,
      ...(row.billing_name ? { [CUSTOMER_NAME_KEY]: row.billing_name } : {}),
    },
  };
  if (row.billing_email) params.email = row.billing_email;
  if (row.billing_address) {
    const address: Stripe.AddressParam = {};
    for (const field of ADDRESS_FIELDS) {
      const value = row.billing_address[field];
      if (typeof value === "string" && value !== "") address[field] = value;
    }
    if (Object.keys(address).length > 0) params.address = address;
  }
  return params;
}

/** Reads the tenant's billing row; throws when the tenant does not exist. */
export async function loadTenantBillingRow(sql: Sql, tenant: string): Promise<TenantBillingRow> {
  const rows = await sql<TenantBillingRow[]>`
    select tenant, stripe_customer_id, billing_email, billing_name, billing_address,
      internal.tenant_customer_generation(tenant::text) as customer_generation
    from public.tenants where tenant = ${tenant}`;
  if (rows.length === 0) throw new Error(`tenant ${tenant} does not exist`);
  return rows[0];
}

interface LinkOutcome {
  outcome: "linked" | "unchanged" | "conflict" | "duplicate";
  stored_id: string | null;
  detail: string | null;
}

async function linkCustomer(
  deps: CustomerDeps,
  tenant: string,
  customerId: string,
  reason: string,
): Promise<LinkOutcome> {
  const [row] = await deps.sql<LinkOutcome[]>`
    select outcome, stored_id, detail
    from internal.link_tenant_customer(${tenant}, ${customerId}, ${deps.actor}, ${reason},
      ${deps.runId ?? null}::uuid)`;
  return row;
}

/** What adoption alone found: a stored or adopted customer, or none in Stripe. */
export interface CustomerAdoption {
  customerId: string | null;
  source: "stored" | "adopted" | "missing";
  duplicates: string[];
  conflict?: string;
}

/**
 * The stored customer, else one adopted by a single metadata Search (linked unless dry-run; the
 * oldest of several, the rest reported). Never creates one: that is {@link resolveCustomer}.
 */
export async function adoptCustomer(
  deps: CustomerDeps,
  tenant: string,
  options: { dryRun?: boolean } = {},
): Promise<CustomerAdoption> {
  return await findCustomer(deps, await loadTenantBillingRow(deps.sql, tenant), options);
}

/** Options of a lookup; `useMissCache`: trust (and record) "a Search found no customer". */
export interface FindOptions {
  dryRun?: boolean;
  useMissCache?: boolean;
}

async function findCustomer(
  deps: CustomerDeps,
  row: TenantBillingRow,
  options: FindOptions,
): Promise<CustomerAdoption> {
  const tenant = row.tenant;
  if (row.stripe_customer_id) {
    return { customerId: row.stripe_customer_id, source: "stored", duplicates: [] };
  }
  if (options.useMissCache) {
    const [m] = await deps.sql<{ missed: boolean }[]>`
      select internal.customer_search_missed(${tenant}) as missed`;
    if (m.missed) return { customerId: null, source: "missing", duplicates: [] };
  }
  // Adoption: customers made before IDs were stored carry the tenant in metadata.
  const found = await deps.caller.call(
    "GET /v1/customers/search",
    (s) => s.customers.search({ query: customerSearchQuery(tenant), limit: 100 }),
  );
  const installation = await installationId(deps.sql);
  const named = found.data.filter((c) => c.metadata?.[TENANT_NAME_KEY] === tenant);
  // A released customer (an earlier tenant of this name, or a replaced one) is never adopted.
  const released = new Set(
    named.length === 0 ? [] : (await deps.sql<{ id: string }[]>`
      select stripe_customer_id as id from internal.released_customers
      where stripe_customer_id = any(${named.map((c) => c.id)}::text[])`).map((r) => r.id),
  );
  // Another installation's customer (a staging copy on the same account) is never adopted.
  const hits = named
    .filter((c) =>
      !released.has(c.id) &&
      (c.metadata?.[INSTALLATION_KEY] === undefined ||
        c.metadata[INSTALLATION_KEY] === installation)
    )
    .sort((a, b) => a.created - b.created || a.id.localeCompare(b.id));
  if (hits.length === 0) {
    if (options.useMissCache) {
      await deps.sql`select internal.record_customer_search_miss(${tenant}, ${deps.actor})`;
    }
    return { customerId: null, source: "missing", duplicates: [] };
  }
  const [oldest, ...rest] = hits;
  const duplicates = rest.map((c) => c.id);
  if (options.dryRun) return { customerId: oldest.id, source: "adopted", duplicates };
  const link = await linkCustomer(deps, tenant, oldest.id, "adopted by metadata search");
  const settled = settle(link, oldest.id, "adopted", duplicates);
  return {
    customerId: settled.customerId,
    source: settled.source === "adopted" ? "adopted" : "stored",
    duplicates: settled.duplicates,
    ...(settled.conflict ? { conflict: settled.conflict } : {}),
  };
}

/** Finds (or, unless dry-run, creates) the tenant's Stripe customer and stores its ID. */
export async function resolveCustomer(
  deps: CustomerDeps,
  tenant: string,
  options: FindOptions = {},
): Promise<CustomerResolution> {
  const row = await loadTenantBillingRow(deps.sql, tenant);
  const result = await findCustomer(deps, row, options);
  if (result.source !== "missing") return { ...result, source: result.source };

  if (options.dryRun) return { customerId: null, source: "would_create", duplicates: [] };
  const installation = await installationId(deps.sql);
  const created = await deps.caller.call(
    "POST /v1/customers",
    (s, requestOptions) =>
      s.customers.create(customerCreateParams(row, installation), requestOptions),
    {
      idempotencyKey: customerCreateIdempotencyKey(installation, tenant, row.customer_generation),
    },
  );
  const link = await linkCustomer(deps, tenant, created.id, "created");
  return settle(link, created.id, "created", []);
}

function settle(
  link: LinkOutcome,
  customerId: string,
  source: "adopted" | "created",
  duplicates: string[],
): CustomerResolution {
  switch (link.outcome) {
    case "linked":
    case "unchanged":
      return { customerId, source, duplicates };
    case "conflict":
      // Someone stored another customer first; theirs stands and ours is reported.
      return {
        customerId: link.stored_id,
        source: "stored",
        duplicates: [...duplicates, customerId],
        conflict: link.detail ?? "another customer was stored first",
      };
    case "duplicate":
      throw new Error(`cannot link customer ${customerId}: ${link.detail}`);
  }
}
