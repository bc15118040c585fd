// A minimal crashable in-memory disk for the simulator (stand-in until src/storage's MemStorage lands).

import type { Entry, HardState, SnapshotMeta } from "../core/types.ts";
import type { Prng } from "../lib/prng.ts";
import type { SimDisk } from "./sim-node.ts";

interface State {
  hardState: HardState;
  entries: Entry[];
  snapshot: { meta: SnapshotMeta; image: Uint8Array } | null;
}

export class TempDisk implements SimDisk {
  private durable: State = {
    hardState: { term: 0, votedFor: null, commitIndex: 0 },
    entries: [],
    snapshot: null,
  };
  private live: State = clone(this.durable);
  private incoming: Uint8Array[] = [];

  async open() {
    this.live = clone(this.durable);
    return {
      hardState: this.live.hardState,
      snapshot: this.live.snapshot?.meta ?? null,
      entries: this.live.entries.slice(),
    };
  }
  async loadSnapshotImage() {
    return this.live.snapshot;
  }
  crash(_prng: Prng): void {
    this.live = clone(this.durable);
  }
  async save(hs: HardState | null, entries: readonly Entry[], sync: boolean): Promise<void> {
    if (hs !== null) this.live.hardState = hs;
    const first = entries[0];
    if (first !== undefined) {
      const base = this.live.snapshot?.meta.index ?? 0;
      this.live.entries.length = Math.min(this.live.entries.length, first.index - base - 1);
      this.live.entries.push(...entries);
    }
    if (sync) this.durable = clone(this.live);
  }
  async saveSnapshot(meta: SnapshotMeta, image: Uint8Array): Promise<void> {
    this.live.snapshot = { meta, image };
    const base = this.live.entries[0]?.index ?? meta.index + 1;
    this.live.entries = this.live.entries.slice(Math.max(0, meta.index + 1 - base));
    this.durable = clone(this.live);
  }
  async writeSnapshotChunk(_meta: SnapshotMeta, offset: number, data: Uint8Array): Promise<void> {
    if (offset === 0) this.incoming = [];
    this.incoming.push(data);
  }
  async installIncomingSnapshot(meta: SnapshotMeta): Promise<Uint8Array> {
    const image = new Uint8Array(meta.sizeBytes);
    let o = 0;
    for (const c of this.incoming) {
      image.set(c, o);
      o += c.length;
    }
    this.live.snapshot = { meta, image };
    this.live.entries = [];
    this.durable = clone(this.live);
    return image;
  }
  async readSnapshotChunk(meta: SnapshotMeta, offset: number, length: number): Promise<Uint8Array> {
    const s = this.live.snapshot;
    if (s === null || s.meta.index !== meta.index) throw new Error("snapshot gone");
    return s.image.subarray(offset, offset + length);
  }
}

function clone(s: State): State {
  return { hardState: s.hardState, entries: s.entries.slice(), snapshot: s.snapshot };
}
