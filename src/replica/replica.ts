// One node's loop: inputs into the core; each Ready to storage (sync first), then the network, then
// advance(); its committed entries (already durable here) go to the state machine while its new entries
// are being written. Pending proposals and reads are promises resolved from applied entries.

import type { Raft } from "../core/raft.ts";
import type { CoreRefusal, Entry, HardState, Message, NodeId, Ready, SnapshotMeta } from "../core/types.ts";
import { AssertionError, assert } from "../lib/assert.ts";
import { RaftKvError } from "../lib/errors.ts";
import type { Clock, MessageSender, ReplicaStorage, RestoreStateMachine, StateMachine } from "./seams.ts";

/** Snapshot bytes read at a time when restoring from an installed snapshot: each is decoded and loaded
 *  in one event-loop turn (the loop answers heartbeats between them), so it stays small. */
const RESTORE_CHUNK_BYTES = 256 * 1024;

export type Consistency = "lease" | "readIndex" | "stale";

export interface ReplicaOptions<R> {
  core: Raft;
  storage: ReplicaStorage;
  sender: MessageSender;
  stateMachine: StateMachine<R>;
  restore: RestoreStateMachine<R>;
  clock: Clock;
  /** Local time (clock.nowMs) of core tick 0, and the tick length: tick k is delivered no earlier
   *  than bootMs + k * tickMs, which is what makes the tick-based lease safe to check in ms. */
  bootMs: number;
  tickMs: number;
  /** Take a snapshot after this many applied entries since the last one (0: never). */
  snapshotEveryEntries: number;
  /** Entries kept in the log behind a snapshot, so slightly lagging followers need no snapshot. */
  keepEntriesAfterSnapshot: number;
  /** Also snapshot once the in-memory log holds this many bytes of command data (0: by count only). */
  snapshotEveryBytes?: number;
  /** Behind a snapshot keep at most this many bytes of entries (default: no byte bound). */
  keepBytesAfterSnapshot?: number;
  /** A peer message the core refused (one a correct peer never sends), to log and count. */
  onRefused?: (r: CoreRefusal) => void;
  /** Called once when storage fails: the node stops acknowledging anything. */
  onFatal?: (err: unknown) => void;
  /** Called when ticksToNextTimeout() may have come closer without an input (a commit-only hard state
   *  now waits UNWRITTEN_HARD_STATE_TICKS): a host that sleeps through quiet ticks re-arms its timer. */
  onTimeoutSooner?: () => void;
  /** Observes every applied entry (the simulator's checkers use it). */
  onApply?: (entry: Entry, result: R | null) => void;
}

interface PendingProposal<R> {
  term: number;
  resolve: (r: { index: number; result: R }) => void;
  reject: (e: unknown) => void;
}

interface PendingRead {
  resolve: () => void;
  reject: (e: unknown) => void;
  /** Set once the core has confirmed leadership for it: serve after applying this index. */
  index: number | null;
}

/** A lease that was valid when a read started; re-check with stillValid() just before replying. */
export interface ReadTicket {
  readonly consistency: Consistency;
  /** For lease reads: local ms until which the lease holds. */
  readonly leaseUntilMs: number | null;
}

export class Replica<R> {
  readonly id: NodeId;
  private readonly o: ReplicaOptions<R>;
  private sm: StateMachine<R>;
  private readonly proposals = new Map<number, PendingProposal<R>>();
  private readonly reads = new Map<number, PendingRead>();
  private readonly readsByIndex: { id: number; index: number }[] = [];
  private nextReadId = 1;
  private running = false;
  private failed: unknown = null;
  private stopped = false;
  private lastSnapshotIndex: number;
  private installedIndex = 0;
  /** The snapshot being written in the background (maybeSnapshot), or null. */
  private snapshotInFlight: Promise<void> | null = null;
  private idleWaiters: (() => void)[] = [];
  /** A hard state whose only change was the commit index, not written yet. It needs no sync, so it rides
   *  along with the next write, or is written after UNWRITTEN_HARD_STATE_TICKS quiet ticks or on stop:
   *  a batch costs one WAL write instead of two, and applying what just committed waits for no disk. */
  private unwrittenHardState: HardState | null = null;
  private unwrittenSinceTick = 0;
  private ticks = 0;
  /** The state machine's index when the loop started: a state machine that persists itself may start
   *  ahead of the core's applied cursor, and the committed entries through it are not applied again. */
  private readonly appliedAtStart: number;

  constructor(o: ReplicaOptions<R>) {
    this.o = o;
    this.id = o.core.id;
    this.sm = o.stateMachine;
    this.appliedAtStart = o.stateMachine.appliedIndex;
    this.lastSnapshotIndex = o.core.snapshotMeta()?.index ?? 0;
    this.kick();
  }

  get stateMachine(): StateMachine<R> {
    return this.sm;
  }

  get core(): Raft {
    return this.o.core;
  }

  get failure(): unknown {
    return this.failed;
  }

  /** Index of the last snapshot installed from a leader (0: none since this node started). */
  get lastInstalledSnapshotIndex(): number {
    return this.installedIndex;
  }

  // ---------------------------------------------------------------- inputs

  /** One tick; `held` after an event-loop stall, until releaseTimeouts() (Raft.tick). */
  tick(held = false): void {
    if (this.stopped || this.failed !== null) return;
    this.ticks++;
    this.o.core.tick(held);
    this.sendUrgent();
    this.kick(this.hardStateDue());
  }

  /** Once the input that arrived during a stall has been read: acts on timeouts the held ticks owe. */
  releaseTimeouts(): void {
    if (this.stopped || this.failed !== null) return;
    this.o.core.releaseTimeouts();
    this.sendUrgent();
    this.kick(false);
  }

  /** Ticks until one can change anything here: the core's next timeout, or the write of a waiting
   *  commit-only hard state (see Ticker's ticksToNextTimeout). */
  ticksToNextTimeout(): number {
    const core = this.o.core.ticksToNextTimeout();
    if (this.unwrittenHardState === null) return core;
    return Math.max(1, Math.min(core, this.unwrittenSinceTick + UNWRITTEN_HARD_STATE_TICKS - this.ticks));
  }

  receive(m: Message): void {
    if (this.stopped || this.failed !== null) return;
    this.o.core.step(m);
    this.sendUrgent();
    this.kick();
  }

  /** While the loop is busy (persisting a Ready, say): heartbeats and their answers leave now, not after
   *  the fsync (the core says which may; issue 16). An idle loop hands them out at once anyway. */
  private sendUrgent(): void {
    if (!this.running) return;
    const urgent = this.o.core.takeUrgentMessages();
    if (urgent.length > 0) this.o.sender.send(urgent);
  }

  /** Propose a command; resolves with its result once applied here, rejects with a typed error. */
  propose(data: Uint8Array): Promise<{ index: number; result: R }> {
    const refused = this.refusal();
    if (refused !== null) return Promise.reject(refused);
    const r = this.o.core.propose(data);
    if (!r.ok) return Promise.reject(this.proposeError(r.reason, r.leaderId));
    return new Promise((resolve, reject) => {
      this.proposals.set(r.index, { term: r.term, resolve, reject });
      this.kick();
    });
  }

  /**
   * Wait until the local state machine may serve a read at this consistency. Lease reads resolve at
   * once while the lease holds (thesis §6.4.1) and fall back to ReadIndex otherwise (thesis §6.4).
   */
  async readBarrier(consistency: Consistency): Promise<ReadTicket> {
    const refused = this.refusal();
    if (refused !== null) throw refused;
    if (consistency === "stale") return { consistency, leaseUntilMs: null };
    if (consistency === "lease") {
      const until = this.leaseUntilMs();
      if (until !== null) return { consistency, leaseUntilMs: until };
    }
    await this.readIndex();
    return { consistency: "readIndex", leaseUntilMs: null };
  }

  /** Just before a lease read's reply leaves: does the lease still hold (the loop may have stalled)? */
  stillValid(ticket: ReadTicket): boolean {
    if (ticket.leaseUntilMs === null) return true;
    return this.o.clock.nowMs() < ticket.leaseUntilMs && this.o.core.softState().role === "leader";
  }

  /** Local ms until which this leader's lease lets it serve reads, or null. */
  leaseUntilMs(): number | null {
    const st = this.o.core.leaseStatus();
    if (!st.ok || this.sm.appliedIndex < st.minAppliedIndex) return null;
    const untilMs = this.o.bootMs + st.validUntilTick * this.o.tickMs;
    return this.o.clock.nowMs() < untilMs ? untilMs : null;
  }

  private readIndex(): Promise<void> {
    const id = this.nextReadId++;
    const failure = this.o.core.readIndex(id);
    if (failure !== null) return Promise.reject(this.proposeError(failure.reason, failure.leaderId));
    return new Promise((resolve, reject) => {
      this.reads.set(id, { resolve, reject, index: null });
      this.kick();
    });
  }

  /** Runs a call on the core (a configuration change, say) and handles what it produced. */
  coreCall<T>(fn: (core: Raft) => T): T {
    const r = fn(this.o.core);
    this.kick();
    return r;
  }

  /** Hand leadership to another node (thesis §3.10), e.g. before a clean shutdown. */
  transferLeadership(to: NodeId): boolean {
    if (this.refusal() !== null) return false;
    const ok = this.o.core.transferLeadership(to);
    this.kick();
    return ok;
  }

  /** Stop: fail everything pending; the core is no longer driven. */
  stop(reason = "node is shutting down"): void {
    if (this.stopped) return;
    this.stopped = true;
    this.failAll(new RaftKvError({ code: "SHUTTING_DOWN", message: reason, nodeId: this.id }), true);
    if (!this.running && this.failed === null && this.unwrittenHardState !== null) {
      this.running = true;
      void this.loop();
    }
  }

  /** Resolves when the loop has nothing left to do (tests and the simulator use it). */
  async idle(): Promise<void> {
    for (;;) {
      if (this.running) await new Promise<void>((r) => this.idleWaiters.push(r));
      else if (this.snapshotInFlight !== null) await this.snapshotInFlight;
      else return;
    }
  }

  // ---------------------------------------------------------------- the loop

  private kick(flushHardState = false): void {
    if (this.running || this.stopped || this.failed !== null) return;
    if (!flushHardState && !this.o.core.hasReady()) return;
    this.running = true;
    void this.loop();
  }

  private async loop(): Promise<void> {
    try {
      for (;;) {
        await this.drain();
        const hs = this.unwrittenHardState;
        if (hs === null || this.failed !== null || !(this.stopped || this.hardStateDue())) break;
        this.unwrittenHardState = null;
        await this.o.storage.save(hs, [], false);
      }
    } catch (err) {
      this.fail(err);
    } finally {
      this.running = false;
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  private hardStateDue(): boolean {
    return (
      this.unwrittenHardState !== null && this.ticks - this.unwrittenSinceTick >= UNWRITTEN_HARD_STATE_TICKS
    );
  }

  /** Handles Readys until the core has none. */
  private async drain(): Promise<void> {
    while (!this.stopped && this.failed === null && this.o.core.hasReady()) {
      const rd = this.o.core.ready();
      if (rd.refused.length > 0 && this.o.onRefused !== undefined)
        for (const r of rd.refused) this.o.onRefused(r);
      // A leader's appends promise nothing about its own disk, so they leave before its write and the
      // followers' fsyncs overlap the leader's (thesis §10.2.1). Everything else waits for durability.
      const early = rd.termOrVoteChanged ? [] : rd.messages.filter(isLeaderReplication);
      if (early.length > 0) this.sendAll(early);
      // Committed entries are durable here already (the core hands out none beyond what an earlier
      // advance() marked persisted), so they need not wait for this Ready's write, as in etcd's
      // raft node. A snapshot to install comes after them: they precede it in the log, and the core
      // keeps its log until the host has installed the snapshot (snapshotInstalled).
      this.applyAll(rd);
      await this.persist(rd);
      // A background snapshot may have failed meanwhile: after any storage failure nothing is sent.
      if (this.stopped || this.failed !== null) break;
      this.sendAll(early.length === 0 ? rd.messages : rd.messages.filter((m) => !isLeaderReplication(m)));
      this.o.core.advance(rd);
      this.maybeSnapshot();
    }
  }

  private async persist(rd: Ready): Promise<void> {
    const st = this.o.storage;
    for (const c of rd.snapshotChunks) await st.writeSnapshotChunk(c.meta, c.offset, c.data);
    const hardState = rd.hardState ?? this.unwrittenHardState;
    if (rd.entries.length === 0 && !rd.mustSync) {
      // Commit index only (a term or vote change sets mustSync).
      const waiting = this.unwrittenHardState !== null;
      if (!waiting) this.unwrittenSinceTick = this.ticks;
      this.unwrittenHardState = hardState;
      if (!waiting && hardState !== null) this.o.onTimeoutSooner?.();
    } else {
      this.unwrittenHardState = null;
      if (hardState !== null || rd.entries.length > 0) await st.save(hardState, rd.entries, rd.mustSync);
    }
    // Last: entries of the old log in this Ready precede the snapshot (the core keeps its log until
    // the snapshot is installed), and the install discards them with the rest of that log.
    if (rd.installSnapshot !== null) await this.install(rd.installSnapshot);
  }

  private sendAll(messages: readonly Message[]): void {
    const plain: Message[] = [];
    for (const m of messages) {
      if (m.type === "snapshot" && m.data.length < m.length) void this.sendSnapshotChunk(m);
      else plain.push(m);
    }
    if (plain.length > 0) this.o.sender.send(plain);
  }

  /** Fill a snapshot chunk from our snapshot file; a failed read just drops it (the leader resends). */
  private async sendSnapshotChunk(m: Message & { type: "snapshot" }): Promise<void> {
    try {
      const data = await this.o.storage.readSnapshotChunk(m.meta, m.offset, m.length);
      if (!this.stopped && this.failed === null) this.o.sender.send([{ ...m, data }]);
    } catch {
      // The snapshot was replaced meanwhile; the next heartbeat restarts from the newest one.
    }
  }

  private applyAll(rd: Ready): void {
    for (const e of rd.committedEntries) {
      // A state machine that persists itself starts at its stored index: the log before it is applied.
      if (e.index <= this.appliedAtStart && this.sm === this.o.stateMachine) continue;
      let result: R | null = null;
      // A configuration entry changes the core's membership, not the state machine: a no-op here.
      if (e.kind !== "command") this.sm.applyNoop(e.index);
      else result = this.sm.apply(e.index, e.data);
      this.o.onApply?.(e, result);
      const p = this.proposals.get(e.index);
      if (p !== undefined) {
        this.proposals.delete(e.index);
        if (p.term === e.term && result !== null) p.resolve({ index: e.index, result });
        else p.reject(this.notApplied(e.index));
      }
    }
    for (const rs of rd.readStates) {
      const r = this.reads.get(rs.requestId);
      if (r !== undefined) {
        r.index = rs.index;
        this.readsByIndex.push({ id: rs.requestId, index: rs.index });
      }
    }
    for (const f of rd.readFailures) {
      const r = this.reads.get(f.requestId);
      if (r === undefined) continue;
      this.reads.delete(f.requestId);
      r.reject(this.proposeError(f.reason, f.leaderId));
    }
    this.releaseReads();
    if (rd.softStateChanged && this.o.core.softState().role !== "leader")
      this.failAll(this.leadershipLost(), false);
  }

  private releaseReads(): void {
    const applied = this.sm.appliedIndex;
    let n = 0;
    for (const r of this.readsByIndex) {
      if (r.index > applied) break;
      const p = this.reads.get(r.id);
      this.reads.delete(r.id);
      p?.resolve();
      n++;
    }
    if (n > 0) this.readsByIndex.splice(0, n);
  }

  /**
   * A snapshot received whole from the leader: build a new state machine from the received file (read
   * back in chunks: at a million keys the image is hundreds of MB) and so check the whole image, then
   * make the file durable as our snapshot, then switch over. A bad image (or checksum) replaces nothing:
   * the core asks the leader for the snapshot again. The current state machine serves reads until the
   * switch.
   */
  private async install(meta: SnapshotMeta): Promise<void> {
    // Our own snapshot reads a view of the state machine that the restore replaces: let it finish.
    while (this.snapshotInFlight !== null) await this.snapshotInFlight;
    const st = this.o.storage;
    const restore = this.o.restore(meta.sizeBytes, meta);
    let next: StateMachine<R>;
    try {
      for (let at = 0; at < meta.sizeBytes; ) {
        const chunk = await st.readIncomingSnapshotChunk(meta, at, RESTORE_CHUNK_BYTES);
        if (chunk.length === 0) break; // finish() reports the shortfall
        restore.push(chunk);
        at += chunk.length;
      }
      next = restore.finish();
      if (next.appliedIndex !== meta.index)
        throw new RaftKvError({
          code: "CORRUPT",
          message: `the received snapshot's image is at index ${next.appliedIndex}, its meta says ${meta.index}`,
          nodeId: this.id,
        });
      await st.installIncomingSnapshot(meta);
    } catch (err) {
      restore.abort();
      if (!isCorrupt(err)) throw err;
      this.o.core.snapshotRejected(meta, err instanceof Error ? err.message : String(err));
      return;
    }
    restore.commit();
    this.sm = next;
    this.lastSnapshotIndex = meta.index;
    this.installedIndex = meta.index;
    this.o.core.snapshotInstalled(meta);
    this.failProposalsThrough(meta.index);
  }

  /**
   * Takes a snapshot when one is due, in the background: the image is read from a view of the state
   * machine taken now (isolated from later applies), and written while the loop goes on, so heartbeats,
   * acknowledgements and applies never wait for it (at a million keys the write takes seconds; a loop
   * that waited missed its heartbeats and lost the lease, issue 16). Once the file is durable, the core
   * learns of it and compacts. An incoming snapshot waits for it (install()); so does idle().
   */
  private maybeSnapshot(): void {
    const every = this.o.snapshotEveryEntries;
    const everyBytes = this.o.snapshotEveryBytes ?? 0;
    const applied = this.sm.appliedIndex;
    if (this.snapshotInFlight !== null || applied <= this.lastSnapshotIndex) return;
    const byCount = every > 0 && applied - this.lastSnapshotIndex >= every;
    const byBytes = everyBytes > 0 && this.o.core.log.dataBytes >= everyBytes;
    if (!byCount && !byBytes) return;
    // After a restart the stored state may be ahead of what the core has handed out yet.
    if (applied > this.o.core.log.applied) return;
    const term = this.o.core.log.term(applied);
    if (term === undefined) return;
    // Streamed: at a million keys the image is hundreds of MB, which should never be in memory whole.
    const image = this.sm.snapshotStream();
    assert(image.appliedIndex === applied, () => `snapshot at ${image.appliedIndex}, applied ${applied}`);
    // The configuration in effect at the snapshot travels with it (thesis §5.3, §4.3).
    const streamMeta = {
      index: applied,
      term,
      sizeBytes: image.sizeBytes,
      membership: this.o.core.membershipAt(applied),
    };
    this.snapshotInFlight = this.o.storage
      .saveSnapshotStream(streamMeta, () => image.next())
      .then(
        (meta) => {
          if (this.stopped || this.failed !== null) return;
          this.o.core.snapshotSaved(meta);
          const log = this.o.core.log;
          let to = Math.max(log.snapshotIndex, applied - this.o.keepEntriesAfterSnapshot);
          const keepBytes = this.o.keepBytesAfterSnapshot;
          if (keepBytes !== undefined) to = Math.max(to, log.compactionPointKeeping(applied, keepBytes));
          this.o.core.compact(to);
          this.lastSnapshotIndex = Math.max(this.lastSnapshotIndex, applied);
        },
        (err: unknown) => {
          if (!this.stopped) this.fail(err);
        },
      )
      .finally(() => {
        image.close();
        this.snapshotInFlight = null;
        this.kick();
      });
  }

  // ---------------------------------------------------------------- failures

  private fail(err: unknown): void {
    if (this.failed !== null) return;
    this.failed = err;
    const what = err instanceof Error ? err.message : String(err);
    this.failAll(
      err instanceof AssertionError
        ? new RaftKvError({
            code: "INTERNAL",
            message: `node stopped: a Raft invariant failed (${what})`,
            nodeId: this.id,
            hint: "this is a bug: keep the data folder and the log, report it, then restart the node",
            cause: err,
          })
        : new RaftKvError({
            code: "STORAGE",
            message: `node stopped acknowledging after a storage failure: ${what}`,
            nodeId: this.id,
            hint: "check the disk (space, permissions) and restart the node; it recovers from its log",
            cause: err,
          }),
      true,
    );
    this.o.onFatal?.(err);
  }

  private failAll(err: RaftKvError, includeProposals: boolean): void {
    for (const [id, r] of this.reads) {
      this.reads.delete(id);
      r.reject(err);
    }
    this.readsByIndex.length = 0;
    if (includeProposals || err.code === "UNAVAILABLE") {
      for (const [i, p] of this.proposals) {
        this.proposals.delete(i);
        p.reject(err);
      }
    }
  }

  private failProposalsThrough(index: number): void {
    for (const [i, p] of this.proposals) {
      if (i > index) continue;
      this.proposals.delete(i);
      p.reject(this.leadershipLost());
    }
  }

  private refusal(): RaftKvError | null {
    if (this.stopped)
      return new RaftKvError({ code: "SHUTTING_DOWN", message: "node is shutting down", nodeId: this.id });
    if (this.failed !== null)
      return new RaftKvError({
        code: "STORAGE",
        message: "node stopped after a storage failure",
        nodeId: this.id,
        hint: "restart the node once the disk is healthy",
      });
    return null;
  }

  private leadershipLost(): RaftKvError {
    return new RaftKvError({
      code: "UNAVAILABLE",
      message: "leadership changed before the request completed; the outcome is unknown",
      nodeId: this.id,
      hint: "retry with the same request id; retried writes apply at most once",
    });
  }

  private notApplied(index: number): RaftKvError {
    return new RaftKvError({
      code: "NOT_LEADER",
      message: `the entry at index ${index} was replaced by a new leader; the write was not applied`,
      nodeId: this.id,
      hint: "retry against the current leader",
    });
  }

  private proposeError(reason: string, leaderId: NodeId | null): RaftKvError {
    switch (reason) {
      case "notLeader":
      case "transferring":
        return new NotLeaderError(this.id, leaderId);
      case "steppedDown":
        return this.leadershipLost();
      case "overloaded":
        return new RaftKvError({
          code: "OVERLOADED",
          message: "too many pending requests",
          nodeId: this.id,
          hint: "retry after a short backoff",
        });
      case "overloadedBytes":
        return new RaftKvError({
          code: "OVERLOADED",
          message: "uncommitted writes on this leader already hold maxUncommittedBytes",
          nodeId: this.id,
          hint: "retry after a short backoff; if it persists, check that a majority of nodes keeps up",
        });
      case "tooLarge":
        return new RaftKvError({
          code: "TOO_LARGE",
          message: "command exceeds maxEntryBytes",
          nodeId: this.id,
        });
      default:
        return new RaftKvError({
          code: "INTERNAL",
          message: `unexpected refusal ${reason}`,
          nodeId: this.id,
        });
    }
  }
}

/** Quiet ticks after which a commit-index-only hard state is written on its own. */
const UNWRITTEN_HARD_STATE_TICKS = 10;

/** A bad image or checksum, as opposed to a failing disk. */
function isCorrupt(err: unknown): boolean {
  return err instanceof RaftKvError && (err.code === "CORRUPT" || err.code === "INVALID_ARGUMENT");
}

function isLeaderReplication(m: Message): boolean {
  return m.type === "append" || m.type === "snapshot";
}

/** "Not the leader": carries the leader's id (or null) so the caller can redirect. */
export class NotLeaderError extends RaftKvError {
  readonly leaderId: NodeId | null;
  constructor(nodeId: NodeId, leaderId: NodeId | null) {
    super({
      code: leaderId === null ? "NO_LEADER" : "NOT_LEADER",
      message:
        leaderId === null
          ? "no leader is known right now"
          : `node ${nodeId} is not the leader; node ${leaderId} is`,
      nodeId,
      hint:
        leaderId === null
          ? "retry shortly; an election is probably under way"
          : `send the request to node ${leaderId}`,
    });
    this.leaderId = leaderId;
  }
}
