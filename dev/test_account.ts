/**
 * The Stripe account every test emulator stands for when it shares the local database: the
 * database is bound to one account (internal.stripe_account_binding), and emulator instances
 * otherwise each make their own. Tests of a wrong account start an emulator with another ID.
 */
export const TEST_STRIPE_ACCOUNT = "acct_1LocalTestsShared";
