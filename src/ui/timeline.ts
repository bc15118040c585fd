// The dashboard's timeline of one node: elections, leader changes, step-downs, lease waits and lapses,
// snapshots, from the node's own events (NodeObserver), in a bounded ring with wall-clock times (display
// only: the node itself runs on its monotonic clock).

import type { NodeId, Role } from "../core/types.ts";
import type { NodeEvent } from "../server/observer.ts";

export type TimelineKind = "election" | "preVote" | "leader" | "follow" | "stepDown" | "lease" | "snapshot";

export interface TimelineEntry {
  /** 1, 2, ...: a client asks for the entries after the last it has. */
  readonly seq: number;
  /** Date.now() on the node when it happened. */
  readonly atMs: number;
  readonly node: NodeId;
  readonly kind: TimelineKind;
  readonly term: number;
  readonly text: string;
}

export class Timeline {
  private readonly ring: TimelineEntry[] = [];
  private seq = 0;
  private role: Role;
  /** atMs of the last change of role or leader (for the page: how fresh its leader is). */
  lastLeaderChangeAtMs: number;

  constructor(
    private readonly node: NodeId,
    private readonly capacity: number,
    private readonly wallMs: () => number,
    initialRole: Role,
  ) {
    this.role = initialRole;
    this.lastLeaderChangeAtMs = wallMs();
  }

  /** Entries newer than `afterSeq`, oldest first. */
  since(afterSeq: number): TimelineEntry[] {
    if (this.ring.length === 0 || afterSeq >= this.seq) return [];
    return this.ring.filter((e) => e.seq > afterSeq);
  }

  get lastSeq(): number {
    return this.seq;
  }

  /** Turns one node event into at most one entry. */
  record(e: NodeEvent): TimelineEntry | null {
    const entry = this.describe(e);
    if (e.type === "role") this.role = e.role;
    if (entry === null) return null;
    if (entry.kind === "leader" || entry.kind === "follow" || entry.kind === "stepDown")
      this.lastLeaderChangeAtMs = entry.atMs;
    this.ring.push(entry);
    if (this.ring.length > this.capacity) this.ring.shift();
    return entry;
  }

  private describe(e: NodeEvent): TimelineEntry | null {
    const make = (kind: TimelineKind, term: number, text: string): TimelineEntry => ({
      seq: ++this.seq,
      atMs: this.wallMs(),
      node: this.node,
      kind,
      term,
      text,
    });
    switch (e.type) {
      case "role":
        switch (e.role) {
          case "preCandidate":
            return make("preVote", e.term, "election timeout: asking for pre-votes");
          case "candidate":
            return make("election", e.term, `started an election for term ${e.term}`);
          case "leader":
            return make("leader", e.term, `became leader for term ${e.term}`);
          case "follower":
            return this.role === "leader"
              ? make("stepDown", e.term, `stepped down as leader (term ${e.term})`)
              : null;
          default: {
            const never: never = e.role;
            return never;
          }
        }
      case "leader":
        return e.leaderId === null || e.leaderId === this.node
          ? null
          : make("follow", e.term, `following leader ${e.leaderId} (term ${e.term})`);
      case "lease":
        switch (e.lease) {
          case "waitingOldLease":
            return make("lease", e.term, "waiting out the old leader's lease");
          case "noopNotApplied":
            return make("lease", e.term, "waiting for its NO-OP to be applied");
          case "valid":
            return make("lease", e.term, "lease acquired: serving lease reads");
          case "noLease":
            return this.role === "leader"
              ? make("lease", e.term, "lease lapsed: reads fall back to ReadIndex")
              : null;
          case "notLeader":
            return null;
          default: {
            const never: never = e.lease;
            return never;
          }
        }
      case "snapshot":
        return make(
          "snapshot",
          0,
          e.source === "taken"
            ? `snapshot taken through index ${e.index}`
            : `snapshot through index ${e.index} installed from the leader`,
        );
      default: {
        const never: never = e;
        return never;
      }
    }
  }
}
