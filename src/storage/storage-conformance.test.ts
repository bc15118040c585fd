// Runs the Storage conformance suite against MemStorage, FileStorage on MemFileSystem and on real files.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Prng } from "../lib/prng.ts";
import { FileStorage } from "./file-storage.ts";
import { MemFileSystem } from "./mem-file-system.ts";
import { MemStorage } from "./mem-storage.ts";
import { RealFileSystem } from "./real-file-system.ts";
import type { StorageLogger } from "./storage.ts";
import { runStorageConformance } from "./storage-conformance.ts";

const quiet: StorageLogger = { info: () => undefined, warn: () => undefined };

runStorageConformance({
  name: "MemStorage",
  async create() {
    const storage = new MemStorage({ nodeId: 1 });
    return { storage: () => storage, crash: () => storage.crash(), cleanup: async () => undefined };
  },
});

runStorageConformance({
  name: "FileStorage on MemFileSystem",
  async create() {
    const fs = new MemFileSystem();
    const prng = new Prng(7);
    return {
      storage: () =>
        new FileStorage({
          fs,
          dir: "/data",
          clusterId: "c1",
          nodeId: 1,
          maxSegmentBytes: 2048,
          logger: quiet,
        }),
      crash: () => fs.crash(prng),
      cleanup: async () => undefined,
    };
  },
});

runStorageConformance({
  name: "FileStorage on RealFileSystem",
  async create() {
    const root = await mkdtemp(join(tmpdir(), "raftkv-storage-"));
    const fs = new RealFileSystem();
    return {
      storage: () =>
        new FileStorage({
          fs,
          dir: join(root, "data"),
          clusterId: "c1",
          nodeId: 1,
          maxSegmentBytes: 2048,
          logger: quiet,
        }),
      cleanup: () => rm(root, { recursive: true, force: true }),
    };
  },
});
