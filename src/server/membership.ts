// The node's side of membership change: the bootstrap configuration from the flags, peer links that
// follow the configuration the core has in effect, incarnation bindings that follow the latest one in
// the log (and, on the leader, members bound at first contact), the flags-versus-log mismatch warning,
// changes proposed and awaited until committed, and leadership transfer. The core decides; this follows.

import {
  addressOf,
  bindChanges,
  bindingsOf,
  bootstrapMembership,
  type ConfChange,
  describeMembership,
  EMPTY_MEMBERSHIP,
  isJoint,
  isMember,
  isVoter,
  type Membership,
  members,
  nextId,
} from "../core/membership.ts";
import type { Raft } from "../core/raft.ts";
import type { ConfChangeResult, NodeId } from "../core/types.ts";
import { RaftKvError } from "../lib/errors.ts";
import type { Logger } from "./logging.ts";

/** The configuration a node starts from when its log and snapshot carry none: the flags' members for a
 *  new cluster, none for a node that joins (it waits to be added). */
export function bootMembership(peers: ReadonlyMap<NodeId, string>, join: boolean): Membership {
  if (join) return EMPTY_MEMBERSHIP;
  return bootstrapMembership([...peers].map(([id, address]) => ({ id, address })));
}

export interface MembershipFollowerOptions {
  readonly id: NodeId;
  readonly core: Raft;
  /** The peers from the flags (a joining node reaches the cluster through them). */
  readonly flagPeers: ReadonlyMap<NodeId, string>;
  /** Kept equal to the members' addresses in place: everything that reads peers shares it. */
  readonly livePeers: Map<NodeId, string>;
  readonly setTransportPeers: (peers: ReadonlyMap<NodeId, string>) => void;
  /** This node's data folder's incarnation. */
  readonly incarnation: string;
  /** Given the members' bindings of the latest configuration in the log, whenever they change. */
  readonly setTransportBindings: (bindings: ReadonlyMap<NodeId, string>) => void;
  /** The incarnation each member's messages last gave (the transport saw it). */
  readonly seenIncarnations: () => ReadonlyMap<NodeId, string>;
  /** Runs a core call inside the replica's loop (so that its Ready is handled). */
  readonly coreCall: <T>(fn: (core: Raft) => T) => T;
  readonly log: Logger;
  readonly nowMs: () => number;
}

interface Waiter {
  readonly index: number;
  readonly term: number;
  readonly deadlineMs: number;
  readonly resolve: () => void;
  readonly reject: (e: unknown) => void;
}

/** Bound on changes awaited at once (each RPC waits for one). */
const MAX_WAITERS = 64;
/** A leader proposes a bind change at most this often (one change is in flight at a time; a refused
 *  or lost one is proposed again after this). */
export const BIND_RETRY_MS = 250;

export class MembershipFollower {
  private readonly o: MembershipFollowerOptions;
  private seenIndex = -1;
  private seen: Membership | null = null;
  private recorded = false;
  private warnedRemoved = false;
  private waiters: Waiter[] = [];
  private bindingsOf: Membership | null = null;
  private nextBindMs = 0;
  private bindRefusals = 0;

  constructor(o: MembershipFollowerOptions) {
    this.o = o;
    this.check();
    this.warnMismatch();
  }

  /** The configuration in effect, and the index of the entry it came from. */
  configuration(): { membership: Membership; index: number } {
    return this.o.core.configuration();
  }

  /** Called after every tick and message: follow a new configuration, settle awaited changes. */
  check(): void {
    const core = this.o.core;
    const { membership, index } = core.configuration();
    if (index !== this.seenIndex || membership !== this.seen) this.follow(membership, index);
    if (!this.recorded && core.softState().role === "leader") {
      const r = this.o.coreCall((c) => c.recordConfiguration());
      if (r.ok || r.reason === "invalid") this.recorded = true;
      if (r.ok) this.o.log.info({ index: r.index }, "wrote the bootstrap configuration into the log");
    }
    this.followBindings();
    if (this.recorded) this.maybeBind();
    if (this.waiters.length > 0) this.settle();
  }

  /** Bindings count from the moment the log holds them (Raft.latestConfiguration). */
  private followBindings(): void {
    const latest = this.o.core.latestConfiguration();
    if (latest === this.bindingsOf) return;
    this.bindingsOf = latest;
    this.o.setTransportBindings(bindingsOf(latest));
  }

  /**
   * Leader: bind the members not bound yet whose incarnation is known (its own; the others' from their
   * messages) in one `bind` change, so that a folder wiped later is refused. New clusters and clusters
   * upgraded from versions before incarnations get their bindings this way within a few heartbeats.
   * Rate-limited (BIND_RETRY_MS); a change in flight (the operator's, or the last bind) defers it.
   */
  private maybeBind(): void {
    const core = this.o.core;
    if (core.softState().role !== "leader") return;
    const now = this.o.nowMs();
    if (now < this.nextBindMs) return;
    const m = core.latestConfiguration();
    const changes = bindChanges(m, this.o.id, this.o.incarnation, this.o.seenIncarnations());
    if (changes.length === 0) return;
    this.nextBindMs = now + BIND_RETRY_MS;
    const r = this.o.coreCall((c) => c.proposeConfChange(changes));
    if (r.ok)
      this.o.log.info(
        { index: r.index, bindings: Object.fromEntries(changes.map((c) => [c.id, incarnationFor(c)])) },
        `binding members ${changes.map((c) => c.id).join(", ")} to the incarnations of their data folders`,
      );
    else if (r.reason === "invalid" && Number.isInteger(Math.log2(++this.bindRefusals)))
      // Our bug if ever (only unbound members are proposed): the 1st, 2nd, 4th... refusal is logged.
      this.o.log.warn(
        { reason: r.detail, refused: this.bindRefusals },
        "could not bind members to their incarnations",
      );
  }

  private follow(m: Membership, index: number): void {
    const first = this.seen === null;
    this.seen = m;
    this.seenIndex = index;
    if (m.voters.length === 0) {
      // Joining: reach the cluster through the flags' peers until the leader's log says who is in it.
      this.replacePeers(this.o.flagPeers);
      return;
    }
    const peers = new Map<NodeId, string>();
    for (const id of members(m)) {
      const a = addressOf(m, id) ?? this.o.flagPeers.get(id);
      if (a !== undefined && a !== "") peers.set(id, a);
    }
    this.replacePeers(peers);
    if (!first)
      this.o.log.info(
        { configIndex: index, configuration: describeMembership(m), peers: Object.fromEntries(peers) },
        `configuration changed: ${describeMembership(m)}`,
      );
    if (!isMember(m, this.o.id) && !this.warnedRemoved) {
      this.warnedRemoved = true;
      this.o.log.warn(
        { configIndex: index, configuration: describeMembership(m) },
        `node ${this.o.id} was removed from the cluster: it no longer votes or campaigns; stop it, and to bring the machine back wipe its data folder and add it as a new member (raftkv member add)`,
      );
    }
  }

  private replacePeers(peers: ReadonlyMap<NodeId, string>): void {
    const live = this.o.livePeers;
    live.clear();
    for (const [id, a] of peers) live.set(id, a);
    this.o.setTransportPeers(new Map(peers));
  }

  /** Flags bootstrap only: once the log or a snapshot holds a configuration, a different --peers is
   *  named in a warning and otherwise ignored (etcd's --initial-cluster). */
  private warnMismatch(): void {
    const { membership, index } = this.o.core.configuration();
    if (index === 0 || membership.voters.length === 0) return;
    const fromLog = new Map(this.o.livePeers);
    const flags = this.o.flagPeers;
    const same = fromLog.size === flags.size && [...flags].every(([id, a]) => fromLog.get(id) === a);
    if (same) return;
    this.o.log.warn(
      {
        flagPeers: Object.fromEntries(flags),
        configuredPeers: Object.fromEntries(fromLog),
        configIndex: index,
      },
      `--peers (${show(flags)}) differs from the configuration in the log (${show(fromLog)}, ${describeMembership(membership)}); the log's is used: --peers only bootstraps a new cluster`,
    );
  }

  /** Proposes changes and resolves once they committed (and, for voters, the joint step was left). */
  async change(changes: readonly ConfChange[], timeoutMs: number): Promise<Membership> {
    const deadlineMs = this.o.nowMs() + timeoutMs;
    let r: ConfChangeResult;
    for (;;) {
      r = this.o.coreCall((c) => c.proposeConfChange(changes));
      if (r.ok) break;
      // "In flight" is a step the leader completes by itself: a new leader's first entry (the core's
      // guard of Ongaro's single-server fix), the leave step of a committed joint configuration (seen:
      // a remove right after the leader itself was removed, before its successor left the joint
      // configuration), or the previous change committing. Wait for it within the change's timeout
      // instead of refusing (seen also: a change right after a leadership transfer).
      const leaderNotReady = r.reason === "changeInFlight";
      if (!leaderNotReady || this.o.nowMs() >= deadlineMs) throw changeRefused(this.o.id, r);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await this.committed(r.index, r.term, Math.max(1, deadlineMs - this.o.nowMs()));
    // A voter change enters a joint configuration; the leader leaves it on its own: wait for that too.
    for (;;) {
      const { membership, index } = this.o.core.configuration();
      if (!isJoint(membership)) return membership;
      const last = this.o.core.log.lastIndex();
      const term = this.o.core.log.term(last) ?? 0;
      await this.committed(Math.max(index + 1, last), term, timeoutMs);
    }
  }

  /** Id for a new member: above every id the cluster ever used. */
  newMemberId(): NodeId {
    return nextId(this.o.core.configuration().membership);
  }

  private committed(index: number, term: number, timeoutMs: number): Promise<void> {
    if (this.waiters.length >= MAX_WAITERS)
      return Promise.reject(
        new RaftKvError({
          code: "OVERLOADED",
          message: "too many configuration changes awaited",
          nodeId: this.o.id,
          hint: "retry shortly",
        }),
      );
    return new Promise((resolve, reject) => {
      this.waiters.push({ index, term, deadlineMs: this.o.nowMs() + timeoutMs, resolve, reject });
      this.settle();
    });
  }

  private settle(): void {
    const log = this.o.core.log;
    const now = this.o.nowMs();
    const keep: Waiter[] = [];
    for (const w of this.waiters) {
      const t = log.term(w.index);
      if (log.committed >= w.index && (t === w.term || t === undefined)) w.resolve();
      else if (t !== undefined && t !== w.term)
        w.reject(unknownOutcome(this.o.id, "the entry was replaced by a new leader"));
      else if (now >= w.deadlineMs) w.reject(unknownOutcome(this.o.id, "it did not commit in time"));
      else keep.push(w);
    }
    this.waiters = keep;
  }

  /** Fails everything awaited (the node stops). */
  close(): void {
    for (const w of this.waiters) w.reject(unknownOutcome(this.o.id, "the node is shutting down"));
    this.waiters = [];
  }

  /** The voter best placed to lead next: the most up-to-date one, this node excluded; null if none. */
  bestTransferee(): NodeId | null {
    const m = this.o.core.configuration().membership;
    let best: NodeId | null = null;
    let bestMatch = -1;
    for (const f of this.o.core.followers()) {
      if (!m.voters.includes(f.id) || !isVoter(m, f.id)) continue;
      if (f.match > bestMatch) {
        best = f.id;
        bestMatch = f.match;
      }
    }
    return best;
  }
}

function incarnationFor(c: ConfChange): string {
  return c.type === "bind" ? c.incarnation : "";
}

function show(peers: ReadonlyMap<NodeId, string>): string {
  return [...peers].map(([id, a]) => `${id}=${a}`).join(",");
}

function unknownOutcome(nodeId: NodeId, why: string): RaftKvError {
  return new RaftKvError({
    code: "UNAVAILABLE",
    message: `the configuration change's outcome is unknown: ${why}`,
    nodeId,
    hint: "check with raftkv member list, then retry if it did not happen",
  });
}

/** Waits until another node leads (after a leadership transfer): resolves with its id, or null once
 *  nowMs() reaches deadlineMs. Polls the core's soft state every pollMs. */
export async function awaitOtherLeader(
  core: Raft,
  selfId: NodeId,
  nowMs: () => number,
  deadlineMs: number,
  pollMs = 5,
): Promise<NodeId | null> {
  for (;;) {
    const soft = core.softState();
    if (soft.role !== "leader" && soft.leaderId !== null && soft.leaderId !== selfId) return soft.leaderId;
    if (nowMs() >= deadlineMs) return null;
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

/** A change the core refused, as a typed error (NOT_LEADER carries the leader's id in the message). */
export class ChangeRefusedError extends RaftKvError {
  readonly reason: Exclude<ConfChangeResult, { ok: true }>["reason"];
  readonly leaderId: NodeId | null;
  constructor(nodeId: NodeId, r: Exclude<ConfChangeResult, { ok: true }>) {
    const code =
      r.reason === "notLeader" || r.reason === "transferring"
        ? r.leaderId === null
          ? "NO_LEADER"
          : "NOT_LEADER"
        : r.reason === "changeInFlight" || r.reason === "learnerBehind"
          ? "UNAVAILABLE"
          : "INVALID_ARGUMENT";
    super({
      code,
      message: `configuration change refused (${r.reason}): ${r.detail}`,
      nodeId,
      hint:
        code === "NOT_LEADER"
          ? `send it to the leader, node ${r.leaderId}`
          : code === "INVALID_ARGUMENT"
            ? "fix the request (raftkv member list shows the members)"
            : "retry shortly",
    });
    this.reason = r.reason;
    this.leaderId = r.leaderId;
  }
}

function changeRefused(nodeId: NodeId, r: Exclude<ConfChangeResult, { ok: true }>): ChangeRefusedError {
  return new ChangeRefusedError(nodeId, r);
}
