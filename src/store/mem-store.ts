// MemStore: the in-memory twin of the Store seam, for the simulator and tests. The state is a
// persistent tree (sorted-tree.ts), so a view or the durable image is one pointer. Durability is
// modelled exactly: makeDurable() makes what was written durable, crash() throws away everything since the
// last flush, as a power loss would (batches are atomic, so nothing partial survives). Pure (src/kv may use it);
// mem-durable-store.ts gives it the host's asynchronous DurableStore face.

import { assert } from "../lib/assert.ts";
import { type Tree, treeDelete, treeGet, treeScan, treeSet, treeSize } from "./sorted-tree.ts";
import type { ScanOptions, Store, StoreEntry, StoreView, StoreWriter } from "./store.ts";

interface Image {
  readonly tree: Tree<Uint8Array>;
  readonly appliedIndex: number;
}

export class MemStore implements Store {
  private tree: Tree<Uint8Array> = null;
  private applied = 0;
  private durable: Image = { tree: null, appliedIndex: 0 };
  private writing = false;
  private closed = false;
  private openViews = 0;
  private pendingBatches = 0;
  private pendingBytes = 0;

  get appliedIndex(): number {
    return this.applied;
  }

  get durableIndex(): number {
    return this.durable.appliedIndex;
  }

  /** Views not yet closed (tests check that users close them). */
  get viewsOpen(): number {
    return this.openViews;
  }

  /** Number of keys (a full walk: for tests). */
  get size(): number {
    return treeSize(this.tree);
  }

  get(key: Uint8Array): Uint8Array | null {
    return treeGet(this.tree, key) ?? null;
  }

  scan(options: ScanOptions = {}): IterableIterator<StoreEntry> {
    return entries(this.tree, options);
  }

  write<T>(index: number, fn: (w: StoreWriter) => T): T {
    assert(
      Number.isSafeInteger(index) && index > this.applied,
      () => `store batch at index ${index}, applied index is ${this.applied}`,
    );
    return this.batch(index, fn);
  }

  load(fn: (w: StoreWriter) => void): void {
    assert(this.applied === 0, () => `store load at applied index ${this.applied}`);
    this.batch(0, fn);
  }

  private batch<T>(index: number, fn: (w: StoreWriter) => T): T {
    this.checkOpen();
    assert(!this.writing, () => "store write inside a write");
    const before = this.tree;
    let bytes = 0;
    const self = this;
    const w: StoreWriter = {
      get: (key) => treeGet(self.tree, key) ?? null,
      scan: (o = {}) => entries(self.tree, o),
      put(key, value) {
        assert(key.length > 0, () => "store keys are not empty");
        bytes += key.length + value.length;
        self.tree = treeSet(self.tree, key, value);
      },
      delete(key) {
        const next = treeDelete(self.tree, key);
        const existed = next !== self.tree;
        bytes += key.length;
        self.tree = next;
        return existed;
      },
    };
    this.writing = true;
    try {
      const r = fn(w);
      this.applied = index;
      this.pendingBatches++;
      this.pendingBytes += bytes;
      return r;
    } catch (err) {
      this.tree = before;
      throw err;
    } finally {
      this.writing = false;
    }
  }

  view(): StoreView {
    this.checkOpen();
    const tree = this.tree;
    let open = true;
    this.openViews++;
    const check = (): void => assert(open, () => "store view read after close");
    return {
      appliedIndex: this.applied,
      get: (key) => {
        check();
        return treeGet(tree, key) ?? null;
      },
      scan: (o = {}) => {
        check();
        return entries(tree, o);
      },
      close: () => {
        check();
        open = false;
        this.openViews--;
      },
    };
  }

  /** Makes everything written durable (a flush that completes at once); returns the durable index. */
  makeDurable(): number {
    this.checkOpen();
    this.durable = { tree: this.tree, appliedIndex: this.applied };
    this.pendingBatches = 0;
    this.pendingBytes = 0;
    return this.applied;
  }

  /** A power loss: back to the last flush, as the next open would find it. */
  crash(): this {
    this.tree = this.durable.tree;
    this.applied = this.durable.appliedIndex;
    this.pendingBatches = 0;
    this.pendingBytes = 0;
    this.closed = false;
    this.openViews = 0;
    return this;
  }

  /** A clean close keeps everything written (it waits for it, as the real stores do). */
  closeNow(): void {
    this.durable = { tree: this.tree, appliedIndex: this.applied };
    this.closed = true;
  }

  /** Opens again after close(). */
  reopen(): this {
    this.closed = false;
    return this;
  }

  /** Batches written since the last makeDurable, and their bytes. */
  pending(): { batches: number; bytes: number } {
    return { batches: this.pendingBatches, bytes: this.pendingBytes };
  }

  private checkOpen(): void {
    assert(!this.closed, () => "store used after close");
  }
}

function* entries(tree: Tree<Uint8Array>, o: ScanOptions): Generator<StoreEntry, void, undefined> {
  const limit = o.limit ?? Number.POSITIVE_INFINITY;
  let n = 0;
  if (n >= limit) return;
  for (const node of treeScan(tree, o)) {
    yield { key: node.key, value: node.value };
    if (++n >= limit) return;
  }
}
