// The KV state machine as logic on top of a Store (src/store/store.ts): it persists itself. Each applied
// batch of entries is one store batch carrying its Raft index, so a node that restarts opens the store
// and replays the log after store.appliedIndex (no snapshot restore), and the log may be compacted up to
// store.durableIndex. Results are those of KvStateMachine (state-machine.ts) for the same entries; the
// differential test (store-state-machine.test.ts) holds them equal. The node runs it (src/server/kv-state.ts,
// and the simulator over a MemStore); its snapshots are images of the whole store (store-image.ts).
//
// Layout in the store: mvcc-layout.ts (meta, keys, history, sessions, key index, leases). raftkv.v1
// writes and MVCC commands (mvcc-store.ts) share the keys, their history and the revisions: a
// raftkv.v1 put is an etcd put without a lease, a delete a DeleteRange of one key, a successful cas a Txn.
// Revisions are etcd's: one per write request that changes something (a put; a delete of a key that
// was there; a cas that succeeded); the empty store is at revision 1; create_revision and version are
// reset by a delete. The raftkv.v1 results' `revision` field stays the log index, as the KV API reports
// it today. MVCC commands (mvcc-codec.ts, op 16) apply here too: applyAny() returns their results.
// Key order is UTF-8 byte order (etcd's), which differs from KvStateMachine's UTF-16 order only for keys
// mixing U+E000..U+FFFF with characters above U+FFFF.

import { AssertionError, assert, unreachable } from "../lib/assert.ts";
import { crc32c } from "../lib/crc32c.ts";
import { RaftKvError } from "../lib/errors.ts";
import { compareBytes, prefixEnd, type Store, type StoreReader, type StoreWriter } from "../store/store.ts";
import { ByteReader, ByteWriter } from "./bytes.ts";
import { type CasCommand, decodeCommand, type KvCommand } from "./command.ts";
import { decodeMvccCommand, isMvccCommand } from "./mvcc-codec.ts";
import {
  currentKey,
  decodeRecord,
  type KeyRecord,
  RECORD_HEAD_BYTES,
  TABLE_KEYS,
  TABLE_SESSIONS,
} from "./mvcc-layout.ts";
import { MvccStore, mvccError, type RangeBounds, type WriteTxn } from "./mvcc-store.ts";
import type {
  LeaseInfo,
  MvccCommand,
  MvccError,
  MvccResult,
  RangeRequest,
  RangeResult,
  RevisionChanges,
  TxnOp,
} from "./mvcc-types.ts";
import { type KvResult, readResult, resultSize, writeResult } from "./result.ts";
import {
  DEFAULT_MAX_SESSIONS,
  type Session,
  SessionTable,
  type SessionWrite,
  WRITES_IN_FLIGHT_PER_CLIENT,
} from "./session-table.ts";
import type { KvEntry, KvRange, SnapshotStream } from "./state-machine.ts";
import { StoreImageDecoder, StoreImageStream } from "./store-image.ts";
import { utf8Decode, utf8EncodeInto } from "./utf8.ts";

export type { KeyRecord } from "./mvcc-layout.ts";
export {
  decodeRecord,
  encodeRecord,
  TABLE_HISTORY,
  TABLE_KEYS,
  TABLE_META,
  TABLE_SESSIONS,
} from "./mvcc-layout.ts";

/** What applying any command returns: a raftkv.v1 result, or an MVCC one. */
export type StoreResult = KvResult | MvccResult;

/** The answer of apply() for an MVCC command (its result is applyAny()'s). */
const MVCC_VIA_APPLY: KvResult = {
  type: "error",
  message: "an MVCC command: its result is returned by applyAny()",
};

/** A committed log entry as the state machine sees it (core's Entry fits). */
export interface AppliedEntry {
  readonly index: number;
  readonly kind: "command" | "noop" | string;
  readonly data: Uint8Array;
}

export interface StoreStateMachineOptions {
  readonly store: Store;
  /** Client sessions remembered for exactly-once writes; must be equal on every replica. */
  readonly maxSessions?: number;
  /** Called after each store batch with the changes of every revision it wrote, in order (the watch
   *  hub); synchronous, in the apply loop: keep it short, never throw. */
  readonly onChanges?: (changes: readonly RevisionChanges[]) => void;
}

/** A restore in progress (see StoreStateMachine.restoring). */
export interface StoreRestore {
  push(chunk: Uint8Array): void;
  finish(): StoreStateMachine;
}

/** Snapshot chunks of about this many bytes by default. A chunk is made in one event-loop turn (the
 *  writer awaits its write before asking for the next): on LMDB 1 MiB took 70-90 ms of one turn, during
 *  which no heartbeat left; 128 KiB keeps a turn near 10 ms. */
export const DEFAULT_IMAGE_CHUNK_BYTES = 128 * 1024;

export class StoreStateMachine {
  private readonly store: Store;
  private readonly sessions: SessionTable;
  private readonly mvcc: MvccStore;
  private onChanges: ((changes: readonly RevisionChanges[]) => void) | null;

  /** Opens the state machine on whatever the store holds (empty, or as a previous run left it). */
  constructor(options: StoreStateMachineOptions) {
    this.store = options.store;
    this.sessions = new SessionTable(options.maxSessions ?? DEFAULT_MAX_SESSIONS);
    this.mvcc = new MvccStore(this.store);
    this.onChanges = options.onChanges ?? null;
    this.sessions.load(loadSessions(this.store, this.store.appliedIndex));
  }

  get appliedIndex(): number {
    return this.store.appliedIndex;
  }

  /** The store revision: 1 + the number of write requests that changed something. */
  get revision(): number {
    return this.mvcc.revision;
  }

  /** The revision below which history is compacted (0: none). */
  get compacted(): number {
    return this.mvcc.compacted;
  }

  get size(): number {
    return this.mvcc.keyCount;
  }

  /** Replaces the change listener (see StoreStateMachineOptions.onChanges). */
  setChangeListener(listener: ((changes: readonly RevisionChanges[]) => void) | null): void {
    this.onChanges = listener;
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  /** Applies the command entry at `index` (exactly appliedIndex + 1); see KvStateMachine.apply. An MVCC
   *  command applies the same way, but its result is applyAny()'s. */
  apply(index: number, data: Uint8Array): KvResult {
    return asKvResult(this.applyAny(index, data));
  }

  /** Applies a raftkv.v1 or an MVCC command entry at `index`. */
  applyAny(index: number, data: Uint8Array): StoreResult {
    this.mustFollow(index);
    return this.written(this.store.write(index, (w) => this.applyIn(w, index, data)));
  }

  applyNoop(index: number): void {
    this.mustFollow(index);
    this.store.write(index, () => undefined);
  }

  /** Applies consecutive entries as one store batch (one LMDB transaction); a result per entry (null
   *  for a NO-OP). */
  applyEntries(entries: readonly AppliedEntry[]): (KvResult | null)[] {
    return this.applyEntriesAny(entries).map((r) => (r === null ? null : asKvResult(r)));
  }

  /** As applyEntries, with the results of MVCC commands. */
  applyEntriesAny(entries: readonly AppliedEntry[]): (StoreResult | null)[] {
    const first = entries[0];
    if (first === undefined) return [];
    this.mustFollow(first.index);
    const last = entries[entries.length - 1]!;
    return this.written(
      this.store.write(last.index, (w) =>
        entries.map((e, i) => {
          assert(e.index === first.index + i, () => `entry ${e.index} not consecutive after ${first.index}`);
          return e.kind !== "command" ? null : this.applyIn(w, e.index, e.data);
        }),
      ),
    );
  }

  /** etcd's Range at request.revision (0: now), within the server's bounds. */
  mvccRange(request: RangeRequest, bounds?: RangeBounds): RangeResult | MvccError {
    return this.mvcc.range(this.store, request, bounds);
  }

  /** The changes of whole revisions from `fromRevision` (>= compacted), about `maxEvents` events. */
  changesFrom(fromRevision: number, maxEvents: number): RevisionChanges[] {
    return this.mvcc.changesFrom(this.store, fromRevision, maxEvents);
  }

  /** A Txn that writes on none of its paths (isReadOnlyTxn), answered from the state now as etcd
   *  serves read-only txns: without the log. */
  readTxn(cmd: TxnOp): MvccResult {
    const store = this.store;
    const readOnly: StoreWriter = {
      get: (key) => store.get(key),
      scan: (o) => store.scan(o),
      put: () => {
        throw new AssertionError("a read-only txn wrote");
      },
      delete: () => {
        throw new AssertionError("a read-only txn deleted");
      },
    };
    return this.mvcc.apply(readOnly, cmd);
  }

  leaseIds(): bigint[] {
    return this.mvcc.leaseIds(this.store);
  }

  lease(id: bigint): LeaseInfo | null {
    return this.mvcc.lease(this.store, id);
  }

  hashKv(revision: number): { hash: number; compactRevision: number } | MvccError {
    return this.mvcc.hashKv(this.store, revision);
  }

  /** After a batch is written: hands its changes to the listener. */
  private written<T>(result: T): T {
    const changes = this.mvcc.drainChanges();
    if (changes.length > 0) this.onChanges?.(changes);
    return result;
  }

  get(key: string): Uint8Array | null {
    return this.getRecord(key)?.value ?? null;
  }

  getRecord(key: string): KeyRecord | null {
    return readRecord(this.store, keyOf(key));
  }

  /** The record of a key given as bytes (MVCC keys need not be UTF-8). */
  getRecordBytes(key: Uint8Array): KeyRecord | null {
    return readRecord(this.store, currentKey(key));
  }

  /** As KvStateMachine.range (at most `maxBytes` of keys and values, at least one entry), in UTF-8 byte
   *  order; streams from the store (limit + 1 entries read). */
  range(prefix: string, limit: number, startAfter?: string, maxBytes = Number.POSITIVE_INFINITY): KvRange {
    if (!Number.isSafeInteger(limit) || limit < 1) {
      throw new RaftKvError({ code: "INVALID_ARGUMENT", message: `range limit ${limit} is not >= 1` });
    }
    const low = keyOf(prefix);
    const end = prefixEnd(low);
    let start = low;
    if (startAfter !== undefined) {
      const after = keyOf(`${startAfter}\u0000`); // the lowest key above startAfter
      if (compareBytes(after, start) > 0) start = after;
    }
    const entries: KvEntry[] = [];
    let more = false;
    let bytes = 0;
    for (const e of this.store.scan({ start, ...(end === undefined ? {} : { end }), limit: limit + 1 })) {
      if (entries.length === limit) {
        more = true;
        break;
      }
      const size = e.key.length - 1 + e.value.length - RECORD_HEAD_BYTES;
      if (entries.length > 0 && bytes + size > maxBytes) return { entries, more: true };
      bytes += size;
      entries.push({ key: utf8Decode(e.key.subarray(1), "key"), value: decodeRecord(e.value).value });
    }
    return { entries, more };
  }

  /** CRC32C over the keys with their records, then the sessions (not the applied index): equal on
   *  replicas with equal contents. */
  hash(): number {
    let crc = 0;
    const len = new Uint8Array(4);
    const dv = new DataView(len.buffer);
    const keysEnd = new Uint8Array([TABLE_KEYS + 1]);
    for (const e of this.store.scan({ start: new Uint8Array([TABLE_KEYS]), end: keysEnd })) {
      dv.setUint32(0, e.key.length, true);
      crc = crc32c(e.value, crc32c(e.key, crc32c(len, crc)));
    }
    for (const [clientId, s] of this.sessions.entries())
      crc = crc32c(encodeSession(s), crc32c(keyBytes(clientId), crc));
    return crc;
  }

  /** The whole store as of now, as an image (store-image.ts) read chunk by chunk from a store view:
   *  applies that follow do not change it. One pass over the view; its size is known at the end. */
  snapshotStream(chunkBytes = DEFAULT_IMAGE_CHUNK_BYTES): SnapshotStream {
    return new StoreImageStream(this.store.view(), chunkBytes);
  }

  /** Fills `options.store`, which must be empty (appliedIndex 0, nothing loaded), from an image of
   *  `sizeBytes` pushed in chunks; finish() checks the image whole and answers with the state machine
   *  on that store, or throws CORRUPT (the store then holds a partial image: throw it away). */
  static restoring(sizeBytes: number, options: StoreStateMachineOptions): StoreRestore {
    const store = options.store;
    assert(store.appliedIndex === 0, () => `restore into a store at index ${store.appliedIndex}`);
    const decoder = new StoreImageDecoder(sizeBytes, (entries) =>
      store.load((w) => {
        for (const e of entries) w.put(e.key, e.value);
      }),
    );
    return {
      push: (chunk) => decoder.push(chunk),
      finish: () => {
        const { appliedIndex } = decoder.finish();
        if (appliedIndex < 1) throw new RaftKvError({ code: "CORRUPT", message: "store image at index 0" });
        store.write(appliedIndex, () => undefined);
        try {
          return new StoreStateMachine(options);
        } catch (err) {
          if (err instanceof RaftKvError) throw err;
          throw new RaftKvError({
            code: "CORRUPT",
            message: `store image at ${appliedIndex} does not open: ${(err as Error).message}`,
            cause: err,
          });
        }
      },
    };
  }

  private mustFollow(index: number): void {
    const applied = this.store.appliedIndex;
    assert(index === applied + 1, () => `apply index ${index}, expected ${applied + 1}`);
  }

  private applyIn(w: StoreWriter, index: number, data: Uint8Array): StoreResult {
    if (isMvccCommand(data)) {
      let mvccCmd: MvccCommand;
      try {
        mvccCmd = decodeMvccCommand(data);
      } catch (err) {
        if (err instanceof RaftKvError)
          return { ...mvccError("invalid", err.message), revision: this.revision };
        throw err;
      }
      return this.mvcc.apply(w, mvccCmd);
    }
    let cmd: KvCommand;
    try {
      cmd = decodeCommand(data);
    } catch (err) {
      if (err instanceof RaftKvError) return { type: "error", message: err.message };
      throw err;
    }
    if (cmd.session === undefined) return this.execute(w, cmd, index);
    const prior = this.sessions.check(cmd.session);
    if (prior !== null) return prior;
    const result = this.execute(w, cmd, index);
    const { clientId, seq } = cmd.session;
    const evicted = this.sessions.record(clientId, seq, index, result);
    const session = this.sessions.get(clientId);
    assert(session !== undefined, () => `session of ${clientId} just recorded is missing`);
    w.put(sessionKey(clientId), encodeSession(session));
    if (evicted !== null) w.delete(sessionKey(evicted));
    return result;
  }

  private execute(w: StoreWriter, cmd: KvCommand, index: number): KvResult {
    const txn = this.mvcc.begin(w);
    let result: KvResult;
    switch (cmd.op) {
      case "put":
        txn.set(keyOf(cmd.key).subarray(1), cmd.value, 0n);
        result = { type: "put", revision: index };
        break;
      case "delete":
        result = {
          type: "delete",
          revision: index,
          existed: txn.deleteKey(keyOf(cmd.key).subarray(1)) !== null,
        };
        break;
      case "cas":
        result = cas(txn, w, cmd, index);
        break;
      default:
        return unreachable(cmd);
    }
    txn.end();
    return result;
  }
}

function cas(txn: WriteTxn, w: StoreWriter, cmd: CasCommand, index: number): KvResult {
  const key = keyOf(cmd.key);
  const current = readRecord(w, key)?.value ?? null;
  const matches = cmd.expected === null ? current === null : current !== null && equal(current, cmd.expected);
  if (!matches) return { type: "cas", revision: index, succeeded: false, current };
  if (cmd.value === null) txn.deleteKey(key.subarray(1));
  else txn.set(key.subarray(1), cmd.value, 0n);
  return { type: "cas", revision: index, succeeded: true, current: cmd.value };
}

function asKvResult(r: StoreResult): KvResult {
  return "type" in r ? r : MVCC_VIA_APPLY;
}

/** The store key of a KV key: the keys table's byte, then the key's UTF-8. */
export function keyOf(key: string): Uint8Array {
  const out = new Uint8Array(1 + key.length * 3);
  out[0] = TABLE_KEYS;
  return out.subarray(0, 1 + utf8EncodeInto(key, out.subarray(1)));
}

function keyBytes(s: string): Uint8Array {
  const out = new Uint8Array(s.length * 3);
  return out.subarray(0, utf8EncodeInto(s, out));
}

function sessionKey(clientId: string): Uint8Array {
  const id = keyBytes(clientId);
  const out = new Uint8Array(1 + id.length);
  out[0] = TABLE_SESSIONS;
  out.set(id, 1);
  return out;
}

function readRecord(r: StoreReader, key: Uint8Array): KeyRecord | null {
  const bytes = r.get(key);
  return bytes === null ? null : decodeRecord(bytes);
}

function encodeSession(s: Session): Uint8Array {
  let size = 1;
  for (const write of s.writes) size += 16 + resultSize(write.result);
  const w = new ByteWriter(size);
  w.u8(s.writes.length);
  for (const write of s.writes) {
    w.u64(write.seq);
    w.u64(write.index);
    writeResult(w, write.result);
  }
  return w.finish();
}

/** The stored sessions, oldest index first (the eviction order). */
function loadSessions(store: Store, appliedIndex: number): [string, Session][] {
  const out: [string, Session][] = [];
  const start = new Uint8Array([TABLE_SESSIONS]);
  const end = new Uint8Array([TABLE_SESSIONS + 1]);
  for (const e of store.scan({ start, end })) {
    const clientId = utf8Decode(e.key.subarray(1), "client id");
    const r = new ByteReader(e.value, "session");
    const count = r.u8("session write count");
    if (count < 1 || count > WRITES_IN_FLIGHT_PER_CLIENT)
      throw r.corrupt(`session of ${clientId} has ${count} writes (1..${WRITES_IN_FLIGHT_PER_CLIENT})`);
    const writes: SessionWrite[] = [];
    let index = 0;
    for (let k = 0; k < count; k++) {
      const seq = r.u64("seq");
      const at = r.u64("index");
      if (k > 0 && seq <= writes[k - 1]!.seq) throw r.corrupt(`session of ${clientId}: seqs not ascending`);
      if (at > appliedIndex)
        throw r.corrupt(`session of ${clientId} at index ${at} > applied ${appliedIndex}`);
      index = Math.max(index, at);
      writes.push({ seq, index: at, result: readResult(r) });
    }
    r.end();
    out.push([clientId, { writes, index }]);
  }
  return out.sort((a, b) => a[1].index - b[1].index);
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
