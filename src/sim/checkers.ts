// Safety checkers the simulator runs on every seed: election safety, state-machine safety, leader
// completeness and lease safety. Linearizability of client histories lives in linearizability.ts.

import { describeMembership, isJoint, type Membership } from "../core/membership.ts";
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
  /** leader node -> term and commit index already checked against the logs of its voters. */
  private readonly commitChecked = new Map<NodeId, { term: number; commit: number }>();
  /** leader node -> term and index of the configuration it last held. */
  private readonly configSeen = new Map<NodeId, { term: number; index: number; m: Membership }>();
  elections = 0;
  leaseReads = 0;
  readIndexReads = 0;

  private fail(msg: string): void {
    if (this.violations.length < 20) this.violations.push(msg);
  }

  /** After every event: at most one leader per term (§5.2), and each new leader holds every applied entry (§5.4). */
  observeRoles(nodes: readonly SimNode[], nowMs: number): void {
    this.nodes = nodes;
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
      this.checkCommitQuorum(n, s.term, nowMs);
      this.checkConfigStep(n, s.term);
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

  /**
   * Commit needs a majority of every configuration in effect (thesis §4.3): when a leader's commit
   * index moves, the voters that really hold that entry (the same term in their log, or a snapshot past
   * it; a node that is down counts as holding it, its disk unseen) must be a quorum of the leader's
   * configuration, both halves while joint. Read from the nodes' logs, not from the leader's tally.
   */
  private checkCommitQuorum(n: SimNode, term: number, nowMs: number): void {
    const core = n.replica!.core;
    const commit = core.log.committed;
    const seen = this.commitChecked.get(n.id);
    this.commitChecked.set(n.id, { term, commit });
    // Only commits this leader made itself, in its term.
    if (seen === undefined || seen.term !== term || commit <= seen.commit) return;
    const entryTerm = core.log.term(commit);
    if (entryTerm === undefined) return;
    // Configurations take effect once committed (as in etcd-io/raft: the entry entering a joint
    // configuration commits under the old one), and the entries after a config entry commit under it
    // (thesis §4.3: the entry leaving a joint configuration needs a quorum of the joint one). One step
    // may pass several config entries (a configuration and then an entry under it; or a leader elected
    // with a joint entry and the one leaving it uncommitted, committing both with its NO-OP): each
    // configuration on the way, from the one in effect at the commit before, governs the entries up to
    // the next config entry (the last one up to the new commit), and a quorum of it must hold the last
    // of them: to commit past them, the leader counted that configuration's majority.
    const from = Math.max(seen.commit, core.log.snapshotIndex);
    const steps: { m: Membership; upTo: number }[] = [{ m: core.membershipAt(from), upTo: commit }];
    for (let i = from + 1; i < commit; i++) {
      if (core.log.entry(i)?.kind !== "config") continue;
      steps[steps.length - 1]!.upTo = i;
      steps.push({ m: core.membershipAt(i), upTo: commit });
    }
    const holds = (id: NodeId, index: number): boolean => {
      if (id === n.id) return true;
      const other = this.nodeOf(id);
      const log = other?.replica?.core.log;
      // Down: its disk unseen. Wiped: its old disk acknowledged what it held, truly then; its peers
      // refuse the empty one, so it counts in no quorum again (issue 13; unless the run turns that off).
      if (other === undefined || log === undefined || (other.wiped && other.checksIncarnations)) return true;
      return (
        log.snapshotIndex >= index || (log.term(index) === core.log.term(index) && log.persisted >= index)
      );
    };
    for (const { m, upTo } of steps) {
      const majority = (ids: readonly NodeId[]): boolean =>
        ids.filter((id) => holds(id, upTo)).length * 2 > ids.length || ids.length === 0;
      if (majority(m.voters) && majority(m.outgoing)) continue;
      const all = [...new Set([...m.voters, ...m.outgoing])];
      this.fail(
        `commit quorum: node ${n.id} (term ${term}) committed index ${commit} at ${nowMs.toFixed(3)} ms, past index ${upTo} in ${describeMembership(m)}, but only {${all.filter((id) => holds(id, upTo)).join(",")}} hold index ${upTo} (${all
          .map((id) => {
            const log = this.nodeOf(id)?.replica?.core.log;
            return log === undefined
              ? `${id} down`
              : `${id}: last ${log.lastIndex()} persisted ${log.persisted} term ${log.term(upTo) ?? "none"}`;
          })
          .join("; ")})`,
      );
      return;
    }
  }

  /** Each configuration a leader moves to must share a voter with every quorum of the one before
   *  (two quorums that can act at one time intersect; joint consensus guarantees it step by step).
   *  One commit may carry a leader through several config entries (a leader elected with a joint entry
   *  and the entry leaving it uncommitted commits both with its NO-OP): it went through each of them,
   *  and each step is checked, from the configuration held before to the one held now. */
  private checkConfigStep(n: SimNode, term: number): void {
    const core = n.replica!.core;
    const { membership: m, index } = core.configuration();
    const seen = this.configSeen.get(n.id);
    this.configSeen.set(n.id, { term, index, m });
    if (seen === undefined || seen.term !== term || seen.index === index) return;
    let prev = { m: seen.m, index: seen.index };
    const step = (next: { m: Membership; index: number }): boolean => {
      const ok = quorumsIntersect(prev.m, next.m);
      if (!ok)
        this.fail(
          `quorum intersection: leader ${n.id} (term ${term}) went from ${describeMembership(prev.m)} (index ${prev.index}) to ${describeMembership(next.m)} (index ${next.index}), whose quorums can be disjoint`,
        );
      prev = next;
      return ok;
    };
    // The config entries in between, as far as the log still holds them (a compacted stretch is
    // checked as one step, the strict way).
    for (let i = Math.max(seen.index, core.log.snapshotIndex) + 1; i < index; i++)
      if (core.log.entry(i)?.kind === "config" && !step({ m: core.membershipAt(i), index: i })) return;
    step({ m, index });
  }

  private nodes: readonly SimNode[] = [];
  private nodeOf(id: NodeId): SimNode | undefined {
    return this.nodes[id]?.id === id ? this.nodes[id] : this.nodes.find((x) => x.id === id);
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

/** A set of voters is a quorum of m: a majority of its voters and, while joint, of the outgoing ones. */
function isQuorum(m: Membership, set: ReadonlySet<NodeId>): boolean {
  const maj = (ids: readonly NodeId[]): boolean =>
    ids.length === 0 || ids.filter((id) => set.has(id)).length * 2 > ids.length;
  return maj(m.voters) && (!isJoint(m) || maj(m.outgoing));
}

/** True when every quorum of a meets every quorum of b (checked over all subsets: at most 64 members). */
export function quorumsIntersect(a: Membership, b: Membership): boolean {
  const all = [...new Set([...a.voters, ...a.outgoing, ...b.voters, ...b.outgoing])];
  if (all.length > 16) return true; // beyond what the simulator builds; not checked
  for (let mask = 0; mask < 1 << all.length; mask++) {
    const qa = new Set(all.filter((_, i) => (mask >> i) & 1));
    const rest = new Set(all.filter((_, i) => ((mask >> i) & 1) === 0));
    // Quorums are upward closed: a quorum of b disjoint from qa exists iff the rest is one.
    if (isQuorum(a, qa) && isQuorum(b, rest)) return false;
  }
  return true;
}
