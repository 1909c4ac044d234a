/**
 * Objects kept sorted by (created, seq): `seq` breaks ties inside one second, so newest-first
 * order is deterministic. Cursor pagination walks from a position found by binary search, so a
 * page costs O(log n + scanned) instead of a full scan.
 */
export interface Ordered {
  id: string;
  created: number;
  seq: number;
}

function compare(a: Ordered, b: Ordered): number {
  return a.created - b.created || a.seq - b.seq;
}

export interface PageRequest<T> {
  limit: number;
  /** Return objects older than this one. */
  startingAfter?: Ordered;
  /** Return the objects immediately newer than this one (still presented newest first). */
  endingBefore?: Ordered;
  filter?: (item: T) => boolean;
}

export interface Page<T> {
  data: T[];
  hasMore: boolean;
}

export class SortedIndex<T extends Ordered> {
  private items: T[] = [];

  get size(): number {
    return this.items.length;
  }

  /** Index of the first item >= key. */
  private lowerBound(key: Ordered): number {
    let lo = 0;
    let hi = this.items.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compare(this.items[mid], key) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  insert(item: T): void {
    const last = this.items[this.items.length - 1];
    // Objects are normally created in order: append without searching.
    if (!last || compare(last, item) < 0) {
      this.items.push(item);
      return;
    }
    this.items.splice(this.lowerBound(item), 0, item);
  }

  remove(item: Ordered): boolean {
    const i = this.lowerBound(item);
    if (i < this.items.length && this.items[i].id === item.id) {
      this.items.splice(i, 1);
      return true;
    }
    return false;
  }

  clear(): void {
    this.items = [];
  }

  /** Newest first. */
  *newestFirst(): IterableIterator<T> {
    for (let i = this.items.length - 1; i >= 0; i--) yield this.items[i];
  }

  page(req: PageRequest<T>): Page<T> {
    const { limit, filter } = req;
    const out: T[] = [];
    if (req.endingBefore) {
      // Walk upwards (newer) from just after the cursor, then present newest first.
      let i = this.lowerBound(req.endingBefore);
      if (i < this.items.length && this.items[i].id === req.endingBefore.id) i++;
      for (; i < this.items.length; i++) {
        const item = this.items[i];
        if (filter && !filter(item)) continue;
        if (out.length === limit) return { data: out.reverse(), hasMore: true };
        out.push(item);
      }
      return { data: out.reverse(), hasMore: false };
    }
    let i = req.startingAfter ? this.lowerBound(req.startingAfter) - 1 : this.items.length - 1;
    for (; i >= 0; i--) {
      const item = this.items[i];
      if (filter && !filter(item)) continue;
      if (out.length === limit) return { data: out, hasMore: true };
      out.push(item);
    }
    return { data: out, hasMore: false };
  }
}
