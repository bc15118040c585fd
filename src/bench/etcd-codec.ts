// The few etcd v3 messages the benchmark needs (etcdserverpb KV Put and Range), encoded by hand with the
// protobuf wire helpers so no etcd .proto has to join our buf module. Field numbers are etcd 3.4's
// api/etcdserverpb/rpc.proto and api/mvccpb/kv.proto:
//   PutRequest    { bytes key = 1; bytes value = 2; int64 lease = 3; bool prev_kv = 4; ... }
//   PutResponse   { ResponseHeader header = 1; mvccpb.KeyValue prev_kv = 2; }
//   RangeRequest  { bytes key = 1; bytes range_end = 2; int64 limit = 3; ...; bool serializable = 7; ... }
//   RangeResponse { ResponseHeader header = 1; repeated mvccpb.KeyValue kvs = 2; bool more = 3; int64 count = 4; }
//   ResponseHeader{ uint64 cluster_id = 1; uint64 member_id = 2; int64 revision = 3; uint64 raft_term = 4; }
//   KeyValue      { bytes key = 1; int64 create_revision = 2; int64 mod_revision = 3; int64 version = 4;
//                   bytes value = 5; int64 lease = 6; }

import { BinaryReader, BinaryWriter, WireType } from "@bufbuild/protobuf/wire";

export const ETCD_PUT_PATH = "/etcdserverpb.KV/Put";
export const ETCD_RANGE_PATH = "/etcdserverpb.KV/Range";

export interface EtcdHeader {
  readonly memberId: bigint;
  readonly revision: bigint;
}

export interface EtcdRange {
  readonly header: EtcdHeader | null;
  /** The value of the first key found, or null. */
  readonly value: Uint8Array | null;
  readonly count: number;
}

export function encodePut(key: Uint8Array, value: Uint8Array): Buffer {
  const w = new BinaryWriter();
  w.uint32(10).bytes(key);
  w.uint32(18).bytes(value);
  return toBuffer(w.finish());
}

export function encodeRange(key: Uint8Array, serializable: boolean): Buffer {
  const w = new BinaryWriter();
  w.uint32(10).bytes(key);
  if (serializable) w.uint32(56).bool(true);
  return toBuffer(w.finish());
}

export function decodePut(b: Uint8Array): EtcdHeader | null {
  const r = new BinaryReader(b);
  let header: EtcdHeader | null = null;
  while (r.pos < r.len) {
    const [field, wire] = r.tag();
    if (field === 1 && wire === WireType.LengthDelimited) header = decodeHeader(r.bytes());
    else r.skip(wire);
  }
  return header;
}

export function decodeRange(b: Uint8Array): EtcdRange {
  const r = new BinaryReader(b);
  let header: EtcdHeader | null = null;
  let value: Uint8Array | null = null;
  let count = 0;
  while (r.pos < r.len) {
    const [field, wire] = r.tag();
    if (field === 1 && wire === WireType.LengthDelimited) header = decodeHeader(r.bytes());
    else if (field === 2 && wire === WireType.LengthDelimited) {
      const kv = r.bytes();
      if (value === null) value = kvValue(kv);
    } else if (field === 4 && wire === WireType.Varint) count = Number(r.int64());
    else r.skip(wire);
  }
  return { header, value, count };
}

/** A PutResponse as etcd sends it (the no-op server's answer, and tests). */
export function encodePutResponse(memberId: bigint, revision: bigint): Buffer {
  const w = new BinaryWriter();
  w.uint32(10).bytes(encodeHeader(memberId, revision));
  return toBuffer(w.finish());
}

/** A RangeResponse holding one key, as etcd sends it. */
export function encodeRangeResponse(
  memberId: bigint,
  revision: bigint,
  key: Uint8Array,
  value: Uint8Array,
): Buffer {
  const kv = new BinaryWriter();
  kv.uint32(10).bytes(key);
  kv.uint32(16).int64(revision);
  kv.uint32(24).int64(revision);
  kv.uint32(32).int64(1);
  kv.uint32(42).bytes(value);
  const w = new BinaryWriter();
  w.uint32(10).bytes(encodeHeader(memberId, revision));
  w.uint32(18).bytes(kv.finish());
  w.uint32(32).int64(1);
  return toBuffer(w.finish());
}

function encodeHeader(memberId: bigint, revision: bigint): Uint8Array {
  const w = new BinaryWriter();
  w.uint32(8).uint64(1);
  w.uint32(16).uint64(memberId);
  w.uint32(24).int64(revision);
  w.uint32(32).uint64(1);
  return w.finish();
}

function decodeHeader(b: Uint8Array): EtcdHeader {
  const r = new BinaryReader(b);
  let memberId = 0n;
  let revision = 0n;
  while (r.pos < r.len) {
    const [field, wire] = r.tag();
    if (field === 2 && wire === WireType.Varint) memberId = BigInt(r.uint64());
    else if (field === 3 && wire === WireType.Varint) revision = BigInt(r.int64());
    else r.skip(wire);
  }
  return { memberId, revision };
}

function kvValue(kv: Uint8Array): Uint8Array {
  const r = new BinaryReader(kv);
  let value: Uint8Array = new Uint8Array(0);
  while (r.pos < r.len) {
    const [field, wire] = r.tag();
    if (field === 5 && wire === WireType.LengthDelimited) value = r.bytes();
    else r.skip(wire);
  }
  return value;
}

function toBuffer(u: Uint8Array): Buffer {
  return Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}
