/**
 * Serves the Edge Functions on the local stack: `deno task functions-gateway`.
 * Listens on 127.0.0.1:54321 (FUNCTIONS_PORT overrides), connects the functions to the local
 * database (SUPABASE_DB_URL overrides), and hands them the secrets from supabase/functions/.env
 * plus STRIPE_* variables of this process.
 */
import { startFunctionsGateway } from "./gateway.ts";

const REPO = new URL("../../", import.meta.url);

/** KEY=value lines; blank lines and # comments ignored. */
function parseDotenv(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$/.exec(line);
    if (!m || line.trimStart().startsWith("#")) continue;
    out[m[1]] = m[2].replace(/^(['"])(.*)\1$/, "$2");
  }
  return out;
}

const secrets: Record<string, string> = {};
try {
  Object.assign(
    secrets,
    parseDotenv(await Deno.readTextFile(new URL("supabase/functions/.env", REPO))),
  );
} catch (err) {
  if (!(err instanceof Deno.errors.NotFound)) throw err;
}
for (const [k, v] of Object.entries(Deno.env.toObject())) {
  if (k.startsWith("STRIPE_")) secrets[k] = v;
}

const gateway = await startFunctionsGateway({
  port: Number(Deno.env.get("FUNCTIONS_PORT") ?? 54321),
  dbUrl: Deno.env.get("SUPABASE_DB_URL"),
  secrets,
  log: true,
});
console.log(`functions gateway on ${gateway.url}/functions/v1/<name>`);
console.log(`anon key:          ${gateway.anonKey}`);
console.log(`publishable key:   ${gateway.publishableKey}`);
console.log(`secrets from .env: ${Object.keys(secrets).sort().join(", ") || "(none)"}`);

const stop = async () => {
  await gateway.close();
  Deno.exit(0);
};
Deno.addSignalListener("SIGINT", stop);
Deno.addSignalListener("SIGTERM", stop);
