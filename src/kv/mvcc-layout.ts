// Where the MVCC state lives in the Store (src/store/store.ts): one leading byte names the table, and
// the encodings of the keys and values of each table. Shared by the raftkv.v1 state machine
// (store-state-machine.ts) and the MVCC logic (mvcc-store.ts): both write the same keys and revisions.
//
//   0x00 meta        "r" -> u64 store revision (absent: 1, etcd's empty store), "n" -> u64 live key
//                    count, "c" -> u64 compacted revision (absent: 0)
//   0x01 keys        key -> the key's current record (live keys only)
//   0x02 history     u64be revision | u32be sub -> event: u8 kind (1 put, 2 delete) | u32 key length |
//                    key | (put: the record written). Every change, tombstones included, until Compact.
//   0x03 sessions    raftkv.v1 client sessions (store-state-machine.ts)
//   0x04 key index   esc(key) 00 00 | u64be revision | u32be sub -> u8 kind: each key's changes in
//                    revision order, for reads at a past revision (esc doubles 0x00 as 00 ff, so the
//                    table orders by key bytes first, then revision)
//   0x05 leases      i64be lease id -> u64 granted TTL in seconds
//   0x06 lease keys  i64be lease id | key -> (empty): the keys attached to a lease
// Keys of the keys table are raw bytes (raftkv.v1 keys are their UTF-8).

import { ByteReader, ByteWriter } from "./bytes.ts";

export const TABLE_META = 0x00;
export const TABLE_KEYS = 0x01;
export const TABLE_HISTORY = 0x02;
export const TABLE_SESSIONS = 0x03;
export const TABLE_KEY_INDEX = 0x04;
export const TABLE_LEASES = 0x05;
export const TABLE_LEASE_KEYS = 0x06;

export const META_REVISION = new Uint8Array([TABLE_META, 0x72]);
export const META_KEY_COUNT = new Uint8Array([TABLE_META, 0x6e]);
export const META_COMPACTED = new Uint8Array([TABLE_META, 0x63]);

export const EVENT_PUT = 1;
export const EVENT_DELETE = 2;

const RECORD_FORMAT = 1;
/** Bytes of a key record before its value. */
export const RECORD_HEAD_BYTES = 1 + 8 * 4;
const TWO_POW_32 = 0x1_0000_0000;

/** A key's value with its etcd metadata. */
export interface KeyRecord {
  readonly createRevision: number;
  readonly modRevision: number;
  readonly version: number;
  /** 0n: no lease. */
  readonly lease: bigint;
  readonly value: Uint8Array;
}

export function encodeRecord(r: KeyRecord): Uint8Array {
  const w = new ByteWriter(RECORD_HEAD_BYTES + r.value.length);
  w.u8(RECORD_FORMAT);
  w.u64(r.createRevision);
  w.u64(r.modRevision);
  w.u64(r.version);
  w.i64(r.lease);
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
    lease: r.i64("lease"),
    value: bytes.subarray(RECORD_HEAD_BYTES),
  };
}

/** The keys-table key of `key`. */
export function currentKey(key: Uint8Array): Uint8Array {
  return tableKey(TABLE_KEYS, key);
}

export function tableKey(table: number, rest: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + rest.length);
  out[0] = table;
  out.set(rest, 1);
  return out;
}

function putBe64(out: Uint8Array, at: number, v: number): void {
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  dv.setUint32(at, Math.floor(v / TWO_POW_32));
  dv.setUint32(at + 4, v % TWO_POW_32);
}

function getBe64(bytes: Uint8Array, at: number): number {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return dv.getUint32(at) * TWO_POW_32 + dv.getUint32(at + 4);
}

/** History-table key of the change (revision, sub). */
export function historyKey(revision: number, sub: number): Uint8Array {
  const out = new Uint8Array(13);
  out[0] = TABLE_HISTORY;
  putBe64(out, 1, revision);
  new DataView(out.buffer).setUint32(9, sub);
  return out;
}

export function historyRevision(key: Uint8Array): { revision: number; sub: number } {
  return {
    revision: getBe64(key, 1),
    sub: new DataView(key.buffer, key.byteOffset, key.byteLength).getUint32(9),
  };
}

export interface HistoryEvent {
  readonly kind: typeof EVENT_PUT | typeof EVENT_DELETE;
  readonly key: Uint8Array;
  /** The record written (put), or null (delete). */
  readonly record: KeyRecord | null;
}

export function encodeEvent(key: Uint8Array, record: KeyRecord | null): Uint8Array {
  const rec = record === null ? null : encodeRecord(record);
  const w = new ByteWriter(1 + 4 + key.length + (rec?.length ?? 0));
  w.u8(record === null ? EVENT_DELETE : EVENT_PUT);
  w.u32(key.length);
  w.raw(key);
  if (rec !== null) w.raw(rec);
  return w.finish();
}

export function decodeEvent(bytes: Uint8Array): HistoryEvent {
  const r = new ByteReader(bytes, "history event");
  const kind = r.u8("kind");
  const key = r.view(r.u32("key length"), "key");
  if (kind === EVENT_DELETE) {
    r.end();
    return { kind, key, record: null };
  }
  if (kind !== EVENT_PUT) throw r.corrupt(`unknown event kind ${kind}`);
  return { kind, key, record: decodeRecord(bytes.subarray(5 + key.length)) };
}

/** 0x04 | esc(key): the bound below every index entry of `key` and above those of smaller keys. */
export function indexBound(key: Uint8Array): Uint8Array {
  let zeros = 0;
  for (const b of key) if (b === 0) zeros++;
  const out = new Uint8Array(1 + key.length + zeros);
  out[0] = TABLE_KEY_INDEX;
  let o = 1;
  for (const b of key) {
    out[o++] = b;
    if (b === 0) out[o++] = 0xff;
  }
  return out;
}

/** 0x04 | esc(key) | 00 00: every index entry of `key` starts with it. */
export function indexPrefix(key: Uint8Array): Uint8Array {
  const bound = indexBound(key);
  const out = new Uint8Array(bound.length + 2);
  out.set(bound);
  return out;
}

/** The lowest index key above every entry of `key` (and below those of greater keys). */
export function indexAfter(key: Uint8Array): Uint8Array {
  const p = indexPrefix(key);
  p[p.length - 1] = 1;
  return p;
}

/** Index key of `key`'s change at (revision, sub). */
export function indexKey(key: Uint8Array, revision: number, sub: number): Uint8Array {
  const p = indexPrefix(key);
  const out = new Uint8Array(p.length + 12);
  out.set(p);
  putBe64(out, p.length, revision);
  new DataView(out.buffer).setUint32(p.length + 8, sub);
  return out;
}

/** The key, revision and sub of an index-table key. */
export function decodeIndexKey(bytes: Uint8Array): { key: Uint8Array; revision: number; sub: number } {
  const key: number[] = [];
  let i = 1;
  for (;;) {
    const b = bytes[i];
    if (b === undefined) throw new ByteReader(bytes, "key index entry").corrupt("no key terminator");
    if (b === 0) {
      if (bytes[i + 1] === 0) break;
      key.push(0);
      i += 2;
    } else {
      key.push(b);
      i++;
    }
  }
  const at = i + 2;
  return {
    key: Uint8Array.from(key),
    revision: getBe64(bytes, at),
    sub: new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(at + 8),
  };
}

function leaseIdBytes(table: number, id: bigint, extra: number): Uint8Array {
  const out = new Uint8Array(9 + extra);
  out[0] = table;
  // Big-endian with the sign bit flipped, so that the table orders by signed id.
  new DataView(out.buffer).setBigUint64(1, BigInt.asUintN(64, id) ^ (1n << 63n));
  return out;
}

export function leaseKey(id: bigint): Uint8Array {
  return leaseIdBytes(TABLE_LEASES, id, 0);
}

export function leaseIdOf(key: Uint8Array): bigint {
  const dv = new DataView(key.buffer, key.byteOffset, key.byteLength);
  return BigInt.asIntN(64, dv.getBigUint64(1) ^ (1n << 63n));
}

export function leaseKeysPrefix(id: bigint): Uint8Array {
  return leaseIdBytes(TABLE_LEASE_KEYS, id, 0);
}

export function leaseKeysKey(id: bigint, key: Uint8Array): Uint8Array {
  const out = leaseIdBytes(TABLE_LEASE_KEYS, id, key.length);
  out.set(key, 9);
  return out;
}

export function u64Bytes(v: number): Uint8Array {
  const w = new ByteWriter(8);
  w.u64(v);
  return w.finish();
}

export function readU64(bytes: Uint8Array | null, fallback: number, what: string): number {
  return bytes === null ? fallback : new ByteReader(bytes, what).u64(what);
}
