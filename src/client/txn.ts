// Transactions as raftkv.v1 sends them (client.proto's Txn): comparisons on keys, then one of two lists
// of operations, applied atomically at one store revision. Built the way etcd's clientv3 and the etcd3
// package build them: client.txn().if(...compares).then(...ops).else(...ops).commit().

import {
  CompareResult,
  type TxnRequest,
  type Compare as WireCompare,
  type TxnOp as WireTxnOp,
  type TxnOpResult as WireTxnOpResult,
} from "../gen/raftkv/v1/client.ts";
import { type Bytes, plainBytes, toBytes } from "./values.ts";

/** A comparison operator, as etcdctl writes them. */
export type CompareOp = "=" | "!=" | ">" | "<";

const RESULT: Record<CompareOp, CompareResult> = {
  "=": CompareResult.COMPARE_RESULT_EQUAL,
  "!=": CompareResult.COMPARE_RESULT_NOT_EQUAL,
  ">": CompareResult.COMPARE_RESULT_GREATER,
  "<": CompareResult.COMPARE_RESULT_LESS,
};

/** One comparison of a txn (build with the functions of `Compare`). */
export interface TxnCompare {
  readonly wire: WireCompare;
}

/** One operation of a txn branch (build with the functions of `Op`). */
export interface TxnOperation {
  readonly wire: WireTxnOp;
}

export interface CompareOptions {
  /** Every key starting with `key` must satisfy the comparison. */
  readonly prefix?: boolean;
}

function cmp(key: string, op: CompareOp, against: WireCompare["against"], o: CompareOptions): TxnCompare {
  const result = RESULT[op];
  if (result === undefined) throw new TypeError(`compare operator ${String(op)} is not =, !=, > or <`);
  return { wire: { key, prefix: o.prefix ?? false, result, against } };
}

function count(n: number | bigint, what: string): bigint {
  const v = BigInt(n);
  if (v < 0n) throw new TypeError(`${what} ${n} is negative`);
  return v;
}

/** Comparisons for txn().if(...). A key that does not exist has version, create and mod revision and
 *  lease 0, and its value compares false. */
export const Compare = {
  value: (key: string, op: CompareOp, value: Bytes, o: CompareOptions = {}): TxnCompare =>
    cmp(key, op, { $case: "value", value: toBytes(value) }, o),
  version: (key: string, op: CompareOp, version: number | bigint, o: CompareOptions = {}): TxnCompare =>
    cmp(key, op, { $case: "version", value: count(version, "version") }, o),
  createRevision: (key: string, op: CompareOp, rev: number | bigint, o: CompareOptions = {}): TxnCompare =>
    cmp(key, op, { $case: "createRevision", value: count(rev, "create revision") }, o),
  modRevision: (key: string, op: CompareOp, rev: number | bigint, o: CompareOptions = {}): TxnCompare =>
    cmp(key, op, { $case: "modRevision", value: count(rev, "mod revision") }, o),
  lease: (key: string, op: CompareOp, lease: bigint, o: CompareOptions = {}): TxnCompare =>
    cmp(key, op, { $case: "lease", value: count(lease, "lease") }, o),
} as const;

/** Operations for txn().then(...) and .else(...). */
export const Op = {
  put: (key: string, value: Bytes, o: { readonly lease?: bigint } = {}): TxnOperation => ({
    wire: {
      op: {
        $case: "put",
        value: { key, value: toBytes(value), clientId: "", seq: 0n, lease: o.lease ?? 0n },
      },
    },
  }),
  get: (key: string): TxnOperation => ({ wire: { op: { $case: "get", value: { key, consistency: 0 } } } }),
  delete: (key: string): TxnOperation => ({
    wire: { op: { $case: "delete", value: { key, clientId: "", seq: 0n } } },
  }),
  deletePrefix: (prefix: string): TxnOperation => ({
    wire: { op: { $case: "deletePrefix", value: { prefix } } },
  }),
  /** Keys starting with `prefix` (at most `limit`; 0: the server's maximum). */
  range: (
    prefix: string,
    o: { readonly limit?: number; readonly startAfter?: string } = {},
  ): TxnOperation => ({
    wire: {
      op: {
        $case: "range",
        value: { prefix, limit: o.limit ?? 0, consistency: 0, startAfter: o.startAfter ?? "" },
      },
    },
  }),
} as const;

/** A key with its revisions, as reads, txns and watch events return it. */
export interface KeyValueRecord {
  readonly key: string;
  readonly value: Uint8Array;
  readonly createRevision: number;
  readonly modRevision: number;
  /** 1 on create, +1 per put; 0 for the key of a delete event. */
  readonly version: number;
  /** 0n: none. */
  readonly lease: bigint;
}

/** What one operation of the branch that ran returned, at its position. */
export type TxnOpResult =
  | { readonly type: "put" }
  | { readonly type: "get"; readonly kv: KeyValueRecord | null }
  | { readonly type: "delete"; readonly deleted: number }
  | { readonly type: "range"; readonly items: readonly KeyValueRecord[]; readonly more: boolean };

export interface TxnResult {
  /** Every compare held: the `then` operations ran (else the `else` ones). */
  readonly succeeded: boolean;
  /** The store revision after the txn (the one it read at, when it wrote nothing). */
  readonly revision: number;
  readonly results: readonly TxnOpResult[];
}

/** A raftkv.v1 key-value as the client's. */
export function recordOf(kv: {
  key: string;
  value: Uint8Array;
  createRevision: bigint;
  modRevision: bigint;
  version: bigint;
  lease: bigint;
}): KeyValueRecord {
  return {
    key: kv.key,
    value: plainBytes(kv.value),
    createRevision: Number(kv.createRevision),
    modRevision: Number(kv.modRevision),
    version: Number(kv.version),
    lease: kv.lease,
  };
}

export function txnOpResultOf(r: WireTxnOpResult): TxnOpResult {
  const x = r.result;
  switch (x?.$case) {
    case "put":
      return { type: "put" };
    case "get":
      return { type: "get", kv: x.value.found && x.value.kv !== undefined ? recordOf(x.value.kv) : null };
    case "delete":
    case "deletePrefix":
      return { type: "delete", deleted: Number(x.value.deleted) };
    case "range":
      return { type: "range", items: x.value.items.map(recordOf), more: x.value.more };
    case undefined:
      throw new TypeError("a txn result without a result (a server of a newer version?)");
    default: {
      const never: never = x;
      return never;
    }
  }
}

/** client.txn(): .if(...).then(...).else(...), then commit(). Each of if/then/else may be called once. */
export class TxnBuilder {
  private readonly compares: TxnCompare[] = [];
  private readonly success: TxnOperation[] = [];
  private readonly failure: TxnOperation[] = [];
  private readonly called = new Set<string>();

  constructor(private readonly run: (req: TxnRequest) => Promise<TxnResult>) {}

  private once(step: string): void {
    if (this.called.has(step)) throw new TypeError(`txn().${step}() called twice`);
    this.called.add(step);
  }

  if(...compares: TxnCompare[]): this {
    this.once("if");
    this.compares.push(...compares);
    return this;
  }

  /** (Named as etcd's clients name it; this makes the builder look like a promise to `await`, so an
   *  awaited builder fails here, telling to call commit().) */
  // biome-ignore lint/suspicious/noThenProperty: the etcd clients' name for the success branch
  then(...ops: TxnOperation[]): this {
    if (ops.some((o) => typeof o === "function"))
      throw new TypeError("a txn builder is not a promise: call .commit() to send it");
    this.once("then");
    this.success.push(...ops);
    return this;
  }

  else(...ops: TxnOperation[]): this {
    this.once("else");
    this.failure.push(...ops);
    return this;
  }

  /** The request as sent (for tools that print or log it). */
  request(): TxnRequest {
    return {
      compare: this.compares.map((c) => c.wire),
      success: this.success.map((o) => o.wire),
      failure: this.failure.map((o) => o.wire),
    };
  }

  /** Sends the txn. It is not exactly-once: it is retried only when the answer says it did not apply
   *  (not leader, no leader, overloaded); a lost answer rejects with an error saying it may have. */
  commit(): Promise<TxnResult> {
    return this.run(this.request());
  }
}
