/** Stripe-shaped object ids: a type prefix plus random base62 characters. */
const ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const POOL_SIZE = 4096;
let pool = new Uint8Array(0);
let poolPos = 0;

function randomByte(): number {
  if (poolPos >= pool.length) {
    pool = crypto.getRandomValues(new Uint8Array(POOL_SIZE));
    poolPos = 0;
  }
  return pool[poolPos++];
}

/** Random base62 string; rejection sampling keeps characters uniform. */
export function randomBase62(length: number): string {
  let out = "";
  while (out.length < length) {
    const b = randomByte();
    if (b < 248) out += ALPHABET[b % 62];
  }
  return out;
}

/** Lengths mimic what Stripe issues today (opaque per the API versioning policy). */
const LENGTHS: Record<string, number> = { cus: 14, req: 14, prod: 14, acct: 16 };

export function newId(prefix: string): string {
  return `${prefix}_${randomBase62(LENGTHS[prefix] ?? 24)}`;
}
