// A point-in-time view of one node (role, term, indexes, lease, peers) for Status, metrics and logs.

import type { Raft } from "../core/raft.ts";
import type { NodeId, Role } from "../core/types.ts";
import type { PeerLinkStatus } from "../transport/grpc-transport.ts";

export type LeaseView = "valid" | "notLeader" | "noLease" | "waitingOldLease" | "noopNotApplied";

export interface PeerView {
  readonly id: NodeId;
  readonly address: string;
  /** Leader only: the highest index known replicated on the peer. */
  readonly matchIndex: number | null;
  readonly connected: boolean;
  readonly queuedMessages: number;
  /** Bytes this node wrote to its stream to the peer since start. */
  readonly sentBytes: number;
  /** Bytes received on streams from the peer since start. */
  readonly receivedBytes: number;
}

export interface NodeView {
  readonly id: NodeId;
  readonly clusterId: string;
  readonly address: string;
  readonly role: Role;
  readonly term: number;
  readonly leaderId: NodeId | null;
  readonly commitIndex: number;
  readonly appliedIndex: number;
  readonly lastLogIndex: number;
  readonly snapshotIndex: number;
  readonly lease: LeaseView;
  readonly leaseRemainingMs: number;
  readonly peers: readonly PeerView[];
  /** The process this node runs in. */
  readonly pid: number;
  /** The raftkv version it runs. */
  readonly version: string;
  /** Milliseconds since the node started, on its monotonic clock. */
  readonly uptimeMs: number;
  /** Its data folder, as an absolute path. */
  readonly dataDir: string;
}

/** The part of the replica loop a view reads. */
export interface ViewedReplica {
  readonly stateMachine: { readonly appliedIndex: number };
  /** Index of the last snapshot installed from a leader (0: none since start). */
  readonly lastInstalledSnapshotIndex: number;
  leaseUntilMs(): number | null;
}

export interface ViewSources {
  readonly clusterId: string;
  readonly peers: ReadonlyMap<NodeId, string>;
  readonly core: Raft;
  readonly replica: ViewedReplica;
  readonly nowMs: () => number;
  readonly links: () => ReadonlyMap<NodeId, PeerLinkStatus>;
  readonly version: string;
  /** nowMs() when the node started. */
  readonly startedMs: number;
  /** Absolute path of the data folder. */
  readonly dataDir: string;
}

export function leaseView(s: ViewSources): { lease: LeaseView; remainingMs: number } {
  const st = s.core.leaseStatus();
  if (!st.ok) return { lease: st.reason, remainingMs: 0 };
  if (s.replica.stateMachine.appliedIndex < st.minAppliedIndex)
    return { lease: "noopNotApplied", remainingMs: 0 };
  const until = s.replica.leaseUntilMs();
  if (until === null) return { lease: "noLease", remainingMs: 0 };
  return { lease: "valid", remainingMs: Math.max(0, until - s.nowMs()) };
}

export function viewNode(s: ViewSources): NodeView {
  const core = s.core;
  const soft = core.softState();
  const match = new Map(core.followers().map((f) => [f.id, f.match]));
  const links = s.links();
  const peers: PeerView[] = [];
  for (const [id, address] of s.peers) {
    if (id === core.id) continue;
    const link = links.get(id);
    peers.push({
      id,
      address,
      matchIndex: soft.role === "leader" ? (match.get(id) ?? 0) : null,
      connected: link?.connected ?? false,
      queuedMessages: link?.queuedMessages ?? 0,
      sentBytes: link?.sentBytes ?? 0,
      receivedBytes: link?.receivedBytes ?? 0,
    });
  }
  const { lease, remainingMs } = leaseView(s);
  return {
    id: core.id,
    clusterId: s.clusterId,
    address: s.peers.get(core.id) ?? "",
    role: soft.role,
    term: soft.term,
    leaderId: soft.leaderId,
    commitIndex: core.log.committed,
    appliedIndex: s.replica.stateMachine.appliedIndex,
    lastLogIndex: core.log.lastIndex(),
    snapshotIndex: core.snapshotMeta()?.index ?? 0,
    lease,
    leaseRemainingMs: remainingMs,
    peers,
    pid: process.pid,
    version: s.version,
    uptimeMs: Math.max(0, s.nowMs() - s.startedMs),
    dataDir: s.dataDir,
  };
}
