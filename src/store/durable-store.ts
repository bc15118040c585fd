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
  /** Resolves once at most `batches` batches are written and not yet committed: the host's back
   *  pressure (a node stops applying while the store is that far behind; applying may lag the log). */
  backlogAtMost(batches: number): Promise<void>;
}

export interface StoreStats {
  /** Bytes of the store's files on disk (0 for the in-memory twin). */
  readonly fileBytes: number;
  /** Batches written and not yet committed by the store (its backlog; the twin commits at once),
   *  and their bytes of keys and values. */
  readonly pendingBatches: number;
  readonly pendingBytes: number;
}
