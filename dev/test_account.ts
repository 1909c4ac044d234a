/**
 * The Stripe account every local emulator (tests, the demo) stands for on the local stack: the
 * database is bound to one account (internal.stripe_account_binding), and emulator instances
 * otherwise each make their own. Tests of a wrong account start an emulator with another ID.
 */
export const TEST_STRIPE_ACCOUNT = "acct_1LocalTestsShared";
