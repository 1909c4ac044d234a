/** The account the API key belongs to: `GET /v1/account` (and `/v1/accounts/:id` for its own id). */
import type { Emulator } from "../emulator.ts";
import { ApiError } from "../errors.ts";
import type { JsonObject } from "../json.ts";
import type { Router } from "../router.ts";
import { expandAll } from "./common.ts";

/** A standard, fully onboarded US account (Account has no `livemode`: the key decides the mode). */
export function renderAccount(emu: Emulator): JsonObject {
  const id = emu.accountId;
  const requirements = {
    alternatives: [],
    current_deadline: null,
    currently_due: [],
    disabled_reason: null,
    errors: [],
    eventually_due: [],
    past_due: [],
    pending_verification: [],
  };
  return {
    id,
    object: "account",
    business_profile: {
      annual_revenue: null,
      estimated_worker_count: null,
      mcc: null,
      name: "Stripe Emulator",
      product_description: null,
      support_address: null,
      support_email: null,
      support_phone: null,
      support_url: null,
      url: null,
    },
    business_type: null,
    capabilities: { card_payments: "active", transfers: "active" },
    charges_enabled: true,
    controller: { type: "account" },
    country: "US",
    created: emu.accountCreated,
    default_currency: "usd",
    details_submitted: true,
    email: null,
    external_accounts: {
      object: "list",
      data: [],
      has_more: false,
      url: `/v1/accounts/${id}/external_accounts`,
    },
    future_requirements: { ...requirements, disabled_reason: null },
    metadata: {},
    payouts_enabled: true,
    requirements,
    settings: {
      dashboard: { display_name: "Stripe Emulator", timezone: "Etc/UTC" },
      invoices: { default_account_tax_ids: null, hosted_payment_method_save: "offer" },
    },
    tos_acceptance: { date: null, ip: null, user_agent: null },
    type: "standard",
  };
}

export function registerAccountRoutes(r: Router): void {
  r.add("GET", "/v1/account", ({ emu, params }) => {
    params.only([]);
    return expandAll(params.expand(), renderAccount(emu), emu);
  });
  r.add("GET", "/v1/accounts/:id", ({ emu, params, path }) => {
    params.only([]);
    if (path.id !== emu.accountId) {
      // What Stripe answers for an account the key cannot see (Connect is not emulated).
      throw new ApiError({
        status: 403,
        type: "invalid_request_error",
        code: "account_invalid",
        param: "account",
        message: `The provided key does not have access to account '${path.id}' (or that ` +
          "account does not exist). Application access may have been revoked.",
      });
    }
    return expandAll(params.expand(), renderAccount(emu), emu);
  });
}
