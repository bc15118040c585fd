// The Storage seam the replica calls: persist Ready batches, snapshots in and out, and recover on open.

import type { Entry, HardState, SnapshotMeta } from "../core/types.ts";

export interface RecoveredState {
  /** {term: 0, votedFor: null, commitIndex: 0} when fresh. */
  hardState: HardState;
  /** Newest valid snapshot. */
  snapshot: SnapshotMeta | null;
  /** Log entries after the snapshot, contiguous, in order. */
  entries: Entry[];
  /** The data folder's incarnation (identity.ts): made with the folder, kept for its life. Absent from
   *  a storage that keeps none (the in-memory twin, unless given one). */
  incarnation?: string;
}

/** A snapshot's meta before its image has been read: the CRC32C is not known yet, and the size is known
 *  only when the image was sized before it was written (null: counted while writing). */
export type SnapshotStreamMeta = Omit<SnapshotMeta, "crc32c" | "sizeBytes"> & {
  readonly sizeBytes: number | null;
};

export interface Storage {
  /** Open (creating if needed), lock the folder, check identity, recover. */
  open(): Promise<RecoveredState>;
  /** Persist a Ready: hardState (if not null) and entries; entries[0] may be <= last index, meaning
   *  "truncate the suffix from entries[0].index, then append". When sync is true, resolve only after
   *  it is durable (one fdatasync for the whole call). Throws RaftKvError code "STORAGE" on any write
   *  error (ENOSPC etc.); after such an error the storage refuses further writes (the node must stop
   *  acknowledging; a restart recovers). */
  save(hardState: HardState | null, entries: readonly Entry[], sync: boolean): Promise<void>;
  /** Store a snapshot image taken by this node's state machine: write to a temp file, fsync, rename,
   *  fsync dir; then compact: remove WAL segments wholly covered by meta.index, and old snapshots
   *  beyond `retainSnapshots` (default 2). */
  saveSnapshot(meta: SnapshotMeta, image: Uint8Array): Promise<void>;
  /** saveSnapshot with the image taken chunk by chunk from `nextChunk` (null after the last; exactly
   *  `sizeBytes` in all), so that it is never in memory whole; the CRC32C is computed on the way.
   *  Returns the full meta. Chunks are asked for while earlier ones are being written. */
  saveSnapshotStream(meta: SnapshotStreamMeta, nextChunk: () => Uint8Array | null): Promise<SnapshotMeta>;
  /** Incoming snapshot from a leader, chunk by chunk (offset 0 restarts). */
  writeSnapshotChunk(meta: SnapshotMeta, offset: number, data: Uint8Array): Promise<void>;
  /** Part of the snapshot being received (its chunks written so far), read back to check the image
   *  before installing it. */
  readIncomingSnapshotChunk(meta: SnapshotMeta, offset: number, length: number): Promise<Uint8Array>;
  /** The last chunk arrived: verify size and crc32c (throw CORRUPT if wrong), make it the newest
   *  snapshot durably, and discard the whole log (the log restarts after meta.index). Its image is
   *  then read back with readSnapshotChunk. */
  installIncomingSnapshot(meta: SnapshotMeta): Promise<void>;
  /** Newest snapshot image for restoring the state machine at start (null if none). */
  loadSnapshotImage(): Promise<{ meta: SnapshotMeta; image: Uint8Array } | null>;
  /** Read part of the newest snapshot to send to a lagging follower. */
  readSnapshotChunk(meta: SnapshotMeta, offset: number, length: number): Promise<Uint8Array>;
  close(): Promise<void>;
}

/** What storage logs: pino-compatible call shape (fields first, then the message). */
export interface StorageLogger {
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
}

/** Writes to stderr; the default when no logger is passed, so recovery warnings are never lost. */
export const stderrLogger: StorageLogger = {
  info: (fields, message) => console.error(`storage: ${message}`, fields),
  warn: (fields, message) => console.error(`storage WARNING: ${message}`, fields),
};

export const DEFAULT_MAX_SEGMENT_BYTES = 64 * 1024 * 1024;
export const DEFAULT_RETAIN_SNAPSHOTS = 2;
/** Entries records are split at about this many payload bytes (one larger entry goes alone). */
export const MAX_ENTRIES_RECORD_BYTES = 1024 * 1024;

export const EMPTY_HARD_STATE: HardState = { term: 0, votedFor: null, commitIndex: 0 };
