// The KV state machine as logic on top of a Store (src/store/store.ts): it persists itself. Each applied
// batch of entries is one store batch carrying its Raft index, so a node that restarts opens the store
// and replays the log after store.appliedIndex (no snapshot restore), and the log may be compacted up to
// store.durableIndex. Results are those of KvStateMachine (state-machine.ts) for the same entries; the
// differential test (store-state-machine.test.ts) holds them equal. The node runs it (src/server/kv-state.ts,
// and the simulator over a MemStore); its snapshots are images of the whole store (store-image.ts).
//
// Layout in the store (keys are bytes; one leading byte names the table):
//   0x00 meta      "r" -> u64 store revision, "n" -> u64 live key count
//   0x01 keys      utf8(key) -> u8 1 | u64 create_revision | u64 mod_revision | u64 version | u64 lease | value
//   0x02 history   reserved for the etcd API (issue 18): (u64be revision, u32be sub) -> event, and the
//                  superseded versions of keys until compaction; tombstones live there
//   0x03 sessions  utf8(clientId) -> u8 writeCount | writeCount x (u64 seq | u64 index | result (result.ts)):
//                  the session's writes within its window, ascending by seq (session-table.ts)
// Revisions are etcd's: one per write request that changes something (a put; a delete of a key that
// was there; a cas that succeeded); create_revision and version are reset by a delete. The results'
// `revision` field stays the log index, as the KV API reports it today.
// Key order is UTF-8 byte order (etcd's), which differs from KvStateMachine's UTF-16 order only for keys
// mixing U+E000..U+FFFF with characters above U+FFFF.

import { assert, unreachable } from "../lib/assert.ts";
import { crc32c } from "../lib/crc32c.ts";
import { RaftKvError } from "../lib/errors.ts";
import { compareBytes, prefixEnd, type Store, type StoreReader, type StoreWriter } from "../store/store.ts";
import { ByteReader, ByteWriter } from "./bytes.ts";
import { type CasCommand, decodeCommand, type KvCommand } from "./command.ts";
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

export const TABLE_META = 0x00;
export const TABLE_KEYS = 0x01;
export const TABLE_HISTORY = 0x02;
export const TABLE_SESSIONS = 0x03;
const RECORD_FORMAT = 1;
const RECORD_HEAD_BYTES = 1 + 8 * 4;
const META_REVISION = new Uint8Array([TABLE_META, 0x72]);
const META_KEY_COUNT = new Uint8Array([TABLE_META, 0x6e]);

/** A key's value with its etcd metadata. */
export interface KeyRecord {
  readonly createRevision: number;
  readonly modRevision: number;
  readonly version: number;
  readonly lease: number;
  readonly value: Uint8Array;
}

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
}

/** A restore in progress (see StoreStateMachine.restoring). */
export interface StoreRestore {
  push(chunk: Uint8Array): void;
  finish(): StoreStateMachine;
}

/** Snapshot chunks of about this many bytes by default. */
export const DEFAULT_IMAGE_CHUNK_BYTES = 1024 * 1024;

export class StoreStateMachine {
  private readonly store: Store;
  private readonly sessions: SessionTable;
  private revisionNow: number;
  private keyCount: number;

  /** Opens the state machine on whatever the store holds (empty, or as a previous run left it). */
  constructor(options: StoreStateMachineOptions) {
    this.store = options.store;
    this.sessions = new SessionTable(options.maxSessions ?? DEFAULT_MAX_SESSIONS);
    this.revisionNow = readCounter(this.store, META_REVISION);
    this.keyCount = readCounter(this.store, META_KEY_COUNT);
    this.sessions.load(loadSessions(this.store, this.store.appliedIndex));
  }

  get appliedIndex(): number {
    return this.store.appliedIndex;
  }

  /** The store revision: the number of write requests that changed something. */
  get revision(): number {
    return this.revisionNow;
  }

  get size(): number {
    return this.keyCount;
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  /** Applies the command entry at `index` (exactly appliedIndex + 1); see KvStateMachine.apply. */
  apply(index: number, data: Uint8Array): KvResult {
    this.mustFollow(index);
    return this.store.write(index, (w) => this.applyIn(w, index, data));
  }

  applyNoop(index: number): void {
    this.mustFollow(index);
    this.store.write(index, () => undefined);
  }

  /** Applies consecutive entries as one store batch (one LMDB transaction); a result per entry (null
   *  for a NO-OP). */
  applyEntries(entries: readonly AppliedEntry[]): (KvResult | null)[] {
    const first = entries[0];
    if (first === undefined) return [];
    this.mustFollow(first.index);
    const last = entries[entries.length - 1]!;
    return this.store.write(last.index, (w) =>
      entries.map((e, i) => {
        assert(e.index === first.index + i, () => `entry ${e.index} not consecutive after ${first.index}`);
        return e.kind === "noop" ? null : this.applyIn(w, e.index, e.data);
      }),
    );
  }

  get(key: string): Uint8Array | null {
    return this.getRecord(key)?.value ?? null;
  }

  getRecord(key: string): KeyRecord | null {
    return readRecord(this.store, keyOf(key));
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
   *  applies that follow do not change it. Sizing the image is one pass over the view. */
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

  private applyIn(w: StoreWriter, index: number, data: Uint8Array): KvResult {
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
    switch (cmd.op) {
      case "put":
        this.set(w, keyOf(cmd.key), cmd.value);
        return { type: "put", revision: index };
      case "delete":
        return { type: "delete", revision: index, existed: this.remove(w, keyOf(cmd.key)) };
      case "cas":
        return this.cas(w, cmd, index);
      default:
        return unreachable(cmd);
    }
  }

  private cas(w: StoreWriter, cmd: CasCommand, index: number): KvResult {
    const key = keyOf(cmd.key);
    const current = readRecord(w, key)?.value ?? null;
    const matches =
      cmd.expected === null ? current === null : current !== null && equal(current, cmd.expected);
    if (!matches) return { type: "cas", revision: index, succeeded: false, current };
    if (cmd.value === null) this.remove(w, key);
    else this.set(w, key, cmd.value);
    return { type: "cas", revision: index, succeeded: true, current: cmd.value };
  }

  private set(w: StoreWriter, key: Uint8Array, value: Uint8Array): void {
    const old = readRecord(w, key);
    const revision = this.bump(w);
    if (old === null) this.countKeys(w, 1);
    w.put(
      key,
      encodeRecord({
        createRevision: old?.createRevision ?? revision,
        modRevision: revision,
        version: (old?.version ?? 0) + 1,
        lease: 0,
        value,
      }),
    );
  }

  private remove(w: StoreWriter, key: Uint8Array): boolean {
    if (!w.delete(key)) return false;
    this.bump(w);
    this.countKeys(w, -1);
    return true;
  }

  private bump(w: StoreWriter): number {
    this.revisionNow++;
    w.put(META_REVISION, u64(this.revisionNow));
    return this.revisionNow;
  }

  private countKeys(w: StoreWriter, delta: number): void {
    this.keyCount += delta;
    w.put(META_KEY_COUNT, u64(this.keyCount));
  }
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

export function encodeRecord(r: KeyRecord): Uint8Array {
  const w = new ByteWriter(RECORD_HEAD_BYTES + r.value.length);
  w.u8(RECORD_FORMAT);
  w.u64(r.createRevision);
  w.u64(r.modRevision);
  w.u64(r.version);
  w.u64(r.lease);
  w.raw(r.value);
  return w.finish();
}

export function decodeRecord(bytes: Uint8Array): KeyRecord {
  const r = new ByteReader(bytes, "key record");
  const format = r.u8("format");
  if (format !== RECORD_FORMAT) throw r.corrupt(`unknown key record format ${format}`);
  return {
    createRevision: r.u64("create revision"),
    modRevision: r.u64("mod revision"),
    version: r.u64("version"),
    lease: r.u64("lease"),
    value: bytes.subarray(RECORD_HEAD_BYTES),
  };
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

function readCounter(store: Store, key: Uint8Array): number {
  const bytes = store.get(key);
  return bytes === null ? 0 : new ByteReader(bytes, "meta counter").u64("counter");
}

function u64(v: number): Uint8Array {
  const w = new ByteWriter(8);
  w.u64(v);
  return w.finish();
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
