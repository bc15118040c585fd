// The contract between the MVCC state machine (etcd's data model on the Store: revisions, history,
// transactions, compaction, leases, watch events) and the adapters that serve it (the etcd v3 gRPC API,
// raftkv.v1, the client library). Issue 18. Plain data: keys and values are bytes, revisions are
// safe integers (etcd's int64, far below 2^53 in practice), lease ids are bigint (etcd clients may pick
// any int64; ids the server draws stay below 2^53 but need not).
//
// Semantics are etcd's (api/etcdserverpb/rpc.proto, mvcc/mvccpb/kv.proto), restated here:
// - The store revision counts write requests that changed something: a Put (even of the same value), a
//   DeleteRange that deleted at least one key, a Txn whose executed branch wrote (once for the whole
//   Txn), a LeaseRevoke that deleted attached keys. Each change inside one revision has a sub-revision
//   (0, 1, ...) in execution order. Revision 1 is the empty store's starting revision, as in etcd.
// - Per key: create_revision (the revision that created this incarnation), mod_revision (last change),
//   version (1 on create, +1 per put, reset by delete), lease (0: none).
// - Deletes are tombstones in the history; a read at a past revision sees the keys as they were then;
//   Compact(rev) drops history below rev; reads and watches below the compacted revision fail with
//   ErrCompacted ("mvcc: required revision has been compacted"); reads above the current revision fail
//   with ErrFutureRev ("mvcc: required revision is a future revision").
// - A range is [key, rangeEnd): rangeEnd empty means the single key `key`; rangeEnd = [0] means every
//   key >= key; key = [0] with rangeEnd = [0] means all keys.
// - Lease expiry is decided by the leader's clock and takes effect only through the log (a
//   LeaseRevoke command that deletes the attached keys at one revision); apply stays deterministic and
//   never reads a clock. After a leader change every lease's remaining TTL is refreshed (etcd does so).

export type Bytes = Uint8Array;

export interface KeyValue {
  readonly key: Bytes;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly version: number;
  readonly value: Bytes;
  /** 0n: no lease. */
  readonly lease: bigint;
}

// ------------------------------------------------------------------ reads

export type SortOrder = "none" | "ascend" | "descend";
export type SortTarget = "key" | "version" | "create" | "mod" | "value";

export interface RangeRequest {
  readonly key: Bytes;
  /** Empty: the single key. See the range rules above. */
  readonly rangeEnd: Bytes;
  /** 0: no limit (the server still bounds the answer by maxRangeItems / maxRangeBytes and says `more`). */
  readonly limit: number;
  /** 0: the current revision. */
  readonly revision: number;
  readonly sortOrder: SortOrder;
  readonly sortTarget: SortTarget;
  readonly keysOnly: boolean;
  readonly countOnly: boolean;
  /** 0: no bound. */
  readonly minModRevision: number;
  readonly maxModRevision: number;
  readonly minCreateRevision: number;
  readonly maxCreateRevision: number;
}

export interface RangeResult {
  readonly kvs: readonly KeyValue[];
  /** More keys matched than were returned (limit, or the server's bounds). */
  readonly more: boolean;
  /** How many keys matched (before limit). */
  readonly count: number;
}

// ------------------------------------------------------------------ writes (the replicated commands)

export interface PutOp {
  readonly op: "put";
  readonly key: Bytes;
  readonly value: Bytes;
  readonly lease: bigint;
  readonly prevKv: boolean;
  /** Keep the current value (the key must exist: else ErrKeyNotFound). */
  readonly ignoreValue: boolean;
  /** Keep the current lease (the key must exist: else ErrKeyNotFound). */
  readonly ignoreLease: boolean;
}

export interface DeleteRangeOp {
  readonly op: "deleteRange";
  readonly key: Bytes;
  readonly rangeEnd: Bytes;
  readonly prevKv: boolean;
}

export interface RangeOp {
  readonly op: "range";
  readonly request: RangeRequest;
}

export type CompareResult = "equal" | "greater" | "less" | "notEqual";

export type CompareTarget =
  | { readonly target: "version"; readonly version: number }
  | { readonly target: "create"; readonly createRevision: number }
  | { readonly target: "mod"; readonly modRevision: number }
  | { readonly target: "value"; readonly value: Bytes }
  | { readonly target: "lease"; readonly lease: bigint };

export interface Compare {
  readonly result: CompareResult;
  readonly key: Bytes;
  /** Empty: the single key; else every key in [key, rangeEnd) must satisfy the comparison. */
  readonly rangeEnd: Bytes;
  readonly against: CompareTarget;
}

/** One operation of a Txn branch (etcd's RequestOp). */
export type TxnRequestOp = RangeOp | PutOp | DeleteRangeOp | TxnOp;

export interface TxnOp {
  readonly op: "txn";
  readonly compare: readonly Compare[];
  readonly success: readonly TxnRequestOp[];
  readonly failure: readonly TxnRequestOp[];
}

export interface CompactOp {
  readonly op: "compact";
  readonly revision: number;
}

export interface LeaseGrantOp {
  readonly op: "leaseGrant";
  /** Chosen by the proposer (the leader draws one when the client asked for 0). */
  readonly id: bigint;
  readonly ttlSeconds: number;
}

export interface LeaseRevokeOp {
  readonly op: "leaseRevoke";
  readonly id: bigint;
}

/** Everything the MVCC state machine applies from the log. */
export type MvccCommand = PutOp | DeleteRangeOp | TxnOp | CompactOp | LeaseGrantOp | LeaseRevokeOp;

// ------------------------------------------------------------------ results

export interface PutResult {
  readonly op: "put";
  readonly prevKv: KeyValue | null;
}

export interface DeleteRangeResult {
  readonly op: "deleteRange";
  readonly deleted: number;
  readonly prevKvs: readonly KeyValue[];
}

export interface RangeOpResult {
  readonly op: "range";
  readonly result: RangeResult;
}

export interface TxnResult {
  readonly op: "txn";
  readonly succeeded: boolean;
  readonly responses: readonly (PutResult | DeleteRangeResult | RangeOpResult | TxnResult)[];
}

/** etcd's typed errors (the adapters map them to etcd's gRPC codes and messages). */
export type MvccErrorCode =
  | "compacted" // mvcc: required revision has been compacted (OUT_OF_RANGE)
  | "futureRevision" // mvcc: required revision is a future revision (OUT_OF_RANGE)
  | "keyNotFound" // etcdserver: key not found (INVALID_ARGUMENT; ignore_value/ignore_lease on no key)
  | "leaseNotFound" // etcdserver: requested lease not found (NOT_FOUND)
  | "leaseExists" // etcdserver: lease already exists (FAILED_PRECONDITION)
  | "duplicateKey" // etcdserver: duplicate key given in txn request (INVALID_ARGUMENT)
  | "tooManyOps" // etcdserver: too many operations in txn request (INVALID_ARGUMENT)
  | "invalid"; // anything else malformed (INVALID_ARGUMENT, message says what)

export interface MvccError {
  readonly op: "error";
  readonly code: MvccErrorCode;
  readonly message: string;
}

/** What applying one command returns, with the store revision after it (etcd's header.revision). */
export type MvccResult =
  | ((PutResult | DeleteRangeResult | TxnResult) & { readonly revision: number })
  | { readonly op: "compact"; readonly revision: number }
  | { readonly op: "leaseGrant"; readonly id: bigint; readonly ttlSeconds: number; readonly revision: number }
  | { readonly op: "leaseRevoke"; readonly revision: number }
  | (MvccError & { readonly revision: number });

// ------------------------------------------------------------------ watch

export interface WatchEvent {
  readonly type: "put" | "delete";
  /** For a delete: the key with modRevision = the deleting revision, version 0, empty value. */
  readonly kv: KeyValue;
  /** The key before this change, when there was one. */
  readonly prevKv: KeyValue | null;
}

/** The changes of one revision, in sub-revision order: what the state machine hands the watch hub
 *  after each applied entry that changed something (and what history reads return, revision by
 *  revision, for watchers that start in the past). */
export interface RevisionChanges {
  readonly revision: number;
  readonly events: readonly WatchEvent[];
}

// ------------------------------------------------------------------ leases (state machine side)

export interface LeaseInfo {
  readonly id: bigint;
  /** TTL granted, seconds. */
  readonly grantedTtlSeconds: number;
  /** Keys attached now. */
  readonly keys: readonly Bytes[];
}
