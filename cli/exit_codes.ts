/** The CLI's exit codes (also in `deno task billing --help` and docs/runbook.md). */
export const EXIT = {
  /** Done: everything the command was asked to do happened. */
  ok: 0,
  /** Something failed or needs attention (a bill failed, a run is unfinished, drift found). */
  failed: 1,
  /** Bad usage: the message names the flag. */
  usage: 2,
  /** Finished, but bills were warned and left unbilled: an operator must act on them. */
  warned: 3,
  /** Refused before acting: wrong Stripe account or mode, bad key, database down or unmigrated. */
  refused: 4,
} as const;

/** The help text's summary of the codes. */
export const EXIT_CODES_HELP = [
  "Exit codes: 0 done; 1 something failed or needs attention; 2 bad usage;",
  "3 finished with warned bills (not invoiced: act on them); 4 refused before acting",
  "(wrong Stripe account or mode, malformed key, database down or not migrated).",
].join("\n");
