// A raftkv node that speaks etcd's v3 API: a Raft node (the embedding API) replicating the MVCC state
// machine (MvccState), with MvccNode as its MvccApi and etcd's services on its client port; writes and
// lease calls that reach a follower are forwarded to the leader. The composition the etcd tests run
// (three of them on loopback). `raftkv serve` puts the same API on the KV server (addEtcdApi).

import type * as grpc from "@grpc/grpc-js";
import type { StoreResult } from "../kv/store-state-machine.ts";
import {
  type NodeConfig,
  NotLeaderError,
  type RaftNode,
  type ServiceContext,
  startRaftNode,
} from "../server/embed.ts";
import { MvccNode, type MvccStateHolder, minLeaseTtlSeconds, mvccHostOf } from "../server/mvcc-node.ts";
import { MvccState } from "../server/mvcc-state.ts";
import { DEFAULT_LIMITS, type EtcdLimits } from "./context.ts";
import { EtcdError, grpcStatus } from "./errors.ts";
import { addEtcdServices } from "./register.ts";

/** The version Status reports: the etcd API raftkv speaks (etcd's clients and tools read it as etcd's
 *  server version; raftkv's own version is in raftkv.v1 Status). */
export const ETCD_API_VERSION = "3.4.0";

export interface EtcdNodeOptions {
  readonly limits?: Partial<EtcdLimits>;
  readonly seed?: number;
  readonly logToStderr?: boolean;
  /** The read behind etcd's linearizable reads (default "lease"). */
  readonly linearizableRead?: "lease" | "readIndex";
}

export interface EtcdNode {
  readonly raft: RaftNode<MvccState, StoreResult>;
  readonly mvcc: MvccNode;
  /** host:port of the client port (etcd's and raftkv's services). */
  readonly listenAddress: string;
  stop(reason?: string): Promise<void>;
}

export { minLeaseTtlSeconds } from "../server/mvcc-node.ts";

export async function startEtcdNode(config: NodeConfig, o: EtcdNodeOptions = {}): Promise<EtcdNode> {
  let api: EtcdApi | null = null;
  const raft = await startRaftNode({
    config,
    stateMachine: new MvccState(config.maxClientSessions),
    ...(o.seed === undefined ? {} : { seed: o.seed }),
    ...(o.logToStderr === undefined ? {} : { logToStderr: o.logToStderr }),
    services: (server, node, context) => {
      api = addEtcdApi(server, node, context, config, o);
    },
    beforeStop: async () => {
      await api?.drain(config.shutdownGraceMs);
    },
  });
  const mvcc = (api as EtcdApi | null)?.mvcc;
  if (mvcc === undefined) throw new Error("the node started without its services");
  return { raft, mvcc, listenAddress: raft.listenAddress, stop: (reason) => raft.stop(reason) };
}

/** The etcd API of one node: its MvccNode (watch hub, lease keeper) and the services on its port. */
export interface EtcdApi {
  readonly mvcc: MvccNode;
  /** Refuses new calls, waits for in-flight ones (up to graceMs), then closes the MvccNode. */
  drain(graceMs: number): Promise<void>;
}

/**
 * Puts etcd's v3 services on a node's gRPC server, over an MvccNode running on that node (any state
 * machine that holds a StoreStateMachine: MvccState here, the KV server's KvState in `raftkv serve`).
 * Members come from the configuration in effect (node.peers), so they follow membership changes.
 */
export function addEtcdApi<S extends MvccStateHolder>(
  server: grpc.Server,
  node: RaftNode<S, StoreResult>,
  context: ServiceContext,
  config: NodeConfig,
  o: Pick<EtcdNodeOptions, "limits" | "linearizableRead"> & {
    /** The node's MvccNode when it has one already (the KV server's, shared with raftkv.v1): one
     *  watch hub and one lease keeper per node. Closed by its owner, not here. */
    readonly mvcc?: MvccNode;
  } = {},
): EtcdApi {
  const minTtl = minLeaseTtlSeconds(config);
  const owned = o.mvcc === undefined;
  const mvcc =
    o.mvcc ??
    new MvccNode(mvccHostOf(node), {
      minLeaseTtlSeconds: minTtl,
      linearizableRead: o.linearizableRead ?? "lease",
    });
  const url = (id: number): string => `http://${node.peers.get(id) ?? "unknown"}`;
  const services = addEtcdServices(server, {
    mvcc,
    nodeId: config.id,
    clusterId: config.clusterId,
    limits: {
      ...DEFAULT_LIMITS,
      maxKeyBytes: config.maxKeyBytes,
      maxValueBytes: config.maxValueBytes,
      maxRequestBytes: config.maxRequestBytes,
      maxStreams: config.maxConcurrentStreams,
      minLeaseTtlSeconds: minTtl,
      ...o.limits,
    },
    requestTimeoutMs: config.requestTimeoutMs,
    members: () => {
      const { membership } = node.configuration();
      return [...node.peers.keys()].map((id) => ({
        id,
        name: `node${id}`,
        peerUrls: [url(id)],
        clientUrls: [url(id)],
        isLearner: membership.learners.includes(id),
      }));
    },
    membership: {
      add: async (peerAddress, learner, budgetMs) => {
        const id = node.newMemberId();
        await node.changeMembership(
          [{ type: learner ? "addLearner" : "addVoter", id, address: peerAddress }],
          budgetMs,
        );
        return id;
      },
      remove: async (id, budgetMs) => {
        await node.changeMembership([{ type: "remove", id }], budgetMs);
      },
      promote: async (id, budgetMs) => {
        await node.changeMembership([{ type: "promote", id }], budgetMs);
      },
      moveLeader: async (to, budgetMs) => {
        const here = node.status();
        if (here.role !== "leader") throw new NotLeaderError(config.id, here.leaderId);
        const { membership } = node.configuration();
        if (to === config.id) return;
        if (!membership.voters.includes(to))
          throw new EtcdError(grpcStatus.FAILED_PRECONDITION, "etcdserver: bad leader transferee");
        if ((await node.handOverLeadership(budgetMs, to)) === null)
          throw new EtcdError(
            grpcStatus.DEADLINE_EXCEEDED,
            "etcdserver: request timed out, leader transfer took too long",
          );
      },
    },
    status: () => {
      const v = node.status();
      return {
        leaderId: v.leaderId,
        term: v.term,
        commitIndex: v.commitIndex,
        appliedIndex: v.appliedIndex,
        dbSizeBytes: node.stateMachine.sizeBytes?.() ?? 0,
        version: ETCD_API_VERSION,
        isLearner: node.configuration().membership.learners.includes(config.id),
      };
    },
    log: node.logger.child({ component: "etcd" }),
    onCall: (peer) => context.noteCall(peer),
    clientAddressOf: (id) => node.peers.get(id) ?? null,
  });
  return {
    mvcc,
    drain: async (graceMs) => {
      await services.drain(graceMs);
      if (owned) mvcc.close();
    },
  };
}
