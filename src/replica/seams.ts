// The seams one node's loop talks to: storage, message sending, the state machine, the clock.
// Structural types, so the real adapters and their in-memory twins both fit.

import type { Entry, HardState, Message, SnapshotMeta } from "../core/types.ts";

/** The part of storage the loop needs (src/storage implements it on files and in memory). */
export interface ReplicaStorage {
  save(hardState: HardState | null, entries: readonly Entry[], sync: boolean): Promise<void>;
  /** Saves this node's snapshot from its chunks (null after the last); returns the meta with the
   *  image's CRC32C. */
  saveSnapshotStream(
    meta: Omit<SnapshotMeta, "crc32c" | "sizeBytes"> & { readonly sizeBytes: number | null },
    nextChunk: () => Uint8Array | null,
  ): Promise<SnapshotMeta>;
  writeSnapshotChunk(meta: SnapshotMeta, offset: number, data: Uint8Array): Promise<void>;
  /** Part of the snapshot being received (all its chunks written), to verify it before installing. */
  readIncomingSnapshotChunk(meta: SnapshotMeta, offset: number, length: number): Promise<Uint8Array>;
  /** Checks size and CRC32C of the received snapshot (CORRUPT if wrong, replacing nothing), then makes
   *  it the newest snapshot durably and discards the log it covers. */
  installIncomingSnapshot(meta: SnapshotMeta): Promise<void>;
  readSnapshotChunk(meta: SnapshotMeta, offset: number, length: number): Promise<Uint8Array>;
}

export interface MessageSender {
  send(messages: readonly Message[]): void;
}

/** A state machine's image at one applied index, read in chunks so it is never in memory whole. */
export interface SnapshotSource {
  readonly appliedIndex: number;
  /** Total bytes of all the chunks; null when known only after the last one (the consumer counts). */
  readonly sizeBytes: number | null;
  /** The next chunk, or null after the last. */
  next(): Uint8Array | null;
  /** Called once, when done with it (read to the end or not). */
  close(): void;
}

/** Any deterministic replicated state machine (the KV store is one). */
export interface StateMachine<R> {
  readonly appliedIndex: number;
  apply(index: number, data: Uint8Array): R;
  applyNoop(index: number): void;
  /** The image as of now; entries applied before close() must not change what it reads. */
  snapshotStream(): SnapshotSource;
}

/** A state machine being rebuilt from a snapshot image pushed in chunks (handed over: not changed
 *  afterwards). The state machine it replaces keeps serving, untouched, until commit(); call abort()
 *  instead of commit() to give up (after a bad image, or when the snapshot cannot be installed). */
export interface StateMachineRestore<R> {
  /** Throws CORRUPT when what was pushed so far cannot be a valid image. */
  push(chunk: Uint8Array): void;
  /** Checks the whole image and builds the new state machine; throws CORRUPT when the image is bad.
   *  Changes nothing of the current state machine. */
  finish(): StateMachine<R>;
  /** The state machine finish() built replaces the current one, which may release what it held. */
  commit(): void;
  abort(): void;
}

/** Starts replacing the state machine from a snapshot image of `sizeBytes` (installed from the leader),
 *  the snapshot `meta` describes. */
export type RestoreStateMachine<R> = (sizeBytes: number, meta: SnapshotMeta) => StateMachineRestore<R>;

/** Monotonic local time in milliseconds; the node's ticks are counted on the same clock. */
export interface Clock {
  nowMs(): number;
}
