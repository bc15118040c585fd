// LmdbStore: the Store seam on LMDB (the `lmdb` package: a copy-on-write B+tree in one memory-mapped
// file, as etcd keeps its state in bbolt). Chosen over our own log-structured store by measurement
// (scripts/bench-store.ts): its index lives in the file and the page cache, not in the process, so RSS
// does not grow with the key count, and a restart opens the file instead of rebuilding an index.
//
// How a batch is written without the apply loop waiting for the disk: write() records the batch's puts
// and deletes in an in-memory overlay (a persistent tree, sorted-tree.ts) and queues them, with the
// applied index, as one LMDB write batch (lmdb's `batch`: one transaction, committed on its worker
// thread). Reads look in the overlay first, then in LMDB; a batch leaves the overlay once LMDB reports it
// committed (and LMDB's read transaction is renewed, so reads see it there). Durability comes from lmdb's
// overlapping sync: the fsync of a commit runs on another thread after the commit; `flushed` tells when.
// `safeRestore` makes a restart use the newest *flushed* transaction even after a plain process crash,
// so a kill -9 and a power loss recover alike (the WAL replays what the store lost).
// A view pairs an LMDB read transaction, renewed at that moment, with the overlay as it is then.
// Layout: the data in the named database "data" (keys as raw bytes, lmdb's binary key encoding: byte
// order), the applied index and the format version in "meta". Keys are at most MAX_KEY_BYTES (LMDB's
// limit for 4 KiB pages).

import { mkdirSync, statSync } from "node:fs";
import { type Database, open, type RootDatabase } from "lmdb";
import { assert } from "../lib/assert.ts";
import { RaftKvError } from "../lib/errors.ts";
import type { DurableStore, StoreStats } from "./durable-store.ts";
import { type Tree, treeDelete, treeGet, treeScan, treeSet } from "./sorted-tree.ts";
import {
  compareBytes,
  MAX_STORE_KEY_BYTES,
  type ScanOptions,
  type StoreEntry,
  type StoreReader,
  type StoreView,
  type StoreWriter,
} from "./store.ts";

/** LMDB's largest key with its default 4 KiB pages. */
export const MAX_KEY_BYTES = MAX_STORE_KEY_BYTES;

const FORMAT_VERSION = 1;
const META_APPLIED = new Uint8Array([0x61]); // "a"
const META_FORMAT = new Uint8Array([0x66]); // "f"

/** A delete in the overlay; one object per delete, so that a batch leaving the overlay removes only
 *  what it wrote itself (identity), never a later batch's write to the same key. */
class Tombstone {}
type Pending = Uint8Array | Tombstone;

interface Batch {
  readonly index: number;
  readonly writes: readonly (readonly [Uint8Array, Pending])[];
  readonly bytes: number;
}

type LmdbTxn = ReturnType<RootDatabase["useReadTransaction"]>;

export interface LmdbStoreOptions {
  /** The folder of the store's files (data.mdb, lock.mdb); created if missing. */
  readonly dir: string;
  /** Named in errors. */
  readonly nodeId?: number;
}

export class LmdbStore implements DurableStore {
  private overlay: Tree<Pending> = null;
  /** Batches queued to LMDB and not yet reported committed, oldest first. */
  private readonly inflight: Batch[] = [];
  private pendingBytes = 0;
  private applied: number;
  private durable: number;
  private failure: RaftKvError | null = null;
  private writing = false;
  private closed = false;
  /** backlogAtMost() callers: resolved when the batches in flight fall to their bound. */
  private backlogWaiters: { batches: number; resolve: () => void }[] = [];
  /** The promise of the last batch queued, with its index (flush waits for it). */
  private last: { index: number; flushed: Promise<unknown> } | null = null;

  private constructor(
    private readonly env: RootDatabase,
    private readonly data: Database<Uint8Array, Buffer>,
    private readonly meta: Database<Uint8Array, Buffer>,
    private readonly options: LmdbStoreOptions,
  ) {
    const stored = meta.getBinary(Buffer.from(META_APPLIED));
    this.applied = stored === undefined ? 0 : readU64(stored);
    this.durable = this.applied;
  }

  /** Opens (creating if needed) the store in `options.dir`; throws STORAGE or CORRUPT with the path. */
  static open(options: LmdbStoreOptions): LmdbStore {
    const where = options.nodeId === undefined ? {} : { nodeId: options.nodeId };
    try {
      mkdirSync(options.dir, { recursive: true });
      // safeRestore is a documented option the package's types leave out.
      const envOptions = {
        path: options.dir,
        compression: false,
        cache: false,
        safeRestore: true,
        separateFlushed: true,
        maxDbs: 4,
      };
      const env = open(envOptions as Parameters<typeof open>[0] & object);
      const dbOptions = {
        keyEncoding: "binary",
        encoding: "binary",
        compression: false,
        cache: false,
      } as const;
      const data = env.openDB<Uint8Array, Buffer>("data", dbOptions);
      const meta = env.openDB<Uint8Array, Buffer>("meta", dbOptions);
      const format = meta.getBinary(Buffer.from(META_FORMAT));
      if (format !== undefined && readU64(format) !== FORMAT_VERSION) {
        env.close();
        throw new RaftKvError({
          code: "CORRUPT",
          message: `state store ${options.dir} has format ${readU64(format)}, this build reads ${FORMAT_VERSION}`,
          ...where,
          hint: "start the node with the raftkv version that wrote it, or move the folder aside to rebuild it from the cluster",
        });
      }
      return new LmdbStore(env, data, meta, options);
    } catch (err) {
      if (err instanceof RaftKvError) throw err;
      throw new RaftKvError({
        code: "STORAGE",
        message: `cannot open the state store in ${options.dir}: ${(err as Error).message}`,
        ...where,
        hint: "check the folder's permissions and free space",
        cause: err,
      });
    }
  }

  get appliedIndex(): number {
    return this.applied;
  }

  get durableIndex(): number {
    return this.durable;
  }

  get(key: Uint8Array): Uint8Array | null {
    const pending = treeGet(this.overlay, key);
    if (pending !== undefined) return pending instanceof Tombstone ? null : pending;
    return this.data.getBinary(asBuffer(key)) ?? null;
  }

  scan(options: ScanOptions = {}): IterableIterator<StoreEntry> {
    return merged(this.overlay, this.data, undefined, options);
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

  /** A batch of writes; index 0 is a load (the applied index in the file stays as it is). */
  private batch<T>(index: number, fn: (w: StoreWriter) => T): T {
    assert(!this.closed, () => "store used after close");
    assert(!this.writing, () => "store write inside a write");
    if (this.failure !== null) throw this.failure;
    const before = this.overlay;
    const writes: (readonly [Uint8Array, Pending])[] = [];
    let bytes = 0;
    const self = this;
    const w: StoreWriter = {
      get: (key) => self.get(key),
      scan: (o = {}) => self.scan(o),
      put(key, value) {
        checkKey(key);
        const v = value;
        writes.push([key, v]);
        bytes += key.length + value.length;
        self.overlay = treeSet(self.overlay, key, v);
      },
      delete(key) {
        const existed = self.get(key) !== null;
        if (existed) {
          const t = new Tombstone();
          writes.push([key, t]);
          bytes += key.length;
          self.overlay = treeSet(self.overlay, key, t);
        }
        return existed;
      },
    };
    this.writing = true;
    let result: T;
    try {
      result = fn(w);
    } catch (err) {
      this.overlay = before;
      throw err;
    } finally {
      this.writing = false;
    }
    const batch: Batch = { index, writes, bytes };
    this.queue(batch);
    this.applied = index;
    return result;
  }

  view(): StoreView {
    assert(!this.closed, () => "store used after close");
    // A read transaction of the newest commit, with the overlay of everything queued after it.
    this.env.resetReadTxn();
    const txn = this.env.useReadTransaction();
    const overlay = this.overlay;
    const appliedIndex = this.applied;
    let open = true;
    const check = (): void => assert(open, () => "store view read after close");
    const reader: StoreReader = {
      get: (key) => {
        check();
        const pending = treeGet(overlay, key);
        if (pending !== undefined) return pending instanceof Tombstone ? null : pending;
        return getIn(this.data, asBuffer(key), txn);
      },
      scan: (o = {}) => {
        check();
        return merged(overlay, this.data, txn, o);
      },
    };
    return {
      appliedIndex,
      get: reader.get,
      scan: reader.scan,
      close: () => {
        check();
        open = false;
        txn.done();
      },
    };
  }

  async flush(): Promise<number> {
    if (this.failure !== null) throw this.failure;
    const last = this.last;
    if (last === null) return this.durable;
    await last.flushed;
    if (this.failure !== null) throw this.failure;
    if (last.index > this.durable) this.durable = last.index;
    return this.durable;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.env.flushed;
    } finally {
      await this.env.close();
    }
  }

  backlogAtMost(batches: number): Promise<void> {
    if (this.inflight.length <= batches || this.failure !== null) return Promise.resolve();
    return new Promise((resolve) => this.backlogWaiters.push({ batches, resolve }));
  }

  stats(): StoreStats {
    let fileBytes = 0;
    try {
      fileBytes = statSync(`${this.options.dir}/data.mdb`).size;
    } catch {
      // Not created yet.
    }
    return { fileBytes, pendingBatches: this.inflight.length, pendingBytes: this.pendingBytes };
  }

  private queue(batch: Batch): void {
    this.inflight.push(batch);
    this.pendingBytes += batch.bytes;
    const { data, meta } = this;
    const index = new Uint8Array(8);
    writeU64(index, batch.index);
    const committed = this.env.batch(() => {
      for (const [key, v] of batch.writes) {
        if (v instanceof Tombstone) void data.remove(asBuffer(key));
        else void data.put(asBuffer(key), v);
      }
      if (batch.index > 0) void meta.put(Buffer.from(META_APPLIED), index);
      if (this.last === null) {
        const f = new Uint8Array(8);
        writeU64(f, FORMAT_VERSION);
        void meta.put(Buffer.from(META_FORMAT), f);
      }
    }) as Promise<boolean> & { flushed?: Promise<unknown> };
    const flushed = committed.flushed ?? committed;
    this.last = { index: batch.index, flushed };
    committed.then(
      () => this.committed(batch),
      (err: unknown) => this.fail(err),
    );
    flushed.then(
      () => {
        if (batch.index > this.durable) this.durable = batch.index;
      },
      (err: unknown) => this.fail(err),
    );
  }

  /** LMDB committed `batch` (the oldest in flight): its writes leave the overlay. */
  private committed(batch: Batch): void {
    // lmdb commits batches in the order they were queued, but the promises of batches sharing one
    // transaction may resolve in any order: a batch reported committed implies those before it are too.
    const at = this.inflight.indexOf(batch);
    assert(at >= 0, () => `store batch ${batch.index} reported committed twice`);
    this.inflight.splice(at, 1);
    this.pendingBytes -= batch.bytes;
    // Renew LMDB's read transaction first, so that reads find there what leaves the overlay.
    this.env.resetReadTxn();
    let overlay = this.overlay;
    for (const [key, v] of batch.writes) if (treeGet(overlay, key) === v) overlay = treeDelete(overlay, key);
    this.overlay = overlay;
    if (this.backlogWaiters.length > 0) this.wakeBacklogWaiters();
  }

  private wakeBacklogWaiters(): void {
    const waiting = this.backlogWaiters;
    this.backlogWaiters = [];
    for (const w of waiting) {
      if (this.inflight.length <= w.batches || this.failure !== null) w.resolve();
      else this.backlogWaiters.push(w);
    }
  }

  private fail(err: unknown): void {
    if (this.failure !== null) return;
    this.failure = new RaftKvError({
      code: "STORAGE",
      message: `state store write failed in ${this.options.dir}: ${(err as Error)?.message ?? String(err)}`,
      ...(this.options.nodeId === undefined ? {} : { nodeId: this.options.nodeId }),
      hint: "check the disk (space, permissions) and restart the node; it replays its log into the store",
      cause: err,
    });
    this.wakeBacklogWaiters();
  }
}

const LOWEST_KEY = Buffer.alloc(0);

/** The overlay over LMDB's entries within `o`, overlay first on equal keys, tombstones skipped. */
function* merged(
  overlay: Tree<Pending>,
  data: Database<Uint8Array, Buffer>,
  transaction: LmdbTxn | undefined,
  o: ScanOptions,
): Generator<StoreEntry, void, undefined> {
  const limit = o.limit ?? Number.POSITIVE_INFINITY;
  if (limit <= 0) return;
  const reverse = o.reverse === true;
  const range = reverse
    ? // lmdb's reverse range runs from `start` down to `end`; left out, `end` defaults to the key [0]
      // itself (exclusive), which dropped the key 0x00 from reverse scans: pass the lowest bound there is.
      { ...(o.end === undefined ? {} : { start: asBuffer(o.end) }), end: LOWEST_KEY, reverse: true }
    : {
        ...(o.start === undefined ? {} : { start: asBuffer(o.start) }),
        ...(o.end === undefined ? {} : { end: asBuffer(o.end) }),
      };
  const stored = data
    .getRange({ ...range, ...(transaction === undefined ? {} : { transaction }) })
    [Symbol.iterator]() as Iterator<{ key: Buffer; value: Buffer }>;
  const pending = treeScan(overlay, o);
  const sign = reverse ? -1 : 1;
  let a = nextStored(stored, o, reverse);
  let b = pending.next();
  let n = 0;
  try {
    while (a !== null || b.done !== true) {
      let entry: StoreEntry | null;
      const c = a === null ? 1 : b.done === true ? -1 : sign * compareBytes(a.key, b.value.key);
      if (c < 0) {
        entry = { key: a!.key, value: a!.value };
        a = nextStored(stored, o, reverse);
      } else {
        const p = b.done === true ? null : b.value;
        entry = p === null || p.value instanceof Tombstone ? null : { key: p.key, value: p.value };
        if (c === 0) a = nextStored(stored, o, reverse);
        b = pending.next();
      }
      if (entry === null) continue;
      yield entry;
      if (++n >= limit) return;
    }
  } finally {
    stored.return?.();
  }
}

/** The next LMDB entry within `o` (reverse scans start at `end`, which is exclusive, and stop below
 *  `start`, which is inclusive: lmdb's reverse ranges have the opposite ends). */
function nextStored(
  it: Iterator<{ key: Buffer; value: Buffer }>,
  o: ScanOptions,
  reverse: boolean,
): { key: Buffer; value: Buffer } | null {
  for (;;) {
    const r = it.next();
    if (r.done === true) return null;
    const e = r.value;
    if (!reverse) return e;
    if (o.end !== undefined && compareBytes(e.key, o.end) >= 0) continue;
    if (o.start !== undefined && compareBytes(e.key, o.start) < 0) return null;
    return e;
  }
}

/** getBinary in a read transaction (an option the package's types leave out of getBinary). */
function getIn(data: Database<Uint8Array, Buffer>, key: Buffer, transaction: LmdbTxn): Uint8Array | null {
  const get = data.getBinary as (k: Buffer, o: { transaction: LmdbTxn }) => Buffer | undefined;
  return get.call(data, key, { transaction }) ?? null;
}

function checkKey(key: Uint8Array): void {
  assert(key.length > 0 && key.length <= MAX_KEY_BYTES, () => `store key of ${key.length} bytes`);
}

function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

function readU64(b: Uint8Array): number {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return dv.getUint32(0, true) + dv.getUint32(4, true) * 0x1_0000_0000;
}

function writeU64(b: Uint8Array, v: number): void {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  dv.setUint32(0, v % 0x1_0000_0000, true);
  dv.setUint32(4, Math.floor(v / 0x1_0000_0000), true);
}
