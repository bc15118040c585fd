// The store's keys in ascending UTF-16 code-unit order (JS `<`), as ids of a KeyIndex, kept lazily for
// range and snapshot.
//
// Writes only mark what changed: overwriting a key costs nothing, a new key's id is UNSORTED in the
// index, a removed one RETIRED. The next reader merges: O(n + a log a) for `a` keys added since, instead
// of sorting all `n` keys (and O(n + a) when they were added in ascending order, as a bulk load or a
// restore adds them). So a range costs O(log n + limit) when the key set is unchanged, and one linear
// merge after writes that added or removed keys. The list is an Int32Array (4 bytes a key, off the
// JS heap) and is never changed in place: a merge builds a new one, so a snapshot stream may keep it.
// Retired ids are recycled by the index only after a merge has dropped them from the list; churn
// without readers is bounded by merging once more ids are retired than keys are live (plus a slack),
// except while a snapshot stream pins the index: then they wait for its close, as replaced values do.

import { AssertionError } from "../lib/assert.ts";
import type { KeyIndex } from "./key-index.ts";

const MAX_RETIRED_SLACK = 1024;
const EMPTY = new Int32Array(0);

export class SortedKeys {
  private sorted: Int32Array = EMPTY;
  /** index.removalCount when `sorted` was last rid of retired ids. */
  private removalsSeen: number;

  constructor(private readonly index: KeyIndex) {
    this.removalsSeen = index.removalCount;
  }

  /** Call after a key was removed from the index: keeps retired ids bounded when nobody reads. */
  noteRemoved(): void {
    const index = this.index;
    if (!index.pinned && index.retiredCount > index.size + MAX_RETIRED_SLACK) this.current();
  }

  /** The ids of all live keys, ascending by key. Shared: do not mutate; the array itself never changes,
   *  but ids in it are only meaningful until the next write (or while the index is pinned). */
  current(): Int32Array {
    const removals = this.index.removalCount;
    if (this.index.unsortedCount > 0 || removals !== this.removalsSeen) {
      const base = removals !== this.removalsSeen ? this.liveOnly() : this.sorted;
      const added = this.index.takeUnsorted();
      if (!ascending(this.index, added)) added.sort((a, b) => this.index.compareIds(a, b));
      this.sorted = base.length === 0 ? added : merge(this.index, base, added);
      this.removalsSeen = removals;
    }
    // Nothing outside snapshot streams (which pin the index) names a retired id any more.
    this.index.recycle();
    return this.sorted;
  }

  /** The list without its retired ids: every live id the index counts as sorted, and only those. */
  private liveOnly(): Int32Array {
    const out = new Int32Array(this.index.size - this.index.unsortedCount);
    let n = 0;
    for (const id of this.sorted) {
      if (!this.index.isSorted(id)) continue;
      if (n === out.length) throw new AssertionError(`more than ${n} live ids in the sorted list`);
      out[n++] = id;
    }
    if (n !== out.length)
      throw new AssertionError(`${n} live ids in the sorted list, expected ${out.length}`);
    return out;
  }
}

/** Index of the first id in `ids` (ascending by key) whose key is >= `target`. */
export function lowerBound(index: KeyIndex, ids: Int32Array, target: string): number {
  let lo = 0;
  let hi = ids.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (index.compareKey(ids[mid]!, target) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function ascending(index: KeyIndex, ids: Int32Array): boolean {
  for (let i = 1; i < ids.length; i++) if (index.compareIds(ids[i - 1]!, ids[i]!) >= 0) return false;
  return true;
}

/** Merges two lists ascending by key; a key in both means the index and the list are out of step. */
function merge(index: KeyIndex, a: Int32Array, b: Int32Array): Int32Array {
  const out = new Int32Array(a.length + b.length);
  let i = 0;
  let j = 0;
  let o = 0;
  while (i < a.length && j < b.length) {
    const c = index.compareIds(a[i]!, b[j]!);
    if (c === 0) throw new AssertionError(`key ${JSON.stringify(index.key(a[i]!))} sorted twice`);
    out[o++] = c < 0 ? a[i++]! : b[j++]!;
  }
  out.set(a.subarray(i), o);
  out.set(b.subarray(j), o + a.length - i);
  return out;
}
