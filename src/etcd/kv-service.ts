// etcd's KV service (Range, Put, DeleteRange, Txn, Compact) over the node's MvccApi: requests checked
// at the edge (requests.ts), writes through the log, serializable reads from this node's applied state
// and linearizable ones as raftkv's lease reads, answers with etcd's ResponseHeader and errors.

import type * as grpc from "@grpc/grpc-js";
import {
  type CompactionRequest,
  type CompactionResponse,
  type DeleteRangeRequest,
  type DeleteRangeResponse,
  type KVServer,
  KVService,
  type PutRequest,
  type PutResponse,
  type RangeRequest,
  type RangeResponse,
  type ResponseHeader,
  type ResponseOp,
  type TxnRequest,
  type TxnResponse,
} from "../gen/etcd/etcdserverpb/rpc.ts";
import type { MvccResult, RangeResult, TxnResult } from "../kv/mvcc-types.ts";
import type { MvccHeader } from "../server/mvcc-api.ts";
import { type EtcdCalls, wireKv } from "./context.ts";
import { mvccError, resultOf } from "./errors.ts";
import { KvRequests } from "./requests.ts";

export class EtcdKv {
  private readonly c: EtcdCalls;
  private readonly requests: KvRequests;

  constructor(calls: EtcdCalls) {
    this.c = calls;
    this.requests = new KvRequests(calls.d.limits, calls.d.nodeId);
  }

  async range(r: RangeRequest, budgetMs: number): Promise<RangeResponse> {
    const request = this.requests.range(r);
    const out = await this.c.d.mvcc.range(
      request,
      r.serializable ? "serializable" : "linearizable",
      budgetMs,
    );
    if ("error" in out) throw mvccError(out.error.code, out.error.message);
    return this.rangeResponse(this.c.header(out.header), out.result);
  }

  async put(r: PutRequest, budgetMs: number): Promise<PutResponse> {
    const { header, result } = await this.c.d.mvcc.write(this.requests.put(r), budgetMs);
    const res = resultOf(result, "put");
    return {
      header: this.headerAt(header, result),
      prevKv: res.prevKv === null ? undefined : wireKv(res.prevKv),
    };
  }

  async deleteRange(r: DeleteRangeRequest, budgetMs: number): Promise<DeleteRangeResponse> {
    const { header, result } = await this.c.d.mvcc.write(this.requests.deleteRange(r), budgetMs);
    const res = resultOf(result, "deleteRange");
    return {
      header: this.headerAt(header, result),
      deleted: BigInt(res.deleted),
      prevKvs: res.prevKvs.map(wireKv),
    };
  }

  async txn(r: TxnRequest, budgetMs: number): Promise<TxnResponse> {
    const { header, result } = await this.c.d.mvcc.write(this.requests.txn(r), budgetMs);
    return this.txnResponse(this.headerAt(header, result), resultOf(result, "txn"));
  }

  async compact(r: CompactionRequest, budgetMs: number): Promise<CompactionResponse> {
    const revision =
      r.revision > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(r.revision);
    const { header, result } = await this.c.d.mvcc.write({ op: "compact", revision }, budgetMs);
    resultOf(result, "compact");
    return { header: this.c.header(header) };
  }

  handlers(): Record<keyof KVServer, grpc.UntypedHandleCall> {
    const u = this.c;
    return {
      range: u.unary((r: RangeRequest, b) => this.range(r, b), KVService.range),
      put: u.unary((r: PutRequest, b) => this.put(r, b), KVService.put),
      deleteRange: u.unary((r: DeleteRangeRequest, b) => this.deleteRange(r, b), KVService.deleteRange),
      txn: u.unary((r: TxnRequest, b) => this.txn(r, b), KVService.txn),
      compact: u.unary((r: CompactionRequest, b) => this.compact(r, b), KVService.compact),
    };
  }

  /** A write's header carries the revision it made (the result's), which the node's header may pass. */
  private headerAt(h: MvccHeader, r: MvccResult): ResponseHeader {
    return this.c.header({ revision: r.revision, raftTerm: h.raftTerm });
  }

  private rangeResponse(header: ResponseHeader, r: RangeResult): RangeResponse {
    return { header, kvs: r.kvs.map(wireKv), more: r.more, count: BigInt(r.count) };
  }

  /** Nested responses carry a header with the revision only, as etcd's do. */
  private txnResponse(header: ResponseHeader, t: TxnResult, nested = false): TxnResponse {
    const inner: ResponseHeader = { clusterId: 0n, memberId: 0n, revision: header.revision, raftTerm: 0n };
    const responses: ResponseOp[] = t.responses.map((r): ResponseOp => {
      switch (r.op) {
        case "range":
          return { response: { $case: "responseRange", value: this.rangeResponse(inner, r.result) } };
        case "put":
          return {
            response: {
              $case: "responsePut",
              value: { header: inner, prevKv: r.prevKv === null ? undefined : wireKv(r.prevKv) },
            },
          };
        case "deleteRange":
          return {
            response: {
              $case: "responseDeleteRange",
              value: { header: inner, deleted: BigInt(r.deleted), prevKvs: r.prevKvs.map(wireKv) },
            },
          };
        case "txn":
          return { response: { $case: "responseTxn", value: this.txnResponse(inner, r, true) } };
        default: {
          const never: never = r;
          return never;
        }
      }
    });
    return { header: nested ? inner : header, succeeded: t.succeeded, responses };
  }
}
