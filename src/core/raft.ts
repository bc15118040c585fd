// The Raft state machine: roles, elections with pre-vote, replication, commit, leases and ReadIndex.
// Pure and synchronous: driven by tick(), step(), propose() and readIndex(); output through ready().

import { assert, unreachable } from "../lib/assert.ts";
import { Prng } from "../lib/prng.ts";
import { type CoreConfig, validateCoreConfig } from "./config.ts";
import { RaftLog } from "./log.ts";
import {
  applyChanges,
  type ConfChange,
  decodeMembership,
  describeMembership,
  encodeMembership,
  isJoint,
  isMember,
  isVoter,
  leaveJoint,
  type Membership,
  members,
  PROMOTE_WITHIN_ENTRIES,
  votersOnly,
} from "./membership.ts";
import { Progress } from "./progress.ts";
import { jointTally, jointValue } from "./quorum.ts";
import type {
  AppendEntries,
  AppendEntriesResponse,
  ConfChangeResult,
  CoreRefusal,
  CoreRefusalReason,
  Entry,
  HardState,
  InstallSnapshot,
  InstallSnapshotResponse,
  LeaseStatus,
  Message,
  NodeId,
  ProposeResult,
  ReadFailure,
  ReadState,
  Ready,
  RequestVote,
  RequestVoteResponse,
  Role,
  SnapshotChunk,
  SnapshotMeta,
  SoftState,
} from "./types.ts";

const EMPTY = new Uint8Array(0);
/** Committed entries handed out per Ready, so one Ready stays bounded. */
const MAX_APPLY_PER_READY = 4096;
/** The highest term this core campaigns in: terms stay safe integers (the codec carries up to 2^52). */
export const MAX_TERM = 2 ** 52;
/** A message more than this many terms above ours is refused. Terms only grow by elections (pre-vote
 *  keeps partitioned nodes from inflating them), so a correct peer is never this far ahead; without the
 *  bound one message with a term near MAX_TERM left the whole cluster unable to campaign, for good. */
export const MAX_TERM_JUMP = 2 ** 24;

/** What storage recovered, to start the core from. */
export interface CoreBoot {
  readonly hardState: HardState;
  readonly snapshot: SnapshotMeta | null;
  readonly entries: readonly Entry[];
  /** The configuration before any config entry, when the snapshot carries none: a new cluster's
   *  bootstrap members with their addresses (default: CoreConfig.peers, without addresses). */
  readonly membership?: Membership;
}

interface PendingRead {
  readonly requestId: number;
  readonly index: number;
  /** Heartbeat round whose majority acknowledgement proves leadership; 0 until the round is sent. */
  round: number;
}

export class Raft {
  readonly id: NodeId;
  private readonly cfg: CoreConfig;
  private readonly prng: Prng;
  /** Every member but this node (voters of both configurations and learners): whom a leader replicates to. */
  private others: readonly NodeId[] = [];

  /** The configuration in effect: the last config entry this node knows committed (thesis §4.3 with
   *  etcd's rule: a configuration takes effect when committed, and one change is in flight at a time). */
  private membership: Membership;
  /** Index of the entry `membership` came from (the snapshot's index, or 0, for the base one). */
  private membershipIndex = 0;
  /** The configuration at the log's base (the snapshot), and each committed config entry after it. */
  private baseMembership: Membership;
  private configHistory: { index: number; membership: Membership }[] = [];
  /** No config entry or snapshot configuration seen yet: the configuration is the bootstrap one. */
  private bootstrapOnly: boolean;
  /** Leader: index of the last config entry it appended, or its NO-OP: a new change waits until it commits. */
  private pendingConfIndex = 0;
  /** Leader: the config entries in its log past the commit index (appended by it, or found in its log
   *  when elected), in index order. Each takes effect when it commits, so a commit past one needs a
   *  majority of it as well (maybeCommit), and the leader replicates to its members already. */
  private logConfigs: { index: number; membership: Membership }[] = [];
  /** latestConfiguration()'s answer, and the log position it was computed at. */
  private latestCache: {
    lastIndex: number;
    lastTerm: number;
    committed: number;
    membership: Membership;
  } | null = null;

  private term = 0;
  private votedFor: NodeId | null = null;
  private role: Role = "follower";
  private leaderId: NodeId | null = null;
  readonly log: RaftLog;
  private latestSnapshot: SnapshotMeta | null;

  /** Ticks since this core started: its only notion of time. */
  private now = 0;
  private electionElapsed = 0;
  private randomizedElectionTimeout = 0;
  private heartbeatElapsed = 0;
  /** A timeout came due during held ticks (tick(true)) and waits for releaseTimeouts(). */
  private timeoutHeld = false;
  /** Tick at which we last heard from a live leader (or were one). Boot counts: a restarted node
   *  cannot know whose lease it helped build, so it refuses votes for an election timeout. */
  private leaderContactTick = 0;

  // Candidate state.
  private votes = new Map<NodeId, boolean>();
  private maxLeaseRemainingTicks = 0;

  // Leader state.
  private progress = new Map<NodeId, Progress>();
  private round = 0;
  private roundSentTick = new Map<number, number>();
  private leaderSinceTick = 0;
  private noopIndex = 0;
  private oldLeaseUntilTick = 0;
  private needBroadcast = false;
  private readsAwaitingRound: PendingRead[] = [];
  private pendingReads: PendingRead[] = [];
  private transferee: NodeId | null = null;
  private transferElapsed = 0;
  /** Command bytes in (committed, lastIndex] (leader only), bounded by maxUncommittedBytes. */
  private uncommittedBytes = 0;

  // Follower state: a snapshot being received.
  private incoming: { meta: SnapshotMeta; offset: number } | null = null;
  /** A snapshot received whole, handed to the host to verify and install (snapshotInstalled or
   *  snapshotRejected answers). It outlives role changes: the host is working on it. */
  private installing: { meta: SnapshotMeta; from: NodeId; round: number; lastOffset: number } | null = null;

  // Output accumulated until ready().
  private msgs: Message[] = [];
  private readStates: ReadState[] = [];
  private readFailures: ReadFailure[] = [];
  private refusals: CoreRefusal[] = [];
  private snapshotChunks: SnapshotChunk[] = [];
  private installSnapshot: SnapshotMeta | null = null;
  private softStateChanged = false;
  private lastHardState: HardState;
  /** A configuration entry committed since the last Ready: that commit index is written durably. */
  private configCommitted = false;
  /** The term and vote known durable: recovered at boot, then those of each Ready advance()d. */
  private durableTerm: number;
  private durableVote: NodeId | null;
  /** Heartbeats and answers to heartbeats among msgs: they may leave before the Ready in flight is
   *  persisted (takeUrgentMessages). */
  private readonly urgent = new WeakSet<Message>();

  constructor(cfg: CoreConfig, boot: CoreBoot) {
    validateCoreConfig(cfg);
    this.cfg = cfg;
    this.id = cfg.id;
    this.prng = new Prng(cfg.seed);
    this.term = boot.hardState.term;
    this.votedFor = boot.hardState.votedFor;
    this.log = RaftLog.recover(boot.snapshot, boot.entries, boot.hardState.commitIndex);
    this.latestSnapshot = boot.snapshot;
    this.lastHardState = boot.hardState;
    this.durableTerm = boot.hardState.term;
    this.durableVote = boot.hardState.votedFor;
    this.baseMembership = boot.snapshot?.membership ?? boot.membership ?? votersOnly(cfg.peers);
    this.membership = this.baseMembership;
    this.bootstrapOnly = boot.snapshot?.membership === undefined;
    this.membershipIndex = this.log.snapshotIndex;
    this.setMembership(this.baseMembership, this.log.snapshotIndex);
    // Recovery: configurations known committed are in effect again (thesis §4.3: one per config entry).
    for (let i = this.log.snapshotIndex + 1; i <= this.log.committed; i++) this.applyConfigAt(i);
    this.configCommitted = false; // recovered from the disk: nothing new to sync
    this.resetElectionTimer();
  }

  // ---------------------------------------------------------------- queries

  softState(): SoftState {
    return { role: this.role, leaderId: this.leaderId, term: this.term };
  }

  hardState(): HardState {
    return { term: this.term, votedFor: this.votedFor, commitIndex: this.log.committed };
  }

  tickCount(): number {
    return this.now;
  }

  /** The configuration in effect, and the index of the entry it came from. */
  configuration(): { membership: Membership; index: number } {
    return { membership: this.membership, index: this.membershipIndex };
  }

  /**
   * The configuration of the last config entry in the log, committed or not; the one in effect when the
   * log holds none past the commit index. Quorums follow the configuration in effect (configuration());
   * incarnation bindings follow this one, so that a binding counts from the moment a log holds it: a
   * candidate whose log has a `bind` refuses the member's old vote from a wiped folder even before it
   * learns the entry committed. Cached on (last index, last term, commit): by Log Matching, equal last
   * index and term mean an equal log.
   */
  latestConfiguration(): Membership {
    const lastIndex = this.log.lastIndex();
    const lastTerm = this.log.lastTerm();
    const committed = this.log.committed;
    const c = this.latestCache;
    if (c !== null && c.lastIndex === lastIndex && c.lastTerm === lastTerm && c.committed === committed)
      return c.membership;
    let membership = this.membership;
    for (let i = lastIndex; i > committed; i--) {
      const e = this.log.entry(i);
      if (e === undefined || e.kind !== "config") continue;
      const m = decodeMembership(e.data);
      // Config entries are validated where they enter (codec, WAL reader) and written by leaders.
      assert(typeof m !== "string", () => `config entry ${i} does not decode: ${String(m)}`);
      membership = m;
      break;
    }
    this.latestCache = { lastIndex, lastTerm, committed, membership };
    return membership;
  }

  /** The configuration in effect at a committed index at or after the log's base (for snapshot metadata). */
  membershipAt(index: number): Membership {
    assert(
      index >= this.log.snapshotIndex,
      () => `membershipAt(${index}) below the log's base ${this.log.snapshotIndex}`,
    );
    assert(index <= this.log.committed, () => `membershipAt(${index}) beyond commit ${this.log.committed}`);
    let m = this.baseMembership;
    for (const h of this.configHistory) if (h.index <= index) m = h.membership;
    return m;
  }

  /** Per-follower replication state (leader only), for status and metrics. */
  followers(): { id: NodeId; match: number; next: number; state: string; learner: boolean }[] {
    return [...this.progress.entries()].map(([id, p]) => ({
      id,
      match: p.match,
      next: p.next,
      state: p.state,
      learner: !isVoter(this.membership, id),
    }));
  }

  /** May this leader serve a read from its own state right now (thesis §6.4.1)? */
  leaseStatus(): LeaseStatus {
    if (this.role !== "leader") return { ok: false, reason: "notLeader" };
    if (this.transferee !== null) return { ok: false, reason: "noLease" };
    if (this.now < this.oldLeaseUntilTick) return { ok: false, reason: "waitingOldLease" };
    if (this.log.committed < this.noopIndex) return { ok: false, reason: "noopNotApplied" };
    const sent = this.quorumRoundSentTick();
    if (sent === null) return { ok: false, reason: "noLease" };
    const validUntilTick = sent + this.cfg.leaseTicks;
    if (this.now >= validUntilTick) return { ok: false, reason: "noLease" };
    return { ok: true, validUntilTick, minAppliedIndex: this.noopIndex };
  }

  /**
   * How many more ticks until one can change anything (start an election, send heartbeats, step down,
   * end a lease or a transfer, let a new leader replicate): the ticks before it only advance counters.
   * A host may therefore sleep until that tick, as long as it delivers every due tick before the next
   * input (step, propose, readIndex, transferLeadership), so that each input sees the true tick count.
   */
  ticksToNextTimeout(): number {
    // A learner (or a removed node) never campaigns: a follower one has nothing due; any other role
    // becomes follower on its next tick.
    if (this.role !== "leader" && !this.isVoterSelf())
      return this.role === "follower" ? Math.max(1, this.randomizedElectionTimeout) : 1;
    if (this.role !== "leader") return Math.max(1, this.randomizedElectionTimeout - this.electionElapsed);
    let k = this.cfg.heartbeatTicks - this.heartbeatElapsed;
    if (this.now < this.oldLeaseUntilTick) k = Math.min(k, this.oldLeaseUntilTick - this.now);
    if (this.transferee !== null) k = Math.min(k, this.cfg.electionTimeoutMinTicks - this.transferElapsed);
    const sent = this.quorumRoundSentTick();
    if (this.cfg.checkQuorum)
      k = Math.min(k, (sent ?? this.leaderSinceTick) + this.cfg.electionTimeoutMinTicks - this.now);
    if (sent !== null && sent + this.cfg.leaseTicks > this.now)
      k = Math.min(k, sent + this.cfg.leaseTicks - this.now); // the lease's end shows in leaseStatus()
    return Math.max(1, k);
  }

  /** The snapshot the host last reported, used to catch up lagging followers. */
  snapshotMeta(): SnapshotMeta | null {
    return this.latestSnapshot;
  }

  // ---------------------------------------------------------------- inputs

  /**
   * One tick. `held`: the host is delivering ticks it owes after its event loop stalled, before it has
   * read the messages that arrived meanwhile (a leader's heartbeats, a follower's acks, sitting in its
   * socket). Counters advance as always, but the timeouts that act on silence, an election and
   * check-quorum's step-down, wait for releaseTimeouts(), which the host calls once it has read what
   * arrived. Holding only delays those two actions, as a slower local clock would (safe: thesis §6.4.1
   * needs a node's timers never to run early); leases, votes and heartbeats go by the tick count.
   */
  tick(held = false): void {
    this.now++;
    if (this.role === "leader") this.tickLeader(held);
    else this.tickElection(held);
  }

  /** Acts on a timeout that came due during held ticks, if it is still due now (see tick). */
  releaseTimeouts(): void {
    if (!this.timeoutHeld) return;
    this.timeoutHeld = false;
    if (this.role === "leader") this.checkQuorum(false);
    else if (this.isVoterSelf() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.campaign(this.cfg.preVote, false);
    }
  }

  propose(data: Uint8Array): ProposeResult {
    if (this.role !== "leader") return { ok: false, reason: "notLeader", leaderId: this.leaderId };
    if (this.transferee !== null) return { ok: false, reason: "transferring", leaderId: this.id };
    if (data.length > this.cfg.maxEntryBytes) return { ok: false, reason: "tooLarge", leaderId: this.id };
    if (this.log.lastIndex() - this.log.committed >= this.cfg.maxPendingProposals)
      return { ok: false, reason: "overloaded", leaderId: this.id };
    if (this.uncommittedBytes > 0 && this.uncommittedBytes + data.length > this.cfg.maxUncommittedBytes)
      return { ok: false, reason: "overloadedBytes", leaderId: this.id };
    const entry: Entry = { index: this.log.lastIndex() + 1, term: this.term, kind: "command", data };
    this.log.append([entry]);
    this.uncommittedBytes += data.length;
    this.needBroadcast = true;
    if (this.soleVoter()) this.maybeCommit();
    return { ok: true, index: entry.index, term: entry.term };
  }

  /**
   * Propose a configuration change (thesis §4.3). Changing voters enters a joint configuration, which
   * this leader leaves on its own once it commits; learners change directly. One change is in flight at
   * a time: a second is refused ("changeInFlight") until the first, and the leave step, committed; so is
   * one before this leader's NO-OP committed (it may not know the latest configuration before that).
   */
  proposeConfChange(changes: readonly ConfChange[]): ConfChangeResult {
    const no = (
      reason: Exclude<ConfChangeResult, { ok: true }>["reason"],
      detail: string,
    ): ConfChangeResult => ({
      ok: false,
      reason,
      detail,
      leaderId: this.role === "leader" ? this.id : this.leaderId,
    });
    if (this.role !== "leader") return no("notLeader", "only the leader changes the configuration");
    if (this.transferee !== null) return no("transferring", "leadership is being transferred");
    if (this.log.committed < this.pendingConfIndex || isJoint(this.membership))
      return no(
        "changeInFlight",
        `a configuration change is in flight (${describeMembership(this.membership)}); retry once it has committed`,
      );
    for (const c of changes) {
      if (c.type !== "promote") continue;
      const pr = this.progress.get(c.id);
      if (pr !== undefined && learnerBehind(pr.match, this.log.lastIndex()))
        return no(
          "learnerBehind",
          `learner ${c.id} has ${pr.match} of ${this.log.lastIndex()} entries; promote it once it has caught up`,
        );
    }
    const next = applyChanges(this.membership, changes);
    if (typeof next === "string") return no("invalid", next);
    return { ok: true, index: this.appendConfig(next), term: this.term };
  }

  /**
   * Write the configuration in effect into the log when it is still the bootstrap one (from CoreConfig
   * or CoreBoot, never logged): from then on the log, not the flags, says who the members are. A leader
   * only, once its NO-OP committed; ok:false "invalid" when there is nothing to record.
   */
  recordConfiguration(): ConfChangeResult {
    if (!this.bootstrapOnly)
      return {
        ok: false,
        reason: "invalid",
        detail: "the configuration is in the log already",
        leaderId: this.leaderId,
      };
    if (this.role !== "leader")
      return {
        ok: false,
        reason: "notLeader",
        detail: "only the leader records it",
        leaderId: this.leaderId,
      };
    if (this.log.committed < this.pendingConfIndex)
      return {
        ok: false,
        reason: "changeInFlight",
        detail: "the NO-OP has not committed yet",
        leaderId: this.id,
      };
    this.bootstrapOnly = false;
    return { ok: true, index: this.appendConfig(this.membership), term: this.term };
  }

  /** ReadIndex (thesis §6.4): the answer arrives as a ReadState (or ReadFailure) in a later Ready. */
  readIndex(requestId: number): ReadFailure | null {
    if (this.role !== "leader" || this.transferee !== null)
      return { requestId, reason: "notLeader", leaderId: this.leaderId };
    if (this.pendingReads.length + this.readsAwaitingRound.length >= this.cfg.maxPendingReads)
      return { requestId, reason: "overloaded", leaderId: this.id };
    const read: PendingRead = { requestId, index: Math.max(this.log.committed, this.noopIndex), round: 0 };
    if (this.soleVoter()) {
      read.round = this.round;
      this.pendingReads.push(read);
      this.releaseReads();
    } else {
      this.readsAwaitingRound.push(read);
    }
    return null;
  }

  /** Hand leadership to `to` (thesis §3.10): catch it up, then send TimeoutNow. */
  transferLeadership(to: NodeId): boolean {
    if (this.role !== "leader" || to === this.id || !this.membership.voters.includes(to)) return false;
    this.transferee = to;
    this.transferElapsed = 0;
    const pr = this.progress.get(to)!;
    if (pr.match === this.log.lastIndex()) this.sendTimeoutNow(to);
    else this.sendAppends(to, false);
    return true;
  }

  /** The host saved a snapshot of the state machine (through meta.index, already applied). */
  snapshotSaved(meta: SnapshotMeta): void {
    assert(meta.index <= this.log.applied, () => `snapshot ${meta.index} beyond applied ${this.log.applied}`);
    if (this.latestSnapshot === null || meta.index > this.latestSnapshot.index) this.latestSnapshot = meta;
  }

  /** The host verified, persisted and restored the snapshot handed out in Ready.installSnapshot: the
   *  log restarts after it, and the leader that sent it is told (thesis §5.3 InstallSnapshot). */
  snapshotInstalled(meta: SnapshotMeta): void {
    const inst = this.installing;
    assert(
      inst !== null && sameMeta(inst.meta, meta),
      () => `snapshotInstalled(${meta.index}) but none is installing`,
    );
    this.installing = null;
    // Appends are ignored while installing, and nothing else commits: the snapshot is still ahead.
    this.log.restore(meta);
    if (this.latestSnapshot === null || meta.index > this.latestSnapshot.index) this.latestSnapshot = meta;
    if (meta.membership !== undefined) {
      this.bootstrapOnly = false;
      this.baseMembership = meta.membership;
      this.configHistory = [];
      this.setMembership(meta.membership, meta.index);
    }
    this.respondSnapshot(inst.from, meta.index, meta.sizeBytes, true, inst.round);
  }

  /** The host found the received snapshot bad (and replaced nothing): ask the sender for it again. */
  snapshotRejected(meta: SnapshotMeta, why: string): void {
    const inst = this.installing;
    assert(
      inst !== null && sameMeta(inst.meta, meta),
      () => `snapshotRejected(${meta.index}) but none is installing`,
    );
    this.installing = null;
    this.incoming = null;
    this.refusals.push({
      from: inst.from,
      type: "snapshot",
      term: meta.term,
      reason: "snapshotRejected",
      detail: why,
    });
    this.respondSnapshot(inst.from, meta.index, -1, false, inst.round);
  }

  /** Is a received snapshot waiting for the host to install it? */
  installingSnapshot(): SnapshotMeta | null {
    return this.installing?.meta ?? null;
  }

  /** Drop log entries through index (must be covered by a saved snapshot). */
  compact(index: number): void {
    const snap = this.latestSnapshot;
    assert(snap !== null && index <= snap.index, () => `compact to ${index} without a snapshot covering it`);
    const term = this.log.term(index);
    if (term !== undefined && index > this.log.snapshotIndex) {
      this.baseMembership = this.membershipAt(index);
      this.configHistory = this.configHistory.filter((h) => h.index > index);
      this.log.compact(index, term);
    }
  }

  step(m: Message): void {
    assert(m.to === this.id, () => `node ${this.id} got a message for ${m.to}`);
    if (m.from === this.id) return;
    // A leader also replicates to the members of configurations in its log not yet in effect
    // (syncPeers): their answers count (for commits past those configurations).
    if (!isMember(this.membership, m.from) && !(this.role === "leader" && this.progress.has(m.from))) {
      if (this.membership.removed.includes(m.from))
        return this.refuse(
          m,
          "removedMember",
          `node ${m.from} was removed from the cluster; its messages are refused (to bring the machine back, wipe its data folder and add it as a new member with a new id)`,
        );
      // Not (yet) in our configuration: a member added in a change we have not learned of, or a
      // stranger. A node without any configuration (joining) follows whoever leads it. Any node
      // hears a leader's log and a candidate's request (the term rules apply as to anyone): one cut off
      // while the cluster changed must still learn the configurations it missed from their leader
      // (and may be needed for a quorum of the new one); answers and TimeoutNow from strangers are dropped.
      if (
        this.membership.voters.length > 0 &&
        m.type !== "append" &&
        m.type !== "snapshot" &&
        m.type !== "vote"
      )
        return;
    }
    if (m.term > this.term + MAX_TERM_JUMP)
      return this.refuse(
        m,
        "termJump",
        `term ${m.term} is more than ${MAX_TERM_JUMP} above ours (${this.term})`,
      );
    if (m.term > this.term) {
      if (m.type === "vote" && !m.transfer && this.inLease()) return; // thesis §4.2.3: ignore disruptors
      if (m.type === "vote" && m.preVote) return this.handleVote(m);
      if (m.type === "voteResponse" && m.preVote && m.granted) {
        // A granted pre-vote carries the term we would campaign in; no step-down.
      } else {
        const fromLeader = m.type === "append" || m.type === "snapshot" || m.type === "timeoutNow";
        this.becomeFollower(m.term, fromLeader ? m.from : null);
      }
    } else if (m.term < this.term) {
      return this.handleStale(m);
    }
    switch (m.type) {
      case "append":
        return this.handleAppend(m);
      case "appendResponse":
        return this.handleAppendResponse(m);
      case "vote":
        return this.handleVote(m);
      case "voteResponse":
        return this.handleVoteResponse(m);
      case "snapshot":
        return this.handleSnapshot(m);
      case "snapshotResponse":
        return this.handleSnapshotResponse(m);
      case "timeoutNow":
        if (this.role !== "leader" && m.from === this.leaderId && this.isVoterSelf())
          this.campaign(false, true);
        return;
      default:
        unreachable(m);
    }
  }

  // ---------------------------------------------------------------- output

  hasReady(): boolean {
    return (
      this.msgs.length > 0 ||
      this.needBroadcast ||
      this.readsAwaitingRound.length > 0 ||
      this.log.unstableFrom <= this.log.lastIndex() ||
      Math.min(this.log.committed, this.log.persisted) > this.log.applied ||
      this.readStates.length > 0 ||
      this.readFailures.length > 0 ||
      this.refusals.length > 0 ||
      this.snapshotChunks.length > 0 ||
      this.installSnapshot !== null ||
      this.softStateChanged ||
      !sameHardState(this.hardState(), this.lastHardState)
    );
  }

  ready(): Ready {
    if (this.role === "leader") {
      if (this.readsAwaitingRound.length > 0) {
        this.broadcastHeartbeat();
        this.releaseReads(); // a sole voter with learners confirms its own round
      }
      if (this.needBroadcast) for (const p of this.others) this.sendAppends(p, false);
      this.needBroadcast = false;
    }
    const hs = this.hardState();
    const hsChanged = !sameHardState(hs, this.lastHardState);
    const voteChanged = hs.term !== this.lastHardState.term || hs.votedFor !== this.lastHardState.votedFor;
    const entries = this.log.takeUnstable();
    const rd: Ready = {
      hardState: hsChanged ? hs : null,
      entries,
      // A configuration takes effect when it commits, and the commit index is volatile (§5, Figure 2):
      // one lost at a crash sends the node back to the configuration before, where a joint one needs
      // a majority of the old voters again, whose removed members an operator may have stopped for
      // good once the change committed (thesis §4.2.2). So the commit of a configuration is synced.
      mustSync: voteChanged || entries.length > 0 || this.installSnapshot !== null || this.configCommitted,
      termOrVoteChanged: voteChanged,
      snapshotChunks: this.snapshotChunks,
      installSnapshot: this.installSnapshot,
      messages: this.msgs,
      committedEntries: this.log.takeCommitted(MAX_APPLY_PER_READY),
      readStates: this.readStates,
      readFailures: this.readFailures,
      softStateChanged: this.softStateChanged,
      refused: this.refusals,
    };
    this.lastHardState = hs;
    this.configCommitted = false;
    this.msgs = [];
    this.snapshotChunks = [];
    this.installSnapshot = null;
    this.readStates = [];
    this.readFailures = [];
    this.refusals = [];
    this.softStateChanged = false;
    return rd;
  }

  /** The host persisted, sent and applied everything in rd. */
  advance(rd: Ready): void {
    if (rd.hardState !== null) {
      this.durableTerm = rd.hardState.term;
      this.durableVote = rd.hardState.votedFor;
    }
    const last = rd.entries[rd.entries.length - 1];
    if (last !== undefined) {
      this.log.markPersisted(last.index, last.term);
      if (this.role === "leader") this.maybeCommit();
    }
  }

  /**
   * While the host is still persisting a Ready: the messages that may leave now, taken out of the next
   * Ready. They are the leader's heartbeats (appends without entries) and a follower's answers to them,
   * and only while the term and vote they carry are durable; an answer's matchIndex is lowered to what
   * this node's disk holds (a prefix of a matching log matches too). So heartbeats and the lease they
   * renew never wait for an fsync of entries or a snapshot (issue 16); an acknowledgement of entries
   * still does.
   */
  takeUrgentMessages(): Message[] {
    if (this.term !== this.durableTerm || this.votedFor !== this.durableVote) return [];
    const leaves = (m: Message): boolean => this.urgent.has(m) && m.term === this.durableTerm;
    if (!this.msgs.some(leaves)) return [];
    const out: Message[] = [];
    const keep: Message[] = [];
    for (const m of this.msgs) {
      if (!leaves(m)) keep.push(m);
      else if (m.type === "appendResponse" && m.matchIndex > this.log.persisted)
        out.push({ ...m, matchIndex: this.log.persisted });
      else out.push(m);
    }
    this.msgs = keep;
    return out;
  }

  // ---------------------------------------------------------------- roles

  private becomeFollower(term: number, leaderId: NodeId | null): void {
    assert(term >= this.term, () => `term going backwards: ${this.term} -> ${term}`);
    if (this.role === "leader") this.leaderContactTick = this.now; // our own lease guards our votes
    if (term > this.term) {
      this.term = term;
      this.votedFor = null;
    }
    this.resetRole("follower");
    this.leaderId = leaderId;
    if (leaderId !== null) this.leaderContactTick = this.now;
  }

  private becomePreCandidate(): void {
    this.resetRole("preCandidate");
  }

  private becomeCandidate(): void {
    this.term++;
    this.votedFor = this.id;
    this.resetRole("candidate");
  }

  private becomeLeader(): void {
    assert(this.role === "candidate", () => `becomeLeader from ${this.role}`);
    const leaseWait = Math.max(this.maxLeaseRemainingTicks, this.ownLeaseRemainingTicks());
    this.resetRole("leader");
    this.leaderId = this.id;
    this.leaderSinceTick = this.now;
    this.oldLeaseUntilTick = this.now + Math.ceil(leaseWait * this.cfg.driftBound);
    for (let i = this.log.committed + 1; i <= this.log.lastIndex(); i++) {
      const e = this.log.entry(i);
      if (e?.kind !== "config") continue;
      const m = decodeMembership(e.data);
      assert(typeof m !== "string", () => `config entry ${i} does not decode: ${String(m)}`);
      this.logConfigs.push({ index: i, membership: m });
    }
    this.syncPeers();
    this.noopIndex = this.log.lastIndex() + 1;
    this.log.append([{ index: this.noopIndex, term: this.term, kind: "noop", data: EMPTY }]);
    // Entries after the commit index may hold a configuration not yet in effect: no change until the
    // NO-OP (and so all of them) committed (etcd's pendingConfIndex; the single-server fix too).
    this.pendingConfIndex = this.noopIndex;
    this.uncommittedBytes = this.log.bytesBetween(this.log.committed + 1, this.log.lastIndex());
    this.broadcastHeartbeat();
    this.needBroadcast = true;
    if (this.soleVoter()) this.maybeCommit();
  }

  /** Reset every per-role field (STYLE rule 8). */
  private resetRole(role: Role): void {
    if (this.role === "leader") this.failPendingReads("steppedDown");
    this.role = role;
    this.leaderId = null;
    this.softStateChanged = true;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.resetElectionTimer();
    this.votes = new Map();
    this.maxLeaseRemainingTicks = 0;
    this.progress = new Map();
    this.round = 0;
    this.roundSentTick = new Map();
    this.noopIndex = 0;
    this.oldLeaseUntilTick = 0;
    this.needBroadcast = false;
    this.transferee = null;
    this.transferElapsed = 0;
    this.uncommittedBytes = 0;
    this.incoming = null;
    this.pendingConfIndex = 0;
    this.logConfigs = [];
    this.syncPeers();
  }

  private failPendingReads(reason: ReadFailure["reason"]): void {
    for (const r of [...this.readsAwaitingRound, ...this.pendingReads])
      this.readFailures.push({ requestId: r.requestId, reason, leaderId: null });
    this.readsAwaitingRound = [];
    this.pendingReads = [];
  }

  private resetElectionTimer(): void {
    this.randomizedElectionTimeout = this.prng.int(
      this.cfg.electionTimeoutMinTicks,
      this.cfg.electionTimeoutMaxTicks,
    );
  }

  // ---------------------------------------------------------------- time

  private tickElection(held: boolean): void {
    // Learners, removed nodes and nodes waiting to be added never campaign (thesis §4.2.2, §4.2.3).
    if (!this.isVoterSelf()) {
      this.electionElapsed = 0;
      if (this.role !== "follower") this.becomeFollower(this.term, null);
      return;
    }
    this.electionElapsed++;
    if (this.electionElapsed >= this.randomizedElectionTimeout) {
      if (held) {
        this.timeoutHeld = true;
        return;
      }
      this.electionElapsed = 0;
      this.campaign(this.cfg.preVote, false);
    }
  }

  private tickLeader(held: boolean): void {
    if (this.now === this.oldLeaseUntilTick) this.needBroadcast = true; // replication may start now
    this.heartbeatElapsed++;
    if (this.heartbeatElapsed >= this.cfg.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      this.broadcastHeartbeat();
    }
    if (this.transferee !== null && ++this.transferElapsed >= this.cfg.electionTimeoutMinTicks) {
      // The transfer timed out (thesis §3.10): this leader serves lease reads again. That is safe even if
      // TimeoutNow went out and the target won: every vote reports the lease its voter last saw
      // (leaseRemainingTicks), so the new leader commits nothing until this lease has run out.
      this.transferee = null;
    }
    this.checkQuorum(held);
  }

  /** Check quorum (thesis §6.2): a leader no majority acknowledged within an election timeout steps
   *  down; during held ticks that waits for releaseTimeouts(), when the acks that arrived are read. */
  private checkQuorum(held: boolean): void {
    const acked = this.quorumRoundSentTick() ?? this.leaderSinceTick;
    if (this.cfg.checkQuorum && this.now - acked >= this.cfg.electionTimeoutMinTicks) {
      if (held) this.timeoutHeld = true;
      else this.becomeFollower(this.term, null);
    }
  }

  /** Are we bound to a live leader (or are one), so that we must not help elect another (§6.4.1)? */
  private inLease(): boolean {
    if (this.role === "leader") return true;
    return this.now - this.leaderContactTick <= this.cfg.electionTimeoutMinTicks;
  }

  /** How much longer a leader we heard from might still hold a lease, in our ticks. */
  private ownLeaseRemainingTicks(): number {
    return Math.max(0, this.leaderContactTick + this.cfg.electionTimeoutMinTicks + 1 - this.now);
  }

  // ---------------------------------------------------------------- elections

  private campaign(preVote: boolean, transfer: boolean): void {
    // Terms stop at MAX_TERM (2^24 jumps at a time from outside make that ~2^28 forged messages away);
    // and a node installing a snapshot has a log about to be replaced, so it waits.
    if (this.term >= MAX_TERM || this.installing !== null) return;
    if (preVote) this.becomePreCandidate();
    else this.becomeCandidate();
    const voteTerm = preVote ? this.term + 1 : this.term;
    this.votes.set(this.id, true);
    if (transfer) this.maxLeaseRemainingTicks = this.ownLeaseRemainingTicks();
    if (jointTally(this.votes, this.membership) === "won") {
      if (preVote) this.campaign(false, false);
      else this.becomeLeader();
      return;
    }
    for (const to of this.others) {
      if (!isVoter(this.membership, to)) continue; // learners are asked nothing
      this.send({
        type: "vote",
        from: this.id,
        to,
        term: voteTerm,
        preVote,
        lastLogIndex: this.log.lastIndex(),
        lastLogTerm: this.log.lastTerm(),
        transfer,
      });
    }
  }

  private handleVote(m: RequestVote): void {
    const canVote = m.preVote
      ? m.term > this.term || (m.term === this.term && this.leaderId === null && this.role !== "leader")
      : this.votedFor === m.from || (this.votedFor === null && this.leaderId === null);
    const granted = canVote && this.log.isUpToDate(m.lastLogIndex, m.lastLogTerm);
    if (granted && !m.preVote) {
      this.votedFor = m.from;
      this.electionElapsed = 0;
    }
    this.send({
      type: "voteResponse",
      from: this.id,
      to: m.from,
      term: granted && m.preVote ? m.term : this.term,
      preVote: m.preVote,
      granted,
      leaseRemainingTicks: granted ? this.ownLeaseRemainingTicks() : 0,
    });
  }

  private handleVoteResponse(m: RequestVoteResponse): void {
    const expectPre = this.role === "preCandidate";
    if (m.preVote !== expectPre) return;
    if (
      expectPre ? m.term !== this.term + 1 && (m.granted || m.term !== this.term) : this.role !== "candidate"
    )
      return;
    // A voter knows of at most an election timeout of an old lease (plus a tick); a larger report would
    // keep this leader from committing for as long as it says.
    const leaseBound = 2 * this.cfg.electionTimeoutMaxTicks;
    if (m.granted && m.leaseRemainingTicks > leaseBound)
      return this.refuse(
        m,
        "badLeaseReport",
        `reports ${m.leaseRemainingTicks} ticks of an old lease, over ${leaseBound}`,
      );
    this.votes.set(m.from, m.granted);
    if (m.granted) this.maxLeaseRemainingTicks = Math.max(this.maxLeaseRemainingTicks, m.leaseRemainingTicks);
    const result = jointTally(this.votes, this.membership);
    if (result === "won") {
      if (expectPre) this.campaign(false, false);
      else this.becomeLeader();
    } else if (result === "lost") {
      this.becomeFollower(this.term, null);
    }
  }

  // ---------------------------------------------------------------- replication (follower)

  private handleStale(m: Message): void {
    // Tell a deposed leader or a stale pre-candidate our term so it steps down (§5.1).
    if (m.type === "append" || m.type === "snapshot") {
      this.send({
        type: "appendResponse",
        from: this.id,
        to: m.from,
        term: this.term,
        success: false,
        matchIndex: 0,
        conflictTerm: 0,
        conflictIndex: 0,
        round: 0,
      });
    } else if (m.type === "vote" && m.preVote) {
      this.send({
        type: "voteResponse",
        from: this.id,
        to: m.from,
        term: this.term,
        preVote: true,
        granted: false,
        leaseRemainingTicks: 0,
      });
    }
  }

  /** An AppendEntries or InstallSnapshot in our term: its sender leads the term (§5.2, one leader per
   *  term). A second sender claiming the term is refused; a correct peer never is one. */
  private acceptLeader(m: AppendEntries | InstallSnapshot): boolean {
    if (this.role === "leader" || (this.leaderId !== null && this.leaderId !== m.from)) {
      const who = this.role === "leader" ? "this node leads it" : `node ${this.leaderId} leads it`;
      this.refuse(m, "secondLeader", `node ${m.from} claims to lead term ${this.term}, but ${who}`);
      return false;
    }
    if (this.role !== "follower") this.becomeFollower(this.term, m.from);
    this.leaderId = m.from;
    this.leaderContactTick = this.now;
    this.electionElapsed = 0;
    return true;
  }

  private handleAppend(m: AppendEntries): void {
    if (!this.acceptLeader(m)) return;
    // Installing a snapshot: the log is about to be replaced; the leader resends. A heartbeat is
    // answered at once all the same, with a term notice (no claim about the log): the install may take
    // longer than the leader's check-quorum timeout, and the answer acknowledges its round.
    if (this.installing !== null) {
      if (m.entries.length === 0) this.urgent.add(this.respondAppend(m, false, 0, 0, 0));
      return;
    }
    const lastNew = this.log.maybeAppend(m.prevLogIndex, m.prevLogTerm, m.entries);
    if (lastNew === "conflictsWithCommitted")
      return this.refuse(
        m,
        "conflictsWithCommitted",
        `entries after ${m.prevLogIndex} would replace entries committed through ${this.log.committed}`,
      );
    if (lastNew !== null) {
      this.commitTo(Math.min(m.leaderCommit, lastNew));
      const answer = this.respondAppend(m, true, lastNew, 0, 0);
      if (m.entries.length === 0) this.urgent.add(answer);
      return;
    }
    // §5.3 with the fast-backtracking hint: tell the leader where our log diverges.
    const ourTerm = this.log.term(m.prevLogIndex);
    if (ourTerm === undefined) {
      this.respondAppend(m, false, m.prevLogIndex, 0, this.log.lastIndex() + 1);
    } else {
      this.respondAppend(
        m,
        false,
        m.prevLogIndex,
        ourTerm,
        this.log.firstIndexOfTerm(ourTerm, m.prevLogIndex),
      );
    }
  }

  private respondAppend(
    m: AppendEntries,
    success: boolean,
    matchIndex: number,
    cTerm: number,
    cIndex: number,
  ): AppendEntriesResponse {
    const answer: AppendEntriesResponse = {
      type: "appendResponse",
      from: this.id,
      to: m.from,
      term: this.term,
      success,
      matchIndex,
      conflictTerm: cTerm,
      conflictIndex: cIndex,
      round: m.round,
    };
    this.send(answer);
    return answer;
  }

  private respondSnapshot(
    to: NodeId,
    index: number,
    nextOffset: number,
    installed: boolean,
    round: number,
  ): InstallSnapshotResponse {
    const answer: InstallSnapshotResponse = {
      type: "snapshotResponse",
      from: this.id,
      to,
      term: this.term,
      snapshotIndex: index,
      nextOffset,
      installed,
      round,
    };
    this.send(answer);
    return answer;
  }

  private handleSnapshot(m: InstallSnapshot): void {
    if (!this.acceptLeader(m)) return;
    // The host is verifying and installing a whole snapshot: "installed" goes out when it is done.
    // A chunk meanwhile (the leader resends the one in flight on its heartbeats) is answered at once
    // (urgent), naming the install under way and its last chunk: the leader notes the round (for its
    // check-quorum and lease, as from a heartbeat's answer) and waits, its chunk in flight answered; a
    // leader sending another snapshot just notes the round. Silent, a voter installing for longer than
    // an election timeout looked gone, and the leader stepped down just before the install finished
    // (seed 424: both new voters of a joint configuration installing, three leaders in a row).
    const inst = this.installing;
    if (inst !== null) {
      this.urgent.add(this.respondSnapshot(m.from, inst.meta.index, inst.lastOffset, false, m.round));
      return;
    }
    const respond = (nextOffset: number, installed: boolean): void => {
      this.respondSnapshot(m.from, m.meta.index, nextOffset, installed, m.round);
    };
    if (m.meta.index <= this.log.committed) return respond(m.meta.sizeBytes, true);
    // Our log already holds the snapshot's last entry: keep it and everything after it, which we may
    // have acknowledged (thesis §5.3: "retain log entries following it"); the entries carry us forward.
    if (this.log.matchTerm(m.meta.index, m.meta.term)) {
      this.incoming = null;
      this.commitTo(m.meta.index);
      return respond(m.meta.sizeBytes, true);
    }
    const inc = this.incoming;
    if (inc === null || inc.meta.index !== m.meta.index || inc.meta.term !== m.meta.term) {
      if (m.offset !== 0) return respond(-1, false);
      this.incoming = { meta: m.meta, offset: 0 };
    }
    const cur = this.incoming!;
    if (m.offset !== cur.offset) return respond(cur.offset, false);
    assert(m.data.length === m.length, () => `snapshot chunk length ${m.data.length} != ${m.length}`);
    this.snapshotChunks.push({ meta: m.meta, offset: m.offset, data: m.data });
    cur.offset += m.data.length;
    if (!m.done) return respond(cur.offset, false);
    this.incoming = null;
    if (cur.offset !== m.meta.sizeBytes) return respond(-1, false);
    // Nothing is replaced until the host has checked the whole image (snapshotInstalled/Rejected).
    this.installing = { meta: m.meta, from: m.from, round: m.round, lastOffset: m.offset };
    this.installSnapshot = m.meta;
  }

  // ---------------------------------------------------------------- replication (leader)

  private broadcastHeartbeat(): void {
    this.round++;
    this.roundSentTick.set(this.round, this.now);
    for (const r of this.readsAwaitingRound) {
      r.round = this.round;
      this.pendingReads.push(r);
    }
    this.readsAwaitingRound = [];
    for (const p of this.others) this.sendHeartbeat(p);
  }

  private sendHeartbeat(to: NodeId): void {
    const pr = this.progress.get(to)!;
    switch (pr.state) {
      case "snapshot":
        // A heartbeat as to every follower (etcd's bcastHeartbeat skips no progress state): a follower
        // receiving a snapshot is a live member whose acknowledgements the check-quorum, the lease and
        // ReadIndex count. Left to the chunks' answers (one chunk in flight, each read from our disk
        // first), its rounds fell behind whenever the reads were slow, and a leader whose quorum needed
        // it (new voters with empty logs) stepped down every election timeout, each successor starting
        // the snapshot again from offset 0. Its answer, a rejection most often, changes nothing else.
        this.sendAppend(to, Math.max(pr.match, this.log.snapshotIndex), [], true);
        if (
          pr.snapshot !== null &&
          this.latestSnapshot !== null &&
          this.latestSnapshot.index > pr.snapshot.index
        )
          pr.becomeSnapshot(this.latestSnapshot);
        // One chunk in flight at a time, resent only when its answer is overdue. Sent on every
        // heartbeat, each resend started another chain (every answer sends the next chunk): a
        // follower slow to write 256 KiB chunks got ever more duplicates, never finished a snapshot
        // of a million keys, and the leader held ~100 MB of chunks in its queues.
        if (pr.snapshotSentOffset >= 0 && this.now - pr.snapshotSentTick < 2 * this.cfg.heartbeatTicks)
          return;
        return this.sendSnapshotChunk(to, pr);
      case "probe":
        pr.probeSent = false;
        this.sendAppends(to, true);
        return;
      case "replicate": {
        const stalled =
          pr.inflight.length > 0 && pr.lastAdvanceTick + 2 * this.cfg.heartbeatTicks <= this.now;
        if (stalled) {
          pr.becomeProbe(); // a message was lost: restart from what we know matches
          pr.next = pr.match + 1;
          this.sendAppends(to, true);
          return;
        }
        // Heartbeats vouch for what is known to match; below our snapshot, probing finds the way.
        this.sendAppend(to, Math.max(pr.match, this.log.snapshotIndex), [], true);
        return;
      }
    }
  }

  /** Send what the follower lacks, as far as its window allows; with allowEmpty, at least a heartbeat. */
  private sendAppends(to: NodeId, allowEmpty: boolean): void {
    const pr = this.progress.get(to)!;
    let sentAny = false;
    // A leader elected while an old lease may still hold (a transfer's voters report it) commits
    // nothing until it has run out, so the old leader's lease reads stay linearizable (thesis §6.4.1).
    const holding = this.now < this.oldLeaseUntilTick;
    while (
      !holding &&
      pr.state !== "snapshot" &&
      pr.canSend(this.cfg.maxInflightMessages, this.cfg.maxInflightBytes)
    ) {
      const prev = pr.next - 1;
      if (this.log.term(prev) === undefined) {
        this.startSnapshot(to, pr);
        return;
      }
      const last = this.log.lastIndex();
      if (pr.next > last) break;
      const entries = this.log.slice(
        pr.next,
        last,
        this.cfg.maxEntriesPerMessage,
        this.cfg.maxBytesPerMessage,
      );
      this.sendAppend(to, prev, entries, false);
      let bytes = 0;
      for (const e of entries) bytes += e.data.length;
      pr.sent(entries[entries.length - 1]!.index, this.now, bytes);
      sentAny = true;
      if (pr.state === "probe") break;
    }
    if (!sentAny && allowEmpty && pr.state !== "snapshot") {
      const prev = pr.state === "probe" ? pr.next - 1 : pr.match;
      if (this.log.term(prev) === undefined) this.startSnapshot(to, pr);
      else this.sendAppend(to, prev, [], true);
    }
  }

  private sendAppend(to: NodeId, prev: number, entries: readonly Entry[], heartbeat: boolean): void {
    const prevTerm = this.log.term(prev);
    assert(prevTerm !== undefined, () => `append to ${to} with compacted prev ${prev}`);
    const lastNew = prev + entries.length;
    const m: AppendEntries = {
      type: "append",
      from: this.id,
      to,
      term: this.term,
      prevLogIndex: prev,
      prevLogTerm: prevTerm,
      entries,
      // A heartbeat never commits past what it vouches for on the follower.
      leaderCommit: heartbeat ? Math.min(this.log.committed, lastNew) : this.log.committed,
      round: this.round,
    };
    this.send(m);
    if (entries.length === 0) this.urgent.add(m);
  }

  private startSnapshot(to: NodeId, pr: Progress): void {
    const snap = this.latestSnapshot;
    assert(snap !== null, () => `follower ${to} needs compacted entries but there is no snapshot`);
    pr.becomeSnapshot(snap);
    this.sendSnapshotChunk(to, pr);
  }

  private sendSnapshotChunk(to: NodeId, pr: Progress): void {
    const meta = pr.snapshot!;
    const offset = pr.snapshotOffset;
    const length = Math.max(0, Math.min(this.cfg.snapshotChunkBytes, meta.sizeBytes - offset));
    pr.snapshotSentOffset = offset;
    pr.snapshotSentTick = this.now;
    this.send({
      type: "snapshot",
      from: this.id,
      to,
      term: this.term,
      meta,
      offset,
      data: EMPTY,
      length,
      done: offset + length >= meta.sizeBytes,
      round: this.round,
    });
  }

  private sendTimeoutNow(to: NodeId): void {
    this.send({ type: "timeoutNow", from: this.id, to, term: this.term });
  }

  private noteAck(from: NodeId, round: number): Progress | undefined {
    const pr = this.progress.get(from);
    if (pr === undefined) return undefined;
    pr.recentActive = true;
    if (round > pr.ackedRound && round <= this.round) {
      pr.ackedRound = round;
      this.pruneRounds();
      this.releaseReads();
    }
    return pr;
  }

  private handleAppendResponse(m: AppendEntriesResponse): void {
    if (this.role !== "leader") return;
    // Answers in our term answer our appends, which never went past our log (it only grows in a term).
    if (m.matchIndex > this.log.lastIndex() || m.conflictIndex > this.log.lastIndex() + 1)
      return this.refuse(
        m,
        "beyondOurLog",
        `answers index ${Math.max(m.matchIndex, m.conflictIndex)}, past our last index ${this.log.lastIndex()}`,
      );
    const pr = this.noteAck(m.from, m.round);
    if (pr === undefined) return;
    if (m.success) {
      if (pr.acked(m.matchIndex, this.now)) {
        if (pr.state === "probe") pr.becomeReplicate();
        this.maybeCommit();
        // A configuration that took effect may have removed the sender, or this leader.
        if (this.progress.get(m.from) !== pr) return;
        if (this.transferee === m.from && pr.match === this.log.lastIndex()) this.sendTimeoutNow(m.from);
      } else if (pr.state === "probe" && m.matchIndex >= pr.next - 1) {
        pr.becomeReplicate();
      }
      this.sendAppends(m.from, false);
      return;
    }
    if (m.matchIndex === 0 && m.conflictIndex === 0) return; // a term notice, not a log rejection
    // While a snapshot is under way it is the way forward: a rejection (of the heartbeats sent meanwhile,
    // or of an append sent before) must not send us probing, which would start it over (in etcd a
    // progress in StateSnapshot is paused: a rejection sends nothing).
    if (pr.state === "snapshot") return;
    if (m.matchIndex <= pr.match || (pr.state === "probe" && m.matchIndex !== pr.next - 1)) return; // stale
    let next: number;
    if (m.conflictTerm > 0) {
      const ours = this.log.lastIndexAtOrBeforeTerm(m.conflictTerm, m.matchIndex);
      next = this.log.term(ours) === m.conflictTerm ? ours + 1 : m.conflictIndex;
    } else {
      next = m.conflictIndex;
    }
    pr.becomeProbe();
    pr.next = Math.max(pr.match + 1, Math.min(next, m.matchIndex));
    this.sendAppends(m.from, false);
  }

  private handleSnapshotResponse(m: InstallSnapshotResponse): void {
    if (this.role !== "leader") return;
    if (m.snapshotIndex > this.log.lastIndex())
      return this.refuse(
        m,
        "beyondOurLog",
        `answers snapshot ${m.snapshotIndex}, past our last index ${this.log.lastIndex()}`,
      );
    const pr = this.noteAck(m.from, m.round);
    if (pr === undefined) return;
    if (m.installed) {
      pr.acked(m.snapshotIndex, this.now);
      if (pr.state === "snapshot") pr.becomeProbe();
      this.maybeCommit();
      if (this.progress.get(m.from) !== pr) return;
      this.sendAppends(m.from, false);
      return;
    }
    if (pr.state !== "snapshot" || pr.snapshot === null || pr.snapshot.index !== m.snapshotIndex) return;
    const next = m.nextOffset < 0 ? 0 : Math.min(m.nextOffset, pr.snapshot.sizeBytes);
    // The follower still expects the chunk in flight: this answers a duplicate or an earlier chunk,
    // and the chunk in flight (or its resend, when overdue) carries on. Any other answer moves on.
    if (next === pr.snapshotSentOffset) return;
    pr.snapshotOffset = next;
    this.sendSnapshotChunk(m.from, pr);
  }

  /** §5.3/§5.4.2: commit the highest index on a majority (of each configuration while joint, thesis
   *  §4.3), but only if it is from our term. */
  private maybeCommit(): void {
    // A configuration that takes effect changes the quorum (a removed laggard no longer holds commits
    // back), so look again until nothing moves; bounded by the log.
    const match = (id: NodeId): number =>
      id === this.id ? this.log.persisted : (this.progress.get(id)?.match ?? 0);
    while (this.role === "leader") {
      let q = jointValue(this.membership, match);
      // A configuration takes effect when its entry commits, so the entries after it are committed
      // under it: a commit past a config entry needs a majority of that configuration too (thesis
      // §4.3: the entry leaving a joint configuration commits under the joint one). A leader elected
      // with an uncommitted joint entry and the entry leaving it in its log commits both with its NO-OP:
      // counted under the old configuration alone, the new one would commit without its majority.
      for (const c of this.logConfigs) {
        if (c.index >= q) break;
        if (c.index > this.log.committed) q = Math.max(c.index, Math.min(q, jointValue(c.membership, match)));
      }
      if (q <= this.log.committed || this.log.term(q) !== this.term) break;
      this.uncommittedBytes = Math.max(
        0,
        this.uncommittedBytes - this.log.bytesBetween(this.log.committed + 1, q),
      );
      this.commitTo(q);
      this.releaseReads();
    }
    // Leave a joint configuration on our own once it (and every config entry we appended) committed
    // (etcd's auto-leave); also for a leader elected while the cluster was joint.
    if (this.role === "leader" && isJoint(this.membership) && this.log.committed >= this.pendingConfIndex)
      this.appendConfig(leaveJoint(this.membership));
  }

  /** The highest round a majority (us included, if we vote) acknowledged, of each configuration while
   *  joint: what the lease, ReadIndex and check-quorum rest on; 0 if none. */
  private quorumRound(): number {
    return jointValue(this.membership, (id) =>
      id === this.id ? this.round : (this.progress.get(id)?.ackedRound ?? 0),
    );
  }

  // ---------------------------------------------------------------- membership

  private soleVoter(): boolean {
    const m = this.membership;
    return m.voters.length === 1 && m.voters[0] === this.id && m.outgoing.every((v) => v === this.id);
  }

  private isVoterSelf(): boolean {
    return isVoter(this.membership, this.id);
  }

  /** Leader: append a configuration entry; it takes effect when it commits. */
  private appendConfig(next: Membership): number {
    // One change in flight (thesis §4.3 as etcd runs it): every earlier config entry has committed.
    assert(
      this.log.committed >= this.pendingConfIndex,
      () =>
        `config entry appended while ${this.pendingConfIndex} is uncommitted (commit ${this.log.committed})`,
    );
    assert(
      isVoter(this.membership, this.id),
      () => `node ${this.id} changes a configuration it does not vote in`,
    );
    const entry: Entry = {
      index: this.log.lastIndex() + 1,
      term: this.term,
      kind: "config",
      data: encodeMembership(next),
    };
    this.log.append([entry]);
    this.uncommittedBytes += entry.data.length;
    this.pendingConfIndex = entry.index;
    this.logConfigs.push({ index: entry.index, membership: next });
    this.syncPeers();
    this.needBroadcast = true;
    if (this.soleVoter()) this.maybeCommit();
    return entry.index;
  }

  /** Advance the commit index; configurations in the newly committed entries take effect in log order. */
  private commitTo(index: number): void {
    const before = this.log.committed;
    this.log.commitTo(index);
    for (let i = before + 1; i <= this.log.committed; i++) this.applyConfigAt(i);
  }

  private applyConfigAt(index: number): void {
    const e = this.log.entry(index);
    if (e === undefined || e.kind !== "config") return;
    const m = decodeMembership(e.data);
    // Config entries are validated where they enter (codec, WAL reader) and written by leaders.
    assert(typeof m !== "string", () => `committed config entry ${index} does not decode: ${String(m)}`);
    this.configHistory.push({ index, membership: m });
    this.configCommitted = true; // this commit index is written durably (see ready())
    this.bootstrapOnly = false;
    this.setMembership(m, index);
  }

  /** A configuration takes effect: peers, progress, and what a removed or joint leader must do. */
  private setMembership(m: Membership, index: number): void {
    assert(index >= this.membershipIndex, () => `configuration ${index} before ${this.membershipIndex}`);
    assert(
      m.learners.every((id) => !isVoter(m, id)) && (m.voters.length > 0 || index === 0),
      () => `configuration ${index} is impossible: ${describeMembership(m)}`,
    );
    this.membership = m;
    this.membershipIndex = index;
    this.latestCache = null;
    this.logConfigs = this.logConfigs.filter((c) => c.index > index);
    this.syncPeers();
    if (this.role !== "leader") return;
    this.needBroadcast = true;
    if (!this.isVoterSelf()) this.stepDownRemoved();
  }

  /** Whom we replicate to: the members of the configuration in effect and, as leader, of those in its
   *  log not yet committed (their majorities count for commits past them: maybeCommit). */
  private syncPeers(): void {
    const ids = new Set(members(this.membership));
    for (const c of this.logConfigs) for (const id of members(c.membership)) ids.add(id);
    ids.delete(this.id);
    this.others = [...ids];
    if (this.role !== "leader") return;
    for (const id of this.others)
      if (!this.progress.has(id)) this.progress.set(id, new Progress(this.log.lastIndex() + 1, this.now));
    for (const id of [...this.progress.keys()]) if (!this.others.includes(id)) this.progress.delete(id);
  }

  /** Thesis §4.2.2: a leader not in the configuration that committed steps down, handing leadership to
   *  the most up-to-date voter when one holds the whole log. */
  private stepDownRemoved(): void {
    let best: NodeId | null = null;
    let bestMatch = -1;
    for (const id of this.membership.voters) {
      const match = this.progress.get(id)?.match ?? 0;
      if (match > bestMatch) {
        best = id;
        bestMatch = match;
      }
    }
    if (best !== null && bestMatch === this.log.lastIndex()) this.sendTimeoutNow(best);
    this.becomeFollower(this.term, null);
  }

  private quorumRoundSentTick(): number | null {
    const q = this.quorumRound();
    return q === 0 ? null : (this.roundSentTick.get(q) ?? null);
  }

  private pruneRounds(): void {
    const q = this.quorumRound();
    for (const r of this.roundSentTick.keys()) if (r < q) this.roundSentTick.delete(r);
  }

  /** ReadIndex reads whose round a majority confirmed and whose index is committed become ReadStates. */
  private releaseReads(): void {
    if (this.pendingReads.length === 0 || this.log.committed < this.noopIndex) return;
    const q = this.quorumRound();
    let n = 0;
    for (const r of this.pendingReads) {
      if (r.round > q || r.index > this.log.committed) break;
      this.readStates.push({ requestId: r.requestId, index: r.index });
      n++;
    }
    if (n > 0) this.pendingReads.splice(0, n);
  }

  private send(m: Message): void {
    this.msgs.push(m);
  }

  /** A message a correct peer never sends: dropped, changing nothing, and reported for the host to log. */
  private refuse(m: Message, reason: CoreRefusalReason, detail: string): void {
    this.refusals.push({ from: m.from, type: m.type, term: m.term, reason, detail });
  }
}

function sameHardState(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.votedFor === b.votedFor && a.commitIndex === b.commitIndex;
}

function sameMeta(a: SnapshotMeta, b: SnapshotMeta): boolean {
  return a.index === b.index && a.term === b.term && a.sizeBytes === b.sizeBytes && a.crc32c === b.crc32c;
}

/**
 * A learner may be promoted once it acknowledged entries and holds at least 90 % of the leader's log and
 * all but the last PROMOTE_WITHIN_ENTRIES entries (etcd's rule is the 90 %; the window bounds a long log).
 * A learner that never answered (match 0, say at an address where nothing runs) is always behind, however
 * short the log.
 */
export function learnerBehind(match: number, leaderLastIndex: number): boolean {
  return match === 0 || match + PROMOTE_WITHIN_ENTRIES < leaderLastIndex || match < 0.9 * leaderLastIndex;
}
