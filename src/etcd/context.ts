// What the etcd v3 services need of the node they run on, and the pieces they share: etcd's ids,
// the ResponseHeader, mvccpb.KeyValue, and the unary-call frame (inflight count, drain, deadline budget,
// every failure as etcd's gRPC status).

import * as grpc from "@grpc/grpc-js";
import { remainingMs } from "../clock/deadline.ts";
import type { NodeId } from "../core/types.ts";
import type { ResponseHeader } from "../gen/etcd/etcdserverpb/rpc.ts";
import type { KeyValue as WireKeyValue } from "../gen/etcd/mvccpb/kv.ts";
import type { KeyValue } from "../kv/mvcc-types.ts";
import { NotLeaderError } from "../server/embed.ts";
import type { Logger } from "../server/logging.ts";
import type { MvccApi, MvccHeader } from "../server/mvcc-api.ts";
import { ErrStopped, EtcdError, toEtcdError } from "./errors.ts";
import { Forwarder } from "./forward.ts";
import type { EtcdKvLimits } from "./requests.ts";

export interface EtcdMember {
  readonly id: NodeId;
  readonly name: string;
  readonly peerUrls: readonly string[];
  readonly clientUrls: readonly string[];
  readonly isLearner?: boolean;
}

/** Membership changes through etcd's Cluster service (the node's joint-consensus changes, issue 13).
 *  Each runs on the leader (elsewhere it rejects with a NotLeaderError, and the call is forwarded). */
export interface EtcdMembership {
  /** Adds a member at `peerAddress` ("host:port") under a new id; resolves with the id. */
  add(peerAddress: string, learner: boolean, budgetMs: number): Promise<NodeId>;
  remove(id: NodeId, budgetMs: number): Promise<void>;
  promote(id: NodeId, budgetMs: number): Promise<void>;
  /** Hands leadership to voter `to` and waits until it leads (etcd's MoveLeader). */
  moveLeader(to: NodeId, budgetMs: number): Promise<void>;
}

export interface EtcdNodeStatus {
  readonly leaderId: NodeId | null;
  readonly term: number;
  /** The Raft commit index (etcd's raftIndex) and applied index. */
  readonly commitIndex: number;
  readonly appliedIndex: number;
  /** Bytes the node's data take on disk (etcd's dbSize). */
  readonly dbSizeBytes: number;
  readonly version: string;
  /** This node is a learner (receives the log, does not vote). */
  readonly isLearner?: boolean;
}

export interface EtcdLimits extends EtcdKvLimits {
  /** Largest request message (etcd's --max-request-bytes); larger ones get "request is too large". */
  readonly maxRequestBytes: number;
  /** Watch and LeaseKeepAlive streams open at once on this node. */
  readonly maxStreams: number;
  /** Watchers on one Watch stream. */
  readonly maxWatchersPerStream: number;
  /** Bytes of events one WatchResponse carries before it is fragmented (when the watcher asked) . */
  readonly maxWatchResponseBytes: number;
  /** Shortest lease TTL granted (etcd: 1.5 election timeouts, rounded up to seconds); shorter asks get it. */
  readonly minLeaseTtlSeconds: number;
}

export interface EtcdServiceDeps {
  readonly mvcc: MvccApi;
  readonly nodeId: NodeId;
  /** raftkv's cluster id (etcd's numeric cluster_id is a hash of it). */
  readonly clusterId: string;
  readonly limits: EtcdLimits;
  /** Work on a request with no deadline this long at most. */
  readonly requestTimeoutMs: number;
  readonly members: () => readonly EtcdMember[];
  /** Absent: MemberAdd, MemberRemove and MemberPromote answer UNIMPLEMENTED. */
  readonly membership?: EtcdMembership;
  readonly status: () => EtcdNodeStatus;
  readonly log: Logger;
  /** Called with the remote address of every call (the listener marks the connection used). */
  readonly onCall?: (peerAddress: string) => void;
  /** A member's client address ("host:port") for forwarding to the leader; absent: no forwarding. */
  readonly clientAddressOf?: (id: NodeId) => string | null;
}

/** etcd's member id of a raftkv node: its id + 1 (etcd's 0 means "no member"). */
export function memberIdOf(nodeId: NodeId): bigint {
  return BigInt(nodeId) + 1n;
}

/** etcd's numeric cluster id: FNV-1a (64 bits) of raftkv's cluster id, never 0. */
export function clusterIdOf(clusterId: string): bigint {
  let h = 0xcbf29ce484222325n;
  for (const b of new TextEncoder().encode(clusterId)) {
    h ^= BigInt(b);
    h = (h * 0x100000001b3n) & 0xffff_ffff_ffff_ffffn;
  }
  return h === 0n ? 1n : h;
}

export function wireKv(kv: KeyValue): WireKeyValue {
  return {
    key: kv.key,
    createRevision: BigInt(kv.createRevision),
    modRevision: BigInt(kv.modRevision),
    version: BigInt(kv.version),
    value: kv.value,
    lease: kv.lease,
  };
}

/** A request whose bytes did not become a request: answered with its error, never handled. */
export class Refused {
  constructor(readonly error: EtcdError) {}
}

/** A call that met "no leader" waits this long at most for one (within its budget) before it fails. */
const NO_LEADER_WAIT_MS = 3000;
/** ...and keeps this much of its budget for the call itself once a leader is known. */
const NO_LEADER_SLACK_MS = 100;
const MAX_NO_LEADER_WAITS = 2;
const LEADER_POLL_MS = 20;

/** The frame every etcd service runs its calls in. */
export class EtcdCalls {
  readonly d: EtcdServiceDeps;
  private readonly clusterId: bigint;
  private readonly memberId: bigint;
  private draining = false;
  private inflight = 0;
  private streams = 0;
  private idle: (() => void)[] = [];
  /** Sends what only the leader serves on to it (null: answer "not leader"). */
  readonly forwarder: Forwarder | null;

  constructor(d: EtcdServiceDeps) {
    this.d = d;
    this.forwarder = d.clientAddressOf === undefined ? null : new Forwarder(d.nodeId, d.clientAddressOf);
    this.clusterId = clusterIdOf(d.clusterId);
    this.memberId = memberIdOf(d.nodeId);
  }

  header(h: MvccHeader): ResponseHeader {
    return {
      clusterId: this.clusterId,
      memberId: this.memberId,
      revision: BigInt(h.revision),
      raftTerm: BigInt(h.raftTerm),
    };
  }

  /** A unary handler: decoding refusals, drain, the call's budget, forwarding to the leader of what
   *  only it serves (when `method` is given), errors as etcd's statuses. */
  unary<Req, Res>(
    fn: (req: Req, budgetMs: number) => Promise<Res>,
    method?: grpc.MethodDefinition<Req, Res>,
  ): grpc.handleUnaryCall<Req | Refused, Res> {
    return (call, reply) => {
      this.d.onCall?.(call.getPeer());
      const req = call.request;
      if (req instanceof Refused) {
        reply(req.error.toStatus());
        return;
      }
      if (this.draining) {
        reply(ErrStopped().toStatus());
        return;
      }
      this.inflight++;
      const endMs = performance.now() + this.budget(remainingMs(call.getDeadline()));
      const leftMs = (): number => Math.max(1, endMs - performance.now());
      const attempt = async (): Promise<Res> => {
        for (let waits = 0; ; waits++) {
          try {
            return await fn(req, leftMs());
          } catch (err) {
            const leader = method === undefined ? null : (this.forwarder?.target(err, call.metadata) ?? null);
            if (leader !== null && method !== undefined)
              return this.forwarder!.unary(leader, method, req, leftMs());
            // No leader known (an election, or a follower that has not heard from the new leader yet,
            // or a leader a forwarded call reached just after it stepped down): etcd's members hold such
            // a request until a leader exists, and etcd clients do not retry a write, so wait for one
            // within the call's budget and try again (a forwarded call is then answered here: it is
            // never forwarded twice). Nothing was proposed.
            const noLeader =
              err instanceof NotLeaderError &&
              err.leaderId === null &&
              method !== undefined &&
              waits < MAX_NO_LEADER_WAITS;
            if (
              !noLeader ||
              !(await this.leaderKnown(
                Math.min(endMs - NO_LEADER_SLACK_MS, performance.now() + NO_LEADER_WAIT_MS),
              ))
            )
              throw err;
          }
        }
      };
      attempt()
        .then(
          (res) => reply(null, res),
          (err: unknown) => {
            const e = toEtcdError(err, this.d.nodeId);
            if (e.code === grpc.status.INTERNAL) this.d.log.error({ err }, "etcd call failed unexpectedly");
            reply(e.toStatus());
          },
        )
        .finally(() => this.done());
    };
  }

  /** Waits until this node knows a leader (true), or until `untilMs` (performance.now() time) or a drain
   *  (false). */
  private async leaderKnown(untilMs: number): Promise<boolean> {
    for (;;) {
      if (this.d.status().leaderId !== null) return true;
      if (this.draining || performance.now() + LEADER_POLL_MS > untilMs) return false;
      await new Promise((resolve) => setTimeout(resolve, LEADER_POLL_MS));
    }
  }

  /** Opens a stream slot, or refuses it (draining, maxStreams); the returned function closes it. */
  openStream(): (() => void) | EtcdError {
    if (this.draining) return ErrStopped();
    if (this.streams >= this.d.limits.maxStreams)
      return new EtcdError(
        grpc.status.RESOURCE_EXHAUSTED,
        `etcdserver: too many streams: raftkv node ${this.d.nodeId} already serves ${this.d.limits.maxStreams} watch and keepalive streams; retry later or use another member`,
      );
    this.streams++;
    let open = true;
    return () => {
      if (!open) return;
      open = false;
      this.streams--;
    };
  }

  /** Refuse new calls and streams; resolve when in-flight unary calls finished or after graceMs. */
  async drain(graceMs: number): Promise<void> {
    this.draining = true;
    this.forwarder?.close();
    if (this.inflight === 0) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, graceMs);
      this.idle.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  get isDraining(): boolean {
    return this.draining;
  }

  private done(): void {
    this.inflight--;
    if (this.inflight === 0 && this.idle.length > 0) for (const w of this.idle.splice(0)) w();
  }

  /** The client's deadline less a margin (so it reads our reason, not its own timeout), bounded. */
  budget(clientMs: number): number {
    if (!Number.isFinite(clientMs)) return this.d.requestTimeoutMs;
    const margin = Math.min(50, clientMs * 0.1);
    return Math.min(Math.max(1, clientMs - margin), MAX_REQUEST_TIMEOUT_MS);
  }
}

/** Longest a client may ask the server to work on one request. */
const MAX_REQUEST_TIMEOUT_MS = 60_000;

/** etcd's defaults where etcd has one (--max-txn-ops 128, --max-request-bytes 1.5 MiB), raftkv's otherwise. */
export const DEFAULT_LIMITS: EtcdLimits = {
  maxKeyBytes: 4096,
  maxValueBytes: 1024 * 1024,
  maxTxnOps: 128,
  maxTxnDepth: 8,
  maxRequestBytes: 1.5 * 1024 * 1024,
  maxStreams: 256,
  maxWatchersPerStream: 1000,
  maxWatchResponseBytes: 1024 * 1024,
  minLeaseTtlSeconds: 2,
};
