// The core's vocabulary: entries, hard state, messages, snapshots and the Ready it hands back.
// Everything here is plain data so that the codec, the WAL and the simulator can share it.

import type { Membership } from "./membership.ts";

export type NodeId = number;

/** Entry kinds: a NO-OP appended by each new leader (§8, thesis §6.4), an opaque state-machine command,
 *  or a configuration (thesis §4.3: its data is the whole new Membership, encoded by membership.ts). */
export type EntryKind = "noop" | "command" | "config";

export interface Entry {
  /** 1-based log index. */
  readonly index: number;
  readonly term: number;
  readonly kind: EntryKind;
  /** Opaque command bytes (empty for a NO-OP). */
  readonly data: Uint8Array;
}

/** State that must survive a crash before the messages that depend on it leave (Figure 2). */
export interface HardState {
  readonly term: number;
  /** Candidate voted for in `term`, or null. */
  readonly votedFor: NodeId | null;
  readonly commitIndex: number;
}

export interface SnapshotMeta {
  /** Last log index the snapshot covers. */
  readonly index: number;
  readonly term: number;
  /** Size of the serialized state-machine image in bytes. */
  readonly sizeBytes: number;
  /** CRC32C of the whole image. */
  readonly crc32c: number;
  /** The configuration in effect at `index` (absent in snapshots written before membership changes:
   *  then the bootstrap configuration stands). */
  readonly membership?: Membership;
}

// ---- Messages (peer RPCs). Every message carries from, to and the sender's term. ----

interface MessageBase {
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: number;
}

export interface AppendEntries extends MessageBase {
  readonly type: "append";
  readonly prevLogIndex: number;
  readonly prevLogTerm: number;
  readonly entries: readonly Entry[];
  readonly leaderCommit: number;
  /** Leader's heartbeat round when this was sent; echoed back for leases and ReadIndex. */
  readonly round: number;
}

export interface AppendEntriesResponse extends MessageBase {
  readonly type: "appendResponse";
  readonly success: boolean;
  /** On success: the index of the last entry now known to match. On failure: the prevLogIndex rejected. */
  readonly matchIndex: number;
  /** Fast backtracking hints on failure (thesis §5.3 optimization): conflicting term (0 if none) and
   *  the first index this follower holds for that term, or its last index + 1 if its log is short. */
  readonly conflictTerm: number;
  readonly conflictIndex: number;
  /** Echo of the leader's round. */
  readonly round: number;
}

export interface RequestVote extends MessageBase {
  readonly type: "vote";
  /** Pre-vote (thesis §9.6): term is the term the candidate would use; no state changes on receipt. */
  readonly preVote: boolean;
  readonly lastLogIndex: number;
  readonly lastLogTerm: number;
  /** Sent after TimeoutNow (leadership transfer): voters ignore their leader-contact guard. */
  readonly transfer: boolean;
}

export interface RequestVoteResponse extends MessageBase {
  readonly type: "voteResponse";
  readonly preVote: boolean;
  readonly granted: boolean;
  /** Ticks of the previous leader's lease this voter may still have to honour (thesis §6.4.1). */
  readonly leaseRemainingTicks: number;
}

export interface InstallSnapshot extends MessageBase {
  readonly type: "snapshot";
  readonly meta: SnapshotMeta;
  /** Byte offset of this chunk in the image. */
  readonly offset: number;
  /** Chunk bytes. The core emits this empty with `length` set; the host fills it from its snapshot file. */
  readonly data: Uint8Array;
  readonly length: number;
  readonly done: boolean;
  readonly round: number;
}

export interface InstallSnapshotResponse extends MessageBase {
  readonly type: "snapshotResponse";
  readonly snapshotIndex: number;
  /** Next offset the follower expects (== sizeBytes once installed); -1 to ask for a restart at 0. */
  readonly nextOffset: number;
  readonly installed: boolean;
  readonly round: number;
}

export interface TimeoutNow extends MessageBase {
  readonly type: "timeoutNow";
}

export type Message =
  | AppendEntries
  | AppendEntriesResponse
  | RequestVote
  | RequestVoteResponse
  | InstallSnapshot
  | InstallSnapshotResponse
  | TimeoutNow;

export type MessageType = Message["type"];

// ---- What the core hands back. ----

/** A ReadIndex read that became safe: serve it once the state machine has applied `index`. */
export interface ReadState {
  readonly requestId: number;
  readonly index: number;
}

/** A read the core refused (not leader, stepped down, too many pending). */
export interface ReadFailure {
  readonly requestId: number;
  readonly reason: "notLeader" | "overloaded" | "steppedDown";
  readonly leaderId: NodeId | null;
}

/** A chunk of an incoming snapshot to write at `offset` into the pending snapshot file. */
export interface SnapshotChunk {
  readonly meta: SnapshotMeta;
  readonly offset: number;
  readonly data: Uint8Array;
}

/** Why the core refused a peer message that a correct peer never sends (a forged or buggy peer):
 *  refused messages change nothing; the host logs and counts them (assertions stay for our own bugs). */
export type CoreRefusalReason =
  /** An AppendEntries or InstallSnapshot in our term from a node that is not its leader. */
  | "secondLeader"
  /** A term further above ours than MAX_TERM_JUMP: one message must not exhaust the term space. */
  | "termJump"
  /** Entries that would replace entries we know are committed (§5.4 Leader Completeness). */
  | "conflictsWithCommitted"
  /** A response acknowledging log positions beyond the end of our log. */
  | "beyondOurLog"
  /** A vote response reporting more of an old lease than any voter can know of. */
  | "badLeaseReport"
  /** A received snapshot whose image failed verification; the sender is asked to start again. */
  | "snapshotRejected"
  /** A message from a node removed from the cluster (thesis §4.2.3: removed servers must not disrupt). */
  | "removedMember";

export interface CoreRefusal {
  readonly from: NodeId;
  readonly type: MessageType;
  readonly term: number;
  readonly reason: CoreRefusalReason;
  readonly detail: string;
}

export interface Ready {
  /** Present when term, vote or commit index changed. */
  readonly hardState: HardState | null;
  /** Entries to append; the first may overwrite an existing index, in which case the suffix from
   *  there is truncated first. */
  readonly entries: readonly Entry[];
  /** Hard state and entries must be fsynced before `messages` leave (votes, term changes, acks, and
   *  the commit of a configuration entry, which a crash must not take back). */
  readonly mustSync: boolean;
  /** Term or vote changed: nothing may leave before the hard state is durable (a vote must not be
   *  forgotten). When false, a leader may send its appends before its own write completes. */
  readonly termOrVoteChanged: boolean;
  /** Incoming snapshot chunks to write (follower). */
  readonly snapshotChunks: readonly SnapshotChunk[];
  /** A fully received snapshot (its chunks are in `snapshotChunks` of this or earlier Readys). The host
   *  verifies the whole image, persists it, restores the state machine from it and discards the log it
   *  covers, then calls snapshotInstalled(meta) — or snapshotRejected(meta, why) if the image is bad,
   *  having replaced nothing. The acknowledgement leaves only after that, in a later Ready. */
  readonly installSnapshot: SnapshotMeta | null;
  readonly messages: readonly Message[];
  /** Committed entries to apply, in order. */
  readonly committedEntries: readonly Entry[];
  readonly readStates: readonly ReadState[];
  readonly readFailures: readonly ReadFailure[];
  /** True when the role, leader or term changed in this batch (pending proposals may need failing). */
  readonly softStateChanged: boolean;
  /** Peer messages refused since the last Ready (to log and count). */
  readonly refused: readonly CoreRefusal[];
}

export type Role = "follower" | "preCandidate" | "candidate" | "leader";

export interface SoftState {
  readonly role: Role;
  readonly leaderId: NodeId | null;
  readonly term: number;
}

/** Why a lease read cannot be served locally right now. */
export type LeaseStatus =
  | {
      readonly ok: true;
      /** The lease holds while this node's tick clock is below this (compare against real time at the edge). */
      readonly validUntilTick: number;
      /** Serve only once the state machine has applied at least this index (the leader's NO-OP). */
      readonly minAppliedIndex: number;
    }
  | {
      readonly ok: false;
      readonly reason: "notLeader" | "noLease" | "waitingOldLease" | "noopNotApplied";
    };

/** What the core says about a configuration change. */
export type ConfChangeResult =
  | { readonly ok: true; readonly index: number; readonly term: number }
  | {
      readonly ok: false;
      readonly reason: "notLeader" | "transferring" | "changeInFlight" | "invalid" | "learnerBehind";
      /** What is wrong and what to do, for the operator. */
      readonly detail: string;
      readonly leaderId: NodeId | null;
    };

/** What the core says about a proposal. */
export type ProposeResult =
  | { readonly ok: true; readonly index: number; readonly term: number }
  | {
      readonly ok: false;
      readonly reason: "notLeader" | "overloaded" | "overloadedBytes" | "tooLarge" | "transferring";
      readonly leaderId: NodeId | null;
    };
