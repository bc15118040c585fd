// The one conformance suite for the Storage seam, run against every implementation (see *.test.ts).

import assert from "node:assert/strict";
import { test } from "node:test";
import { bootstrapMembership, votersOnly } from "../core/membership.ts";
import type { Entry, HardState, SnapshotMeta } from "../core/types.ts";
import { crc32c } from "../lib/crc32c.ts";
import { RaftKvError } from "../lib/errors.ts";
import type { RecoveredState, Storage } from "./storage.ts";

export interface StorageHarness {
  /** A Storage over the same persisted data, as a new process would open it. */
  storage(): Storage;
  /** Power loss, when the implementation models it: unsynced saves may be lost. */
  crash?(): void;
  cleanup(): Promise<void>;
}

export interface StorageFactory {
  readonly name: string;
  create(): Promise<StorageHarness>;
}

export function entry(index: number, term: number, text = `e${index}t${term}`): Entry {
  return { index, term, kind: "command", data: new TextEncoder().encode(text) };
}

export function entries(from: number, to: number, term: number): Entry[] {
  const out: Entry[] = [];
  for (let i = from; i <= to; i++) out.push(entry(i, term));
  return out;
}

export function metaFor(index: number, term: number, image: Uint8Array): SnapshotMeta {
  return { index, term, sizeBytes: image.length, crc32c: crc32c(image) };
}

export function imageOf(sizeBytes: number, seed: number): Uint8Array {
  const out = new Uint8Array(sizeBytes);
  for (let i = 0; i < sizeBytes; i++) out[i] = (i * 31 + seed * 7) & 0xff;
  return out;
}

/** Entries as comparable plain values. */
export function plain(es: readonly Entry[]): { index: number; term: number; kind: string; data: string }[] {
  return es.map((e) => ({
    index: e.index,
    term: e.term,
    kind: e.kind,
    data: Buffer.from(e.data).toString("hex"),
  }));
}

async function reopen(h: StorageHarness, s: Storage): Promise<{ storage: Storage; state: RecoveredState }> {
  await s.close();
  const storage = h.storage();
  return { storage, state: await storage.open() };
}

function isCode(code: string): (e: unknown) => boolean {
  return (e) => e instanceof RaftKvError && e.code === code;
}

export function runStorageConformance(factory: StorageFactory): void {
  const hs = (term: number, votedFor: number | null, commitIndex: number): HardState => ({
    term,
    votedFor,
    commitIndex,
  });

  const withStorage = (name: string, body: (h: StorageHarness, s: Storage) => Promise<void>): void => {
    test(`${factory.name}: ${name}`, async () => {
      const h = await factory.create();
      try {
        await body(h, h.storage());
      } finally {
        await h.cleanup();
      }
    });
  };

  withStorage("a fresh storage recovers the empty state", async (h, s) => {
    const { incarnation, ...state } = await s.open();
    assert.deepEqual(state, {
      hardState: { term: 0, votedFor: null, commitIndex: 0 },
      snapshot: null,
      entries: [],
    });
    assert.equal(await s.loadSnapshotImage(), null);
    const again = await reopen(h, s);
    assert.deepEqual(again.state.entries, []);
    assert.equal(again.state.incarnation, incarnation, "a folder keeps its incarnation (if it has one)");
    await again.storage.close();
  });

  withStorage("saved entries and hard state survive a restart", async (h, s) => {
    await s.open();
    await s.save(hs(1, 1, 0), [], true);
    await s.save(null, entries(1, 5, 1), true);
    await s.save(hs(1, 1, 3), entries(6, 7, 1), true);
    const { storage, state } = await reopen(h, s);
    assert.deepEqual(state.hardState, hs(1, 1, 3));
    assert.equal(state.snapshot, null);
    assert.deepEqual(plain(state.entries), plain(entries(1, 7, 1)));
    await storage.close();
  });

  withStorage("entries[0] at or below the last index truncates the suffix first (§5.3)", async (h, s) => {
    await s.open();
    await s.save(hs(1, null, 0), entries(1, 6, 1), true);
    await s.save(hs(2, 3, 2), [entry(4, 2, "new4"), entry(5, 2, "new5")], true);
    let r = await reopen(h, s);
    assert.deepEqual(
      plain(r.state.entries),
      plain([...entries(1, 3, 1), entry(4, 2, "new4"), entry(5, 2, "new5")]),
    );
    await r.storage.save(null, [entry(2, 3, "again")], false);
    r = await reopen(h, r.storage);
    assert.deepEqual(plain(r.state.entries), plain([entry(1, 1), entry(2, 3, "again")]));
    await r.storage.close();
  });

  withStorage("a vote is kept across restarts and a higher term replaces it", async (h, s) => {
    await s.open();
    await s.save(hs(5, 2, 0), [], true);
    let r = await reopen(h, s);
    assert.deepEqual(r.state.hardState, hs(5, 2, 0));
    await r.storage.save(hs(6, null, 0), [], true);
    r = await reopen(h, r.storage);
    assert.deepEqual(r.state.hardState, hs(6, null, 0));
    await r.storage.close();
  });

  withStorage("many saves across segment boundaries recover in order", async (h, s) => {
    await s.open();
    const expected: Entry[] = [];
    let term = 1;
    for (let i = 1; i <= 400; i += 4) {
      if (i % 40 === 1) term++;
      const batch = [
        entry(i, term, `v${i}`.repeat(5)),
        entry(i + 1, term),
        entry(i + 2, term),
        entry(i + 3, term),
      ];
      await s.save(hs(term, null, Math.max(0, i - 10)), batch, i % 3 === 0);
      expected.push(...batch);
    }
    const { storage, state } = await reopen(h, s);
    assert.deepEqual(plain(state.entries), plain(expected));
    assert.deepEqual(state.hardState, hs(term, null, 387));
    await storage.close();
  });

  withStorage("a saved snapshot compacts the log and is served back", async (h, s) => {
    await s.open();
    for (let i = 1; i <= 300; i += 10) await s.save(hs(2, 1, i + 9), entries(i, i + 9, 2), true);
    const image = imageOf(5000, 1);
    const meta = metaFor(250, 2, image);
    await s.saveSnapshot(meta, image);
    await s.save(hs(2, 1, 305), entries(301, 305, 2), true);
    const loaded = await s.loadSnapshotImage();
    assert.deepEqual(loaded?.meta, meta);
    assert.deepEqual(loaded?.image, image);
    const parts: Uint8Array[] = [];
    for (let off = 0; off < image.length; off += 1024) parts.push(await s.readSnapshotChunk(meta, off, 1024));
    assert.deepEqual(Buffer.concat(parts), Buffer.from(image));
    assert.equal((await s.readSnapshotChunk(meta, image.length, 10)).length, 0);
    const { storage, state } = await reopen(h, s);
    assert.deepEqual(state.snapshot, meta);
    assert.deepEqual(plain(state.entries), plain(entries(251, 305, 2)));
    assert.deepEqual(state.hardState, hs(2, 1, 305));
    const again = await storage.loadSnapshotImage();
    assert.deepEqual(again?.image, image);
    await storage.close();
  });

  withStorage(
    "a snapshot's configuration (thesis §4.3) survives a restart, saved and received",
    async (h, s) => {
      await s.open();
      await s.save(hs(2, 1, 20), entries(1, 20, 2), true);
      const membership = {
        ...bootstrapMembership([
          { id: 1, address: "127.0.0.1:7001" },
          { id: 4, address: "127.0.0.1:7004" },
        ]),
        learners: [7],
        removed: [2, 3],
      };
      const image = imageOf(100, 5);
      const once = [image];
      const saved = await s.saveSnapshotStream(
        { index: 15, term: 2, sizeBytes: image.length, membership },
        () => once.pop() ?? null,
      );
      assert.deepEqual(saved.membership, membership);
      let r = await reopen(h, s);
      assert.deepEqual(r.state.snapshot?.membership, membership);
      const received = { ...metaFor(40, 3, image), membership: votersOnly([1, 4, 7]) };
      await r.storage.writeSnapshotChunk(received, 0, image);
      await r.storage.installIncomingSnapshot(received);
      r = await reopen(h, r.storage);
      assert.deepEqual(r.state.snapshot?.membership, votersOnly([1, 4, 7]));
      await r.storage.close();
    },
  );

  withStorage("a snapshot saved chunk by chunk is the one saved whole", async (h, s) => {
    await s.open();
    for (let i = 1; i <= 300; i += 10) await s.save(hs(2, 1, i + 9), entries(i, i + 9, 2), true);
    const image = imageOf(5000, 3);
    const meta = metaFor(250, 2, image);
    let at = 0;
    const next = (): Uint8Array | null => {
      if (at >= image.length) return null;
      at += 999;
      return image.subarray(at - 999, Math.min(at, image.length));
    };
    assert.deepEqual(
      await s.saveSnapshotStream({ index: 250, term: 2, sizeBytes: image.length }, next),
      meta,
    );
    assert.deepEqual((await s.loadSnapshotImage())?.image, image);
    const older = imageOf(10, 4);
    const olderMeta = metaFor(200, 2, older);
    const once = [older];
    const { crc32c: _, ...olderStream } = olderMeta;
    assert.deepEqual(await s.saveSnapshotStream(olderStream, () => once.pop() ?? null), olderMeta);
    const { storage, state } = await reopen(h, s);
    assert.deepEqual(state.snapshot, meta, "the older snapshot was not saved over the newer one");
    assert.deepEqual(plain(state.entries), plain(entries(251, 300, 2)));
    assert.deepEqual((await storage.loadSnapshotImage())?.image, image);
    await storage.close();
  });

  withStorage("a newer snapshot replaces the older one for readers", async (h, s) => {
    await s.open();
    await s.save(hs(1, null, 20), entries(1, 20, 1), true);
    const a = imageOf(100, 1);
    const b = imageOf(120, 2);
    const c = imageOf(140, 3);
    await s.saveSnapshot(metaFor(5, 1, a), a);
    await s.saveSnapshot(metaFor(10, 1, b), b);
    await s.saveSnapshot(metaFor(15, 1, c), c);
    await assert.rejects(s.readSnapshotChunk(metaFor(10, 1, b), 0, 10), isCode("INVALID_ARGUMENT"));
    assert.deepEqual(await s.readSnapshotChunk(metaFor(15, 1, c), 10, 5), c.slice(10, 15));
    const { storage, state } = await reopen(h, s);
    assert.deepEqual(state.snapshot, metaFor(15, 1, c));
    assert.deepEqual(plain(state.entries), plain(entries(16, 20, 1)));
    await storage.close();
  });

  withStorage("an incoming snapshot is received in chunks and replaces the whole log", async (h, s) => {
    await s.open();
    await s.save(hs(1, null, 3), entries(1, 8, 1), true);
    const image = imageOf(3000, 7);
    const meta = metaFor(50, 3, image);
    await s.writeSnapshotChunk(meta, 0, image.subarray(0, 1000));
    await s.writeSnapshotChunk(meta, 0, image.subarray(0, 1000)); // offset 0 restarts
    await s.writeSnapshotChunk(meta, 1000, image.subarray(1000, 2000));
    await s.writeSnapshotChunk(meta, 1000, image.subarray(1000, 2000)); // a resent chunk
    await s.writeSnapshotChunk(meta, 2000, image.subarray(2000));
    await s.installIncomingSnapshot(meta);
    assert.deepEqual((await s.loadSnapshotImage())?.image, image);
    await s.save(hs(3, null, 50), [], true);
    await s.save(hs(3, null, 52), entries(51, 52, 3), true);
    let r = await reopen(h, s);
    assert.deepEqual(r.state.snapshot, meta);
    assert.deepEqual(plain(r.state.entries), plain(entries(51, 52, 3)));
    assert.deepEqual((await r.storage.loadSnapshotImage())?.image, image);
    r = await reopen(h, r.storage);
    assert.deepEqual(plain(r.state.entries), plain(entries(51, 52, 3)));
    await r.storage.close();
  });

  withStorage("an incoming snapshot inside a longer log still discards the whole log", async (h, s) => {
    await s.open();
    await s.save(hs(2, null, 2), [...entries(1, 5, 1), ...entries(6, 10, 2)], true);
    const image = imageOf(10, 1);
    const meta = metaFor(4, 1, image);
    await s.writeSnapshotChunk(meta, 0, image);
    await s.installIncomingSnapshot(meta);
    const { storage, state } = await reopen(h, s);
    assert.deepEqual(state.snapshot, meta);
    assert.deepEqual(state.entries, []);
    await storage.close();
  });

  withStorage(
    "a bad incoming snapshot is refused: checksum (CORRUPT), gap and size (INVALID_ARGUMENT)",
    async (h, s) => {
      await s.open();
      const image = imageOf(100, 3);
      const meta = metaFor(10, 1, image);
      await assert.rejects(s.writeSnapshotChunk(meta, 50, image.subarray(50)), isCode("INVALID_ARGUMENT"));
      await s.writeSnapshotChunk(meta, 0, image.subarray(0, 40));
      await assert.rejects(s.writeSnapshotChunk(meta, 60, image.subarray(60)), isCode("INVALID_ARGUMENT"));
      await assert.rejects(s.writeSnapshotChunk(meta, 90, new Uint8Array(20)), isCode("INVALID_ARGUMENT"));
      await assert.rejects(s.installIncomingSnapshot(meta), isCode("CORRUPT"));
      const damaged = image.slice();
      damaged[77] = (damaged[77] ?? 0) ^ 1;
      await s.writeSnapshotChunk(meta, 0, damaged);
      await assert.rejects(s.installIncomingSnapshot(meta), isCode("CORRUPT"));
      // Not a write error: the storage keeps working.
      await s.save(hs(1, null, 0), entries(1, 2, 1), true);
      const { storage, state } = await reopen(h, s);
      assert.equal(state.snapshot, null);
      assert.deepEqual(plain(state.entries), plain(entries(1, 2, 1)));
      await storage.close();
    },
  );

  withStorage("a snapshot image that does not match its meta is refused", async (_h, s) => {
    await s.open();
    await s.save(hs(1, null, 5), entries(1, 5, 1), true);
    const image = imageOf(10, 1);
    await assert.rejects(
      s.saveSnapshot({ ...metaFor(3, 1, image), crc32c: 1 }, image),
      isCode("INVALID_ARGUMENT"),
    );
    await s.close();
  });

  withStorage("a second opener is refused while the storage is open", async (h, s) => {
    await s.open();
    const other = h.storage();
    await assert.rejects(other.open(), isCode("STORAGE"));
    await s.close();
    const again = h.storage();
    await again.open();
    await again.close();
  });

  withStorage("malformed saves are our mistakes: assertions, nothing written", async (h, s) => {
    await s.open();
    await s.save(hs(2, null, 0), entries(1, 3, 2), true);
    await assert.rejects(s.save(null, [entry(5, 2)], true), /AssertionError|leaves|holds/);
    await assert.rejects(s.save(null, [entry(4, 1)], true), /goes below/);
    await assert.rejects(s.save(hs(1, null, 0), [], true), /term goes back/);
    await assert.rejects(s.save(hs(2, null, 9), [], true), /commit index/);
    const { storage, state } = await reopen(h, s);
    assert.deepEqual(plain(state.entries), plain(entries(1, 3, 2)));
    await storage.close();
  });

  withStorage("power loss keeps what was synced", async (h, s) => {
    if (h.crash === undefined) return;
    await s.open();
    await s.save(hs(1, 1, 0), entries(1, 3, 1), true);
    await s.save(hs(1, 1, 2), entries(4, 6, 1), false);
    h.crash();
    const s2 = h.storage();
    const state = await s2.open();
    assert.ok(state.entries.length >= 3 && state.entries.length <= 6, `${state.entries.length} entries`);
    assert.deepEqual(plain(state.entries), plain(entries(1, state.entries.length, 1)));
    assert.equal(state.hardState.votedFor, 1);
    await s2.save(hs(2, 2, 3), entries(4, 4, 2), true);
    h.crash();
    const s3 = h.storage();
    const after = await s3.open();
    assert.deepEqual(plain(after.entries), plain([...entries(1, 3, 1), entry(4, 2)]));
    assert.deepEqual(after.hardState, hs(2, 2, 3));
    await s3.close();
  });
}
