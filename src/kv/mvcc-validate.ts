// Checks of MVCC requests with etcd's errors: the shape of a Txn (no key put twice, none put inside a
// range it deletes: etcd's checkIntervals), which apply also runs (it depends on the request alone), and
// the edge's checks (empty keys, value or lease given with ignore_*, too many ops), which depend on the
// node's limits and so are for the adapters, before a command is proposed.

import { unreachable } from "../lib/assert.ts";
import { compareBytes, equalBytes } from "../store/store.ts";
import type { Bytes, MvccCommand, MvccError, RangeRequest, TxnOp, TxnRequestOp } from "./mvcc-types.ts";

const DUPLICATE: MvccError = {
  op: "error",
  code: "duplicateKey",
  message: "etcdserver: duplicate key given in txn request",
};

interface Span {
  readonly key: Bytes;
  /** null: the single key; empty: no end (rangeEnd [0]). */
  readonly end: Bytes | null;
}

function covers(s: Span, key: Bytes): boolean {
  if (s.end === null) return equalBytes(s.key, key);
  return compareBytes(key, s.key) >= 0 && (s.end.length === 0 || compareBytes(key, s.end) < 0);
}

function spanOfDelete(key: Bytes, rangeEnd: Bytes): Span {
  if (rangeEnd.length === 0) return { key, end: null };
  if (rangeEnd.length === 1 && rangeEnd[0] === 0) return { key, end: new Uint8Array(0) };
  return { key, end: rangeEnd };
}

class KeySet {
  private readonly keys = new Map<string, Bytes>();
  has(k: Bytes): boolean {
    return this.keys.has(hex(k));
  }
  add(k: Bytes): void {
    this.keys.set(hex(k), k);
  }
  values(): IterableIterator<Bytes> {
    return this.keys.values();
  }
}

function hex(b: Bytes): string {
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}

/** etcd's checkIntervals over one branch: the keys it puts and the ranges it deletes, or a duplicate. */
function intervals(ops: readonly TxnRequestOp[]): { puts: KeySet; dels: Span[] } | null {
  const dels: Span[] = [];
  for (const op of ops) if (op.op === "deleteRange") dels.push(spanOfDelete(op.key, op.rangeEnd));
  const puts = new KeySet();
  const hit = (k: Bytes) => dels.some((d) => covers(d, k));
  for (const op of ops) {
    if (op.op !== "txn") continue;
    const then = intervals(op.success);
    const otherwise = intervals(op.failure);
    if (then === null || otherwise === null) return null;
    for (const k of then.puts.values()) {
      if (puts.has(k) || hit(k)) return null;
      puts.add(k);
    }
    for (const k of otherwise.puts.values()) {
      if ((puts.has(k) && !then.puts.has(k)) || hit(k)) return null;
      puts.add(k);
    }
    dels.push(...then.dels, ...otherwise.dels);
  }
  for (const op of ops) {
    if (op.op !== "put") continue;
    if (puts.has(op.key) || hit(op.key)) return null;
    puts.add(op.key);
  }
  return { puts, dels };
}

/** ErrDuplicateKey when a branch of `txn` puts a key twice or puts a key it deletes. */
export function txnIntervalError(txn: TxnOp): MvccError | null {
  return intervals(txn.success) === null || intervals(txn.failure) === null ? DUPLICATE : null;
}

function invalid(message: string): MvccError {
  return { op: "error", code: "invalid", message };
}

function checkRange(r: RangeRequest): MvccError | null {
  if (r.key.length === 0) return invalid("etcdserver: key is not provided");
  if (r.limit < 0 || r.revision < 0) return invalid("etcdserver: limit and revision must not be negative");
  return null;
}

/** The edge's checks of a request before it is proposed (etcd's v3rpc/key.go checks), with the
 *  node's limit on the ops of one Txn level (etcd's --max-txn-ops, 128 by default). */
export function validateMvccRequest(cmd: MvccCommand | TxnRequestOp, maxTxnOps: number): MvccError | null {
  switch (cmd.op) {
    case "range":
      return checkRange(cmd.request);
    case "put":
      if (cmd.key.length === 0) return invalid("etcdserver: key is not provided");
      if (cmd.ignoreValue && cmd.value.length !== 0) return invalid("etcdserver: value is provided");
      if (cmd.ignoreLease && cmd.lease !== 0n) return invalid("etcdserver: lease is provided");
      return null;
    case "deleteRange":
      return cmd.key.length === 0 ? invalid("etcdserver: key is not provided") : null;
    case "txn": {
      if (cmd.compare.length > maxTxnOps || cmd.success.length > maxTxnOps || cmd.failure.length > maxTxnOps)
        return { op: "error", code: "tooManyOps", message: "etcdserver: too many operations in txn request" };
      for (const op of [...cmd.success, ...cmd.failure]) {
        const err = validateMvccRequest(op, maxTxnOps);
        if (err !== null) return err;
      }
      return txnIntervalError(cmd);
    }
    case "compact":
      return cmd.revision < 0 ? invalid("compact revision must not be negative") : null;
    case "leaseGrant":
      return cmd.ttlSeconds < 0 ? invalid("lease TTL must not be negative") : null;
    case "leaseRevoke":
      return null;
    default:
      return unreachable(cmd);
  }
}

/** Whether no path of `txn` writes (etcd serves such a txn as a read). */
export function isReadOnlyTxn(txn: TxnOp): boolean {
  return [...txn.success, ...txn.failure].every(
    (op) => op.op === "range" || (op.op === "txn" && isReadOnlyTxn(op)),
  );
}
