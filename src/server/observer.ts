// Watches one node's core after every input and logs what changed: elections, votes, role and leader
// changes, step-downs, lease waits and lapses, snapshots, commits (debug); each line carries node, term
// and index. The same changes go out as NodeEvents to whoever listens (the embedding API's node.on).

import type { Raft } from "../core/raft.ts";
import type { NodeId, Role } from "../core/types.ts";
import type { Logger } from "./logging.ts";
import type { NodeMetrics } from "./metrics.ts";
import { type LeaseView, leaseView, type ViewSources } from "./node-view.ts";

/** A change in a node's Raft state, as the embedding API hands it to listeners. */
export type NodeEvent =
  | { readonly type: "role"; readonly role: Role; readonly term: number; readonly leaderId: NodeId | null }
  | { readonly type: "leader"; readonly leaderId: NodeId | null; readonly term: number }
  | { readonly type: "lease"; readonly lease: LeaseView; readonly term: number }
  | { readonly type: "snapshot"; readonly index: number; readonly source: "taken" | "installed" };

interface Seen {
  role: Role;
  term: number;
  leaderId: NodeId | null;
  votedFor: NodeId | null;
  lease: LeaseView;
  snapshotIndex: number;
  commit: number;
}

export class NodeObserver {
  private seen: Seen;
  private readonly core: Raft;

  constructor(
    private readonly sources: ViewSources,
    private readonly log: Logger,
    private readonly metrics: NodeMetrics | null,
    private readonly emit: (e: NodeEvent) => void = () => {},
  ) {
    this.core = sources.core;
    this.seen = this.current();
  }

  /** Call after ticks, messages and proposals: cheap when nothing changed. `lease: false` (per request
   *  and per message) skips the lease, which costs a quorum computation; ticks (every heartbeat, and
   *  the tick a lease ends) and every change of role, term or leader still look at it. */
  check(lease = true): void {
    const now = this.current(lease);
    const was = this.seen;
    if (
      now.role === was.role &&
      now.term === was.term &&
      now.leaderId === was.leaderId &&
      now.votedFor === was.votedFor &&
      now.lease === was.lease &&
      now.snapshotIndex === was.snapshotIndex &&
      now.commit === was.commit
    )
      return;
    this.seen = now;
    const at = { term: now.term, commit: this.core.log.committed, lastIndex: this.core.log.lastIndex() };
    if (now.commit !== was.commit)
      this.log.debug({ ...at, event: "commit" }, `committed through index ${now.commit}`);
    if (now.role !== was.role) this.roleChanged(was, now, at);
    else if (now.leaderId !== was.leaderId && now.leaderId !== null && now.role === "follower") {
      this.metrics?.leaderChanges.inc();
      this.log.info({ ...at, leader: now.leaderId, event: "leader" }, `following leader ${now.leaderId}`);
    }
    if (now.votedFor !== was.votedFor && now.votedFor !== null && now.votedFor !== this.core.id)
      this.log.info({ ...at, votedFor: now.votedFor, event: "vote" }, `voted for node ${now.votedFor}`);
    if (now.lease !== was.lease && now.role === "leader") this.leaseChanged(was.lease, now.lease, at);
    if (now.snapshotIndex !== was.snapshotIndex) {
      const taken = this.sources.replica.lastInstalledSnapshotIndex !== now.snapshotIndex;
      this.log.info(
        { ...at, snapshotIndex: now.snapshotIndex, event: "snapshot" },
        taken
          ? `snapshot taken through index ${now.snapshotIndex}`
          : `snapshot through index ${now.snapshotIndex} installed from the leader`,
      );
      this.emit({ type: "snapshot", index: now.snapshotIndex, source: taken ? "taken" : "installed" });
    }
    if (now.role !== was.role)
      this.emit({ type: "role", role: now.role, term: now.term, leaderId: now.leaderId });
    if (now.leaderId !== was.leaderId) this.emit({ type: "leader", leaderId: now.leaderId, term: now.term });
    if (now.lease !== was.lease) this.emit({ type: "lease", lease: now.lease, term: now.term });
  }

  private roleChanged(was: Seen, now: Seen, at: Record<string, number>): void {
    switch (now.role) {
      case "preCandidate":
        this.log.info({ ...at, event: "election" }, "election timeout: asking for pre-votes");
        return;
      case "candidate":
        this.metrics?.elections.inc();
        this.log.info({ ...at, event: "election" }, `starting an election for term ${now.term}`);
        return;
      case "leader":
        this.metrics?.leaderChanges.inc();
        this.log.info({ ...at, event: "leader" }, `became leader for term ${now.term}`);
        return;
      case "follower":
        if (was.role === "leader")
          this.log.warn(
            { ...at, leader: now.leaderId, event: "stepDown" },
            `stepped down as leader (term ${was.term} -> ${now.term}); pending requests were failed`,
          );
        else if (now.leaderId !== null) {
          this.metrics?.leaderChanges.inc();
          this.log.info({ ...at, leader: now.leaderId, event: "leader" }, `following leader ${now.leaderId}`);
        } else this.log.info({ ...at, event: "follower" }, "became follower; no leader known yet");
        return;
      default: {
        const never: never = now.role;
        return never;
      }
    }
  }

  private leaseChanged(was: LeaseView, now: LeaseView, at: Record<string, number>): void {
    switch (now) {
      case "waitingOldLease":
        this.log.info({ ...at, event: "lease" }, "new leader waiting for the old leader's lease to run out");
        return;
      case "noopNotApplied":
        this.log.debug({ ...at, event: "lease" }, "new leader waiting for its NO-OP to be applied");
        return;
      case "valid":
        this.log.info({ ...at, event: "lease" }, "leader lease acquired: serving lease reads locally");
        return;
      case "noLease":
        if (was === "valid")
          this.log.warn(
            { ...at, event: "lease" },
            "leader lease lapsed: no majority acknowledged a heartbeat within the lease; reads fall back to ReadIndex",
          );
        return;
      case "notLeader":
        return;
      default: {
        const never: never = now;
        return never;
      }
    }
  }

  private current(withLease = true): Seen {
    const soft = this.core.softState();
    const was = this.seen as Seen | undefined; // undefined only while the constructor runs
    const same = was !== undefined && soft.role === was.role && soft.term === was.term;
    return {
      role: soft.role,
      term: soft.term,
      leaderId: soft.leaderId,
      votedFor: this.core.hardState().votedFor,
      lease:
        soft.role !== "leader"
          ? "notLeader"
          : withLease || !same
            ? leaseView(this.sources).lease
            : (was?.lease ?? "notLeader"),
      snapshotIndex: this.core.snapshotMeta()?.index ?? 0,
      commit: this.core.log.committed,
    };
  }
}
