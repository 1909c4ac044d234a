// Each Edge Function must bundle on its own with `supabase functions deploy`, which does not
// read the root deno.json: no bare specifiers, every npm: import pinned to one exact version and
// made in exactly one _shared adapter module.
import assert from "node:assert/strict";

const repo = new URL("../../", import.meta.url).pathname;
const functionsDir = `${repo}supabase/functions`;

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const entry of Deno.readDirSync(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) out.push(...walk(path));
    else if (path.endsWith(".ts")) out.push(path);
  }
  return out;
}

const functionNames = [...Deno.readDirSync(functionsDir)]
  .filter((e) => e.isDirectory && !e.name.startsWith("_") && e.name !== "tests")
  .map((e) => e.name)
  .sort();

Deno.test("every function's index.ts type-checks without the root deno.json", async () => {
  assert.ok(functionNames.length >= 3, `functions found: ${functionNames.join(", ")}`);
  for (const name of functionNames) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["check", "--no-config", `${functionsDir}/${name}/index.ts`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, `${name}: ${new TextDecoder().decode(out.stderr)}`);
  }
});

Deno.test("npm: imports are pinned exactly, one adapter module per package", () => {
  const owners = new Map<string, Set<string>>();
  for (const file of walk(functionsDir).filter((f) => !f.includes("/tests/"))) {
    const text = Deno.readTextFileSync(file);
    for (const m of text.matchAll(/from\s+"(npm:[^"]+)"/g)) {
      const spec = m[1];
      assert.match(
        spec,
        /^npm:(@[a-z0-9-]+\/)?[a-z0-9.-]+@\d+\.\d+\.\d+(\/[\w./-]+)?$/,
        `${file}: ${spec}`,
      );
      const pkg = spec.replace(/^npm:/, "").replace(/@\d.*$/, "");
      owners.set(pkg, (owners.get(pkg) ?? new Set()).add(file.replace(repo, "")));
    }
    for (const m of text.matchAll(/from\s+"([^".][^"]*)"/g)) {
      assert.match(m[1], /^(npm:|node:)/, `${file}: bare specifier ${m[1]}`);
    }
  }
  for (const [pkg, files] of owners) {
    assert.equal(files.size, 1, `${pkg} is imported in ${[...files].join(", ")}`);
  }
  assert.deepEqual([...owners.keys()].sort(), ["jose", "postgres", "stripe", "zod"]);
});
