// The node-side MVCC service (MvccApi, mvcc-api.ts) over a Raft node whose state machine serves MVCC
// commands (a StoreStateMachine: mvcc-state.ts, or the node's KV state once it returns MVCC results):
// writes go through the log; reads are serializable (this node's applied state) or linearizable (the
// node's lease read, or readIndex); a read-only Txn is a read, as etcd serves it; watchers are fed by the
// watch hub from the applied stream; the lease keeper decides expiry on the leader's clock and proposes
// LeaseRevoke; keepalives and TimeToLive are answered by the leader.

import { randomInt } from "node:crypto";
import type { MonotonicTime } from "../clock/monotonic-clock.ts";
import { MonotonicClock } from "../clock/monotonic-clock.ts";
import type { NodeId } from "../core/types.ts";
import { encodeMvccCommand } from "../kv/mvcc-codec.ts";
import { mvccError, type RangeBounds } from "../kv/mvcc-store.ts";
import type {
  CompactOp,
  DeleteRangeOp,
  MvccCommand,
  MvccResult,
  PutOp,
  RangeRequest,
  RevisionChanges,
  TxnOp,
} from "../kv/mvcc-types.ts";
import { isReadOnlyTxn } from "../kv/mvcc-validate.ts";
import type { StoreResult, StoreStateMachine } from "../kv/store-state-machine.ts";
import { RaftKvError } from "../lib/errors.ts";
import { type Consistency, NotLeaderError } from "../replica/replica.ts";
import type { MvccApi, MvccConsistency, MvccHeader, WatchDelivery, WatchRequest } from "./mvcc-api.ts";
import { LeaseKeeper } from "./mvcc-lease-keeper.ts";
import {
  DEFAULT_WATCH_HUB_OPTIONS,
  type HubWatchHandle,
  WatchHub,
  type WatchHubOptions,
} from "./mvcc-watch-hub.ts";
import type { RaftNode, SoftState } from "./raft-node.ts";

/** What MvccNode needs of a node (RaftNode fits through mvccHostOf). */
export interface MvccHost {
  readonly nodeId: NodeId;
  /** The MVCC state machine in use now (a restore may replace it). */
  state(): StoreStateMachine;
  /** Where the changes of every applied batch go, on this state and any that replaces it. */
  setChangeListener(listener: ((changes: readonly RevisionChanges[]) => void) | null): void;
  propose(command: Uint8Array): Promise<{ readonly index: number; readonly result: unknown }>;
  read<T>(fn: () => T, consistency: Consistency): Promise<T>;
  softState(): SoftState;
}

/** A node's state machine that serves MVCC commands: MvccState, or the KV server's state once it
 *  returns applyAny()'s results. */
export interface MvccStateHolder {
  /** The StoreStateMachine now (replaced by a restore). */
  readonly current: StoreStateMachine;
  /** Kept across restores. */
  setChangeListener(listener: ((changes: readonly RevisionChanges[]) => void) | null): void;
  /** Bytes the state store takes on disk (etcd's dbSize), if it knows. */
  sizeBytes?(): number;
}

/** The host of a node whose state machine holds a StoreStateMachine and answers with applyAny(). */
export function mvccHostOf<S extends MvccStateHolder>(node: RaftNode<S, StoreResult>): MvccHost {
  return {
    nodeId: node.id,
    state: () => node.stateMachine.current,
    setChangeListener: (l) => node.stateMachine.setChangeListener(l),
    propose: (c) => node.propose(c),
    read: (fn, consistency) => node.read(() => fn(), { consistency }),
    softState: () => node.softState(),
  };
}

export interface MvccNodeOptions {
  /** The read behind "linearizable" (default "lease"; "readIndex" is the etcd-like choice). */
  readonly linearizableRead?: "lease" | "readIndex";
  /** Bounds on one range answer (`more` says when they cut it). */
  readonly rangeBounds?: RangeBounds;
  readonly watch?: WatchHubOptions;
  /** How often the lease keeper looks at expiry (default 250 ms). */
  readonly leaseCheckMs?: number;
  /** Granted TTLs are at least this (etcd: 1.5 x the election timeout, rounded up; default 2 s). */
  readonly minLeaseTtlSeconds?: number;
  /** etcd's MaxLeaseTTL (9,000,000,000 s). */
  readonly maxLeaseTtlSeconds?: number;
  /** progress_notify interval (etcd: 10 minutes). */
  readonly progressNotifyMs?: number;
  readonly clock?: MonotonicTime;
  /** Draws a lease id when the client asks for 0 (default: random, 1..2^53-1). */
  readonly drawLeaseId?: () => bigint;
}

const MAX_LEASE_TTL_SECONDS = 9_000_000_000;

/** etcd's minimum lease TTL: 1.5 election timeouts, in whole seconds (rounded up). */
export function minLeaseTtlSeconds(config: { readonly electionTimeoutMaxMs: number }): number {
  return Math.max(1, Math.ceil((1.5 * config.electionTimeoutMaxMs) / 1000));
}

function deadline<T>(p: Promise<T>, budgetMs: number, nodeId: NodeId, what: string): Promise<T> {
  if (!Number.isFinite(budgetMs)) return p;
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new RaftKvError({
            code: "DEADLINE_EXCEEDED",
            message: `${what} did not finish within ${budgetMs} ms (its outcome is unknown for a write)`,
            nodeId,
          }),
        ),
      Math.max(0, budgetMs),
    );
  });
  return Promise.race([p, expired]).finally(() => clearTimeout(timer));
}

export class MvccNode implements MvccApi {
  private readonly hub: WatchHub;
  private readonly keeper: LeaseKeeper;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly linearizable: Consistency;
  private readonly bounds: RangeBounds | undefined;
  private readonly minTtl: number;
  private readonly maxTtl: number;
  private readonly drawLeaseId: () => bigint;
  private watched: StoreStateMachine;

  constructor(
    private readonly host: MvccHost,
    o: MvccNodeOptions = {},
  ) {
    this.linearizable = o.linearizableRead ?? "lease";
    this.bounds = o.rangeBounds;
    this.minTtl = o.minLeaseTtlSeconds ?? 2;
    this.maxTtl = o.maxLeaseTtlSeconds ?? MAX_LEASE_TTL_SECONDS;
    this.drawLeaseId =
      o.drawLeaseId ?? (() => BigInt(randomInt(1, 2 ** 48)) * 32n + BigInt(randomInt(32)) + 1n);
    this.watched = host.state();
    this.hub = new WatchHub(() => this.host.state(), o.watch ?? DEFAULT_WATCH_HUB_OPTIONS);
    host.setChangeListener((changes) => this.hub.publish(changes));
    const clock = o.clock ?? new MonotonicClock();
    this.keeper = new LeaseKeeper(
      {
        isLeader: () => host.softState().role === "leader",
        leases: () => {
          const s = host.state();
          return s.leaseIds().map((id) => ({ id, ttlSeconds: s.lease(id)?.grantedTtlSeconds ?? 0 }));
        },
        revoke: (id) => host.propose(encodeMvccCommand({ op: "leaseRevoke", id })),
      },
      { clock, retryMs: 1000 },
    );
    this.timers.push(
      setInterval(() => this.tick(), o.leaseCheckMs ?? 250),
      setInterval(() => this.hub.progressTick(), o.progressNotifyMs ?? 600_000),
    );
    for (const t of this.timers) t.unref();
  }

  private tick(): void {
    const s = this.host.state();
    if (s !== this.watched) {
      this.watched = s;
      this.hub.sourceChanged();
    }
    this.keeper.check();
  }

  private header(revision: number): MvccHeader {
    return { revision, raftTerm: this.host.softState().term };
  }

  private consistency(c: MvccConsistency): Consistency {
    return c === "serializable" ? "stale" : this.linearizable;
  }

  async range(request: RangeRequest, consistency: MvccConsistency, budgetMs: number) {
    const read = this.host.read(() => {
      const s = this.host.state();
      return { revision: s.revision, answer: s.mvccRange(request, this.bounds) };
    }, this.consistency(consistency));
    const { revision, answer } = await deadline(read, budgetMs, this.host.nodeId, "range");
    const header = this.header(revision);
    return "op" in answer ? { header, error: answer } : { header, result: answer };
  }

  async write(command: PutOp | DeleteRangeOp | TxnOp | CompactOp, budgetMs: number) {
    if (command.op === "txn" && isReadOnlyTxn(command)) {
      const read = this.host.read(() => this.host.state().readTxn(command), this.linearizable);
      const result = await deadline(read, budgetMs, this.host.nodeId, "txn");
      return { header: this.header(result.revision), result };
    }
    return this.propose(command, budgetMs);
  }

  private async propose(command: MvccCommand, budgetMs: number) {
    const applied = await deadline(
      this.host.propose(encodeMvccCommand(command)),
      budgetMs,
      this.host.nodeId,
      command.op,
    );
    const result = applied.result as StoreResult;
    if ("type" in result)
      throw new RaftKvError({
        code: "INTERNAL",
        message: `the state machine answered an MVCC ${command.op} with a raftkv.v1 result (${result.type})`,
        nodeId: this.host.nodeId,
      });
    return { header: this.header(result.revision), result: result as MvccResult };
  }

  async leaseGrant(id: bigint, ttlSeconds: number, budgetMs: number) {
    if (ttlSeconds > this.maxTtl) {
      const revision = this.host.state().revision;
      return {
        header: this.header(revision),
        result: { ...mvccError("invalid", "etcdserver: too large lease TTL"), revision },
      };
    }
    let leaseId = id;
    for (let tries = 0; leaseId === 0n || (id === 0n && this.host.state().lease(leaseId) !== null); tries++) {
      if (tries > 16)
        throw new RaftKvError({
          code: "INTERNAL",
          message: "could not draw an unused lease id",
          nodeId: this.host.nodeId,
        });
      leaseId = this.drawLeaseId();
    }
    const ttl = Math.max(ttlSeconds, this.minTtl);
    const out = await this.propose({ op: "leaseGrant", id: leaseId, ttlSeconds: ttl }, budgetMs);
    if (out.result.op === "leaseGrant") this.keeper.granted(leaseId, ttl);
    return out;
  }

  leaseRevoke(id: bigint, budgetMs: number) {
    return this.propose({ op: "leaseRevoke", id }, budgetMs);
  }

  private mustLead(): void {
    const s = this.host.softState();
    if (s.role !== "leader") throw new NotLeaderError(this.host.nodeId, s.leaderId);
  }

  async leaseKeepAlive(id: bigint) {
    this.mustLead();
    const { revision, ttl } = await this.host.read(() => {
      const s = this.host.state();
      return { revision: s.revision, ttl: s.lease(id)?.grantedTtlSeconds ?? null };
    }, this.linearizable);
    this.mustLead();
    this.keeper.check();
    return { header: this.header(revision), ttlSeconds: this.keeper.keepAlive(id, ttl) };
  }

  async leaseTimeToLive(id: bigint, withKeys: boolean) {
    this.mustLead();
    const { revision, info } = await this.host.read(() => {
      const s = this.host.state();
      return { revision: s.revision, info: s.lease(id) };
    }, this.linearizable);
    this.keeper.check();
    if (info === null) return { header: this.header(revision), info: null };
    const ttlSeconds = this.keeper.remainingSeconds(id) ?? info.grantedTtlSeconds;
    return { header: this.header(revision), info: { ...info, keys: withKeys ? info.keys : [], ttlSeconds } };
  }

  async leases() {
    const { revision, ids } = await this.host.read(() => {
      const s = this.host.state();
      return { revision: s.revision, ids: s.leaseIds() };
    }, this.linearizable);
    return { header: this.header(revision), ids };
  }

  watch(request: WatchRequest, onDelivery: (d: WatchDelivery) => unknown): HubWatchHandle {
    this.tick();
    return this.hub.watch(request, onDelivery);
  }

  revisions() {
    const s = this.host.state();
    return { current: s.revision, compacted: s.compacted };
  }

  async hashKv(revision: number) {
    const { current, answer } = await this.host.read(() => {
      const s = this.host.state();
      return { current: s.revision, answer: s.hashKv(revision) };
    }, "stale");
    if ("op" in answer)
      throw new RaftKvError({ code: "INVALID_ARGUMENT", message: answer.message, nodeId: this.host.nodeId });
    return { header: this.header(current), ...answer };
  }

  /** Watchers now (for metrics). */
  get watcherCount(): number {
    return this.hub.size;
  }

  /** Stops the timers and cancels the watchers (call before the node stops). */
  close(reason = "the node is stopping"): void {
    for (const t of this.timers) clearInterval(t);
    this.host.setChangeListener(null);
    this.hub.close(reason);
  }
}
