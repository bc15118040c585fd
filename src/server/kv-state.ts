// The KV store as a state machine of the embedding API (state-machine.ts): a StoreStateMachine
// (src/kv/store-state-machine.ts) persisting itself in a state store: an LmdbStore in the data folder's
// state/ (`raftkv serve`, `raftkv local`), or a MemDurableStore (stateStore "memory": tests, simulator).
//
// For services built on the node's state (the etcd MVCC API): `current` is the StoreStateMachine now in
// use and `store` its store (reads, views); read them inside RaftNode.read() or synchronously in the
// node's loop, never across an await, since a restore from the leader's snapshot replaces both.
//
// Restart without restore: the LMDB store keeps its data and applied index across restarts
// (persistedIndex()); the node restores a snapshot file only when the snapshot is ahead of the store,
// and replays the log after the store's index. The store lives in state/<generation>/, and state/CURRENT
// names the generation in use (written atomically: temp file, fsync, rename, fsync of state/). A restore
// builds a new generation while the current one keeps serving reads; commit() makes CURRENT name it
// and closes the old one in the background. After a crash, CURRENT may name a store that LMDB had not
// made durable whole: it then opens at an index below the snapshot the node has (installed durably
// before the switch), so the node restores that snapshot again into a fresh generation. A store at
// index 0 is always started afresh (a load cut short leaves data at index 0).

import * as fs from "node:fs";
import { join } from "node:path";
import type { RevisionChanges } from "../kv/mvcc-types.ts";
import { type StoreResult, StoreStateMachine } from "../kv/store-state-machine.ts";
import { RaftKvError } from "../lib/errors.ts";
import type { DurableStore } from "../store/durable-store.ts";
import { LmdbStore } from "../store/lmdb-store.ts";
import { MemDurableStore } from "../store/mem-durable-store.ts";
import type { SnapshotInfo, SnapshotReader, SnapshotWriter, StateMachine } from "./embed.ts";

const CURRENT_FILE = "CURRENT";
const STORE_REVISION = Symbol("storeRevision");

/** The store revision after the raftkv.v1 write that answered `r` (0 when it is not known). */
export function storeRevisionOf(r: StoreResult): number {
  return (r as { [STORE_REVISION]?: number })[STORE_REVISION] ?? 0;
}
const GENERATION_RE = /^\d{1,15}$/;

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

export class KvState implements StateMachine<StoreResult> {
  // Opened on first use: the store lives in the data folder, which the node creates when it starts.
  private opened: Opened | null = null;
  private sm: StoreStateMachine | null = null;
  private generation = 0;
  /** Closing of stores replaced by a restore (awaited by close()). */
  private retiring: Promise<void>[] = [];
  /** Where the MVCC changes of each applied batch go (the watch hub), kept across restores. */
  private changeListener: ((changes: readonly RevisionChanges[]) => void) | null = null;
  private closed = false;

  constructor(private readonly o: KvStateOptions) {}

  /** The state machine to read from (replaced by a restore: do not keep it across awaits). */
  get current(): StoreStateMachine {
    if (this.sm === null) {
      // Read after close() (a late callback): never open the store again, which would make a new
      // generation in state/ after the node stopped.
      if (this.closed)
        throw new RaftKvError({
          code: "SHUTTING_DOWN",
          message: `the KV state of node ${this.o.nodeId ?? "?"} is closed`,
          ...(this.o.nodeId === undefined ? {} : { nodeId: this.o.nodeId }),
        });
      this.opened = this.openCurrent();
      this.sm = new StoreStateMachine({ store: this.opened.store, maxSessions: this.o.maxSessions });
      this.sm.setChangeListener(this.changeListener);
    }
    return this.sm;
  }

  /** Sets where the MVCC changes of each applied batch go (MvccNode's watch hub). */
  setChangeListener(listener: ((changes: readonly RevisionChanges[]) => void) | null): void {
    this.changeListener = listener;
    // After close() nothing applies any more: there is nothing to listen to (and no store to open).
    if (this.closed) return;
    this.current.setChangeListener(listener);
  }

  /** The store under `current` (replaced with it by a restore). */
  get store(): DurableStore {
    void this.current;
    return this.opened!.store;
  }

  /** The index the stored state is at (0 in memory): the node restores no snapshot at or below it. */
  persistedIndex(): number {
    return this.current.appliedIndex;
  }

  /** raftkv.v1 commands answer with a KvResult, MVCC commands (issue 18) with an MvccResult. A
   *  KvResult (a fresh object, never the one the session table keeps) also carries the store revision
   *  after the entry (storeRevisionOf), for raftkv.v1's response header. */
  apply(command: Uint8Array, index: number): StoreResult {
    const sm = this.current;
    const r = sm.applyAny(index, command);
    if (!("type" in r)) return r;
    return Object.assign({}, r, { [STORE_REVISION]: sm.revision });
  }

  applyNoop(index: number): void {
    this.current.applyNoop(index);
  }

  snapshot(): SnapshotReader {
    return this.current.snapshotStream();
  }

  restore(snapshot: SnapshotInfo): SnapshotWriter {
    void this.current; // the current store is opened (and leftovers removed) before a new one is made
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
        if (fresh.dir !== null) this.writeCurrent(fresh.dir);
        if (this.opened !== null) this.retire(this.opened);
        this.opened = fresh;
        this.sm?.setChangeListener(null);
        this.sm = next;
        this.sm.setChangeListener(this.changeListener);
      },
      abort: () => this.retire(fresh),
    };
  }

  /** Bytes of the LMDB file in use (etcd's dbSize); 0 in memory or before the store is opened. */
  sizeBytes(): number {
    const dir = this.opened?.dir;
    if (dir === null || dir === undefined) return 0;
    try {
      return fs.statSync(join(dir, "data.mdb")).size;
    } catch {
      return 0;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const opened = this.opened;
    this.opened = null;
    this.sm = null;
    if (opened !== null) await opened.store.close();
    await Promise.all(this.retiring);
    this.retiring = [];
  }

  /** The store CURRENT names, or a fresh generation (then named in CURRENT) when there is none or it
   *  is at index 0; other generations (leftovers of restores cut short) are removed. */
  private openCurrent(): Opened {
    const root = this.o.stateDir;
    if (root === null) return { store: new MemDurableStore(), dir: null };
    fs.mkdirSync(root, { recursive: true });
    let name: string | null = null;
    try {
      name = fs.readFileSync(join(root, CURRENT_FILE), "utf8").trim();
    } catch {
      // No CURRENT: a new data folder (or one from before the state store).
    }
    const generations = fs.readdirSync(root).filter((n) => GENERATION_RE.test(n));
    this.generation = Math.max(-1, ...generations.map(Number)) + 1;
    if (name !== null && !GENERATION_RE.test(name))
      throw new RaftKvError({
        code: "CORRUPT",
        message: `${join(root, CURRENT_FILE)} names ${JSON.stringify(name.slice(0, 40))}, not a store generation`,
        ...this.where(),
        hint: `remove ${root} (the node rebuilds the state from its snapshot and log, or from the leader)`,
      });
    let opened: Opened | null = null;
    if (name !== null && generations.includes(name)) {
      const dir = join(root, name);
      const store = LmdbStore.open({ dir, ...this.where() });
      if (store.appliedIndex > 0) opened = { store, dir };
      else this.retire({ store, dir });
    }
    for (const g of generations) if (g !== name) fs.rmSync(join(root, g), { recursive: true, force: true });
    if (opened !== null) return opened;
    const fresh = this.openStore();
    this.writeCurrent(fresh.dir!);
    return fresh;
  }

  /** A new, empty store generation (in memory: a new twin). */
  private openStore(): Opened {
    if (this.o.stateDir === null) return { store: new MemDurableStore(), dir: null };
    const dir = join(this.o.stateDir, String(this.generation++));
    fs.rmSync(dir, { recursive: true, force: true });
    return { store: LmdbStore.open({ dir, ...this.where() }), dir };
  }

  /** Makes CURRENT name the generation in `dir`, durably. */
  private writeCurrent(dir: string): void {
    const root = this.o.stateDir!;
    const tmp = join(root, `${CURRENT_FILE}.tmp`);
    fs.writeFileSync(tmp, `${dir.slice(dir.lastIndexOf("/") + 1)}\n`);
    syncPath(tmp);
    fs.renameSync(tmp, join(root, CURRENT_FILE));
    syncPath(root);
  }

  private where(): { nodeId?: number } {
    return this.o.nodeId === undefined ? {} : { nodeId: this.o.nodeId };
  }

  /** Closes a store no longer used and removes its folder, in the background (close() waits). */
  private retire(s: Opened): void {
    this.retiring.push(
      s.store.close().then(
        () => {
          if (s.dir !== null) fs.rmSync(s.dir, { recursive: true, force: true });
        },
        () => undefined, // a store being thrown away: its failure changes nothing
      ),
    );
  }
}

function syncPath(path: string): void {
  const fd = fs.openSync(path, "r");
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
