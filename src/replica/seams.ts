// The seams one node's loop talks to: storage, message sending, the state machine, the clock.
// Structural types, so the real adapters and their in-memory twins both fit.

import type { Entry, HardState, Message, SnapshotMeta } from "../core/types.ts";

/** The part of storage the loop needs (src/storage implements it on files and in memory). */
export interface ReplicaStorage {
  save(hardState: HardState | null, entries: readonly Entry[], sync: boolean): Promise<void>;
  saveSnapshot(meta: SnapshotMeta, image: Uint8Array): Promise<void>;
  writeSnapshotChunk(meta: SnapshotMeta, offset: number, data: Uint8Array): Promise<void>;
  installIncomingSnapshot(meta: SnapshotMeta): Promise<Uint8Array>;
  readSnapshotChunk(meta: SnapshotMeta, offset: number, length: number): Promise<Uint8Array>;
}

export interface MessageSender {
  send(messages: readonly Message[]): void;
}

/** Any deterministic replicated state machine (the KV store is one). */
export interface StateMachine<R> {
  readonly appliedIndex: number;
  apply(index: number, data: Uint8Array): R;
  applyNoop(index: number): void;
  snapshot(): Uint8Array;
}

/** Replaces the state machine from a snapshot image (installed from the leader). */
export type RestoreStateMachine<R> = (image: Uint8Array) => StateMachine<R>;

/** Monotonic local time in milliseconds; the node's ticks are counted on the same clock. */
export interface Clock {
  nowMs(): number;
}
