// The KV server: a Raft node of the embedding API (embed.ts, raftkv/node) replicating the KV state machine
// (kv-state.ts), with the client gRPC service on the node's port. Everything it uses of the node is public.

import type * as grpc from "@grpc/grpc-js";
import type { MonotonicTime } from "../clock/monotonic-clock.ts";
import type { StoreResult } from "../kv/store-state-machine.ts";
import { layoutOf } from "../storage/data-dir.ts";
import { addClientService } from "./client-edge.ts";
import { ClientApi } from "./client-service.ts";
import {
  defaultMaxCommandBytes,
  type Logger,
  type NodeConfig,
  type NodeId,
  type NodeView,
  type OperatorRoute,
  type RaftNode,
  type ServiceContext,
  startRaftNode,
} from "./embed.ts";
import { KvOps } from "./kv-ops.ts";
import { KvState } from "./kv-state.ts";
import { ClientMetrics } from "./metrics.ts";
import { MvccNode, minLeaseTtlSeconds, mvccHostOf } from "./mvcc-node.ts";

export interface StartNodeOptions {
  /** Local monotonic clock (default performance.now()). */
  readonly clock?: MonotonicTime;
  /** Seed of the core's election jitter (default random). */
  readonly seed?: number;
  /** Log to stderr as well as to the data folder's raftkv.log (default true). */
  readonly logToStderr?: boolean;
  /** More endpoints on the metrics port (the dashboard, src/ui: `raftkv serve` adds it). */
  readonly operatorRoutes?: (node: RaftNode<KvState, StoreResult>) => readonly OperatorRoute[];
  /** More gRPC services on the client port, beside raftkv.v1 (the etcd v3 API, src/etcd: `raftkv serve`
   *  adds it). What it returns is drained at stop, before the client API. */
  readonly services?: (
    server: grpc.Server,
    node: RaftNode<KvState, StoreResult>,
    context: ServiceContext,
    /** The node's MVCC service, which raftkv.v1 serves Txn, Watch and leases from: share it. */
    mvcc: MvccNode,
  ) => HostedServices;
}

/** Services hosted on the node's port by StartNodeOptions.services. */
export interface HostedServices {
  /** Refuse new calls; resolve when in-flight ones finished or after graceMs. Then release resources. */
  drain(graceMs: number): Promise<void>;
}

export interface RaftKvNode {
  readonly id: NodeId;
  /** The address the gRPC server is bound to ("host:port"). */
  readonly listenAddress: string;
  /** Bound port of /metrics, /health and /ready, or null when disabled. */
  readonly metricsPort: number | null;
  readonly logFile: string;
  readonly logger: Logger;
  /** The Raft node underneath; `raft.stateMachine` is the KvState, whose `current` is the node's
   *  StoreStateMachine and `store` its state store (for services built on the state: kv-state.ts). */
  readonly raft: RaftNode<KvState, StoreResult>;
  view(): NodeView;
  /** Stop accepting, let in-flight requests finish (up to shutdownGraceMs), fail the rest, sync, close. */
  stop(reason?: string): Promise<void>;
  /** Resolves with the process exit code once the node has stopped (by stop() or a fatal error). */
  readonly done: Promise<number>;
}

/** Starts a node; throws a RaftKvError (CONFIG, STORAGE, CORRUPT, CLUSTER_MISMATCH) if it cannot. */
export async function startNode(config: NodeConfig, options: StartNodeOptions = {}): Promise<RaftKvNode> {
  let api: ClientApi | null = null;
  let hosted: HostedServices | null = null;
  let mvcc: MvccNode | null = null;
  const { services, ...rest } = options;
  const node = await startRaftNode({
    config,
    stateMachine: new KvState({
      stateDir: config.stateStore === "lmdb" ? layoutOf(config.dataDir).stateDir : null,
      maxSessions: config.maxClientSessions,
      nodeId: config.id,
    }),
    maxCommandBytes: defaultMaxCommandBytes(config),
    ...rest,
    services: (server, raft, context) => {
      const metrics = new ClientMetrics(raft.registry);
      const shared = new MvccNode(mvccHostOf(raft), { minLeaseTtlSeconds: minLeaseTtlSeconds(config) });
      mvcc = shared;
      api = new ClientApi({
        mvcc: shared,
        nodeId: config.id,
        clusterId: config.clusterId,
        version: raft.status().version,
        kv: new KvOps(raft, { maxKeyBytes: config.maxKeyBytes, maxValueBytes: config.maxValueBytes }),
        softState: () => raft.softState(),
        peers: raft.peers,
        settings: config,
        view: () => raft.status(),
        appliedIndex: () => raft.appliedIndex,
        nowMs: () => performance.now(),
        log: raft.logger.child({ component: "client" }),
        metrics,
      });
      addClientService(server, api.handlers(), {
        nodeId: config.id,
        maxRequestBytes: config.maxRequestBytes,
        softState: () => raft.softState(),
        metrics,
        onCall: (peerAddress) => context.noteCall(peerAddress),
      });
      hosted = services?.(server, raft, context, shared) ?? null;
    },
    beforeStop: async () => {
      await hosted?.drain(config.shutdownGraceMs);
      if (api === null) return;
      await api.drain(config.shutdownGraceMs);
      (mvcc as MvccNode | null)?.close(); // ends the watch streams, stops the lease keeper
      if (api.inflightRequests > 0)
        node.logger.warn(
          { inflight: api.inflightRequests },
          "in-flight requests did not finish in time; failing them",
        );
    },
  }).catch((err: unknown) => {
    // The node did not start (a port in use, ...): the MVCC service's timers must not outlive it.
    (mvcc as MvccNode | null)?.close();
    throw err;
  });
  return {
    id: node.id,
    listenAddress: node.listenAddress,
    metricsPort: node.metricsPort,
    logFile: node.logFile,
    logger: node.logger,
    raft: node,
    view: () => node.status(),
    stop: (reason) => node.stop(reason),
    done: node.done,
  };
}
