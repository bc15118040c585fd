// Where the KV state machine keeps its values: behind small integer handles, so that a host can keep the
// bytes off the JS heap (src/storage/value-file.ts keeps them in a local file) while src/kv stays pure.
//
// The state machine maps each key to a handle; a put adds the new value and releases the old one. A
// store is not durable state: the WAL and snapshots are, and a node rebuilds its store when it starts.
// MemValueStore is the in-memory twin (the simulator and tests use it).

import { assert } from "../lib/assert.ts";

export interface ValueStore {
  /** Stores `bytes` and returns a handle for them (a non-negative small integer). The store may keep
   *  `bytes` itself rather than a copy: the caller must not change them afterwards. */
  add(bytes: Uint8Array): number;
  /** The value of a live handle. Read-only: it may be the store's own array. `scan`: the caller reads
   *  many values once each (a snapshot, a range), so a store that caches reads should not keep it. */
  read(handle: number, scan?: boolean): Uint8Array;
  /** Byte length of a live handle's value. */
  size(handle: number): number;
  /** The handle is no longer used; a later add may return it again. */
  release(handle: number): void;
  /** Releases every handle (a restore replaces the whole state). */
  clear(): void;
}

/** Values as one Uint8Array each in an array indexed by handle, with a free list. */
export class MemValueStore implements ValueStore {
  private values: (Uint8Array | null)[] = [];
  private free: number[] = [];

  add(bytes: Uint8Array): number {
    const handle = this.free.pop() ?? this.values.length;
    this.values[handle] = bytes;
    return handle;
  }

  read(handle: number): Uint8Array {
    const v = this.values[handle];
    assert(v !== undefined && v !== null, () => `value handle ${handle} is not live`);
    return v;
  }

  size(handle: number): number {
    return this.read(handle).length;
  }

  release(handle: number): void {
    this.read(handle);
    this.values[handle] = null;
    this.free.push(handle);
  }

  clear(): void {
    this.values = [];
    this.free = [];
  }
}
