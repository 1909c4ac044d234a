/**
 * Reads the per-function `verify_jwt` settings from supabase/config.toml, the way the CLI does:
 * a function that is absent, or present without the key, verifies JWTs.
 */

/** `verify_jwt` of each `[functions.<name>]` section. Only what the gateway needs is parsed. */
export function parseVerifyJwt(toml: string): Map<string, boolean> {
  const out = new Map<string, boolean>();
  let current: string | null = null;
  for (const raw of toml.split("\n")) {
    const line = raw.replace(/(^|\s)#.*$/, "").trim();
    if (line === "") continue;
    const section = /^\[\s*([^\]]+?)\s*\]$/.exec(line);
    if (section) {
      const m = /^functions\.("?)([A-Za-z][A-Za-z0-9_-]*)\1$/.exec(section[1]);
      current = m ? m[2] : null;
      if (current && !out.has(current)) out.set(current, true);
      continue;
    }
    const kv = /^verify_jwt\s*=\s*(true|false)$/.exec(line);
    if (current && kv) out.set(current, kv[1] === "true");
  }
  return out;
}

/** Whether `name` verifies JWTs (true unless config.toml says false). */
export function verifyJwtFor(settings: Map<string, boolean>, name: string): boolean {
  return settings.get(name) ?? true;
}
