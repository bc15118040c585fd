// The Store seam: the state machine's ordered byte-keyed state, written in atomic batches that also
// record the Raft index they bring the state to, read through consistent views, durable in the
// background. The KV state machine (src/kv) is logic on top of it; the WAL stays the log's durability.
//
// The contract, for every implementation (src/store/store-conformance.ts checks it):
// - Keys and values are bytes; keys are ordered by unsigned byte order (memcmp, shorter first on a tie).
// - `write(index, fn)` runs `fn` against the store and commits everything it wrote together with
//   `appliedIndex = index` (index > appliedIndex): after a crash the store holds either all of the batch
//   or none of it, and `appliedIndex` always describes exactly the data beside it. Reads inside `fn`,
//   and every read after `write` returns, see the batch (read your writes), before it is durable.
// - Durability is separate and asynchronous: `durableIndex` is the applied index of the newest batch
//   known to survive a power loss; `flush()` makes every batch written so far durable. A store opened
//   after a crash has `appliedIndex >= durableIndex` as it was at the crash (nothing durable is lost),
//   and data equal to what the batches up to its appliedIndex wrote (never a partial batch).
// - `view()` is a consistent read view at the moment it is taken: batches written later do not change
//   what it reads. Close it when done (an LMDB view pins pages the store cannot reuse meanwhile).
// - `scan` streams: entries are produced one by one as the iterator is advanced, never gathered.
// Pure types and helpers (src/kv imports them; no I/O here).

/** The largest key a Store takes: LMDB's with its default 4 KiB pages (lmdb-store.ts). The in-memory
 *  twin takes larger ones; the state machine's callers keep below this (src/server/config.ts). */
export const MAX_STORE_KEY_BYTES = 1978;

export interface StoreEntry {
  readonly key: Uint8Array;
  readonly value: Uint8Array;
}

export interface ScanOptions {
  /** First key, inclusive (default: the lowest). */
  readonly start?: Uint8Array;
  /** Last key, exclusive (default: past the highest). */
  readonly end?: Uint8Array;
  /** At most this many entries (default: no limit). */
  readonly limit?: number;
  /** Descending from `end` (exclusive) down to `start` (inclusive). */
  readonly reverse?: boolean;
}

export interface StoreReader {
  /** The value of `key`, or null. Read-only: it may be shared with the store. */
  get(key: Uint8Array): Uint8Array | null;
  /** Entries in key order (see ScanOptions), produced lazily. Entries are read-only. An iterator over
   *  the store itself (not a view) must be finished or dropped before the next write. */
  scan(options?: ScanOptions): IterableIterator<StoreEntry>;
}

export interface StoreWriter extends StoreReader {
  /** Sets `key` to `value`; the store may keep `value` itself: do not change it afterwards. */
  put(key: Uint8Array, value: Uint8Array): void;
  /** Removes `key`; whether it was there. */
  delete(key: Uint8Array): boolean;
}

/** A consistent read view (see the contract above). */
export interface StoreView extends StoreReader {
  readonly appliedIndex: number;
  /** Lets go of the view; reading it afterwards is a bug. */
  close(): void;
}

/** What the state machine uses: synchronous reads and atomic batches. */
export interface Store extends StoreReader {
  /** Index of the last batch written (0 for an empty store). */
  readonly appliedIndex: number;
  /** Index of the newest batch known durable (<= appliedIndex). */
  readonly durableIndex: number;
  /** One atomic batch bringing the store to `index` (see the contract above). If `fn` throws, nothing
   *  it wrote is kept and the error propagates. */
  write<T>(index: number, fn: (w: StoreWriter) => T): T;
  /** Fills a store that has applied nothing yet (appliedIndex 0) from a snapshot image: an atomic batch
   *  like write()'s that moves no index. The image is complete once the first write() names its index;
   *  a host throws away a store left with loaded data at appliedIndex 0 (a restore cut short). */
  load(fn: (w: StoreWriter) => void): void;
  view(): StoreView;
}

/** Unsigned byte order: negative, zero or positive, as memcmp then length. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = a[i]! - b[i]!;
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The lowest key above every key that starts with `prefix`, or undefined when there is none (the
 *  prefix is all 0xff bytes or empty): the exclusive `end` of a prefix scan. */
export function prefixEnd(prefix: Uint8Array): Uint8Array | undefined {
  for (let i = prefix.length - 1; i >= 0; i--) {
    if (prefix[i]! !== 0xff) {
      const end = prefix.slice(0, i + 1);
      end[i] = prefix[i]! + 1;
      return end;
    }
  }
  return undefined;
}

/** Whether `key` falls within [start, end) of `o`. */
export function inRange(key: Uint8Array, o: ScanOptions): boolean {
  if (o.start !== undefined && compareBytes(key, o.start) < 0) return false;
  return o.end === undefined || compareBytes(key, o.end) < 0;
}
