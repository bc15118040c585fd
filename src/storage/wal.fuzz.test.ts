// Fuzz regression for WAL recovery (FileStorage.open on damaged folders): a short seeded run of
// scripts/fuzz, and the fuzzer's findings as fixed cases (replay a failure with
// `npx tsx scripts/fuzz.ts --target wal --seed N`).

import assert from "node:assert/strict";
import { test } from "node:test";
import { shortRun } from "../../scripts/fuzz/engine.ts";
import { walTarget } from "../../scripts/fuzz/targets/wal.ts";
import type { Entry } from "../core/types.ts";
import { crc32c } from "../lib/crc32c.ts";
import { snapshotName } from "./data-dir.ts";
import { FileStorage } from "./file-storage.ts";
import { MemFileSystem } from "./mem-file-system.ts";
import { decodeSnapshotHeader, encodeSnapshotHeader } from "./snapshot-file.ts";
import { StorageError } from "./storage-error.ts";
import { readFrame } from "./wal-frame.ts";
import { decodeRecord, encodeRecords } from "./wal-record.ts";

/** Known recovery bugs the fuzz run leaves out until fixed (pin each with a `todo` test below). */
const KNOWN: readonly RegExp[] = [];

for (const seed of [1, 2]) {
  test(`WAL recovery: damaged folders recover consistently or are refused naming the file (seed ${seed})`, async () => {
    const { findings, stats } = await shortRun(walTarget, seed, 2000, KNOWN);
    assert.deepEqual(findings, [], `fuzz seed ${seed}`);
    assert.ok(stats.accepted > 50 && stats.refused > 50, "the run reaches both outcomes");
  });
}

const logger = { info: () => undefined, warn: () => undefined };
const entry = (index: number, term: number): Entry => ({
  index,
  term,
  kind: "command",
  data: Uint8Array.of(index),
});

function storage(fs: MemFileSystem, maxSegmentBytes = 1): FileStorage {
  return new FileStorage({ fs, dir: "/data", clusterId: "c", nodeId: 1, maxSegmentBytes, logger });
}

async function refusal(s: FileStorage): Promise<StorageError | null> {
  try {
    await s.open();
  } catch (e) {
    assert.ok(e instanceof StorageError, `expected a StorageError, got ${String(e)}`);
    return e;
  }
  return null;
}

/** A folder whose snapshot (index 4, term 2) was taken after entries 4..6 were overwritten in term 2;
 *  each save rolls to a new segment (maxSegmentBytes 1). */
async function overwrittenThenSnapshotted(): Promise<MemFileSystem> {
  const fs = new MemFileSystem();
  const s = storage(fs);
  await s.open();
  await s.save(
    { term: 1, votedFor: null, commitIndex: 0 },
    [entry(1, 1), entry(2, 1), entry(3, 1), entry(4, 1)],
    true,
  );
  await s.save(null, [entry(5, 1), entry(6, 1)], true);
  await s.save({ term: 2, votedFor: null, commitIndex: 0 }, [entry(4, 2), entry(5, 2), entry(6, 2)], true);
  await s.save({ term: 2, votedFor: null, commitIndex: 4 }, [], true);
  const image = Uint8Array.of(1, 2, 3);
  await s.saveSnapshot({ index: 4, term: 2, sizeBytes: 3, crc32c: crc32c(image) }, image);
  await s.close();
  return fs;
}

test("losing the newest WAL segments is refused, not recovered as a log whose terms go backwards after the snapshot", async () => {
  const fs = await overwrittenThenSnapshotted();
  const segments = (await fs.readdir("/data/wal")).filter((n) => n.endsWith(".wal"));
  assert.deepEqual(segments.length, 3);
  for (const name of segments.slice(1)) await fs.unlink(`/data/wal/${name}`);
  // Without the newest-segment marker (a folder from before it): the terms give the loss away.
  await fs.unlink("/data/wal/newest-segment");
  const err = await refusal(storage(fs));
  assert.equal(
    err?.code,
    "CORRUPT",
    "recovery must refuse: every record it read was intact, but the log is inconsistent",
  );
  assert.equal(err?.file, `/data/wal/${segments[0]}`, "names the segment holding entry 5");
  assert.equal(typeof err?.offset, "number", "names the byte offset");
});

test("a snapshot file whose header claims term 0 is not recovered", async () => {
  const fs = await overwrittenThenSnapshotted();
  const [name] = await fs.readdir("/data/snap");
  const bytes = fs.peek(`/data/snap/${name}`);
  const header = decodeSnapshotHeader(bytes.subarray(0, 512));
  const image = bytes.subarray(header.headerBytes);
  const forged = encodeSnapshotHeader(header.owner, { ...header.meta, term: 0 });
  const path = `/data/snap/${snapshotName(header.meta.index, 0)}`;
  const h = await fs.open(path, "overwrite");
  await h.append(Uint8Array.from([...forged, ...image]));
  await h.sync();
  await h.close();
  await fs.unlink(`/data/snap/${name}`);
  let recovered: Awaited<ReturnType<FileStorage["open"]>> | null = null;
  try {
    recovered = await storage(fs).open();
  } catch (e) {
    assert.ok(e instanceof StorageError);
  }
  assert.ok(
    recovered === null || recovered.snapshot === null || recovered.snapshot.term >= 1,
    "snapshot term 0",
  );
});

test("a segment header that gives index 0 a term is refused at open, not after the next append", async () => {
  const fs = new MemFileSystem();
  const s = storage(fs, 1 << 20);
  await s.open();
  await s.close();
  const [name] = await fs.readdir("/data/wal");
  const path = `/data/wal/${name}`;
  const bytes = fs.peek(path);
  const first = readFrame(bytes, 0);
  assert.equal(first.kind, "ok");
  if (first.kind !== "ok") return;
  const header = decodeRecord(first.type, first.payload);
  assert.equal(header.type, "segmentHeader");
  if (header.type !== "segmentHeader") return;
  const forged = encodeRecords([{ ...header, snapshotTerm: 26 }]);
  fs.poke(path, Uint8Array.from([...forged, ...bytes.subarray(first.end)]));
  const again = storage(fs, 1 << 20);
  const err = await refusal(again);
  assert.equal(err?.code, "CORRUPT", "refused at open");
  assert.equal(err?.file, path);
  assert.equal(err?.offset, 0);
  if (err !== null) return;
  await again.save({ term: 1, votedFor: null, commitIndex: 0 }, [entry(1, 1)], true);
  await again.close();
  assert.equal(
    await refusal(storage(fs, 1 << 20)),
    null,
    "an append the storage acknowledged makes the folder unreadable",
  );
});

test("losing the newest WAL segment is refused even when the log left behind looks consistent", async () => {
  const fs = new MemFileSystem();
  const s = storage(fs);
  await s.open();
  await s.save({ term: 1, votedFor: 2, commitIndex: 0 }, [entry(1, 1), entry(2, 1)], true);
  await s.save({ term: 1, votedFor: 2, commitIndex: 1 }, [entry(3, 1)], true);
  await s.close();
  const segments = (await fs.readdir("/data/wal")).filter((n) => n.endsWith(".wal"));
  assert.ok(segments.length >= 2);
  await fs.unlink(`/data/wal/${segments[segments.length - 1]}`);
  const err = await refusal(storage(fs));
  assert.equal(err?.code, "CORRUPT");
  assert.equal(err?.file, "/data/wal/newest-segment");
  assert.equal(err?.offset, 0);
  assert.match(err?.message ?? "", /missing/);
  assert.ok(err?.hint !== undefined, "says what to do");
});
