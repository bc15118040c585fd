// Core configuration in ticks, and its validation: settings that would make leases unsafe are refused.

import { RaftKvError } from "../lib/errors.ts";
import type { NodeId } from "./types.ts";

export interface CoreConfig {
  readonly id: NodeId;
  /** A new cluster's voters, including this node: the configuration until the log or a snapshot
   *  carries one (membership.ts). Empty for a node that joins an existing cluster and waits to be added. */
  readonly peers: readonly NodeId[];
  /** Leader sends a heartbeat round every this many ticks. */
  readonly heartbeatTicks: number;
  /** Election timeout is drawn uniformly from [min, max] ticks, from `seed`. */
  readonly electionTimeoutMinTicks: number;
  readonly electionTimeoutMaxTicks: number;
  /** Bound on the ratio between the fastest and slowest clock rates in the cluster (>= 1), e.g. 1.1. */
  readonly driftBound: number;
  /** Lease length in ticks; must be <= (electionTimeoutMinTicks - 1) / driftBound - 1 (thesis §6.4.1). */
  readonly leaseTicks: number;
  /** Seed of this node's PRNG (election timeout jitter). */
  readonly seed: number;
  /** Pre-vote (thesis §9.6). */
  readonly preVote: boolean;
  /** Leader steps down when no majority acknowledged it within an election timeout (thesis §6.2). */
  readonly checkQuorum: boolean;
  /** Max AppendEntries messages in flight to one follower. */
  readonly maxInflightMessages: number;
  /** Max entries in one AppendEntries. */
  readonly maxEntriesPerMessage: number;
  /** Max bytes of entry data in one AppendEntries (at least one entry is always sent). */
  readonly maxBytesPerMessage: number;
  /** Proposals not yet committed beyond which new ones are refused with "overloaded". */
  readonly maxPendingProposals: number;
  /** Bytes of command data appended but not yet committed beyond which proposals are refused with
   *  "overloadedBytes" (etcd's MaxUncommittedEntriesSize); one proposal is always accepted. */
  readonly maxUncommittedBytes: number;
  /** Bytes of entry data in flight to one follower beyond which no more AppendEntries are sent until
   *  acknowledgements arrive (etcd's MaxInflightBytes); one message is always allowed. */
  readonly maxInflightBytes: number;
  /** Max bytes of one command. */
  readonly maxEntryBytes: number;
  /** Pending ReadIndex requests beyond which reads are refused with "overloaded". */
  readonly maxPendingReads: number;
  /** Snapshot chunk size for InstallSnapshot. */
  readonly snapshotChunkBytes: number;
}

/** The largest lease that is safe for a given election timeout and drift bound, in ticks.
 *  One tick is subtracted for each side's tick quantization. */
export function maxSafeLeaseTicks(electionTimeoutMinTicks: number, driftBound: number): number {
  return Math.floor((electionTimeoutMinTicks - 1) / driftBound) - 1;
}

export function defaultCoreConfig(id: NodeId, peers: readonly NodeId[], seed: number): CoreConfig {
  const electionTimeoutMinTicks = 30;
  const driftBound = 1.1;
  return {
    id,
    peers,
    heartbeatTicks: 5,
    electionTimeoutMinTicks,
    electionTimeoutMaxTicks: 60,
    driftBound,
    leaseTicks: maxSafeLeaseTicks(electionTimeoutMinTicks, driftBound),
    seed,
    preVote: true,
    checkQuorum: true,
    maxInflightMessages: 64,
    maxEntriesPerMessage: 512,
    maxBytesPerMessage: 1 << 20,
    maxPendingProposals: 8192,
    maxUncommittedBytes: 64 << 20,
    maxInflightBytes: 32 << 20,
    maxEntryBytes: 1 << 20,
    maxPendingReads: 8192,
    snapshotChunkBytes: 256 * 1024,
  };
}

/** Refuses a configuration that is unsafe or meaningless, naming the setting. */
export function validateCoreConfig(c: CoreConfig): void {
  const fail = (setting: string, why: string): never => {
    throw new RaftKvError({
      code: "CONFIG",
      message: `invalid setting ${setting}: ${why}`,
      nodeId: c.id,
      hint: "fix the configuration and start again",
    });
  };
  const posInt = (name: string, v: number): void => {
    if (!Number.isSafeInteger(v) || v <= 0) fail(name, `must be a positive integer, got ${v}`);
  };
  if (!Number.isSafeInteger(c.id) || c.id < 0) fail("id", `must be a non-negative integer, got ${c.id}`);
  if (new Set(c.peers).size !== c.peers.length) fail("peers", `duplicate node ids in ${c.peers.join(",")}`);
  for (const p of c.peers) if (!Number.isSafeInteger(p) || p < 0) fail("peers", `bad node id ${p}`);
  if (c.peers.length > 0 && !c.peers.includes(c.id)) fail("peers", `must include this node's id ${c.id}`);
  posInt("heartbeatTicks", c.heartbeatTicks);
  posInt("electionTimeoutMinTicks", c.electionTimeoutMinTicks);
  posInt("electionTimeoutMaxTicks", c.electionTimeoutMaxTicks);
  posInt("maxInflightMessages", c.maxInflightMessages);
  posInt("maxEntriesPerMessage", c.maxEntriesPerMessage);
  posInt("maxBytesPerMessage", c.maxBytesPerMessage);
  posInt("maxPendingProposals", c.maxPendingProposals);
  posInt("maxUncommittedBytes", c.maxUncommittedBytes);
  posInt("maxInflightBytes", c.maxInflightBytes);
  posInt("maxEntryBytes", c.maxEntryBytes);
  posInt("maxPendingReads", c.maxPendingReads);
  posInt("snapshotChunkBytes", c.snapshotChunkBytes);
  if (c.heartbeatTicks * 2 > c.electionTimeoutMinTicks)
    fail("heartbeatTicks", `must be at most half of electionTimeoutMinTicks (${c.electionTimeoutMinTicks})`);
  if (c.electionTimeoutMaxTicks < c.electionTimeoutMinTicks)
    fail("electionTimeoutMaxTicks", "must not be below electionTimeoutMinTicks");
  if (!(c.driftBound >= 1 && c.driftBound <= 2)) fail("driftBound", `must be in [1, 2], got ${c.driftBound}`);
  const maxLease = maxSafeLeaseTicks(c.electionTimeoutMinTicks, c.driftBound);
  if (!Number.isSafeInteger(c.leaseTicks) || c.leaseTicks < 0)
    fail("leaseTicks", `must be a non-negative integer, got ${c.leaseTicks}`);
  if (c.leaseTicks > maxLease)
    fail(
      "leaseTicks",
      `a lease of ${c.leaseTicks} ticks is unsafe: it must be at most (electionTimeoutMin - 1) / driftBound - 1 = ${maxLease} ticks`,
    );
  if (c.leaseTicks <= c.heartbeatTicks)
    fail(
      "leaseTicks",
      `must exceed heartbeatTicks (${c.heartbeatTicks}) or the lease never holds between rounds`,
    );
}
