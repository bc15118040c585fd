// The host's side of a store (the replica and the node use it; src/kv sees only Store): durability,
// stats and closing, which are asynchronous, so they live apart from the pure seam in store.ts.

import type { Store } from "./store.ts";

/** The host's side of a store: durability, stats, closing. */
export interface DurableStore extends Store {
  /** Makes every batch written so far durable; resolves with the new durableIndex. Rejects (with a
   *  STORAGE RaftKvError) when the disk fails; the store then refuses further writes. */
  flush(): Promise<number>;
  /** Resolves once every write has been committed (not necessarily durable) and closes the store. */
  close(): Promise<void>;
  stats(): StoreStats;
}

export interface StoreStats {
  /** Bytes of the store's files on disk (0 for the in-memory twin). */
  readonly fileBytes: number;
  /** Batches written and not yet durable, and their bytes of keys and values. */
  readonly pendingBatches: number;
  readonly pendingBytes: number;
}
