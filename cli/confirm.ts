/** Asking the operator: on a terminal, or from stdin when BILLING_CONFIRM_FROM_STDIN=1 (tests). */

/** Asks a yes/no question; no terminal (and no stdin opt-in) is a no. */
export async function confirm(question: string): Promise<boolean> {
  if (!Deno.stdin.isTerminal() && Deno.env.get("BILLING_CONFIRM_FROM_STDIN") !== "1") return false;
  await Deno.stdout.write(new TextEncoder().encode(`${question} [y/N] `));
  const buf = new Uint8Array(64);
  const n = await Deno.stdin.read(buf);
  const answer = n ? new TextDecoder().decode(buf.subarray(0, n)).trim().toLowerCase() : "";
  return answer === "y" || answer === "yes";
}
