/**
 * `deno task billing <command>`: the operator CLI. It runs the same engine the Edge Functions
 * use, in-process, against SUPABASE_DB_URL (or the local stack) and Stripe (or the emulator).
 */
import { type CommandSpec, type Flags, helpText, parseFlags, UsageError } from "./args.ts";
import {
  type CliContext,
  type Env,
  EnvironmentError,
  envWithDotEnv,
  openContext,
} from "./context.ts";
import { EXIT, EXIT_CODES_HELP } from "./exit_codes.ts";
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
  /** Whether it talks to Stripe (then the key and the account binding are checked first). */
  needsStripe: boolean;
}

/** Every command, in the order `--help` lists them. */
export const COMMANDS: Command[] = [
  { spec: publishSpec, run: runPublish, needsStripe: true },
  { spec: adoptSpec, run: runAdopt, needsStripe: true },
  { spec: finalizeSpec, run: runFinalize, needsStripe: true },
  { spec: driftSpec, run: runDrift, needsStripe: true },
  { spec: runsSpec, run: runRuns, needsStripe: false },
  { spec: releaseSpec, run: runRelease, needsStripe: true },
  { spec: replaceSpec, run: runReplace, needsStripe: true },
  { spec: linkSpec, run: runLink, needsStripe: true },
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
    "Environment (also read from .env; see .env.example): SUPABASE_DB_URL (default: the",
    "local stack on STACK_PORT, 54322), STRIPE_SECRET_KEY and STRIPE_API_BASE (default on the",
    "local stack: the emulator at 127.0.0.1:12111), STRIPE_RATE_LIMIT,",
    "STRIPE_SEARCH_RATE_LIMIT, BILLING_ACTOR.",
    "",
    EXIT_CODES_HELP,
  ].join("\n");
}

/** Runs the CLI with `args`; returns the exit code. */
export async function main(args: string[], env: Env = Deno.env): Promise<number> {
  const [name, ...rest] = args;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    console.log(topHelp());
    return name ? EXIT.ok : EXIT.usage;
  }
  const command = COMMANDS.find((c) => c.spec.name === name);
  if (!command) {
    console.error(`unknown command "${name}"\n\n${topHelp()}`);
    return EXIT.usage;
  }
  let flags: Flags;
  try {
    flags = parseFlags(command.spec, rest);
  } catch (err) {
    console.error(`${(err as Error).message}\n\n${helpText(command.spec)}`);
    return EXIT.usage;
  }
  if (flags.help) {
    console.log(`${helpText(command.spec)}\n\n${EXIT_CODES_HELP}`);
    return EXIT.ok;
  }
  let ctx: CliContext;
  try {
    ctx = await openContext(env, { json: Boolean(flags.json), needsStripe: command.needsStripe });
  } catch (err) {
    if (err instanceof EnvironmentError) {
      console.error(`refused: ${redactConnectionString(err.message)}`);
      return EXIT.refused;
    }
    console.error(`error: ${redactConnectionString((err as Error).message)}`);
    return EXIT.failed;
  }
  try {
    return await command.run(ctx, flags);
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(err.message);
      return EXIT.usage;
    }
    if (err instanceof EnvironmentError) {
      console.error(`refused: ${err.message}`);
      return EXIT.refused;
    }
    console.error(`error: ${redactConnectionString((err as Error).message)}`);
    return EXIT.failed;
  } finally {
    await ctx.close();
  }
}

if (import.meta.main) {
  const dotEnv = new URL("../.env", import.meta.url).pathname;
  Deno.exit(await main(Deno.args, envWithDotEnv(Deno.env, dotEnv)));
}
