// The node-side MVCC service the adapters call (the etcd v3 API, raftkv.v1): the part of the issue-18
// contract that involves promises, kept out of src/kv (which stays pure). Data types: src/kv/mvcc-types.ts.

import type {
  Bytes,
  CompactOp,
  DeleteRangeOp,
  LeaseInfo,
  MvccError,
  MvccResult,
  PutOp,
  RangeRequest,
  RangeResult,
  TxnOp,
  WatchEvent,
} from "../kv/mvcc-types.js";

/** Read consistency as etcd names it: serializable is this node's applied state (raftkv's `stale`);
 *  linearizable is raftkv's `lease` read (configurable to `readIndex`). */
export type MvccConsistency = "serializable" | "linearizable";

/** etcd's ResponseHeader, less cluster_id/member_id (the adapter knows those). */
export interface MvccHeader {
  readonly revision: number;
  readonly raftTerm: number;
}

export interface WatchRequest {
  readonly key: Bytes;
  readonly rangeEnd: Bytes;
  /** 0: from the next revision. */
  readonly startRevision: number;
  readonly prevKv: boolean;
  readonly noPut: boolean;
  readonly noDelete: boolean;
  readonly progressNotify: boolean;
}

/** What a watcher receives, in revision order, with no gaps and no duplicates. */
export type WatchDelivery =
  | { readonly kind: "events"; readonly revision: number; readonly events: readonly WatchEvent[] }
  /** Nothing new up to `revision` (progress_notify, or an explicit progress request). */
  | { readonly kind: "progress"; readonly revision: number }
  /** The watch ended: its start is below the compacted revision (compactRevision set), the watcher
   *  was too slow for its buffer, or the node is stopping. */
  | { readonly kind: "canceled"; readonly reason: string; readonly compactRevision: number };

export interface WatchHandle {
  cancel(): void;
  /** Ask for a progress delivery now. */
  requestProgress(): void;
}

/**
 * The node-side service the etcd v3 adapter and raftkv.v1 call (implemented next to the MVCC state
 * machine, over the embedding API). Every method validates nothing the adapter already validated at
 * the edge (limits, UTF-8 where raftkv.v1 needs it) and rejects with a RaftKvError whose code the
 * adapters map (NOT_LEADER, NO_LEADER, OVERLOADED, DEADLINE_EXCEEDED, ...) or resolves with an
 * MvccError for etcd's typed errors.
 */
export interface MvccApi {
  range(
    request: RangeRequest,
    consistency: MvccConsistency,
    budgetMs: number,
  ): Promise<{ header: MvccHeader; result: RangeResult } | { header: MvccHeader; error: MvccError }>;
  /** Put, DeleteRange, Txn or Compact through the log (a Txn with no writes may be served as a read). */
  write(
    command: PutOp | DeleteRangeOp | TxnOp | CompactOp,
    budgetMs: number,
  ): Promise<{ header: MvccHeader; result: MvccResult }>;
  leaseGrant(
    id: bigint,
    ttlSeconds: number,
    budgetMs: number,
  ): Promise<{ header: MvccHeader; result: MvccResult }>;
  leaseRevoke(id: bigint, budgetMs: number): Promise<{ header: MvccHeader; result: MvccResult }>;
  /** Renews the lease at the leader; the TTL left, or null when there is no such lease. */
  leaseKeepAlive(id: bigint): Promise<{ header: MvccHeader; ttlSeconds: number | null }>;
  leaseTimeToLive(
    id: bigint,
    withKeys: boolean,
  ): Promise<{ header: MvccHeader; info: (LeaseInfo & { ttlSeconds: number }) | null }>;
  leases(): Promise<{ header: MvccHeader; ids: readonly bigint[] }>;
  /** Deliveries start after `onDelivery` is installed; the watcher's buffer is bounded (a slow watcher
   *  is canceled with a reason, never slowing the apply loop). */
  watch(request: WatchRequest, onDelivery: (d: WatchDelivery) => void): WatchHandle;
  /** The current and the compacted revision, for Status and HashKV. */
  revisions(): { current: number; compacted: number };
  /** A hash of the keys' history up to `revision` (etcd's HashKV: equal on replicas at equal revisions). */
  hashKv(revision: number): Promise<{ header: MvccHeader; hash: number; compactRevision: number }>;
}
