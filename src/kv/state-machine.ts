// The replicated KV state machine: deterministic apply of committed commands, reads, snapshot/restore.
//
// Every replica that applies the same entries in the same order reaches the same state and returns
// the same results, including for undecodable commands and stale session retries. Key and value
// size limits are not checked here (a replica's local config must not change results): proposers
// check them with encodeCommand. Byte arrays handed out by get/range/results may be the stored values:
// treat them as read-only, and never transfer or detach their `.buffer` (after restore, values may be
// views into one shared buffer; see snapshot.ts).
// Memory: the keys live in a KeyIndex (key-index.ts) and their order in SortedKeys, both in typed
// arrays off the JS heap (measured at a million 11-character keys: 35.6 MB, where a Map and a string
// array took ~69 MB of heap and ~80 MB of heap reserved); the values live in a ValueStore
// (value-store.ts), which the host may keep off the heap. Sessions add at most maxSessions cached results.
// Key order everywhere (range, snapshot, hash) is ascending UTF-16 code-unit order, i.e. JS `<` on
// strings; it differs from UTF-8 byte order only for keys mixing U+E000..U+FFFF with astral characters.

import { assert, unreachable } from "../lib/assert.ts";
import { RaftKvError } from "../lib/errors.ts";
import { type CasCommand, decodeCommand, type KvCommand } from "./command.ts";
import { KeyIndex } from "./key-index.ts";
import type { CasResult, DeleteResult, KvResult, PutResult } from "./result.ts";
import { DEFAULT_MAX_SESSIONS, SessionTable } from "./session-table.ts";
import {
  DEFAULT_SNAPSHOT_CHUNK_BYTES,
  encodeSnapshot,
  hashImage,
  type KvImage,
  SnapshotDecoder,
  snapshotChunks,
  snapshotSize,
} from "./snapshot.ts";
import { lowerBound, SortedKeys } from "./sorted-keys.ts";
import { utf8ByteLength } from "./utf8.ts";
import { MemValueStore, type ValueStore } from "./value-store.ts";

export interface KvStateMachineOptions {
  /** Client sessions remembered for exactly-once writes; must be equal on every replica. */
  readonly maxSessions?: number;
  /** Where values live (default: a MemValueStore of this state machine's own). A restore clears it
   *  and fills it again: after `restore(bytes, { values })`, the state machine that used `values`
   *  before must not be used any more. */
  readonly values?: ValueStore;
}

export interface KvEntry {
  readonly key: string;
  readonly value: Uint8Array;
}

/** The state machine's image at one applied index, read chunk by chunk (see snapshotStream). */
export interface SnapshotStream {
  readonly appliedIndex: number;
  /** Total bytes of all the chunks; null when known only once the last chunk is out (an image written
   *  in one pass over the store, store-image.ts): the consumer counts. */
  readonly sizeBytes: number | null;
  /** The next chunk, or null after the last one. */
  next(): Uint8Array | null;
  /** Lets go of the values the stream holds; call it once, after the last chunk or to give up early. */
  close(): void;
}

/** A restore in progress: push the image's chunks (handed over: do not change them), then finish(). */
export interface KvRestore {
  push(chunk: Uint8Array): void;
  finish(): KvStateMachine;
}

export interface KvRange {
  /** Ascending by key. */
  readonly entries: readonly KvEntry[];
  /** True when more keys with the prefix follow the last one returned. */
  readonly more: boolean;
}

export class KvStateMachine {
  // Key to value handle. Replaced wholesale only by restore().
  private index = new KeyIndex();
  private keys = new SortedKeys(this.index);
  private readonly values: ValueStore;
  /** Sum of the live values' byte lengths. */
  private valueBytes = 0;
  private readonly sessions: SessionTable;
  private applied = 0;
  /** Open snapshot streams; while there are any, released handles wait in `deferred` (their values
   *  may still be read by a stream) and the key index is pinned (their keys too). */
  private streams = 0;
  private deferred: number[] = [];

  constructor(options: KvStateMachineOptions = {}) {
    this.sessions = new SessionTable(options.maxSessions ?? DEFAULT_MAX_SESSIONS);
    this.values = options.values ?? new MemValueStore();
  }

  /** Index of the last entry applied (0 before any). */
  get appliedIndex(): number {
    return this.applied;
  }

  /** Number of keys. */
  get size(): number {
    return this.index.size;
  }

  /** Number of client sessions remembered. */
  get sessionCount(): number {
    return this.sessions.size;
  }

  /** Applies the command entry at `index` (exactly appliedIndex + 1). Never throws for bad bytes:
   *  an undecodable command yields an error result, the same on every replica. */
  apply(index: number, data: Uint8Array): KvResult {
    this.advanceTo(index);
    let cmd: KvCommand;
    try {
      cmd = decodeCommand(data);
    } catch (err) {
      if (err instanceof RaftKvError) return { type: "error", message: err.message };
      throw err;
    }
    if (cmd.session === undefined) return this.execute(cmd, index);
    const prior = this.sessions.check(cmd.session);
    if (prior !== null) return prior;
    const result = this.execute(cmd, index);
    this.sessions.record(cmd.session.clientId, cmd.session.seq, index, result);
    return result;
  }

  /** Applies a NO-OP entry (a new leader's first entry, thesis §6.4): only the applied index moves. */
  applyNoop(index: number): void {
    this.advanceTo(index);
  }

  get(key: string): Uint8Array | null {
    const handle = this.index.get(key);
    return handle < 0 ? null : this.values.read(handle);
  }

  /** Up to `limit` (a safe integer >= 1) entries whose key starts with `prefix`, ascending by key, and
   *  no more than `maxBytes` of keys (UTF-8) and values together (at least one entry, however large):
   *  values past the byte budget are never read. O(log n + limit) while the key set is unchanged; the
   *  first call after keys were added or removed pays a linear merge (see sorted-keys.ts). */
  range(prefix: string, limit: number, startAfter?: string, maxBytes = Number.POSITIVE_INFINITY): KvRange {
    if (!Number.isSafeInteger(limit) || limit < 1) {
      throw new RaftKvError({ code: "INVALID_ARGUMENT", message: `range limit ${limit} is not >= 1` });
    }
    const ids = this.keys.current();
    const index = this.index;
    const entries: KvEntry[] = [];
    let i = lowerBound(index, ids, prefix);
    if (startAfter !== undefined) {
      const j = lowerBound(index, ids, startAfter);
      i = Math.max(i, j < ids.length && index.compareKey(ids[j]!, startAfter) === 0 ? j + 1 : j);
    }
    let bytes = 0;
    for (; i < ids.length && entries.length < limit; i++) {
      const id = ids[i]!;
      if (!index.startsWith(id, prefix)) break;
      const key = index.key(id);
      const handle = index.handleOf(id);
      const size = utf8ByteLength(key) + this.values.size(handle);
      if (entries.length > 0 && bytes + size > maxBytes) return { entries, more: true };
      bytes += size;
      entries.push({ key, value: this.values.read(handle, true) });
    }
    const more = entries.length === limit && i < ids.length && index.startsWith(ids[i]!, prefix);
    return { entries, more };
  }

  /** CRC32C over the sorted contents and the session table (not the applied index), for comparing
   *  replicas. Costs about as much as snapshot(). */
  hash(): number {
    return hashImage(this.image());
  }

  /** The whole state as checksummed bytes; see snapshot.ts for the format. */
  snapshot(): Uint8Array {
    return encodeSnapshot(this.image());
  }

  /** The same bytes as snapshot(), in chunks of about `chunkBytes`, so that the whole image is never
   *  in memory at once. The image is of this moment: entries applied while the stream is open do not
   *  change it (the sorted key ids and value handles are captured, about 8 bytes per key; values they
   *  replace stay in the store, and keys deleted keep their ids and bytes in the index, until close()). */
  snapshotStream(chunkBytes = DEFAULT_SNAPSHOT_CHUNK_BYTES): SnapshotStream {
    const ids = this.keys.current(); // never changed in place: a write makes the next call build anew
    const handles = new Uint32Array(ids.length);
    for (let i = 0; i < ids.length; i++) handles[i] = this.index.handleOf(ids[i]!);
    const image = this.imageOf(ids, (i) => handles[i]!);
    const chunks = snapshotChunks(image, chunkBytes);
    this.streams++;
    this.index.pin();
    let open = true;
    return {
      appliedIndex: this.applied,
      sizeBytes: snapshotSize(image),
      next: () => {
        assert(open, () => "snapshot stream read after close");
        const r = chunks.next();
        return r.done === true ? null : r.value;
      },
      close: () => {
        assert(open, () => "snapshot stream closed twice");
        open = false;
        this.index.unpin();
        if (--this.streams === 0) {
          for (const h of this.deferred) this.values.release(h);
          this.deferred = [];
        }
      },
    };
  }

  /** Rebuilds a state machine from snapshot(); throws a CORRUPT RaftKvError if the bytes are bad.
   *  Takes `bytes` over (values may stay views into them): the caller must not change them. */
  static restore(bytes: Uint8Array, options: KvStateMachineOptions = {}): KvStateMachine {
    const r = KvStateMachine.restoring(bytes.length, options);
    r.push(bytes);
    return r.finish();
  }

  /** restore() from an image of `sizeBytes` pushed in chunks of any sizes, so that it need never be
   *  in memory whole; finish() returns the state machine or throws CORRUPT (see SnapshotDecoder). */
  static restoring(sizeBytes: number, options: KvStateMachineOptions = {}): KvRestore {
    const sm = new KvStateMachine(options);
    sm.values.clear();
    const decoder = new SnapshotDecoder(sm.values, sizeBytes);
    return {
      push: (chunk) => decoder.push(chunk),
      finish: () => {
        const image = decoder.finish();
        sm.index = image.keys;
        sm.keys = new SortedKeys(image.keys);
        sm.valueBytes = image.valueBytes;
        sm.sessions.load(image.sessions);
        sm.applied = image.appliedIndex;
        return sm;
      },
    };
  }

  private image(): KvImage {
    const ids = this.keys.current();
    return this.imageOf(ids, (i) => this.index.handleOf(ids[i]!));
  }

  /** The image of the keys `ids` (ascending) whose i-th value has the handle handle(i). */
  private imageOf(ids: Int32Array, handle: (i: number) => number): KvImage {
    const index = this.index;
    let keyBytes = 0;
    for (const id of ids) keyBytes += index.utf8Length(id);
    return {
      appliedIndex: this.applied,
      keyCount: ids.length,
      keyBytes,
      key: (i) => index.key(ids[i]!),
      value: (i) => this.values.read(handle(i), true),
      valueBytes: this.valueBytes,
      sessions: Array.from(this.sessions.entries()),
    };
  }

  private advanceTo(index: number): void {
    assert(index === this.applied + 1, () => `apply index ${index}, expected ${this.applied + 1}`);
    this.applied = index;
  }

  private execute(cmd: KvCommand, index: number): KvResult {
    switch (cmd.op) {
      case "put":
        return this.put(cmd.key, cmd.value, index);
      case "delete":
        return this.delete(cmd.key, index);
      case "cas":
        return this.cas(cmd, index);
      default:
        return unreachable(cmd);
    }
  }

  private put(key: string, value: Uint8Array, index: number): PutResult {
    this.set(key, value);
    return { type: "put", revision: index };
  }

  private delete(key: string, index: number): DeleteResult {
    return { type: "delete", revision: index, existed: this.remove(key) };
  }

  private cas(cmd: CasCommand, index: number): CasResult {
    const current = this.get(cmd.key);
    const matches =
      cmd.expected === null ? current === null : current !== null && equal(current, cmd.expected);
    if (!matches) return { type: "cas", revision: index, succeeded: false, current };
    if (cmd.value === null) this.remove(cmd.key);
    else this.set(cmd.key, cmd.value);
    return { type: "cas", revision: index, succeeded: true, current: cmd.value };
  }

  private set(key: string, value: Uint8Array): void {
    const old = this.index.set(key, this.values.add(value));
    this.valueBytes += value.length;
    if (old >= 0) this.drop(old);
  }

  private remove(key: string): boolean {
    const old = this.index.delete(key);
    if (old < 0) return false;
    this.drop(old);
    this.keys.noteRemoved();
    return true;
  }

  private drop(handle: number): void {
    this.valueBytes -= this.values.size(handle);
    if (this.streams > 0) this.deferred.push(handle);
    else this.values.release(handle);
  }
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
