// The simulator's disks: the real FileStorage (WAL, snapshots, recovery) on the in-memory file system
// that models durability, so every crash exercises the production recovery code; or the simpler
// MemStorage twin.

import type { NodeId } from "../core/types.ts";
import type { Prng } from "../lib/prng.ts";
import { FileStorage } from "../storage/file-storage.ts";
import { MemFileSystem } from "../storage/mem-file-system.ts";
import { MemStorage } from "../storage/mem-storage.ts";
import type { Storage, StorageLogger } from "../storage/storage.ts";
import type { SimDisk } from "./sim-node.ts";

const quiet: StorageLogger = { info: () => {}, warn: () => {} };

/** FileStorage over MemFileSystem; a crash drops unsynced data (sometimes tearing the last write). */
export class SimFileDisk implements SimDisk {
  readonly fs = new MemFileSystem();
  private storage: FileStorage;
  private readonly nodeId: NodeId;

  constructor(nodeId: NodeId) {
    this.nodeId = nodeId;
    this.storage = this.fresh();
  }

  private fresh(): FileStorage {
    return new FileStorage({
      fs: this.fs,
      dir: "/data",
      clusterId: "sim",
      nodeId: this.nodeId,
      maxSegmentBytes: 16 * 1024,
      logger: quiet,
    });
  }

  open() {
    return this.storage.open();
  }
  loadSnapshotImage() {
    return this.storage.loadSnapshotImage();
  }
  crash(prng: Prng): void {
    this.fs.crash(prng);
    this.storage = this.fresh();
  }
  save: Storage["save"] = (hs, entries, sync) => this.storage.save(hs, entries, sync);
  saveSnapshot: Storage["saveSnapshot"] = (meta, image) => this.storage.saveSnapshot(meta, image);
  writeSnapshotChunk: Storage["writeSnapshotChunk"] = (meta, offset, data) =>
    this.storage.writeSnapshotChunk(meta, offset, data);
  installIncomingSnapshot: Storage["installIncomingSnapshot"] = (meta) =>
    this.storage.installIncomingSnapshot(meta);
  readSnapshotChunk: Storage["readSnapshotChunk"] = (meta, offset, length) =>
    this.storage.readSnapshotChunk(meta, offset, length);
}

/** The MemStorage twin; a crash drops what was saved without sync. */
export class SimMemDisk implements SimDisk {
  private readonly storage: MemStorage;

  constructor(nodeId: NodeId) {
    this.storage = new MemStorage({ nodeId });
  }
  open() {
    return this.storage.open();
  }
  loadSnapshotImage() {
    return this.storage.loadSnapshotImage();
  }
  crash(_prng: Prng): void {
    this.storage.crash();
  }
  save: Storage["save"] = (hs, entries, sync) => this.storage.save(hs, entries, sync);
  saveSnapshot: Storage["saveSnapshot"] = (meta, image) => this.storage.saveSnapshot(meta, image);
  writeSnapshotChunk: Storage["writeSnapshotChunk"] = (meta, offset, data) =>
    this.storage.writeSnapshotChunk(meta, offset, data);
  installIncomingSnapshot: Storage["installIncomingSnapshot"] = (meta) =>
    this.storage.installIncomingSnapshot(meta);
  readSnapshotChunk: Storage["readSnapshotChunk"] = (meta, offset, length) =>
    this.storage.readSnapshotChunk(meta, offset, length);
}
