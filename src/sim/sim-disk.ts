// The simulator's disks: the real FileStorage (WAL, snapshots, recovery) on the in-memory file system
// that models durability, so every crash exercises the production recovery code; or the simpler
// MemStorage twin. Both sit behind one adapter that swaps in the post-crash storage.

import type { NodeId } from "../core/types.ts";
import type { Prng } from "../lib/prng.ts";
import { FileStorage } from "../storage/file-storage.ts";
import { MemFileSystem } from "../storage/mem-file-system.ts";
import { MemStorage } from "../storage/mem-storage.ts";
import type { Storage, StorageLogger } from "../storage/storage.ts";
import type { EventQueue } from "./event-queue.ts";
import type { SimDisk } from "./sim-node.ts";
import { drawDiskProfile, TimedFileSystem } from "./timed-file-system.ts";

const quiet: StorageLogger = { info: () => {}, warn: () => {} };

/** Delegates to the current storage; `crash` loses unsynced data and returns the storage to reopen. */
class CrashableDisk implements SimDisk {
  private storage: Storage;
  private readonly crashed: (prng: Prng) => Storage;
  readonly timed: TimedFileSystem | undefined;

  constructor(storage: Storage, crashed: (prng: Prng) => Storage, timed?: TimedFileSystem) {
    this.storage = storage;
    this.crashed = crashed;
    this.timed = timed;
  }

  open() {
    return this.storage.open();
  }
  loadSnapshotImage() {
    return this.storage.loadSnapshotImage();
  }
  crash(prng: Prng): void {
    if (this.storage instanceof FileStorage) this.storage.abandon();
    this.storage = this.crashed(prng);
  }
  save: Storage["save"] = (hs, entries, sync) => this.storage.save(hs, entries, sync);
  saveSnapshot: Storage["saveSnapshot"] = (meta, image) => this.storage.saveSnapshot(meta, image);
  saveSnapshotStream: Storage["saveSnapshotStream"] = (meta, nextChunk) =>
    this.storage.saveSnapshotStream(meta, nextChunk);
  writeSnapshotChunk: Storage["writeSnapshotChunk"] = (meta, offset, data) =>
    this.storage.writeSnapshotChunk(meta, offset, data);
  readIncomingSnapshotChunk: Storage["readIncomingSnapshotChunk"] = (meta, offset, length) =>
    this.storage.readIncomingSnapshotChunk(meta, offset, length);
  installIncomingSnapshot: Storage["installIncomingSnapshot"] = (meta) =>
    this.storage.installIncomingSnapshot(meta);
  readSnapshotChunk: Storage["readSnapshotChunk"] = (meta, offset, length) =>
    this.storage.readSnapshotChunk(meta, offset, length);
}

/** Where a disk lives: the simulation's timeline, a PRNG of its own, the largest election timeout. */
export interface DiskContext {
  readonly q: EventQueue;
  readonly prng: Prng;
  readonly electionUs: number;
}

/** FileStorage over MemFileSystem; a crash drops unsynced data (sometimes tearing the last write).
 *  With a context, on the timed disk: every file operation takes simulated time (timed-file-system.ts). */
export function simFileDisk(nodeId: NodeId, ctx?: DiskContext): SimDisk {
  const mem = new MemFileSystem();
  const timed =
    ctx === undefined
      ? undefined
      : new TimedFileSystem(mem, ctx.q, ctx.prng.fork(), drawDiskProfile(ctx.prng, ctx.electionUs));
  const fs = timed ?? mem;
  const fresh = (): FileStorage =>
    new FileStorage({
      fs,
      dir: "/data",
      clusterId: "sim",
      nodeId,
      maxSegmentBytes: 16 * 1024,
      logger: quiet,
    });
  return new CrashableDisk(
    fresh(),
    (prng) => {
      (timed ?? mem).crash(prng);
      return fresh();
    },
    timed,
  );
}

/** The MemStorage twin; a crash drops what was saved without sync. */
export function simMemDisk(nodeId: NodeId): SimDisk {
  const storage = new MemStorage({ nodeId });
  return new CrashableDisk(storage, () => {
    storage.crash();
    return storage;
  });
}
