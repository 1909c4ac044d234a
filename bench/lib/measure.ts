/**
 * Figures of one scenario, from the emulator's call log (what Stripe saw, 429s included) and the
 * run report (what the engine says it did).
 */
import type { CallRecord } from "../../dev/stripe-emulator/control.ts";
import type { CheckReport } from "./checks.ts";
import type { RunOutcome } from "./engine.ts";
import { round } from "./infra.ts";

export interface Limits {
  rate: number;
  searchRate: number;
  /** Each named operation's own limit (Search excepted); null: none. */
  endpointRate: number | null;
}

export interface ScenarioFigures {
  scenario: string;
  run_id: string;
  run_status: string;
  /** Done, no item failed: what an operator would read as "published". */
  reported_success: boolean;
  failed_items: number;
  failed_errors: Record<string, number>;
  bills: number;
  invoices: {
    created: number;
    updated: number;
    unchanged: number;
    skipped: number;
    warned: number;
    replaced: number;
  };
  stripe_calls: {
    total: number;
    /** Answered 429 by the emulator's limiters. */
    throttled_429: number;
    writes: number;
    search: number;
    by_endpoint: Record<string, number>;
  };
  engine: { retries: number; throttled: number };
  calls_per_created_invoice: number | null;
  /** Stripe calls per bill (all bills of the run). */
  calls_per_bill: number;
  wall_s: number;
  /**
   * max(accepted calls ÷ global rate, accepted Search calls ÷ Search rate, the busiest operation's
   * accepted calls ÷ its own rate).
   */
  rate_limit_floor_s: number;
  efficiency: number;
  /** Where the wall went, from the call log's arrival times (seconds since draining began). */
  timeline: Timeline;
  duplicates: number;
  lost_ids: number;
  invariant_failures: string[];
  /** impossible only: exit code and failure lines of `deno task billing publish`. */
  cli_exit_code?: number;
  cli_said?: string;
}

export function figures(
  scenario: string,
  run: RunOutcome,
  calls: CallRecord[],
  limits: Limits,
  check: CheckReport,
  failures: string[],
): ScenarioFigures {
  const byEndpoint: Record<string, number> = {};
  let throttled = 0;
  let writes = 0;
  let search = 0;
  let acceptedSearch = 0;
  for (const c of calls) {
    byEndpoint[c.route] = (byEndpoint[c.route] ?? 0) + 1;
    if (c.status === 429) throttled++;
    if (c.write) writes++;
    if (c.search) {
      search++;
      if (c.status !== 429) acceptedSearch++;
    }
  }
  const o = run.counters.outcomes ?? {};
  const created = o.created ?? 0;
  const accepted = calls.length - throttled;
  // The busiest named operation under its own limit (Search has the Search limit instead).
  let busiest = 0;
  if (limits.endpointRate) {
    const perRoute: Record<string, number> = {};
    for (const c of calls) {
      if (c.search || c.status === 429) continue;
      perRoute[c.route] = (perRoute[c.route] ?? 0) + 1;
    }
    busiest = Math.max(0, ...Object.values(perRoute)) / limits.endpointRate;
  }
  const floor = Math.max(accepted / limits.rate, acceptedSearch / limits.searchRate, busiest);
  const wall = run.wallMs / 1000;
  return {
    scenario,
    run_id: run.runId,
    run_status: run.status,
    reported_success: run.success,
    failed_items: run.counters.failed,
    failed_errors: run.errors,
    bills: run.counters.items,
    invoices: {
      created,
      updated: o.updated ?? 0,
      unchanged: o.unchanged ?? 0,
      skipped: o.skipped ?? 0,
      warned: o.warned ?? 0,
      replaced: o.replaced ?? 0,
    },
    stripe_calls: {
      total: calls.length,
      throttled_429: throttled,
      writes,
      search,
      by_endpoint: Object.fromEntries(Object.entries(byEndpoint).sort((a, b) => b[1] - a[1])),
    },
    engine: { retries: run.stats.retries, throttled: run.stats.throttled },
    calls_per_created_invoice: created > 0 ? round(calls.length / created) : null,
    calls_per_bill: run.counters.items > 0 ? round(calls.length / run.counters.items) : 0,
    wall_s: round(wall),
    rate_limit_floor_s: round(floor),
    efficiency: wall > 0 ? round(floor / wall) : 0,
    timeline: timeline(run, calls, limits),
    duplicates: check.duplicates.length + check.duplicateCustomers.length,
    lost_ids: check.lostIds.length,
    invariant_failures: failures,
  };
}

export interface Timeline {
  first_write_s: number | null;
  /** End of the last whole second in which Stripe accepted at least 80% of its limit. */
  last_busy_second_s: number | null;
  /** Whole seconds between the first write and that one in which it accepted less. */
  slack_seconds: number;
  /** Calls Stripe accepted in each second of the run. */
  per_second: number[];
}

function timeline(run: RunOutcome, calls: CallRecord[], limits: Limits): Timeline {
  const perSecond: number[] = [];
  let firstWrite: number | null = null;
  for (const c of calls) {
    const t = (c.at - run.startedAtMs) / 1000;
    if (c.write && (firstWrite === null || t < firstWrite)) firstWrite = t;
    if (c.status === 429 || t < 0) continue;
    perSecond[Math.floor(t)] = (perSecond[Math.floor(t)] ?? 0) + 1;
  }
  const busy = (s: number) => (perSecond[s] ?? 0) >= 0.8 * limits.rate;
  let last: number | null = null;
  for (let s = perSecond.length - 1; s >= 0 && last === null; s--) if (busy(s)) last = s + 1;
  let slack = 0;
  if (firstWrite !== null && last !== null) {
    for (let s = Math.ceil(firstWrite); s < last; s++) if (!busy(s)) slack++;
  }
  return {
    first_write_s: firstWrite === null ? null : round(firstWrite),
    last_busy_second_s: last,
    slack_seconds: slack,
    per_second: Array.from(perSecond, (n) => n ?? 0),
  };
}
