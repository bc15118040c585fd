// Disk faults: a full disk or a failing fsync stops all writes with a typed STORAGE error, corrupts
// nothing, and a restart once the disk is healthy recovers everything synced before.

import assert from "node:assert/strict";
import { test } from "node:test";
import { RaftKvError } from "../lib/errors.ts";
import { Prng } from "../lib/prng.ts";
import { FileStorage } from "./file-storage.ts";
import { MemFileSystem } from "./mem-file-system.ts";
import { MemStorage } from "./mem-storage.ts";
import type { Storage, StorageLogger } from "./storage.ts";
import { entries, imageOf, metaFor, plain } from "./storage-conformance.ts";

const quiet: StorageLogger = { info: () => undefined, warn: () => undefined };

function storageOn(fs: MemFileSystem): FileStorage {
  return new FileStorage({
    fs,
    dir: "/data",
    clusterId: "c",
    nodeId: 4,
    maxSegmentBytes: 500,
    logger: quiet,
  });
}

function isStorageError(pattern: RegExp): (e: unknown) => boolean {
  return (e) => e instanceof RaftKvError && e.code === "STORAGE" && e.nodeId === 4 && pattern.test(e.message);
}

async function syncedPrefix(s: Storage): Promise<void> {
  await s.open();
  await s.save({ term: 1, votedFor: 2, commitIndex: 0 }, entries(1, 10, 1), true);
  await s.save({ term: 1, votedFor: 2, commitIndex: 10 }, entries(11, 20, 1), true);
}

test("ENOSPC during save: typed STORAGE error, later saves refused, restart after space returns keeps all synced", async () => {
  const fs = new MemFileSystem();
  const s = storageOn(fs);
  await syncedPrefix(s);
  fs.setDiskFull(true);
  const err = await s.save(null, entries(21, 30, 1), true).then(
    () => assert.fail("save on a full disk must fail"),
    (e: unknown) => e,
  );
  assert.ok(err instanceof RaftKvError && err.code === "STORAGE", String(err));
  assert.match(err.message, /ENOSPC/);
  assert.match(err.hint ?? "", /disk is full/);
  assert.equal(s.failed, err);
  fs.setDiskFull(false);
  await assert.rejects(
    s.save(null, entries(21, 21, 1), true),
    isStorageError(/refuses writes after an earlier error/),
  );
  await assert.rejects(
    s.saveSnapshot(metaFor(5, 1, imageOf(9, 1)), imageOf(9, 1)),
    isStorageError(/refuses/),
  );
  await s.close();
  const again = storageOn(fs);
  const state = await again.open();
  assert.deepEqual(plain(state.entries), plain(entries(1, 20, 1)));
  assert.deepEqual(state.hardState, { term: 1, votedFor: 2, commitIndex: 10 });
  await again.save(null, entries(21, 22, 1), true);
  await again.close();
});

test("ENOSPC while writing a snapshot or rolling a segment, then power loss: restart recovers", async () => {
  for (const phase of ["snapshot", "roll"] as const) {
    const fs = new MemFileSystem();
    const s = storageOn(fs);
    await syncedPrefix(s);
    fs.setCapacityBytes(fs.usedBytes() + (phase === "snapshot" ? 150 : 0));
    const image = imageOf(400, 3);
    const attempt =
      phase === "snapshot"
        ? s.saveSnapshot(metaFor(15, 1, image), image)
        : s.save(null, entries(21, 40, 1), true);
    await assert.rejects(attempt, isStorageError(/ENOSPC/));
    fs.setCapacityBytes(null);
    fs.crash(new Prng(phase === "snapshot" ? 1 : 2));
    const again = storageOn(fs);
    const state = await again.open();
    assert.deepEqual(plain(state.entries), plain(entries(1, 20, 1)), phase);
    assert.equal(state.snapshot, null);
    assert.ok(!(await fs.readdir("/data/snap")).some((n) => n.endsWith(".tmp")), "temp snapshot removed");
    await again.close();
  }
});

test("EIO on fsync: the save fails, is never retried or acknowledged, and writes stop", async () => {
  const fs = new MemFileSystem();
  const s = storageOn(fs);
  await syncedPrefix(s);
  fs.injectFault("sync", "EIO");
  await assert.rejects(s.save({ term: 2, votedFor: 1, commitIndex: 10 }, [], true), isStorageError(/EIO/));
  await assert.rejects(
    s.save({ term: 2, votedFor: 1, commitIndex: 10 }, [], true),
    isStorageError(/refuses/),
  );
  fs.crash(new Prng(3));
  const state = await storageOn(fs).open();
  assert.deepEqual(plain(state.entries), plain(entries(1, 20, 1)));
  assert.ok(
    state.hardState.term === 1 || state.hardState.term === 2,
    "the unsynced vote may or may not survive",
  );
});

test("a write error while receiving a snapshot stops writes too", async () => {
  const fs = new MemFileSystem();
  const s = storageOn(fs);
  await syncedPrefix(s);
  const image = imageOf(1000, 5);
  const meta = metaFor(100, 3, image);
  await s.writeSnapshotChunk(meta, 0, image.subarray(0, 500));
  fs.injectFault("write", "EIO");
  await assert.rejects(s.writeSnapshotChunk(meta, 500, image.subarray(500)), isStorageError(/EIO/));
  await assert.rejects(s.installIncomingSnapshot(meta), isStorageError(/refuses/));
  await s.close();
  const state = await storageOn(fs).open();
  assert.equal(state.snapshot, null);
  assert.equal(state.entries.length, 20);
});

test("MemStorage: an injected write fault behaves the same way", async () => {
  const s = new MemStorage({ nodeId: 4 });
  await syncedPrefix(s);
  s.setWriteFault("ENOSPC");
  await assert.rejects(s.save(null, entries(21, 21, 1), true), isStorageError(/ENOSPC/));
  s.setWriteFault(null);
  await assert.rejects(s.save(null, entries(21, 21, 1), true), isStorageError(/refuses/));
  s.crash();
  const state = await s.open();
  assert.deepEqual(plain(state.entries), plain(entries(1, 20, 1)));
});

test("MemStorage.crash drops what was saved without sync since the last sync", async () => {
  const s = new MemStorage();
  await s.open();
  await s.save({ term: 1, votedFor: null, commitIndex: 0 }, entries(1, 3, 1), false);
  await s.save(null, entries(4, 5, 1), true);
  await s.save({ term: 2, votedFor: 1, commitIndex: 2 }, entries(4, 6, 2), false);
  s.crash();
  const state = await s.open();
  assert.deepEqual(plain(state.entries), plain(entries(1, 5, 1)));
  assert.deepEqual(state.hardState, { term: 1, votedFor: null, commitIndex: 0 });
});
