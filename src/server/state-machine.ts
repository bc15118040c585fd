// The state machine an embedded Raft node replicates (the public contract of raftkv/node), and its
// adapter to the replica loop's seam (src/replica/seams.ts), which also keeps the applied index.
//
// Lifecycle on one node: at start the node restores the newest snapshot it has (restore(), then the
// image's chunks, finish(), commit()), then applies the committed log after it (apply() for commands, applyNoop() for each
// new leader's NO-OP), then follows the log: every committed entry, once, in index order, the same on
// every node. Every snapshotEveryEntries applied entries it takes a snapshot (snapshot()) into its data
// folder and compacts the log; a follower too far behind gets the leader's snapshot through restore().
//
// A state machine that persists itself (its data and the index applied, written together) reports that
// index at start (persistedIndex()); the node then skips restore() when its newest snapshot is not ahead
// of it, and applies the log after it only. Nothing here assumes the state lives in memory: apply() is
// told each entry's index, and restore() the snapshot's index and term.

import type { SnapshotMeta } from "../core/types.ts";
import { assert } from "../lib/assert.ts";
import { RaftKvError } from "../lib/errors.ts";
import type {
  StateMachine as ReplicaStateMachine,
  SnapshotSource,
  StateMachineRestore,
} from "../replica/seams.ts";

/**
 * A deterministic state machine replicated by a Raft node. Every node applies the same commands in the
 * same order and must reach the same state and results: no clocks, randomness or local settings in
 * apply(). Methods are called one at a time, from the node's event loop; an exception thrown from any
 * of them stops the node (it would otherwise diverge from the others).
 *
 * @typeParam R - What apply() returns: the result a proposal resolves with on the node that proposed it.
 */
export interface StateMachine<R = unknown> {
  /**
   * Applies the committed command at log index `index` (each index once, ascending, with no gaps
   * other than NO-OP entries) and returns its result. Bytes that do not decode must give a result
   * (an error value), the same on every node, rather than throw.
   */
  apply(command: Uint8Array, index: number): R;
  /** Called for the log's NO-OP entries (each new leader's first entry); leave it out unless the state
   *  machine counts indexes. */
  applyNoop?(index: number): void;
  /**
   * The whole state as of the last apply, as an image read chunk by chunk. Applies that follow before
   * close() must not change what it reads (copy what it needs, or keep the old versions). The node
   * writes it to its data folder and sends it to followers that fell behind the compacted log.
   */
  snapshot(): SnapshotReader;
  /**
   * Starts replacing the whole state with a snapshot image (the node's own at start, or the leader's).
   * The node pushes the image's chunks in order, then calls finish() (build and check the new state,
   * changing nothing yet) and commit() (switch to it), or abort() to give up at any point before
   * commit(), e.g. when the image is bad or the snapshot file cannot be installed. Until commit() the
   * current state is untouched and keeps serving reads.
   */
  restore(snapshot: SnapshotInfo): SnapshotWriter;
  /**
   * For a state machine that persists itself: the index of the last entry its stored state includes,
   * called once at start before anything else. The state must then be exactly the result of applying
   * the entries through that index (never ahead of what it stored with them). The node restores its
   * newest snapshot only if the snapshot is ahead of this index, and applies the log after it. Leave it
   * out for a state machine that starts empty (the node restores the snapshot, then replays the log).
   */
  persistedIndex?(): number;
  /** Called once when the node has stopped: release files and memory (the node waits for a promise). */
  close?(): void | Promise<void>;
}

/** A state image being read, chunk by chunk, so it never needs to be in memory whole. */
export interface SnapshotReader {
  /** Total bytes of all the chunks; null when known only once the last chunk is out (the node counts). */
  readonly sizeBytes: number | null;
  /** The next chunk (any size, at least one byte), or null after the last. */
  next(): Uint8Array | null;
  /** Called once, when the node is done with the image (read to the end or not). */
  close(): void;
}

/** A state image being written back (restore), chunk by chunk, then switched to. */
export interface SnapshotWriter {
  /** The next chunk of the image, in order; handed over (the node does not change it afterwards).
   *  May throw CORRUPT as soon as what was pushed cannot be a valid image. */
  push(chunk: Uint8Array): void;
  /** The image is complete: check it whole and build the new state, without changing the current one.
   *  Throw if it is not valid (any error here, or from push, counts as a bad image: a leader's image is
   *  then asked for again, the node's own at start makes it refuse to start, naming the snapshot). */
  finish(): void;
  /** Switch to the state finish() built; the old one may be released. */
  commit(): void;
  /** Give up: discard what was pushed or built; the current state stays. */
  abort(): void;
}

/** Which snapshot an image belongs to. */
export interface SnapshotInfo {
  /** The last log index the image includes. */
  readonly index: number;
  /** The term of that entry. */
  readonly term: number;
  /** The image's size in bytes. */
  readonly sizeBytes: number;
}

/** The user's state machine seen through the replica loop's seam: counts the applied index, wraps
 *  snapshots and restores. A restore hands the loop a new one at the snapshot's index (the state inside
 *  the user's object switches at commit()). */
export class AppliedStateMachine<R> implements ReplicaStateMachine<R> {
  constructor(
    readonly user: StateMachine<R>,
    private applied = 0,
  ) {}

  get appliedIndex(): number {
    return this.applied;
  }

  apply(index: number, data: Uint8Array): R {
    this.advance(index);
    return this.user.apply(data, index);
  }

  applyNoop(index: number): void {
    this.advance(index);
    this.user.applyNoop?.(index);
  }

  snapshotStream(): SnapshotSource {
    const image = this.user.snapshot();
    return {
      appliedIndex: this.applied,
      sizeBytes: image.sizeBytes,
      next: () => image.next(),
      close: () => image.close(),
    };
  }

  /** A restore of the snapshot `meta` describes; finish() answers with the state machine at its index. */
  restore(meta: SnapshotMeta): StateMachineRestore<R> {
    const writer = this.user.restore({ index: meta.index, term: meta.term, sizeBytes: meta.sizeBytes });
    return {
      push: (chunk) => asImageError(meta, () => writer.push(chunk)),
      finish: () => {
        asImageError(meta, () => writer.finish());
        return new AppliedStateMachine(this.user, meta.index);
      },
      commit: () => writer.commit(),
      abort: () => writer.abort(),
    };
  }

  private advance(index: number): void {
    assert(index === this.applied + 1, () => `apply index ${index}, expected ${this.applied + 1}`);
    this.applied = index;
  }
}

/** Runs a step of a restore; whatever it throws means the image is bad: a CORRUPT RaftKvError (a leader's
 *  image is then asked for again; the node's own at start is refused, naming the snapshot). */
function asImageError(meta: SnapshotMeta, step: () => void): void {
  try {
    step();
  } catch (err) {
    if (err instanceof RaftKvError && err.code === "CORRUPT") throw err;
    throw new RaftKvError({
      code: "CORRUPT",
      message: `the state machine refused the snapshot image at index ${meta.index}: ${err instanceof Error ? err.message : String(err)}`,
      cause: err,
    });
  }
}
