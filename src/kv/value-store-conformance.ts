// What every ValueStore must do, as one seeded workload checked against a plain model: the in-memory
// twin and the file-backed store (src/storage/value-file.ts) both run it in their tests.

import { assert } from "../lib/assert.ts";
import { Prng } from "../lib/prng.ts";
import type { ValueStore } from "./value-store.ts";

export interface ValueStoreWorkload {
  readonly seed: number;
  readonly ops: number;
  /** Values are 0..maxValueBytes long; a few are up to 4x that, to cross a store's buffer sizes. */
  readonly maxValueBytes: number;
}

/** Runs the workload on `store` (it must start empty); throws an AssertionError at the first mismatch. */
export function checkValueStore(store: ValueStore, w: ValueStoreWorkload): void {
  const prng = new Prng(w.seed);
  const live = new Map<number, Uint8Array>();
  const check = (handle: number, expected: Uint8Array, when: string): void => {
    assert(store.size(handle) === expected.length, () => `${when}: size of handle ${handle}`);
    const got = store.read(handle, prng.chance(0.3));
    assert(
      got.length === expected.length && got.every((b, i) => b === expected[i]),
      () => `${when}: bytes of handle ${handle} differ`,
    );
  };
  for (let op = 0; op < w.ops; op++) {
    const roll = prng.int(0, 99);
    if (roll < 50 || live.size === 0) {
      const big = prng.chance(0.02);
      const length = prng.int(0, big ? 4 * w.maxValueBytes : w.maxValueBytes);
      const bytes = new Uint8Array(length).map(() => prng.int(0, 255));
      const handle = store.add(bytes);
      assert(Number.isSafeInteger(handle) && handle >= 0, () => `add returned handle ${handle}`);
      assert(!live.has(handle), () => `add returned handle ${handle}, which is live`);
      live.set(handle, bytes.slice());
      check(handle, bytes, `op ${op} right after add`);
    } else if (roll < 80) {
      const handles = [...live.keys()];
      const handle = handles[prng.int(0, handles.length - 1)]!;
      check(handle, live.get(handle)!, `op ${op} read`);
    } else if (roll < 99) {
      const handles = [...live.keys()];
      const handle = handles[prng.int(0, handles.length - 1)]!;
      store.release(handle);
      live.delete(handle);
    } else {
      store.clear();
      live.clear();
    }
  }
  for (const [handle, bytes] of live) check(handle, bytes, "at the end");
}
