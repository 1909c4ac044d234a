/**
 * Splitting a newest-first Stripe list (`GET /v1/invoices?created[...]`) into `created` ranges
 * that can be paged at the same time. Pure: the scanner (invoices.ts) fetches and records.
 *
 * A range is paged with one fixed filter `created[gte]=gte, created[lte]=lte` and Stripe's own
 * cursor, so no page depends on how Stripe treats a cursor under another filter. It holds the
 * invoices of that filter that come after `cursor` and were created at or after `floor`: once
 * a page reaches below `floor`, what follows belongs to another range (already read there).
 */

/** Stripe's largest list page. */
const PAGE_SIZE = 100;

/** A part of a scan still to be read. Bounds are Unix seconds, inclusive; null = open. */
export interface ScanRange {
  gte: number | null;
  lte: number | null;
  cursor: string | null;
  /** The range ends once a page's oldest invoice is older than this (null: the filter's end). */
  floor: number | null;
}

/** What a page said, newest first. */
export interface ScanPage {
  created: number[];
  lastId: string | null;
  hasMore: boolean;
}

/** The whole account (null) or everything created at or after `from`. */
export function wholeScan(from: number | null): ScanRange {
  return { gte: from, lte: null, cursor: null, floor: from };
}

/** Stripe's list parameters for the range's next page. */
export function pageParams(r: ScanRange): {
  created?: { gte?: number; lte?: number };
  starting_after?: string;
} {
  const created: { gte?: number; lte?: number } = {};
  if (r.gte !== null) created.gte = r.gte;
  if (r.lte !== null) created.lte = r.lte;
  return {
    ...(Object.keys(created).length > 0 ? { created } : {}),
    ...(r.cursor !== null ? { starting_after: r.cursor } : {}),
  };
}

/**
 * What is left of `r` after `page`: nothing, the same range one page on, or (when `spare`
 * fetchers are idle) that plus up to `spare` older ranges cut from it. Cuts follow the page's own
 * density: the first new range is as wide in time as the page was, each next one twice as wide,
 * the last reaching down to the floor, so an account of unknown shape is covered in few rounds.
 */
export function afterPage(r: ScanRange, page: ScanPage, spare: number): ScanRange[] {
  if (!page.hasMore || page.created.length === 0 || page.lastId === null) return [];
  const newest = page.created[0];
  const oldest = page.created[page.created.length - 1];
  if (r.floor !== null && oldest < r.floor) return [];
  const next: ScanRange = { ...r, cursor: page.lastId };
  const low = r.floor ?? 0;
  const span = Math.max(1, newest - oldest);
  if (spare < 1 || oldest - low <= span) return [next];
  // Invoices of the page's oldest second may follow it. When the page holds at most half a page
  // of that second, the first cut reads the second again (those duplicates cost less than a
  // cursor reading on past its floor); else the cursor goes on through that second alone.
  const sameSecond = page.created.filter((c) => c === oldest).length;
  const reread = sameSecond <= PAGE_SIZE / 2;
  // A bounded range gets no more cuts than the pages its density suggests are left.
  const perSecond = page.created.length / span;
  const pagesLeft = r.floor === null
    ? spare + 1
    : Math.ceil(perSecond * (oldest - low) / PAGE_SIZE);
  const cuts = Math.min(reread ? spare + 1 : spare, Math.max(1, pagesLeft));
  const out: ScanRange[] = [];
  let top = reread ? oldest : oldest - 1; // the newest second the next cut range holds
  // The first cut holds a page's worth at the density just seen, each next one twice as much.
  let width = Math.max(1, Math.floor(PAGE_SIZE / perSecond));
  for (let i = 0; i < cuts && top >= low; i++) {
    const last = i === cuts - 1 || top - width < low;
    const bottom = last ? low : top - width + 1;
    out.push({
      gte: last ? r.floor : bottom,
      lte: top,
      cursor: null,
      floor: last ? r.floor : bottom,
    });
    top = bottom - 1;
    width *= 2;
  }
  if (reread) return out;
  // The continuing range now only holds its oldest second, which the cuts do not.
  return [{ ...next, floor: oldest }, ...out];
}
