/**
 * raftkv/node: run a Raft node that replicates a state machine of your own, on raftkv's write-ahead log,
 * gRPC peer transport, leader leases and snapshots: the same node the raftkv KV server is built on.
 *
 * ```ts
 * import { resolveNodeConfig, startRaftNode, type StateMachine } from "raftkv/node";
 *
 * const node = await startRaftNode({
 *   config: resolveNodeConfig({ id: 0, peers: "0=127.0.0.1:7000,1=127.0.0.1:7001,2=127.0.0.1:7002", dataDir: "data/0" }),
 *   stateMachine: myStateMachine, // apply(command, index), snapshot(), restore(info)
 * });
 * const { result } = await node.propose(new TextEncoder().encode("incr x"));  // on the leader
 * const value = await node.read((sm) => sm.get("x"));                       // linearizable
 * ```
 *
 * @packageDocumentation
 * @module raftkv/node
 */

import type { NodeId } from "../core/types.ts";
import { RaftKvError } from "../lib/errors.ts";
import { NotLeaderError } from "../replica/replica.ts";
import { resolveServerConfig, type ServerSettings } from "./config.ts";
import type { NodeConfig } from "./raft-node.ts";

export type { ConfChange, Membership } from "../core/membership.ts";
export type { NodeId, Role } from "../core/types.ts";
export type { ErrorCode } from "../lib/errors.ts";
export type { Consistency } from "../replica/replica.ts";
export type { ServerSettings as NodeSettings, TlsClientAuth } from "./config.ts";
export { DEFAULT_SETTINGS } from "./config.ts";
export type { Logger } from "./logging.ts";
export type { LeaseView, NodeView, PeerView } from "./node-view.ts";
export type { NodeEvent } from "./observer.ts";
export type { OperatorRoute } from "./operator-http.ts";
export {
  type Applied,
  defaultMaxCommandBytes,
  type NodeConfig,
  type RaftNode,
  type RaftNodeEvent,
  type RaftNodeEventType,
  type RaftNodeOptions,
  type ReadOptions,
  type ResultOf,
  type ServiceContext,
  type SoftState,
  startRaftNode,
} from "./raft-node.ts";
export type { SnapshotInfo, SnapshotReader, SnapshotWriter, StateMachine } from "./state-machine.ts";
export { NotLeaderError, RaftKvError };

/** What resolveNodeConfig() takes: who the node is, where it lives, and any setting to change. */
export interface NodeConfigInput extends Partial<ServerSettings> {
  /** This node's id: a small integer, unique in the cluster, one of `peers`. */
  readonly id: NodeId;
  /** Every member as "0=host:port,1=host:port" or { "0": "host:port", ... }, this node included. */
  readonly peers: string | Readonly<Record<string, string>>;
  /** Address to bind (default: this node's address in `peers`). */
  readonly listen?: string;
  /** The node's data folder (WAL, snapshots, raftkv.log); locked while the node runs. */
  readonly dataDir: string;
  /** Peers and data folders of another cluster id are refused (default "raftkv"). */
  readonly clusterId?: string;
  /** Port of /metrics, /health and /ready (0: any free port; null or absent: none). */
  readonly metricsPort?: number | null;
  /** Host the operator endpoints bind (default: the listen host). */
  readonly metricsHost?: string;
}

/**
 * Validates a node's configuration the way `raftkv serve` does (same names, defaults and checks: timing
 * that keeps leases safe, limits, TLS files all three or none) and fills in the defaults. Throws a
 * RaftKvError coded CONFIG naming the setting at fault.
 */
export function resolveNodeConfig(input: NodeConfigInput): NodeConfig {
  return resolveServerConfig(input as unknown as Readonly<Record<string, unknown>>);
}
