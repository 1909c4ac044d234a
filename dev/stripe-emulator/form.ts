/**
 * Decoding of Stripe's form encoding: `a[b][0][c]=1`, `expand[]=x`, brackets raw or escaped.
 * Objects whose keys are all array indexes become arrays (in index order).
 */
import { invalid } from "./errors.ts";

export type FormValue = string | FormValue[] | FormMap;
export interface FormMap {
  [key: string]: FormValue;
}

function newMap(): FormMap {
  // No prototype: keys like "__proto__" or "constructor" stay plain data.
  return Object.create(null) as FormMap;
}

function decode(part: string): string {
  try {
    return decodeURIComponent(part.replaceAll("+", " "));
  } catch {
    throw invalid(`Invalid URL encoding: ${part.slice(0, 40)}`);
  }
}

/** Splits `a[b][]` into ["a", "b", ""]. Unbalanced brackets keep the raw name. */
function splitKey(key: string): string[] {
  const open = key.indexOf("[");
  if (open <= 0 || !key.endsWith("]")) return [key];
  const parts = [key.slice(0, open)];
  let rest = key.slice(open);
  while (rest.length > 0) {
    if (rest[0] !== "[") return [key];
    const close = rest.indexOf("]");
    if (close < 0) return [key];
    parts.push(rest.slice(1, close));
    rest = rest.slice(close + 1);
  }
  return parts;
}

const INDEX = /^(0|[1-9][0-9]{0,5})$/;

/** Parses a query string or form body into a nested tree of strings. */
export function parseForm(text: string): FormMap {
  const root = newMap();
  // `[]` pushes: track a counter per container so `expand[]=a&expand[]=b` yields two entries.
  const pushCounters = new WeakMap<FormMap, number>();
  if (!text) return root;
  for (const pair of text.split("&")) {
    if (!pair) continue;
    const eq = pair.indexOf("=");
    const key = decode(eq < 0 ? pair : pair.slice(0, eq));
    const value = eq < 0 ? "" : decode(pair.slice(eq + 1));
    const path = splitKey(key);
    let node = root;
    for (let i = 0; i < path.length; i++) {
      let seg = path[i];
      if (seg === "") {
        const n = pushCounters.get(node) ?? Object.keys(node).length;
        pushCounters.set(node, n + 1);
        seg = String(n);
      }
      if (i === path.length - 1) {
        node[seg] = value;
      } else {
        const next = node[seg];
        if (next === undefined || typeof next === "string") {
          const child = newMap();
          node[seg] = child;
          node = child;
        } else {
          node = next as FormMap;
        }
      }
    }
  }
  return arrayify(root) as FormMap;
}

function arrayify(value: FormValue): FormValue {
  if (typeof value === "string" || Array.isArray(value)) return value;
  const keys = Object.keys(value);
  for (const k of keys) value[k] = arrayify(value[k]);
  if (keys.length > 0 && keys.every((k) => INDEX.test(k))) {
    return keys.map(Number).sort((a, b) => a - b).map((k) => value[String(k)]);
  }
  return value;
}

/** Converts JSON (used by the control API) into the same tree, the way stripe-node encodes it. */
export function formFromJson(value: unknown): FormValue {
  if (value === null) return "";
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  if (Array.isArray(value)) return value.filter((v) => v !== undefined).map(formFromJson);
  if (typeof value === "object") {
    const out = newMap();
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      if (v !== undefined) out[k] = formFromJson(v);
    }
    return out;
  }
  return String(value);
}

/** A canonical string for comparing two requests' parameters (key order does not matter). */
export function canonicalForm(value: FormValue): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalForm).join(",")}]`;
  const keys = Object.keys(value).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalForm(value[k])}`).join(",")}}`;
}
