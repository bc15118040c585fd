// raftkv.v1's Txn, Watch and lease requests as MvccApi calls (mvcc-api.ts): validation at the edge
// (raftkv.v1 keys, values within the limits, bounded compares and operations, ids and revisions that
// are safe integers), the wire requests as MVCC commands, the MVCC results as wire messages. No MVCC
// logic of its own: what a Txn, a watch or a lease does is the MVCC state machine's.

import {
  type Compare,
  CompareResult,
  type DeletePrefixRequest,
  EventType,
  type GetRequest,
  type PutRequest,
  type TxnOpResult,
  type TxnRequest,
  Consistency as WireConsistency,
  type KeyValue as WireKeyValue,
  type RangeRequest as WireRangeRequest,
  type TxnOp as WireTxnOp,
  type WatchEvent as WireWatchEvent,
  type WatchRequest as WireWatchRequest,
} from "../gen/raftkv/v1/client.ts";
import { type KvLimits, validateKey, validateValue } from "../kv/limits.ts";
import type {
  CompareTarget,
  KeyValue,
  Compare as MvccCompare,
  MvccResult,
  RangeRequest,
  TxnOp,
  TxnRequestOp,
  TxnResult,
  WatchEvent,
} from "../kv/mvcc-types.ts";
import { RaftKvError } from "../lib/errors.ts";
import { compareBytes, prefixEnd } from "../store/store.ts";
import type { WatchRequest } from "./mvcc-api.ts";

/** The bounds of a raftkv.v1 Txn and range inside it. */
export interface TxnLimits extends KvLimits {
  /** Compares, and operations per branch, of one Txn (etcd's --max-txn-ops). */
  readonly maxTxnOps: number;
  /** Items of one range inside a Txn (the server's maxRangeItems). */
  readonly maxRangeItems: number;
}

/** etcd's default --max-txn-ops. */
export const DEFAULT_MAX_TXN_OPS = 128;

const ENCODER = new TextEncoder();
const DECODER = new TextDecoder(); // not fatal: keys written through etcd's API need not be UTF-8
const ALL = Uint8Array.of(0);
const NONE = new Uint8Array(0);

function invalid(message: string, hint: string): RaftKvError {
  return new RaftKvError({ code: "INVALID_ARGUMENT", message, hint });
}

function throwIf(err: RaftKvError | null): void {
  if (err !== null) throw err;
}

function bytesOf(key: string): Uint8Array {
  return ENCODER.encode(key);
}

/** [key, rangeEnd) of every key starting with `prefix` (empty: every key). */
export function prefixSpan(prefix: string): { key: Uint8Array; rangeEnd: Uint8Array } {
  if (prefix === "") return { key: ALL, rangeEnd: ALL };
  const key = bytesOf(prefix);
  return { key, rangeEnd: prefixEnd(key) ?? ALL };
}

/** A uint64 on the wire as a safe integer, or INVALID_ARGUMENT naming the field. */
export function safeCount(v: bigint, field: string): number {
  if (v < 0n || v > BigInt(Number.MAX_SAFE_INTEGER))
    throw invalid(`${field} ${v} is not a safe integer`, `${field} must be 0..2^53-1`);
  return Number(v);
}

/** A lease id: 0 (none, or "pick one" for a grant) or positive. */
export function leaseIdOf(v: bigint, field = "lease"): bigint {
  if (v < 0n) throw invalid(`${field} ${v} is negative`, "lease ids are positive (0: none)");
  return v;
}

/** A grant's TTL: 1..2^53-1 seconds (the node raises it to its minimum). */
export function ttlOf(v: bigint): number {
  if (v < 1n || v > BigInt(Number.MAX_SAFE_INTEGER))
    throw invalid(`ttl_seconds ${v} is not a positive integer`, "give a TTL of at least 1 second");
  return Number(v);
}

function key(k: string, limits: KvLimits): Uint8Array {
  throwIf(validateKey(k, limits));
  return bytesOf(k);
}

function prefix(p: string, limits: KvLimits): { key: Uint8Array; rangeEnd: Uint8Array } {
  if (p !== "") throwIf(validateKey(p, limits));
  return prefixSpan(p);
}

function noSession(clientId: string, seq: bigint, where: string): void {
  if (clientId !== "" || seq !== 0n)
    throw invalid(
      `${where} carries client_id or seq`,
      "operations inside a txn, and puts with a lease, go without client_id and seq (a Txn is not exactly-once on retry)",
    );
}

function noConsistency(c: WireConsistency, where: string): void {
  if (c !== WireConsistency.CONSISTENCY_UNSPECIFIED)
    throw invalid(`${where} sets consistency`, "a Txn is read linearizably; leave consistency unset");
}

function rangeRequest(
  span: { key: Uint8Array; rangeEnd: Uint8Array },
  limit: number,
  revision = 0,
): RangeRequest {
  return {
    key: span.key,
    rangeEnd: span.rangeEnd,
    limit,
    revision,
    sortOrder: "none",
    sortTarget: "key",
    keysOnly: false,
    countOnly: false,
    minModRevision: 0,
    maxModRevision: 0,
    minCreateRevision: 0,
    maxCreateRevision: 0,
  };
}

/** A raftkv.v1 Put with a lease as an MVCC put. */
export function leasedPut(req: PutRequest, limits: KvLimits): TxnRequestOp & { op: "put" } {
  noSession(req.clientId, req.seq, "a put with a lease");
  throwIf(validateValue(req.value, limits));
  return {
    op: "put",
    key: key(req.key, limits),
    value: req.value,
    lease: leaseIdOf(req.lease),
    prevKv: false,
    ignoreValue: false,
    ignoreLease: false,
  };
}

function txnPut(req: PutRequest, limits: KvLimits): TxnRequestOp {
  noSession(req.clientId, req.seq, "a put in a txn");
  throwIf(validateValue(req.value, limits));
  return {
    op: "put",
    key: key(req.key, limits),
    value: req.value,
    lease: leaseIdOf(req.lease),
    prevKv: false,
    ignoreValue: false,
    ignoreLease: false,
  };
}

function txnGet(req: GetRequest, limits: KvLimits): TxnRequestOp {
  noConsistency(req.consistency, "a get in a txn");
  return { op: "range", request: rangeRequest({ key: key(req.key, limits), rangeEnd: NONE }, 1) };
}

function txnRange(req: WireRangeRequest, limits: TxnLimits): TxnRequestOp {
  noConsistency(req.consistency, "a range in a txn");
  const span = prefix(req.prefix, limits);
  if (req.startAfter !== "") {
    throwIf(validateKey(req.startAfter, limits));
    const after = bytesOf(`${req.startAfter}\u0000`);
    if (compareBytes(after, span.key) > 0) span.key = after;
  }
  const limit = req.limit === 0 ? limits.maxRangeItems : Math.min(req.limit, limits.maxRangeItems);
  return { op: "range", request: rangeRequest(span, limit) };
}

function txnDeletePrefix(req: DeletePrefixRequest, limits: KvLimits): TxnRequestOp {
  if (req.prefix === "")
    throw invalid("delete_prefix has an empty prefix", "give a prefix (deleting every key is refused)");
  return { op: "deleteRange", ...prefix(req.prefix, limits), prevKv: false };
}

function txnOp(op: WireTxnOp, limits: TxnLimits): TxnRequestOp {
  const o = op.op;
  switch (o?.$case) {
    case "put":
      return txnPut(o.value, limits);
    case "get":
      return txnGet(o.value, limits);
    case "delete":
      noSession(o.value.clientId, o.value.seq, "a delete in a txn");
      return { op: "deleteRange", key: key(o.value.key, limits), rangeEnd: NONE, prevKv: false };
    case "range":
      return txnRange(o.value, limits);
    case "deletePrefix":
      return txnDeletePrefix(o.value, limits);
    case undefined:
      throw invalid(
        "a txn operation carries no operation",
        "set one of put, get, delete, range, delete_prefix",
      );
    default: {
      const never: never = o;
      return never;
    }
  }
}

const COMPARE_RESULTS: Partial<Record<CompareResult, MvccCompare["result"]>> = {
  [CompareResult.COMPARE_RESULT_EQUAL]: "equal",
  [CompareResult.COMPARE_RESULT_NOT_EQUAL]: "notEqual",
  [CompareResult.COMPARE_RESULT_GREATER]: "greater",
  [CompareResult.COMPARE_RESULT_LESS]: "less",
};

function compareOf(c: Compare, limits: KvLimits): MvccCompare {
  const result = COMPARE_RESULTS[c.result];
  if (result === undefined)
    throw invalid(
      `compare on ${JSON.stringify(c.key)} has no result`,
      "set result EQUAL, NOT_EQUAL, GREATER or LESS",
    );
  const span = c.prefix ? prefix(c.key, limits) : { key: key(c.key, limits), rangeEnd: NONE };
  const a = c.against;
  let against: CompareTarget;
  switch (a?.$case) {
    case "value":
      throwIf(validateValue(a.value, limits));
      against = { target: "value", value: a.value };
      break;
    case "version":
      against = { target: "version", version: safeCount(a.value, "compare version") };
      break;
    case "createRevision":
      against = { target: "create", createRevision: safeCount(a.value, "compare create_revision") };
      break;
    case "modRevision":
      against = { target: "mod", modRevision: safeCount(a.value, "compare mod_revision") };
      break;
    case "lease":
      against = { target: "lease", lease: leaseIdOf(a.value, "compare lease") };
      break;
    case undefined:
      throw invalid(
        `compare on ${JSON.stringify(c.key)} compares against nothing`,
        "set one of value, version, create_revision, mod_revision, lease",
      );
    default: {
      const never: never = a;
      return never;
    }
  }
  return { result, key: span.key, rangeEnd: span.rangeEnd, against };
}

/** A raftkv.v1 TxnRequest as an MVCC Txn, or INVALID_ARGUMENT / TOO_LARGE naming what is wrong. */
export function txnOf(req: TxnRequest, limits: TxnLimits): TxnOp {
  const max = limits.maxTxnOps;
  for (const [what, n] of [
    ["compares", req.compare.length],
    ["success operations", req.success.length],
    ["failure operations", req.failure.length],
  ] as const)
    if (n > max)
      throw invalid(`the txn has ${n} ${what}, over the limit of ${max}`, "split it into smaller txns");
  return {
    op: "txn",
    compare: req.compare.map((c) => compareOf(c, limits)),
    success: req.success.map((o) => txnOp(o, limits)),
    failure: req.failure.map((o) => txnOp(o, limits)),
  };
}

/** An MVCC key-value as raftkv.v1's (the key decoded as UTF-8, U+FFFD for bytes that are not). */
export function wireKv(kv: KeyValue): WireKeyValue {
  return {
    key: DECODER.decode(kv.key),
    value: kv.value,
    createRevision: BigInt(kv.createRevision),
    modRevision: BigInt(kv.modRevision),
    version: BigInt(kv.version),
    lease: kv.lease,
  };
}

/** The results of the branch that ran, shaped after its requests (a get answers found/kv). */
export function txnResults(req: TxnRequest, r: TxnResult): TxnOpResult[] {
  const ops = r.succeeded ? req.success : req.failure;
  return r.responses.map((res, i): TxnOpResult => {
    const kind = ops[i]?.op?.$case;
    switch (res.op) {
      case "put":
        return { result: { $case: "put", value: {} } };
      case "deleteRange":
        return {
          result: {
            $case: kind === "deletePrefix" ? "deletePrefix" : "delete",
            value: { deleted: BigInt(res.deleted) },
          },
        };
      case "range": {
        const kvs = res.result.kvs.map(wireKv);
        if (kind === "get") return { result: { $case: "get", value: { found: kvs.length > 0, kv: kvs[0] } } };
        return { result: { $case: "range", value: { items: kvs, more: res.result.more } } };
      }
      case "txn":
        throw new RaftKvError({ code: "INTERNAL", message: "a raftkv.v1 txn answered with a nested txn" });
      default: {
        const never: never = res;
        return never;
      }
    }
  });
}

/** An MVCC error result as raftkv.v1's INVALID_ARGUMENT (etcd's message kept). */
export function mvccFailure(r: MvccResult): RaftKvError | null {
  if (r.op !== "error") return null;
  return invalid(r.message.replace(/^(etcdserver|mvcc): /, ""), HINTS[r.code] ?? "fix the request");
}

const HINTS: Partial<Record<string, string>> = {
  leaseNotFound: "grant a lease first (raftkv lease grant TTL); an expired or revoked lease is gone",
  duplicateKey: "put each key at most once per txn branch",
  compacted: "ask for a revision at or above the compacted one",
  futureRevision: "ask for a revision at or below the current one",
};

/** A raftkv.v1 WatchRequest as the MVCC watch's. */
export function watchOf(req: WireWatchRequest, limits: KvLimits): WatchRequest {
  const span = req.prefix ? prefix(req.key, limits) : { key: key(req.key, limits), rangeEnd: NONE };
  return {
    key: span.key,
    rangeEnd: span.rangeEnd,
    startRevision: safeCount(req.startRevision, "start_revision"),
    prevKv: req.prevKv,
    noPut: req.noPut,
    noDelete: req.noDelete,
    progressNotify: req.progressNotify,
  };
}

export function wireEvent(e: WatchEvent): WireWatchEvent {
  return {
    type: e.type === "put" ? EventType.EVENT_TYPE_PUT : EventType.EVENT_TYPE_DELETE,
    kv: wireKv(e.kv),
    prevKv: e.prevKv === null ? undefined : wireKv(e.prevKv),
  };
}
