// A point-in-time view of one node (role, term, indexes, lease, peers) for Status, metrics and logs.

import type { Raft } from "../core/raft.ts";
import type { NodeId, Role } from "../core/types.ts";
import type { KvResult } from "../kv/result.ts";
import type { Replica } from "../replica/replica.ts";
import type { PeerLinkStatus } from "../transport/grpc-transport.ts";

export type LeaseView = "valid" | "notLeader" | "noLease" | "waitingOldLease" | "noopNotApplied";

export interface PeerView {
  readonly id: NodeId;
  readonly address: string;
  /** Leader only: the highest index known replicated on the peer. */
  readonly matchIndex: number | null;
  readonly connected: boolean;
  readonly queuedMessages: number;
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
}

export interface ViewSources {
  readonly clusterId: string;
  readonly peers: ReadonlyMap<NodeId, string>;
  readonly core: Raft;
  readonly replica: Replica<KvResult>;
  readonly nowMs: () => number;
  readonly links: () => ReadonlyMap<NodeId, PeerLinkStatus>;
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
  };
}
