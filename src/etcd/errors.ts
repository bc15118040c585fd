// etcd's errors on the wire: the gRPC code and the exact message etcd sends (clients match the message,
// clientv3's rpctypes, to turn it into a typed error and decide whether to retry), from raftkv's
// RaftKvError codes and the MVCC state machine's typed errors. Where raftkv says more than etcd would
// (a limit, a node), the message still starts with "etcdserver: ".

import * as grpc from "@grpc/grpc-js";
import type { NodeId } from "../core/types.ts";
import type { MvccErrorCode, MvccResult } from "../kv/mvcc-types.ts";
import { RaftKvError } from "../lib/errors.ts";

/** An answer that is an etcd gRPC error. */
export class EtcdError extends Error {
  override name = "EtcdError";
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
  }

  toStatus(): grpc.StatusObject {
    return { code: this.code, details: this.message, metadata: new grpc.Metadata() };
  }
}

// etcd's own (api/v3rpc/rpctypes), the ones raftkv can produce.
export const ErrEmptyKey = (): EtcdError =>
  new EtcdError(grpc.status.INVALID_ARGUMENT, "etcdserver: key is not provided");
export const ErrValueProvided = (): EtcdError =>
  new EtcdError(grpc.status.INVALID_ARGUMENT, "etcdserver: value is provided");
export const ErrLeaseProvided = (): EtcdError =>
  new EtcdError(grpc.status.INVALID_ARGUMENT, "etcdserver: lease is provided");
export const ErrTooManyOps = (): EtcdError =>
  new EtcdError(grpc.status.INVALID_ARGUMENT, "etcdserver: too many operations in txn request");
export const ErrDuplicateKey = (): EtcdError =>
  new EtcdError(grpc.status.INVALID_ARGUMENT, "etcdserver: duplicate key given in txn request");
export const ErrInvalidSortOption = (): EtcdError =>
  new EtcdError(grpc.status.INVALID_ARGUMENT, "etcdserver: invalid sort option");
export const ErrRequestTooLarge = (): EtcdError =>
  new EtcdError(grpc.status.INVALID_ARGUMENT, "etcdserver: request is too large");
export const ErrLeaseNotFound = (): EtcdError =>
  new EtcdError(grpc.status.NOT_FOUND, "etcdserver: requested lease not found");
export const ErrLeaseTtlTooLarge = (): EtcdError =>
  new EtcdError(grpc.status.OUT_OF_RANGE, "etcdserver: too large lease TTL");
export const ErrNotLeader = (): EtcdError => new EtcdError(grpc.status.UNAVAILABLE, "etcdserver: not leader");
export const ErrNoLeader = (): EtcdError => new EtcdError(grpc.status.UNAVAILABLE, "etcdserver: no leader");
export const ErrTimeout = (): EtcdError =>
  new EtcdError(grpc.status.UNAVAILABLE, "etcdserver: request timed out");
export const ErrTooManyRequests = (): EtcdError =>
  new EtcdError(grpc.status.RESOURCE_EXHAUSTED, "etcdserver: too many requests");
export const ErrStopped = (): EtcdError =>
  new EtcdError(grpc.status.UNAVAILABLE, "etcdserver: server stopped");

const MVCC: Record<MvccErrorCode, () => EtcdError> = {
  compacted: () =>
    new EtcdError(grpc.status.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted"),
  futureRevision: () =>
    new EtcdError(grpc.status.OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision"),
  keyNotFound: () => new EtcdError(grpc.status.INVALID_ARGUMENT, "etcdserver: key not found"),
  leaseNotFound: ErrLeaseNotFound,
  leaseExists: () => new EtcdError(grpc.status.FAILED_PRECONDITION, "etcdserver: lease already exists"),
  duplicateKey: ErrDuplicateKey,
  tooManyOps: ErrTooManyOps,
  invalid: () => new EtcdError(grpc.status.INVALID_ARGUMENT, "etcdserver: invalid request"),
};

/** The MVCC state machine's typed error as etcd sends it. */
export function mvccError(code: MvccErrorCode, message: string): EtcdError {
  if (code === "invalid")
    return new EtcdError(
      grpc.status.INVALID_ARGUMENT,
      message.startsWith("etcdserver: ") ? message : `etcdserver: ${message}`,
    );
  return MVCC[code]();
}

/** A request refused by raftkv's own bounds, in etcd's style with raftkv's detail. */
export function invalidArgument(what: string, nodeId: NodeId, hint: string): EtcdError {
  return new EtcdError(grpc.status.INVALID_ARGUMENT, `etcdserver: ${what} (raftkv node ${nodeId}); ${hint}`);
}

/**
 * Anything a handler threw, as etcd would answer it. Not leader and no leader are UNAVAILABLE (etcd's
 * clients retry a read on another endpoint on UNAVAILABLE; etcd itself forwards writes to its leader,
 * which the adapter does too before it gets here); a deadline is etcd's "request timed out".
 */
export function toEtcdError(err: unknown, nodeId: NodeId): EtcdError {
  if (err instanceof EtcdError) return err;
  if (err instanceof RaftKvError) {
    switch (err.code) {
      case "NOT_LEADER":
        return ErrNotLeader();
      case "NO_LEADER":
        return ErrNoLeader();
      case "DEADLINE_EXCEEDED":
        return ErrTimeout();
      case "OVERLOADED":
        return ErrTooManyRequests();
      case "SHUTTING_DOWN":
        return ErrStopped();
      case "TOO_LARGE":
        return ErrRequestTooLarge();
      case "INVALID_ARGUMENT":
        return new EtcdError(grpc.status.INVALID_ARGUMENT, `etcdserver: ${err.message}`);
      case "UNAVAILABLE":
        return new EtcdError(grpc.status.UNAVAILABLE, `etcdserver: ${err.message}`);
      default:
        return new EtcdError(grpc.status.INTERNAL, `etcdserver: ${err.message}`);
    }
  }
  const text = err instanceof Error ? err.message : String(err);
  return new EtcdError(grpc.status.INTERNAL, `etcdserver: internal error on raftkv node ${nodeId}: ${text}`);
}

export const grpcStatus = grpc.status;

/** A command's own result, or its typed error thrown as etcd's. */
export function resultOf<Op extends MvccResult["op"]>(
  r: MvccResult,
  op: Op,
): Extract<MvccResult, { op: Op }> {
  if (r.op === "error") throw mvccError(r.code, r.message);
  if (r.op !== op)
    throw new EtcdError(grpc.status.INTERNAL, `etcdserver: a ${op} applied as ${r.op} (raftkv bug)`);
  return r as Extract<MvccResult, { op: Op }>;
}
