// The binary form of MVCC commands (mvcc-types.ts) in a log entry: u8 version (=1) | u8 op (=16,
// command.ts's OP_MVCC) | u8 kind | body, little-endian, byte strings as u32 length + bytes, lease ids
// as i64. Decoding validates untrusted bytes (CORRUPT naming the field); nested Txns are bounded in depth.

import { unreachable } from "../lib/assert.ts";
import { ByteReader, ByteWriter } from "./bytes.ts";
import { COMMAND_FORMAT_VERSION, OP_MVCC } from "./command.ts";
import type {
  Bytes,
  Compare,
  CompareResult,
  MvccCommand,
  RangeRequest,
  SortOrder,
  SortTarget,
  TxnOp,
  TxnRequestOp,
} from "./mvcc-types.ts";

/** Nested Txns deeper than this do not decode (etcd has no such limit; its message size bounds it). */
export const MAX_TXN_DEPTH = 16;

const KIND = { put: 1, deleteRange: 2, txn: 3, compact: 4, leaseGrant: 5, leaseRevoke: 6, range: 7 } as const;
const SORT_ORDERS: readonly SortOrder[] = ["none", "ascend", "descend"];
const SORT_TARGETS: readonly SortTarget[] = ["key", "version", "create", "mod", "value"];
const RESULTS: readonly CompareResult[] = ["equal", "greater", "less", "notEqual"];
const TARGETS = ["version", "create", "mod", "value", "lease"] as const;

/** Whether `bytes` is an MVCC command (else a raftkv.v1 command, command.ts). */
export function isMvccCommand(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === COMMAND_FORMAT_VERSION && bytes[1] === OP_MVCC;
}

/** Grows as it writes: commands are encoded once, at proposal time. */
class GrowingWriter {
  private buf = new Uint8Array(64);
  private dv = new DataView(this.buf.buffer);
  private at = 0;

  private room(n: number): void {
    if (this.at + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.at + n));
    next.set(this.buf.subarray(0, this.at));
    this.buf = next;
    this.dv = new DataView(next.buffer);
  }
  u8(v: number): void {
    this.room(1);
    this.dv.setUint8(this.at++, v);
  }
  u64(v: number): void {
    this.room(8);
    const w = new ByteWriter(8);
    w.u64(v);
    this.buf.set(w.finish(), this.at);
    this.at += 8;
  }
  i64(v: bigint): void {
    this.room(8);
    this.dv.setBigUint64(this.at, BigInt.asUintN(64, v), true);
    this.at += 8;
  }
  bytes(b: Bytes): void {
    this.room(4 + b.length);
    this.dv.setUint32(this.at, b.length, true);
    this.buf.set(b, this.at + 4);
    this.at += 4 + b.length;
  }
  count(n: number): void {
    this.room(4);
    this.dv.setUint32(this.at, n, true);
    this.at += 4;
  }
  finish(): Uint8Array {
    return this.buf.slice(0, this.at);
  }
}

export function encodeMvccCommand(cmd: MvccCommand): Uint8Array {
  const w = new GrowingWriter();
  w.u8(COMMAND_FORMAT_VERSION);
  w.u8(OP_MVCC);
  writeOp(w, cmd);
  return w.finish();
}

function flags(...bits: boolean[]): number {
  let f = 0;
  bits.forEach((b, i) => {
    if (b) f |= 1 << i;
  });
  return f;
}

function writeOp(w: GrowingWriter, op: MvccCommand | TxnRequestOp): void {
  w.u8(KIND[op.op]);
  switch (op.op) {
    case "put":
      w.bytes(op.key);
      w.bytes(op.value);
      w.i64(op.lease);
      w.u8(flags(op.prevKv, op.ignoreValue, op.ignoreLease));
      return;
    case "deleteRange":
      w.bytes(op.key);
      w.bytes(op.rangeEnd);
      w.u8(flags(op.prevKv));
      return;
    case "range":
      writeRange(w, op.request);
      return;
    case "txn":
      w.count(op.compare.length);
      for (const c of op.compare) writeCompare(w, c);
      for (const branch of [op.success, op.failure]) {
        w.count(branch.length);
        for (const o of branch) writeOp(w, o);
      }
      return;
    case "compact":
      w.u64(op.revision);
      return;
    case "leaseGrant":
      w.i64(op.id);
      w.u64(op.ttlSeconds);
      return;
    case "leaseRevoke":
      w.i64(op.id);
      return;
    default:
      unreachable(op);
  }
}

function writeRange(w: GrowingWriter, r: RangeRequest): void {
  w.bytes(r.key);
  w.bytes(r.rangeEnd);
  w.u64(r.limit);
  w.u64(r.revision);
  w.u8(SORT_ORDERS.indexOf(r.sortOrder));
  w.u8(SORT_TARGETS.indexOf(r.sortTarget));
  w.u8(flags(r.keysOnly, r.countOnly));
  w.u64(r.minModRevision);
  w.u64(r.maxModRevision);
  w.u64(r.minCreateRevision);
  w.u64(r.maxCreateRevision);
}

function writeCompare(w: GrowingWriter, c: Compare): void {
  w.u8(RESULTS.indexOf(c.result));
  w.bytes(c.key);
  w.bytes(c.rangeEnd);
  const a = c.against;
  w.u8(TARGETS.indexOf(a.target));
  switch (a.target) {
    case "version":
      w.u64(a.version);
      return;
    case "create":
      w.u64(a.createRevision);
      return;
    case "mod":
      w.u64(a.modRevision);
      return;
    case "value":
      w.bytes(a.value);
      return;
    case "lease":
      w.i64(a.lease);
      return;
    default:
      unreachable(a);
  }
}

/** Decodes an MVCC command; throws a CORRUPT RaftKvError naming what is malformed. */
export function decodeMvccCommand(bytes: Uint8Array): MvccCommand {
  const r = new ByteReader(bytes, "mvcc command");
  const version = r.u8("version");
  if (version !== COMMAND_FORMAT_VERSION) throw r.corrupt(`unsupported format version ${version}`);
  if (r.u8("op") !== OP_MVCC) throw r.corrupt("not an MVCC command");
  const op = readOp(r, 0);
  if (op.op === "range") throw r.corrupt("a range is not a command");
  r.end();
  return op;
}

function blob(r: ByteReader, field: string): Uint8Array {
  return r.copy(r.u32(`${field} length`), field);
}

function flagBits(r: ByteReader, field: string, count: number): boolean[] {
  const f = r.u8(field);
  if (f >> count !== 0) throw r.corrupt(`${field} 0x${f.toString(16)} has unknown bits`);
  return Array.from({ length: count }, (_, i) => (f & (1 << i)) !== 0);
}

function pick<T>(r: ByteReader, list: readonly T[], field: string): T {
  const i = r.u8(field);
  const v = list[i];
  if (v === undefined) throw r.corrupt(`${field} ${i} unknown`);
  return v;
}

function readOp(r: ByteReader, depth: number): MvccCommand | TxnRequestOp {
  const kind = r.u8("kind");
  switch (kind) {
    case KIND.put: {
      const key = blob(r, "key");
      const value = blob(r, "value");
      const lease = r.i64("lease");
      const [prevKv, ignoreValue, ignoreLease] = flagBits(r, "put flags", 3) as [boolean, boolean, boolean];
      return { op: "put", key, value, lease, prevKv, ignoreValue, ignoreLease };
    }
    case KIND.deleteRange: {
      const key = blob(r, "key");
      const rangeEnd = blob(r, "range end");
      const [prevKv] = flagBits(r, "delete flags", 1) as [boolean];
      return { op: "deleteRange", key, rangeEnd, prevKv };
    }
    case KIND.range:
      return { op: "range", request: readRange(r) };
    case KIND.txn:
      return readTxn(r, depth);
    case KIND.compact:
      return { op: "compact", revision: r.u64("revision") };
    case KIND.leaseGrant:
      return { op: "leaseGrant", id: r.i64("lease id"), ttlSeconds: r.u64("ttl") };
    case KIND.leaseRevoke:
      return { op: "leaseRevoke", id: r.i64("lease id") };
    default:
      throw r.corrupt(`unknown kind ${kind}`);
  }
}

function readTxn(r: ByteReader, depth: number): TxnOp {
  if (depth >= MAX_TXN_DEPTH) throw r.corrupt(`txns nested deeper than ${MAX_TXN_DEPTH}`);
  const compare: Compare[] = [];
  for (let n = r.u32("compare count"); n > 0; n--) compare.push(readCompare(r));
  const branches: TxnRequestOp[][] = [[], []];
  for (const branch of branches) {
    for (let n = r.u32("op count"); n > 0; n--) {
      const op = readOp(r, depth + 1);
      if (op.op === "compact" || op.op === "leaseGrant" || op.op === "leaseRevoke")
        throw r.corrupt(`${op.op} inside a txn`);
      branch.push(op);
    }
  }
  return { op: "txn", compare, success: branches[0]!, failure: branches[1]! };
}

function readRange(r: ByteReader): RangeRequest {
  const key = blob(r, "key");
  const rangeEnd = blob(r, "range end");
  const limit = r.u64("limit");
  const revision = r.u64("revision");
  const sortOrder = pick(r, SORT_ORDERS, "sort order");
  const sortTarget = pick(r, SORT_TARGETS, "sort target");
  const [keysOnly, countOnly] = flagBits(r, "range flags", 2) as [boolean, boolean];
  return {
    key,
    rangeEnd,
    limit,
    revision,
    sortOrder,
    sortTarget,
    keysOnly,
    countOnly,
    minModRevision: r.u64("min mod revision"),
    maxModRevision: r.u64("max mod revision"),
    minCreateRevision: r.u64("min create revision"),
    maxCreateRevision: r.u64("max create revision"),
  };
}

function readCompare(r: ByteReader): Compare {
  const result = pick(r, RESULTS, "compare result");
  const key = blob(r, "compare key");
  const rangeEnd = blob(r, "compare range end");
  const target = pick(r, TARGETS, "compare target");
  switch (target) {
    case "version":
      return { result, key, rangeEnd, against: { target, version: r.u64("version") } };
    case "create":
      return { result, key, rangeEnd, against: { target, createRevision: r.u64("create revision") } };
    case "mod":
      return { result, key, rangeEnd, against: { target, modRevision: r.u64("mod revision") } };
    case "value":
      return { result, key, rangeEnd, against: { target, value: blob(r, "compare value") } };
    case "lease":
      return { result, key, rangeEnd, against: { target, lease: r.i64("lease") } };
    default:
      return unreachable(target);
  }
}
