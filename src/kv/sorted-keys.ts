// The keys of the store in ascending UTF-16 code-unit order (JS `<`), kept lazily for range and snapshot.
//
// Writes only note what changed: overwriting a key costs nothing, a new key is pushed on a list.
// The next reader merges: O(n + a log a) for `a` keys added since, instead of sorting all `n` keys.
// So a range costs O(log n + limit) when the key set is unchanged, and one linear merge after writes
// that added or removed keys. Churn without readers is bounded: past n + 1024 pending additions the
// lists are dropped and the next reader sorts everything once.

const MAX_PENDING_SLACK = 1024;

export class SortedKeys {
  private sorted: string[];
  private added: string[] = [];
  private removed = 0;
  /** When true, `sorted` and `added` are meaningless and the next reader rebuilds from `live`. */
  private stale = false;

  /** `live` is the store's map; `sorted` its keys already in order (from a snapshot), if known. */
  constructor(
    private readonly live: ReadonlyMap<string, unknown>,
    sorted: string[] = [],
  ) {
    this.sorted = sorted;
  }

  /** Call after inserting a key that was absent. */
  noteAdded(key: string): void {
    if (this.stale) return;
    this.added.push(key);
    if (this.added.length > this.live.size + MAX_PENDING_SLACK) this.markStale();
  }

  /** Call after removing a key that was present. */
  noteRemoved(): void {
    this.removed++;
  }

  /** All live keys, ascending. The array is shared: do not mutate; valid until the next write. */
  current(): readonly string[] {
    if (this.stale) {
      this.sorted = Array.from(this.live.keys()).sort();
      this.stale = false;
    } else if (this.added.length > 0 || this.removed > 0) {
      // Without removals every added key is still live and was added once: no filtering needed.
      const has = (k: string): boolean => this.live.has(k);
      const base = this.removed > 0 ? this.sorted.filter(has) : this.sorted;
      const added = this.removed > 0 ? this.added.sort().filter(has) : this.added.sort();
      this.sorted = mergeUnique(base, added);
    }
    this.added = [];
    this.removed = 0;
    return this.sorted;
  }

  private markStale(): void {
    this.stale = true;
    this.sorted = [];
    this.added = [];
  }
}

/** Index of the first key >= `target` in ascending `keys`. */
export function lowerBound(keys: readonly string[], target: string): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid]! < target) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Merges two ascending lists into one without duplicates (`a` has none; `b` may). */
function mergeUnique(a: readonly string[], b: readonly string[]): string[] {
  const out: string[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    const x = a[i];
    const y = b[j];
    let next: string;
    if (y === undefined || (x !== undefined && x <= y)) {
      next = x!;
      i++;
      if (next === y) j++;
    } else {
      next = y;
      j++;
    }
    if (out.length === 0 || out[out.length - 1] !== next) out.push(next);
  }
  return out;
}
