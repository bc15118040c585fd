// The KV store as a state machine of the embedding API (state-machine.ts): a StoreStateMachine
// (src/kv/store-state-machine.ts) persisting itself in a state store: an LmdbStore in the data folder's
// state/ (`raftkv serve`, `raftkv local`), or a MemDurableStore (stateStore "memory": tests, simulator).
//
// For services built on the node's state (the etcd MVCC API): `current` is the StoreStateMachine now in
// use and `store` its store (reads, views); read them inside RaftNode.read() or synchronously in the
// node's loop, never across an await, since a restore from the leader's snapshot replaces both.
//
// At this step the store is still rebuilt at every start, as the value file was: the node restores its
// newest snapshot file into an empty store and replays the log (state/ is wiped when first opened). A
// restore builds the new state in a store of its own (state/<n>) while the current one keeps serving
// reads, then swaps them and closes the old one.

import { rmSync } from "node:fs";
import type { KvResult } from "../kv/result.ts";
import { StoreStateMachine } from "../kv/store-state-machine.ts";
import { RaftKvError } from "../lib/errors.ts";
import type { DurableStore } from "../store/durable-store.ts";
import { LmdbStore } from "../store/lmdb-store.ts";
import { MemDurableStore } from "../store/mem-durable-store.ts";
import type { SnapshotInfo, SnapshotReader, SnapshotWriter, StateMachine } from "./embed.ts";

export interface KvStateOptions {
  /** The folder of the LMDB state store (the data folder's state/), or null to keep the state in memory. */
  readonly stateDir: string | null;
  /** Client sessions remembered for exactly-once writes; must be equal on every node. */
  readonly maxSessions: number;
  /** Named in errors. */
  readonly nodeId?: number;
}

interface Opened {
  readonly store: DurableStore;
  /** The LMDB folder, or null in memory. */
  readonly dir: string | null;
}

export class KvState implements StateMachine<KvResult> {
  // Opened on first use: the store lives in the data folder, which the node creates when it starts.
  private opened: Opened | null = null;
  private sm: StoreStateMachine | null = null;
  private generation = 0;
  /** Closing of stores replaced by a restore (awaited by close()). */
  private retiring: Promise<void>[] = [];

  constructor(private readonly o: KvStateOptions) {}

  /** The state machine to read from (replaced by a restore: do not keep it across awaits). */
  get current(): StoreStateMachine {
    if (this.sm === null) {
      if (this.o.stateDir !== null) rmSync(this.o.stateDir, { recursive: true, force: true });
      this.opened = this.openStore();
      this.sm = new StoreStateMachine({ store: this.opened.store, maxSessions: this.o.maxSessions });
    }
    return this.sm;
  }

  /** The store under `current` (replaced with it by a restore). */
  get store(): DurableStore {
    void this.current;
    return this.opened!.store;
  }

  apply(command: Uint8Array, index: number): KvResult {
    return this.current.apply(index, command);
  }

  applyNoop(index: number): void {
    this.current.applyNoop(index);
  }

  snapshot(): SnapshotReader {
    return this.current.snapshotStream();
  }

  restore(snapshot: SnapshotInfo): SnapshotWriter {
    void this.current; // the first store is opened (and state/ wiped) before a second one is made
    const fresh = this.openStore();
    let restoring: ReturnType<typeof StoreStateMachine.restoring>;
    try {
      restoring = StoreStateMachine.restoring(snapshot.sizeBytes, {
        store: fresh.store,
        maxSessions: this.o.maxSessions,
      });
    } catch (err) {
      this.retire(fresh);
      throw err;
    }
    let next: StoreStateMachine | null = null;
    return {
      push: (chunk) => restoring.push(chunk),
      finish: () => {
        const built = restoring.finish();
        if (built.appliedIndex !== snapshot.index)
          throw new RaftKvError({
            code: "CORRUPT",
            message: `snapshot file says index ${snapshot.index} but its image is at ${built.appliedIndex}`,
            hint: "move the newest file in snap/ aside; the node falls back to an older snapshot and the log",
          });
        next = built;
      },
      commit: () => {
        if (next === null) throw new Error("KvState: commit() before finish()");
        if (this.opened !== null) this.retire(this.opened);
        this.opened = fresh;
        this.sm = next;
      },
      abort: () => this.retire(fresh),
    };
  }

  async close(): Promise<void> {
    const opened = this.opened;
    this.opened = null;
    this.sm = null;
    if (opened !== null) await opened.store.close();
    await Promise.all(this.retiring);
    this.retiring = [];
  }

  private openStore(): Opened {
    if (this.o.stateDir === null) return { store: new MemDurableStore(), dir: null };
    const dir = `${this.o.stateDir}/${this.generation++}`;
    rmSync(dir, { recursive: true, force: true });
    const where = this.o.nodeId === undefined ? {} : { nodeId: this.o.nodeId };
    return { store: LmdbStore.open({ dir, ...where }), dir };
  }

  /** Closes a store no longer used and removes its folder, in the background (close() waits). */
  private retire(s: Opened): void {
    this.retiring.push(
      s.store.close().then(
        () => {
          if (s.dir !== null) rmSync(s.dir, { recursive: true, force: true });
        },
        () => undefined, // a store being thrown away: its failure changes nothing
      ),
    );
  }
}
