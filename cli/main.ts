/**
 * `deno task billing <command>`: the operator CLI. It runs the same engine the Edge Functions
 * use, in-process, against SUPABASE_DB_URL (or the local stack) and Stripe (or the emulator).
 */
import { type CommandSpec, type Flags, helpText, parseFlags, UsageError } from "./args.ts";
import { type CliContext, createContext, type Env } from "./context.ts";
import { redactConnectionString } from "../supabase/functions/_shared/http.ts";
import { adoptSpec, runAdopt } from "./commands/adopt.ts";
import { driftSpec, runDrift } from "./commands/drift.ts";
import { finalizeSpec, runFinalize } from "./commands/finalize.ts";
import {
  linkSpec,
  releaseSpec,
  replaceSpec,
  runLink,
  runRelease,
  runReplace,
} from "./commands/identity.ts";
import { publishSpec, runPublish } from "./commands/publish.ts";
import { runRuns, runsSpec } from "./commands/runs.ts";

/** A command: its declaration and what it does; returns the exit code. */
export interface Command {
  spec: CommandSpec;
  run: (ctx: CliContext, flags: Flags) => Promise<number>;
}

/** Every command, in the order `--help` lists them. */
export const COMMANDS: Command[] = [
  { spec: publishSpec, run: runPublish },
  { spec: adoptSpec, run: runAdopt },
  { spec: finalizeSpec, run: runFinalize },
  { spec: driftSpec, run: runDrift },
  { spec: runsSpec, run: runRuns },
  { spec: releaseSpec, run: runRelease },
  { spec: replaceSpec, run: runReplace },
  { spec: linkSpec, run: runLink },
];

function topHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.spec.name.length));
  return [
    "Publish usage bills to Stripe by stored ID, and look after the IDs.",
    "",
    "Usage: deno task billing <command> [options]   (each command has --help)",
    "",
    "Commands:",
    ...COMMANDS.map((c) => `  ${c.spec.name.padEnd(width)}  ${c.spec.summary}`),
    "",
    "Environment: SUPABASE_DB_URL (default: the local stack), STRIPE_SECRET_KEY and",
    "STRIPE_API_BASE (default on the local stack: the emulator at 127.0.0.1:12111),",
    "STRIPE_RATE_LIMIT, STRIPE_SEARCH_RATE_LIMIT, BILLING_ACTOR.",
  ].join("\n");
}

/** Runs the CLI with `args`; returns the exit code. */
export async function main(args: string[], env: Env = Deno.env): Promise<number> {
  const [name, ...rest] = args;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    console.log(topHelp());
    return name ? 0 : 2;
  }
  const command = COMMANDS.find((c) => c.spec.name === name);
  if (!command) {
    console.error(`unknown command "${name}"\n\n${topHelp()}`);
    return 2;
  }
  let flags: Flags;
  try {
    flags = parseFlags(command.spec, rest);
  } catch (err) {
    console.error(`${(err as Error).message}\n\n${helpText(command.spec)}`);
    return 2;
  }
  if (flags.help) {
    console.log(helpText(command.spec));
    return 0;
  }
  let ctx: CliContext;
  try {
    ctx = createContext(env, { json: Boolean(flags.json) });
  } catch (err) {
    console.error(`error: ${redactConnectionString((err as Error).message)}`);
    return 2;
  }
  try {
    return await command.run(ctx, flags);
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(err.message);
      return 2;
    }
    console.error(`error: ${redactConnectionString((err as Error).message)}`);
    return 1;
  } finally {
    await ctx.close();
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
