/**
 * The Stripe account binding: a database publishes to one Stripe account in one mode. The
 * account is recorded the first time it is used and checked before every command and function
 * invocation, because a key of another account (or mode) answers 404 for every stored ID, and
 * a 404 must never be read as "deleted" there.
 */
import type { Sql } from "./db.ts";
import type { Stripe } from "./stripe_client.ts";

/** Which account and mode a key talks to. */
export interface StripeAccountRef {
  id: string;
  livemode: boolean;
}

/** The recorded binding, and how this check came out. */
export interface AccountBinding {
  outcome: "bound" | "ok" | "mismatch";
  account_id: string;
  livemode: boolean;
  bound_at: string;
  bound_by: string;
}

/** The key is not a Stripe secret or restricted key (checked before any request). */
export class StripeKeyFormatError extends Error {
  constructor(variable: string) {
    super(
      `${variable} must be a Stripe secret key (sk_test_... or sk_live_...) or a restricted ` +
        "key (rk_test_... or rk_live_...); the value given is neither (it was not sent anywhere)",
    );
    this.name = "StripeKeyFormatError";
  }
}

/** The key belongs to another account or mode than the one this database is bound to. */
export class StripeAccountMismatchError extends Error {
  constructor(readonly given: StripeAccountRef, readonly binding: AccountBinding) {
    super(
      `the Stripe key is for ${accountLabel(given)}, but this database is bound to ` +
        `${accountLabel({ id: binding.account_id, livemode: binding.livemode })} ` +
        `(recorded ${String(binding.bound_at).slice(0, 10)} by ${binding.bound_by}); ` +
        "nothing was done. Check STRIPE_SECRET_KEY (and STRIPE_API_BASE); to move this " +
        "database to another account or mode on purpose, see docs/runbook.md (rebinding)",
    );
    this.name = "StripeAccountMismatchError";
  }
}

/** `acct_123 (test mode)`. */
export function accountLabel(a: StripeAccountRef): string {
  return `${a.id} (${a.livemode ? "LIVE mode" : "test mode"})`;
}

/** The mode of a well-formed key; throws {@link StripeKeyFormatError} naming `variable`. */
export function keyLivemode(key: string, variable = "STRIPE_SECRET_KEY"): boolean {
  const m = /^(sk|rk)_(test|live)_[A-Za-z0-9_]+$/.exec(key);
  if (!m) throw new StripeKeyFormatError(variable);
  return m[2] === "live";
}

/** Asks Stripe which account the client's key belongs to (`GET /v1/account`). */
export async function retrieveStripeAccount(
  stripe: Stripe,
  livemode?: boolean,
): Promise<StripeAccountRef> {
  const account = await stripe.accounts.retrieveCurrent();
  const reported = (account as unknown as { livemode?: unknown }).livemode;
  return {
    id: account.id,
    livemode: livemode ?? (typeof reported === "boolean" ? reported : false),
  };
}

/** Records the account on first use; otherwise compares it with the recorded one. */
export async function checkAccountBinding(
  sql: Sql,
  account: StripeAccountRef,
  actor: string,
): Promise<AccountBinding> {
  const [row] = await sql<{ binding: AccountBinding }[]>`
    select internal.check_stripe_account(${account.id}, ${account.livemode}, ${actor}) as binding`;
  return row.binding;
}

/**
 * Retrieves the key's account and checks it against the binding; throws
 * {@link StripeAccountMismatchError} when they differ.
 */
export async function requireBoundAccount(
  sql: Sql,
  account: StripeAccountRef,
  actor: string,
): Promise<AccountBinding> {
  const binding = await checkAccountBinding(sql, account, actor);
  if (binding.outcome === "mismatch") throw new StripeAccountMismatchError(account, binding);
  return binding;
}

/**
 * A function's start-up check, run at the start of every invocation: the key's account is asked
 * once per instance (it cannot change under one key), the binding on every call.
 */
export class AccountGuard {
  private account: Promise<StripeAccountRef> | undefined;

  constructor(private readonly stripe: () => Stripe, private readonly livemode?: boolean) {}

  /** Throws {@link StripeAccountMismatchError}, or the Stripe error of `GET /v1/account`. */
  async check(sql: Sql, actor: string): Promise<AccountBinding> {
    this.account ??= retrieveStripeAccount(this.stripe(), this.livemode).catch((err) => {
      this.account = undefined;
      throw err;
    });
    return await requireBoundAccount(sql, await this.account, actor);
  }
}

/** The mode of STRIPE_SECRET_KEY when set (format errors are thrown), else undefined. */
export function envKeyLivemode(
  env: { get(name: string): string | undefined },
): boolean | undefined {
  const key = env.get("STRIPE_SECRET_KEY");
  return key ? keyLivemode(key) : undefined;
}
