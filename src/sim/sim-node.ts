// One simulated node: the real core, KV state machine (a StoreStateMachine on the in-memory store twin)
// and replica loop over a crashable in-memory disk, a drifting local clock, pauses, and ticks delivered
// the way the real ticker delivers them.

import type { CoreConfig } from "../core/config.ts";
import { Raft } from "../core/raft.ts";
import type { CoreRefusal, Entry, HardState, Message, NodeId, SnapshotMeta } from "../core/types.ts";
import type { KvResult } from "../kv/result.ts";
import { StoreStateMachine } from "../kv/store-state-machine.ts";
import type { Prng } from "../lib/prng.ts";
import { KvService, type RequestPoint } from "../replica/kv-service.ts";
import { Replica } from "../replica/replica.ts";
import type { ReplicaStorage } from "../replica/seams.ts";
import { MemStore } from "../store/mem-store.ts";
import { incarnationRefusal } from "../transport/codec.ts";
import type { EventQueue } from "./event-queue.ts";
import type { TimedFileSystem } from "./timed-file-system.ts";

/** The in-memory disk twin the simulator needs: storage that survives a node and can lose unsynced data. */
export interface SimDisk extends ReplicaStorage {
  open(): Promise<{ hardState: HardState; snapshot: SnapshotMeta | null; entries: Entry[] }>;
  loadSnapshotImage(): Promise<{ meta: SnapshotMeta; image: Uint8Array } | null>;
  crash(prng: Prng): void;
  /** The timed device under it, if any (its operations take simulated time themselves). */
  readonly timed?: TimedFileSystem | undefined;
}

/** What a message's header says about incarnations (the simulated network carries objects, not bytes):
 *  the sender's folder, and the one the sender's latest configuration binds the receiver to. */
export interface SimEnvelope {
  readonly fromIncarnation: string;
  readonly toIncarnation: string;
}

export interface SimNodeHooks {
  send(from: NodeId, messages: readonly Message[]): void;
  onApply(node: NodeId, entry: Entry, result: KvResult | null): void;
  onFatal(node: NodeId, err: unknown): void;
  /** Recovery refused to start (or its disk failed meanwhile). */
  onBootFailed(node: NodeId, err: unknown): void;
  onRead(node: NodeId, servedAs: string, term: number): void;
  onRefused(node: NodeId, refusal: CoreRefusal): void;
  /** Time passing inside a request on this node (a stalled loop), or undefined for none. */
  requestPause?(node: NodeId, point: RequestPoint): Promise<void> | undefined;
}

export interface SimNodeOptions {
  id: NodeId;
  queue: EventQueue;
  disk: SimDisk;
  /** This node's clock rate relative to true time (drift). */
  clockRate: number;
  /** Offset of this node's monotonic clock, in ms. */
  clockOffsetMs: number;
  tickMs: number;
  /** Disk latency per storage call, µs. */
  diskLatencyUs: () => number;
  coreConfig: (seed: number) => CoreConfig;
  snapshotEveryEntries: number;
  keepEntriesAfterSnapshot: number;
  hooks: SimNodeHooks;
  prng: Prng;
  /** The incarnation of this node's disk (made with it; a wiped disk is a new node object). */
  folderIncarnation: string;
  /** Incarnation checks on delivery, as the codec makes them (default true). */
  checkIncarnations?: boolean;
}

/** The state store is made durable every this many ticks. */
const STORE_FLUSH_TICKS = 7;

export class SimNode {
  readonly id: NodeId;
  private readonly o: SimNodeOptions;
  replica: Replica<KvResult> | null = null;
  service: KvService | null = null;
  /** Bumped on each crash: callbacks of an older incarnation are dropped. */
  private generation = 0;
  private booting: Promise<void> | null = null;
  private pausedUntilUs = 0;
  /** Ticks are being delivered held (a catch-up after a pause) until the queued release runs. */
  private holdPending = false;
  private bootLocalMs = 0;
  private ticks = 0;
  restarts = 0;
  /** Removed from the cluster and stopped for good (a removed member's machine is retired). */
  retired = false;
  /** The state store: it survives crashes as far as it was made durable (every few ticks, as LMDB
   *  flushes in the background). */
  private store = new MemStore();
  /** The incarnation each member's delivered messages last gave (as the transport records it). */
  readonly seenIncarnations = new Map<NodeId, string>();
  /** Restarted on an empty disk under the id of a member whose disk was wiped (the checkers count the
   *  acknowledgements of its lost disk as they were: true when made). */
  wiped = false;
  /** Messages refused on delivery for their incarnations. */
  refusedByIncarnation = 0;

  constructor(o: SimNodeOptions) {
    this.id = o.id;
    this.o = o;
  }

  /** Changes at each crash: work of an older incarnation must not act any more. */
  get incarnation(): number {
    return this.generation;
  }

  get up(): boolean {
    return this.replica !== null;
  }

  get paused(): boolean {
    return this.o.queue.nowUs < this.pausedUntilUs;
  }

  /** This node's monotonic clock. */
  localMs(): number {
    return this.o.clockOffsetMs + (this.o.clockRate * this.o.queue.nowUs) / 1000;
  }

  /** The true time (ms) at which this node's clock reads localMs. */
  trueMsOfLocal(localMs: number): number {
    return (localMs - this.o.clockOffsetMs) / this.o.clockRate;
  }

  /** Run fn as this process: at once, or when a pause ends; never for a crashed incarnation. */
  run(fn: () => void): void {
    const gen = this.generation;
    const go = (): void => {
      if (gen !== this.generation || this.replica === null) return;
      if (this.paused) this.o.queue.at(this.pausedUntilUs, go);
      else fn();
    };
    go();
  }

  /** Boots the node from its disk (which takes simulated time on a timed disk); one boot at a time. */
  start(): Promise<void> {
    if (this.retired) return Promise.resolve();
    if (this.booting === null) {
      const b: Promise<void> = this.boot()
        .catch((err: unknown) => this.o.hooks.onBootFailed(this.id, err))
        .finally(() => {
          if (this.booting === b) this.booting = null;
        });
      this.booting = b;
    }
    return this.booting;
  }

  /** True while booting (recovery reading the disk). */
  get starting(): boolean {
    return this.booting !== null;
  }

  private async boot(): Promise<void> {
    const gen = ++this.generation;
    const disk = this.o.disk;
    const recovered = await disk.open();
    const snap = await disk.loadSnapshotImage();
    if (gen !== this.generation) return;
    // As a node with an LMDB store restarts: the store as the last crash left it (back to its last
    // durable batch), restored from the snapshot only if the snapshot is ahead of it.
    let sm: StoreStateMachine;
    if (snap !== null && snap.meta.index > this.store.appliedIndex) {
      this.store = new MemStore();
      sm = restoreImage(snap.image, this.store);
    } else sm = new StoreStateMachine({ store: this.store });
    const core = new Raft(this.o.coreConfig(this.o.prng.nextU32()), {
      hardState: recovered.hardState,
      snapshot: recovered.snapshot,
      entries: recovered.entries,
    });
    this.bootLocalMs = this.localMs();
    this.ticks = 0;
    const replica: Replica<KvResult> = new Replica<KvResult>({
      core,
      storage: this.latent(disk, gen),
      sender: { send: (msgs) => this.o.hooks.send(this.id, msgs) },
      stateMachine: sm,
      restore: (sizeBytes) => {
        const fresh = new MemStore();
        return {
          ...StoreStateMachine.restoring(sizeBytes, { store: fresh }),
          commit: () => {
            this.store = fresh;
          },
          abort: () => {},
        };
      },
      clock: { nowMs: () => this.localMs() },
      bootMs: this.bootLocalMs,
      tickMs: this.o.tickMs,
      snapshotEveryEntries: this.o.snapshotEveryEntries,
      keepEntriesAfterSnapshot: this.o.keepEntriesAfterSnapshot,
      onFatal: (err) => {
        if (gen === this.generation) this.o.hooks.onFatal(this.id, err);
      },
      onApply: (e, r) => this.o.hooks.onApply(this.id, e, r),
      onRefused: (r) => this.o.hooks.onRefused(this.id, r),
    });
    this.replica = replica;
    const hooks = this.o.hooks;
    this.service = new KvService(
      replica,
      undefined,
      (servedAs, term) => hooks.onRead(this.id, servedAs, term),
      hooks.requestPause === undefined ? undefined : (point) => hooks.requestPause?.(this.id, point),
    );
    this.scheduleTick(gen);
  }

  /** Power loss, also in the middle of a boot (its recovery's I/Os in flight never complete). */
  crash(prng: Prng, evenIfDown = false): void {
    if (this.retired) return;
    if (!evenIfDown && this.replica === null && this.booting === null) return;
    this.generation++;
    this.holdPending = false; // its release belonged to the crashed incarnation
    this.replica?.stop("crashed by the simulator");
    this.replica = null;
    this.service = null;
    this.booting = null;
    this.o.disk.crash(prng);
    this.store.crash();
    this.restarts++;
  }

  /** Stops this node for good: it was removed from the cluster (its id is never used again). */
  retire(): void {
    if (this.retired) return;
    this.retired = true;
    this.generation++;
    this.replica?.stop("removed from the cluster");
    this.replica = null;
    this.service = null;
    this.booting = null;
  }

  /** End any pause now (the liveness phase heals everything). */
  resume(): void {
    this.pausedUntilUs = Math.min(this.pausedUntilUs, this.o.queue.nowUs);
  }

  pause(durationUs: number): void {
    this.pausedUntilUs = Math.max(this.pausedUntilUs, this.o.queue.nowUs + durationUs);
  }

  get checksIncarnations(): boolean {
    return this.o.checkIncarnations !== false;
  }

  get folderIncarnation(): string {
    return this.o.folderIncarnation;
  }

  /** The header a message from this node to `to` carries (its binding read at send, as the transport does). */
  envelopeTo(to: NodeId): SimEnvelope {
    const m = this.replica?.core.latestConfiguration();
    const bound = m?.addresses.find((a) => a.id === to)?.incarnation;
    return { fromIncarnation: this.o.folderIncarnation, toIncarnation: bound ?? "" };
  }

  deliver(m: Message, env?: SimEnvelope): void {
    this.run(() => {
      const replica = this.replica;
      if (replica === null) return;
      if (env !== undefined) {
        const bindings = new Map<NodeId, string>();
        const bound = replica.core.latestConfiguration().addresses.find((a) => a.id === m.from)?.incarnation;
        if (bound !== undefined) bindings.set(m.from, bound);
        const ctx = { self: this.id, incarnation: this.o.folderIncarnation, bindings };
        const refused = incarnationRefusal(ctx, m.from, env.fromIncarnation, env.toIncarnation) !== null;
        if (refused && this.o.checkIncarnations !== false) {
          this.refusedByIncarnation++;
          return;
        }
        if (!refused && env.fromIncarnation !== "") this.seenIncarnations.set(m.from, env.fromIncarnation);
      }
      replica.receive(m);
    });
  }

  /** Ticks at local-clock boundaries; after a pause, the missed ticks arrive at once (catch-up). */
  private scheduleTick(gen: number): void {
    const nextLocal = this.bootLocalMs + (this.ticks + 1) * this.o.tickMs;
    // At least 1 µs ahead: float rounding can place the boundary a hair after the computed instant.
    const atUs = Math.max(
      this.o.queue.nowUs + 1,
      Math.ceil(((nextLocal - this.o.clockOffsetMs) / this.o.clockRate) * 1000),
    );
    this.o.queue.at(atUs, () => {
      if (gen !== this.generation) return;
      this.run(() => {
        // More than one tick due: a catch-up after a pause. As the real Ticker does, those ticks are
        // held (no election or check-quorum step-down on silence) until what arrived meanwhile is read:
        // the release runs after every delivery already due at this instant.
        const due = (k: number): boolean =>
          this.localMs() >= this.bootLocalMs + (this.ticks + k) * this.o.tickMs;
        const held = this.holdPending || due(2);
        while (this.replica !== null && due(1)) {
          this.ticks++;
          if (this.ticks % STORE_FLUSH_TICKS === 0) this.store.makeDurable();
          this.replica.tick(held);
        }
        if (held && !this.holdPending) {
          this.holdPending = true;
          this.o.queue.after(1, () => {
            if (gen !== this.generation) return;
            this.run(() => {
              this.holdPending = false;
              this.replica?.releaseTimeouts();
            });
          });
        }
        this.scheduleTick(gen);
      });
    });
  }

  /** Storage whose calls complete after a simulated disk latency, and never for a crashed incarnation. */
  private latent(disk: SimDisk, gen: number): ReplicaStorage {
    const delay = <T>(p: Promise<T>): Promise<T> =>
      new Promise<T>((resolve, reject) => {
        const lat = this.o.diskLatencyUs();
        p.then(
          (v) => this.o.queue.after(lat, () => this.afterIo(gen, () => resolve(v))),
          (e: unknown) => this.o.queue.after(lat, () => this.afterIo(gen, () => reject(e))),
        );
      });
    return {
      save: (hs, entries, sync) => delay(disk.save(hs, entries, sync)),
      saveSnapshotStream: (meta, nextChunk) => delay(disk.saveSnapshotStream(meta, nextChunk)),
      writeSnapshotChunk: (meta, offset, data) => delay(disk.writeSnapshotChunk(meta, offset, data)),
      readIncomingSnapshotChunk: (meta, offset, length) =>
        delay(disk.readIncomingSnapshotChunk(meta, offset, length)),
      installIncomingSnapshot: (meta) => delay(disk.installIncomingSnapshot(meta)),
      readSnapshotChunk: (meta, offset, length) => delay(disk.readSnapshotChunk(meta, offset, length)),
    };
  }

  private afterIo(gen: number, fn: () => void): void {
    if (gen !== this.generation) return;
    this.run(fn);
  }
}

/** The state machine of a snapshot image, on `store` (empty; the image is checked whole). */
function restoreImage(image: Uint8Array, store: MemStore): StoreStateMachine {
  const restoring = StoreStateMachine.restoring(image.length, { store });
  restoring.push(image);
  return restoring.finish();
}
