// The in-memory twin with the host's face (DurableStore): flush and close complete at once. The
// simulator and the tests use it where a node would use an LmdbStore.

import type { DurableStore, StoreStats } from "./durable-store.ts";
import { MemStore } from "./mem-store.ts";
import type { ScanOptions, StoreEntry, StoreView, StoreWriter } from "./store.ts";

export class MemDurableStore implements DurableStore {
  constructor(readonly mem: MemStore = new MemStore()) {}

  get appliedIndex(): number {
    return this.mem.appliedIndex;
  }

  get durableIndex(): number {
    return this.mem.durableIndex;
  }

  get(key: Uint8Array): Uint8Array | null {
    return this.mem.get(key);
  }

  scan(options?: ScanOptions): IterableIterator<StoreEntry> {
    return this.mem.scan(options);
  }

  write<T>(index: number, fn: (w: StoreWriter) => T): T {
    return this.mem.write(index, fn);
  }

  load(fn: (w: StoreWriter) => void): void {
    this.mem.load(fn);
  }

  view(): StoreView {
    return this.mem.view();
  }

  async flush(): Promise<number> {
    return this.mem.makeDurable();
  }

  async close(): Promise<void> {
    this.mem.closeNow();
  }

  /** Nothing is ever waiting to commit in the twin. */
  async backlogAtMost(_batches: number): Promise<void> {}

  stats(): StoreStats {
    return { fileBytes: 0, pendingBatches: 0, pendingBytes: 0 };
  }
}
