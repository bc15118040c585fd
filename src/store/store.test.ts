// Runs the Store conformance suite against the in-memory twin and the LMDB store on real files.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LmdbStore } from "./lmdb-store.ts";
import { MemDurableStore } from "./mem-durable-store.ts";
import { runStoreConformance } from "./store-conformance.ts";

runStoreConformance({
  name: "MemStore",
  async create() {
    const store = new MemDurableStore();
    return {
      store: () => store,
      reopen: async () => {
        await store.close();
        store.mem.reopen();
      },
      settle: async () => undefined,
      cleanup: async () => undefined,
    };
  },
});

runStoreConformance({
  name: "LmdbStore",
  runs: 40,
  async create() {
    const root = await mkdtemp(join(tmpdir(), "raftkv-store-"));
    const dir = join(root, "state");
    let store = LmdbStore.open({ dir });
    return {
      store: () => store,
      reopen: async () => {
        await store.close();
        store = LmdbStore.open({ dir });
      },
      settle: async () => {
        await store.flush();
      },
      cleanup: async () => {
        await store.close();
        await rm(root, { recursive: true, force: true });
      },
    };
  },
});
