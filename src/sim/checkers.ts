// Safety checkers the simulator runs on every seed: election safety, state-machine safety, leader
// completeness and lease safety. Linearizability of client histories lives in linearizability.ts.

import type { Entry, NodeId } from "../core/types.ts";
import { crc32c } from "../lib/crc32c.ts";
import type { SimNode } from "./sim-node.ts";

export class SafetyChecker {
  readonly violations: string[] = [];
  /** term -> leader */
  private readonly leaders = new Map<number, NodeId>();
  /** index -> term and checksum of the entry applied there (by anyone), and the highest leader term
   *  known when it was first applied: it was committed in that term or an earlier one. */
  private readonly applied = new Map<
    number,
    { term: number; crc: number; node: NodeId; committedBy: number }
  >();
  private maxLeaderTerm = 0;
  /** node -> highest commit index already recorded from it. */
  private readonly commitSeen = new Map<NodeId, number>();
  /** term -> earliest true time (ms) its leader applied its NO-OP (could serve writes and reads). */
  private readonly firstNoopMs = new Map<number, number>();
  /** term -> latest true time (ms) until which that term's leader believed it held a lease. */
  private readonly leaseEndMs = new Map<number, number>();
  /** node -> the term whose lease it currently holds. */
  private readonly holding = new Map<NodeId, number>();
  /** term -> latest true time (ms) a lease read was served in that term. */
  private readonly lastLeaseReadMs = new Map<number, number>();
  elections = 0;
  leaseReads = 0;
  readIndexReads = 0;

  private fail(msg: string): void {
    if (this.violations.length < 20) this.violations.push(msg);
  }

  /** After every event: at most one leader per term (§5.2), and each new leader holds every applied entry (§5.4). */
  observeRoles(nodes: readonly SimNode[], nowMs: number): void {
    for (const n of nodes) {
      const core = n.replica?.core;
      if (core === undefined) {
        this.trackLease(n, null, nowMs);
        continue;
      }
      const s = core.softState();
      this.trackCommits(n);
      this.trackLease(n, s.role === "leader" ? s.term : null, nowMs);
      if (s.role !== "leader") continue;
      const known = this.leaders.get(s.term);
      if (known === undefined) {
        this.leaders.set(s.term, n.id);
        this.elections++;
        this.checkCompleteness(n, s.term);
        this.maxLeaderTerm = Math.max(this.maxLeaderTerm, s.term);
      } else if (known !== n.id) {
        this.fail(`election safety: term ${s.term} has two leaders, ${known} and ${n.id}`);
      }
    }
  }

  /** Entries become known committed the moment any node's commit index covers them, before anyone
   *  applies them: leader completeness is then checked against what was committed, not just applied. */
  private trackCommits(n: SimNode): void {
    const log = n.replica!.core.log;
    const from = Math.max(this.commitSeen.get(n.id) ?? 0, log.snapshotIndex) + 1;
    for (let i = from; i <= log.committed; i++) {
      if (this.applied.has(i)) continue;
      const e = log.entry(i);
      if (e !== undefined)
        this.applied.set(i, {
          term: e.term,
          crc: crc32c(e.data),
          node: n.id,
          committedBy: this.maxLeaderTerm,
        });
    }
    this.commitSeen.set(n.id, log.committed);
  }

  /** A leader holds its lease until it would stop serving: the lease runs out, it revokes it for a
   *  transfer, it steps down, or it crashes. The held interval is what a later leader must not overlap. */
  private trackLease(n: SimNode, leaderTerm: number | null, nowMs: number): void {
    const held = this.holding.get(n.id);
    const until = leaderTerm === null ? null : n.replica!.leaseUntilMs();
    if (held !== undefined && (until === null || held !== leaderTerm)) {
      const end = this.leaseEndMs.get(held);
      if (end !== undefined && end > nowMs) this.leaseEndMs.set(held, nowMs);
      this.holding.delete(n.id);
    }
    if (until !== null && leaderTerm !== null) {
      const trueUntil = n.trueMsOfLocal(until);
      if (trueUntil > (this.leaseEndMs.get(leaderTerm) ?? Number.NEGATIVE_INFINITY))
        this.leaseEndMs.set(leaderTerm, trueUntil);
      this.holding.set(n.id, leaderTerm);
    }
  }

  /** Leader completeness (§5.4): a leader of term T holds every entry committed in a term before T.
   *  (A leader of an older term can still be elected late, by delayed votes: it owes nothing newer.) */
  private checkCompleteness(n: SimNode, term: number): void {
    const log = n.replica!.core.log;
    for (const [i, a] of this.applied) {
      if (a.committedBy >= term || i <= log.snapshotIndex) continue;
      if (log.term(i) !== a.term) {
        this.fail(
          `leader completeness: node ${n.id} leads term ${term} with term ${log.term(i) ?? "none"} at ${i}, but term ${a.term} was committed there by term ${a.committedBy} or earlier`,
        );
        return;
      }
    }
  }

  /** State-machine safety (§5.4.3): no two nodes apply different entries at one index. */
  observeApply(node: NodeId, e: Entry, isLeaderOfTerm: boolean, nowMs: number): void {
    const crc = crc32c(e.data);
    const prev = this.applied.get(e.index);
    if (prev === undefined) {
      this.applied.set(e.index, { term: e.term, crc, node, committedBy: this.maxLeaderTerm });
    } else if (prev.term !== e.term || prev.crc !== crc) {
      this.fail(
        `state machine safety: index ${e.index} applied as term ${prev.term} on node ${prev.node} but term ${e.term} on node ${node}`,
      );
    }
    if (e.kind === "noop" && isLeaderOfTerm) {
      const seen = this.firstNoopMs.get(e.term);
      if (seen === undefined || nowMs < seen) this.firstNoopMs.set(e.term, nowMs);
    }
  }

  observeRead(servedAs: string, term: number, nowMs: number): void {
    if (servedAs === "lease") {
      this.leaseReads++;
      const prev = this.lastLeaseReadMs.get(term) ?? Number.NEGATIVE_INFINITY;
      if (nowMs > prev) this.lastLeaseReadMs.set(term, nowMs);
    } else {
      this.readIndexReads++;
    }
  }

  /** Lease safety (thesis §6.4.1): no lease read of term T at or after a later term's leader went live,
   *  and, stronger, no later leader live while an earlier leader still believed it held a lease. */
  finish(): void {
    for (const [t1, endMs] of this.leaseEndMs) {
      for (const [t2, liveMs] of this.firstNoopMs) {
        if (t2 > t1 && liveMs < endMs) {
          this.fail(
            `lease safety: term ${t2}'s leader went live at ${liveMs.toFixed(3)} ms while term ${t1}'s leader held a lease until ${endMs.toFixed(3)} ms`,
          );
        }
      }
    }
    for (const [t1, readMs] of this.lastLeaseReadMs) {
      for (const [t2, liveMs] of this.firstNoopMs) {
        if (t2 > t1 && readMs >= liveMs) {
          this.fail(
            `lease safety: a lease read in term ${t1} at ${readMs.toFixed(3)} ms, after term ${t2}'s leader went live at ${liveMs.toFixed(3)} ms`,
          );
        }
      }
    }
  }
}
