// etcd's KV requests at the edge: checked the way etcd checks them (api/v3rpc/key.go: empty keys,
// ignore_value/ignore_lease with a value or lease, txn operation counts, overlapping writes in one txn)
// and against raftkv's bounds (the overlap check is the state machine's own, kv/mvcc-validate.ts) (key and value sizes), then turned into the MVCC state machine's commands.

import type { NodeId } from "../core/types.ts";
import {
  Compare_CompareResult,
  Compare_CompareTarget,
  RangeRequest_SortOrder,
  RangeRequest_SortTarget,
  type Compare as WireCompare,
  type DeleteRangeRequest as WireDeleteRange,
  type PutRequest as WirePut,
  type RangeRequest as WireRange,
  type RequestOp as WireRequestOp,
  type TxnRequest as WireTxn,
} from "../gen/etcd/etcdserverpb/rpc.ts";
import type {
  Compare,
  CompareResult,
  CompareTarget,
  DeleteRangeOp,
  PutOp,
  RangeRequest,
  SortOrder,
  SortTarget,
  TxnOp,
  TxnRequestOp,
} from "../kv/mvcc-types.ts";
import { txnIntervalError } from "../kv/mvcc-validate.ts";
import {
  ErrDuplicateKey,
  ErrEmptyKey,
  ErrInvalidSortOption,
  ErrLeaseProvided,
  ErrTooManyOps,
  ErrValueProvided,
  invalidArgument,
} from "./errors.ts";

export interface EtcdKvLimits {
  readonly maxKeyBytes: number;
  readonly maxValueBytes: number;
  /** etcd's --max-txn-ops: compares, success and failure operations of one txn (each). */
  readonly maxTxnOps: number;
  /** Nesting of txns inside txns. */
  readonly maxTxnDepth: number;
}

/** A revision or count from etcd's int64: <= 0 means "none"; beyond 2^53 it is far in the future. */
function revision(v: bigint): number {
  if (v <= 0n) return 0;
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
}

const SORT_ORDER: Partial<Record<RangeRequest_SortOrder, SortOrder>> = {
  [RangeRequest_SortOrder.NONE]: "none",
  [RangeRequest_SortOrder.ASCEND]: "ascend",
  [RangeRequest_SortOrder.DESCEND]: "descend",
};
const SORT_TARGET: Partial<Record<RangeRequest_SortTarget, SortTarget>> = {
  [RangeRequest_SortTarget.KEY]: "key",
  [RangeRequest_SortTarget.VERSION]: "version",
  [RangeRequest_SortTarget.CREATE]: "create",
  [RangeRequest_SortTarget.MOD]: "mod",
  [RangeRequest_SortTarget.VALUE]: "value",
};
const COMPARE_RESULT: Partial<Record<Compare_CompareResult, CompareResult>> = {
  [Compare_CompareResult.EQUAL]: "equal",
  [Compare_CompareResult.GREATER]: "greater",
  [Compare_CompareResult.LESS]: "less",
  [Compare_CompareResult.NOT_EQUAL]: "notEqual",
};

export class KvRequests {
  constructor(
    private readonly limits: EtcdKvLimits,
    private readonly nodeId: NodeId,
  ) {}

  range(r: WireRange): RangeRequest {
    this.key(r.key);
    this.rangeEnd(r.rangeEnd);
    const sortOrder = SORT_ORDER[r.sortOrder];
    const sortTarget = SORT_TARGET[r.sortTarget];
    if (sortOrder === undefined || sortTarget === undefined) throw ErrInvalidSortOption();
    return {
      key: r.key,
      rangeEnd: r.rangeEnd,
      limit: revision(r.limit),
      revision: revision(r.revision),
      sortOrder,
      sortTarget,
      keysOnly: r.keysOnly,
      countOnly: r.countOnly,
      minModRevision: revision(r.minModRevision),
      maxModRevision: revision(r.maxModRevision),
      minCreateRevision: revision(r.minCreateRevision),
      maxCreateRevision: revision(r.maxCreateRevision),
    };
  }

  put(r: WirePut): PutOp {
    this.key(r.key);
    if (r.ignoreValue && r.value.length !== 0) throw ErrValueProvided();
    if (r.ignoreLease && r.lease !== 0n) throw ErrLeaseProvided();
    if (r.value.length > this.limits.maxValueBytes)
      throw invalidArgument(
        `value is ${r.value.length} bytes, over maxValueBytes (${this.limits.maxValueBytes})`,
        this.nodeId,
        "store smaller values",
      );
    return {
      op: "put",
      key: r.key,
      value: r.value,
      lease: r.lease,
      prevKv: r.prevKv,
      ignoreValue: r.ignoreValue,
      ignoreLease: r.ignoreLease,
    };
  }

  deleteRange(r: WireDeleteRange): DeleteRangeOp {
    this.key(r.key);
    this.rangeEnd(r.rangeEnd);
    return { op: "deleteRange", key: r.key, rangeEnd: r.rangeEnd, prevKv: r.prevKv };
  }

  /** A Txn: checked whole (sizes, counts, overlapping writes) before anything of it is proposed. */
  txn(r: WireTxn): TxnOp {
    const t = this.txnAt(r, 1);
    if (txnIntervalError(t) !== null) throw ErrDuplicateKey();
    return t;
  }

  private txnAt(r: WireTxn, depth: number): TxnOp {
    const max = this.limits.maxTxnOps;
    if (r.compare.length > max || r.success.length > max || r.failure.length > max) throw ErrTooManyOps();
    if (depth > this.limits.maxTxnDepth)
      throw invalidArgument(
        `txn requests nest ${depth} deep, over ${this.limits.maxTxnDepth}`,
        this.nodeId,
        "flatten the transaction",
      );
    return {
      op: "txn",
      compare: r.compare.map((c) => this.compare(c)),
      success: r.success.map((o) => this.requestOp(o, depth)),
      failure: r.failure.map((o) => this.requestOp(o, depth)),
    };
  }

  private requestOp(o: WireRequestOp, depth: number): TxnRequestOp {
    const req = o.request;
    switch (req?.$case) {
      case "requestRange":
        return { op: "range", request: this.range(req.value) };
      case "requestPut":
        return this.put(req.value);
      case "requestDeleteRange":
        return this.deleteRange(req.value);
      case "requestTxn":
        return this.txnAt(req.value, depth + 1);
      case undefined:
        // etcd answers an empty RequestOp with an empty ResponseOp; raftkv refuses it plainly.
        throw invalidArgument(
          "a txn operation carries no request",
          this.nodeId,
          "set one of request_range, request_put, request_delete_range, request_txn",
        );
      default: {
        const never: never = req;
        return never;
      }
    }
  }

  private compare(c: WireCompare): Compare {
    this.key(c.key);
    this.rangeEnd(c.rangeEnd);
    const result = COMPARE_RESULT[c.result];
    if (result === undefined)
      throw invalidArgument(
        `unknown compare result ${c.result}`,
        this.nodeId,
        "use EQUAL, GREATER, LESS or NOT_EQUAL",
      );
    return { result, key: c.key, rangeEnd: c.rangeEnd, against: this.target(c) };
  }

  /** etcd reads the compared value from the target_union member the target names (0 when unset). */
  private target(c: WireCompare): CompareTarget {
    const u = c.targetUnion;
    const int = (name: string): bigint => (u !== undefined && u.$case === name ? (u.value as bigint) : 0n);
    switch (c.target) {
      case Compare_CompareTarget.VERSION:
        return { target: "version", version: revision(int("version")) };
      case Compare_CompareTarget.CREATE:
        return { target: "create", createRevision: revision(int("createRevision")) };
      case Compare_CompareTarget.MOD:
        return { target: "mod", modRevision: revision(int("modRevision")) };
      case Compare_CompareTarget.VALUE: {
        const value = u?.$case === "value" ? u.value : new Uint8Array(0);
        if (value.length > this.limits.maxValueBytes)
          throw invalidArgument(
            `compared value is ${value.length} bytes, over maxValueBytes (${this.limits.maxValueBytes})`,
            this.nodeId,
            "compare smaller values",
          );
        return { target: "value", value };
      }
      case Compare_CompareTarget.LEASE:
        return { target: "lease", lease: int("lease") };
      default:
        throw invalidArgument(
          `unknown compare target ${c.target}`,
          this.nodeId,
          "use VERSION, CREATE, MOD, VALUE or LEASE",
        );
    }
  }

  private key(k: Uint8Array): void {
    if (k.length === 0) throw ErrEmptyKey();
    if (k.length > this.limits.maxKeyBytes)
      throw invalidArgument(
        `key is ${k.length} bytes, over maxKeyBytes (${this.limits.maxKeyBytes})`,
        this.nodeId,
        "use shorter keys",
      );
  }

  private rangeEnd(k: Uint8Array): void {
    if (k.length > this.limits.maxKeyBytes)
      throw invalidArgument(
        `range_end is ${k.length} bytes, over maxKeyBytes (${this.limits.maxKeyBytes})`,
        this.nodeId,
        "use shorter keys",
      );
  }
}
