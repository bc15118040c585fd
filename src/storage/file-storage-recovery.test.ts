// Recovery from damaged folders: torn tails are truncated with a warning; damage before the tail, gaps,
// missing pieces and foreign files refuse to start naming the file, the offset and what to do.

import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { RaftKvError } from "../lib/errors.ts";
import { Prng } from "../lib/prng.ts";
import { segmentName } from "./data-dir.ts";
import { FileStorage } from "./file-storage.ts";
import { MemFileSystem } from "./mem-file-system.ts";
import { RealFileSystem } from "./real-file-system.ts";
import type { StorageLogger } from "./storage.ts";
import { entries, entry, imageOf, metaFor, plain } from "./storage-conformance.ts";
import { StorageError } from "./storage-error.ts";
import { readFrame } from "./wal-frame.ts";
import { encodeRecords } from "./wal-record.ts";
import { writtenExtent } from "./wal-scan.ts";

interface Captured extends StorageLogger {
  readonly warnings: { fields: Record<string, unknown>; message: string }[];
}

function capture(): Captured {
  const warnings: { fields: Record<string, unknown>; message: string }[] = [];
  return { warnings, info: () => undefined, warn: (fields, message) => warnings.push({ fields, message }) };
}

function open(
  fs: MemFileSystem,
  opts: { nodeId?: number; clusterId?: string; logger?: StorageLogger; maxSegmentBytes?: number } = {},
): FileStorage {
  return new FileStorage({
    fs,
    dir: "/data",
    clusterId: opts.clusterId ?? "c1",
    nodeId: opts.nodeId ?? 1,
    maxSegmentBytes: opts.maxSegmentBytes ?? 400,
    logger: opts.logger ?? capture(),
  });
}

/** A folder holding entries 1..40 (term 1, then 2 from 21) in several segments, all synced. */
async function populated(maxSegmentBytes = 400): Promise<MemFileSystem> {
  const fs = new MemFileSystem();
  const s = open(fs, { maxSegmentBytes });
  await s.open();
  for (let i = 1; i <= 40; i += 5) {
    const term = i > 20 ? 2 : 1;
    await s.save({ term, votedFor: 3, commitIndex: i + 4 }, entries(i, i + 4, term), true);
  }
  await s.close();
  return fs;
}

/** A file's bytes up to its written extent (without the WAL's zero-preallocated space). */
function content(fs: MemFileSystem, path: string): Uint8Array {
  const bytes = fs.peek(path);
  return bytes.subarray(0, writtenExtent(bytes));
}

async function segments(fs: MemFileSystem): Promise<string[]> {
  return (await fs.readdir("/data/wal")).filter((n) => n.endsWith(".wal")).map((n) => `/data/wal/${n}`);
}

/** Frame offsets in a segment. */
function frameOffsets(bytes: Uint8Array): number[] {
  const out: number[] = [];
  for (let off = 0; off < bytes.length; ) {
    const f = readFrame(bytes, off);
    if (f.kind !== "ok") break;
    out.push(off);
    off = f.end;
  }
  return out;
}

async function refusal(s: FileStorage): Promise<StorageError> {
  try {
    await s.open();
  } catch (e) {
    assert.ok(e instanceof StorageError, `expected a StorageError, got ${String(e)}`);
    return e;
  }
  assert.fail("open should have refused");
}

test("a torn final record is truncated with a warning naming the file and offset", async () => {
  const fs = await populated();
  const segs = await segments(fs);
  const last = segs[segs.length - 1]!;
  const bytes = content(fs, last);
  const cutAt = frameOffsets(bytes).pop()!;
  fs.poke(last, bytes.subarray(0, bytes.length - 7));
  const logger = capture();
  const s = open(fs, { logger });
  const state = await s.open();
  assert.equal(logger.warnings.length, 1);
  const w = logger.warnings[0]!;
  assert.equal(w.fields["file"], last);
  assert.equal(w.fields["offset"], cutAt);
  assert.match(w.message, new RegExp(`byte ${cutAt} of ${last}`));
  assert.equal(fs.peek(last).length, cutAt);
  // The last record was the hard state of the last save: entries 36..40 survive, the previous hard state rules.
  assert.deepEqual(plain(state.entries), plain([...entries(1, 20, 1), ...entries(21, 40, 2)]));
  assert.deepEqual(state.hardState, { term: 2, votedFor: 3, commitIndex: 35 });
  await s.save(null, [entry(41, 2)], true);
  await s.close();
  const again = await open(fs).open();
  assert.equal(again.entries.length, 41);
});

test("a partial header at the end is a torn tail; a zero-filled tail is free space", async () => {
  const fs = await populated();
  const segs = await segments(fs);
  const last = segs[segs.length - 1]!;
  const before = content(fs, last);
  fs.poke(last, new Uint8Array([...before, 9, 0, 0]));
  const logger = capture();
  const state = await open(fs, { logger }).open();
  assert.equal(state.entries.length, 40);
  assert.equal(logger.warnings.length, 1);
  assert.equal(logger.warnings[0]!.fields["offset"], before.length);
  assert.equal(fs.peek(last).length, before.length);

  const zeros = await populated();
  const zlast = (await segments(zeros)).pop()!;
  zeros.poke(zlast, new Uint8Array([...content(zeros, zlast), ...new Uint8Array(5000)]));
  const zlogger = capture();
  const z = open(zeros, { logger: zlogger });
  assert.equal((await z.open()).entries.length, 40);
  assert.equal(zlogger.warnings.length, 0);
  await z.save(null, [entry(41, 2)], true);
  await z.close();
  assert.equal((await open(zeros).open()).entries.length, 41);
});

test("a bit flip in a middle record refuses to start naming file and offset, and changes nothing", async () => {
  const fs = await populated();
  const segs = await segments(fs);
  for (const target of [segs[segs.length - 1]!, segs[0]!]) {
    const original = content(fs, target);
    const offsets = frameOffsets(original);
    const victim = offsets[2]!;
    const damaged = original.slice();
    damaged[victim + 20] = (damaged[victim + 20] ?? 0) ^ 0x10;
    fs.poke(target, damaged);
    const err = await refusal(open(fs));
    assert.equal(err.code, "CORRUPT");
    assert.equal(err.file, target);
    assert.equal(err.offset, victim);
    assert.match(err.message, new RegExp(`${target} at byte ${victim}`));
    assert.ok(err.hint !== undefined && err.hint.length > 20, "a hint says what to do");
    assert.deepEqual(fs.peek(target), damaged, "recovery must not modify a damaged log");
    fs.poke(target, original);
  }
  assert.equal((await open(fs).open()).entries.length, 40);
});

test("damage to the final complete record or a record length is refused, not guessed to be a torn write", async () => {
  const fs = await populated();
  const segs = await segments(fs);
  const last = segs[segs.length - 1]!;
  const original = content(fs, last);
  const offsets = frameOffsets(original);
  const finalRecord = offsets[offsets.length - 1]!;
  const flipped = original.slice();
  flipped[flipped.length - 1] = (flipped[flipped.length - 1] ?? 0) ^ 1;
  fs.poke(last, flipped);
  assert.equal((await refusal(open(fs))).offset, finalRecord);
  const badLength = original.slice();
  badLength[offsets[1]! + 2] = 0x7f; // payload length of the second record now runs past the end
  fs.poke(last, badLength);
  const err = await refusal(open(fs));
  assert.equal(err.offset, offsets[1]);
  assert.match(err.message, /header checksum/);
});

test("a missing segment, a gap in indexes and a term going backwards refuse to start", async () => {
  const fs = await populated();
  const segs = await segments(fs);
  assert.ok(segs.length >= 3, `${segs.length} segments`);
  const middle = segs[1]!;
  const saved = fs.peek(middle);
  await fs.unlink(middle);
  assert.match((await refusal(open(fs))).message, /missing/);

  // Re-create it, then append a well-formed record that skips an index.
  const h = await fs.open(middle, "create");
  await h.append(saved);
  const last = segs[segs.length - 1]!;
  const tail = content(fs, last);
  fs.poke(last, new Uint8Array([...tail, ...encodeRecords([{ type: "entries", entries: [entry(43, 2)] }])]));
  const gap = await refusal(open(fs));
  assert.equal(gap.code, "CORRUPT");
  assert.match(gap.message, /gap in the log: entry 43 follows 40/);
  assert.equal(gap.offset, tail.length);

  fs.poke(last, new Uint8Array([...tail, ...encodeRecords([{ type: "entries", entries: [entry(41, 1)] }])]));
  const back = await refusal(open(fs));
  assert.match(back.message, /term goes backwards: entry 41 has term 1 after term 2/);
  assert.equal(back.file, last);
});

test("a folder of another node or cluster refuses to start, naming both", async () => {
  const fs = await populated();
  const otherNode = await refusal(open(fs, { nodeId: 2 }));
  assert.equal(otherNode.code, "CLUSTER_MISMATCH");
  assert.match(otherNode.message, /belongs to node 1 of cluster "c1", but this is node 2 of cluster "c1"/);
  const otherCluster = await refusal(open(fs, { clusterId: "c2" }));
  assert.match(otherCluster.message, /node 1 of cluster "c1", but this is node 1 of cluster "c2"/);
  assert.equal(otherCluster.file, "/data/identity.json");
});

test("a WAL segment copied from another node's folder refuses to start", async () => {
  const mine = await populated();
  const theirs = new MemFileSystem();
  const t = new FileStorage({ fs: theirs, dir: "/data", clusterId: "c1", nodeId: 9, logger: capture() });
  await t.open();
  await t.save({ term: 1, votedFor: null, commitIndex: 0 }, [], true);
  await t.close();
  const foreign = (await segments(theirs))[0]!;
  const segs = await segments(mine);
  const next = `/data/wal/${segmentName(segs.length + 1, 41)}`;
  const h = await mine.open(next, "create");
  await h.append(theirs.peek(foreign));
  const err = await refusal(open(mine));
  assert.equal(err.code, "CLUSTER_MISMATCH");
  assert.equal(err.file, next);
  assert.match(err.message, /belongs to node 9 of cluster "c1", but this is node 1/);
});

test("missing or damaged hard state and identity refuse rather than guess", async () => {
  // A WAL whose only segment lost its hard state record.
  const fs = await populated(1 << 20);
  const [only] = await segments(fs);
  const bytes = content(fs, only!);
  const offsets = frameOffsets(bytes);
  fs.poke(only!, new Uint8Array([...bytes.subarray(0, offsets[1]!), ...bytes.subarray(offsets[2]!)]));
  // Entries from 1 now follow the header directly, and no hard state record precedes them; the
  // saves each wrote one, so remove those too by rebuilding the segment from its header and entries.
  const rebuilt: Uint8Array[] = [bytes.subarray(0, offsets[1]!)];
  for (let i = 2; i < offsets.length; i++) {
    const f = readFrame(bytes, offsets[i]!);
    if (f.kind === "ok" && f.type === 2) rebuilt.push(bytes.subarray(offsets[i]!, f.end));
  }
  fs.poke(only!, Buffer.concat(rebuilt));
  assert.match((await refusal(open(fs))).message, /no hard state/);

  const fs2 = await populated();
  await fs2.unlink("/data/identity.json");
  const noId = await refusal(open(fs2));
  assert.equal(noId.code, "CORRUPT");
  assert.match(noId.message, /identity file is missing/);
  const h = await fs2.open("/data/identity.json", "create");
  await h.append(new TextEncoder().encode("{not json"));
  assert.match((await refusal(open(fs2))).message, /not valid JSON/);

  const fs3 = await populated();
  for (const seg of await segments(fs3)) await fs3.unlink(seg);
  assert.match((await refusal(open(fs3))).message, /WAL is missing/);
});

test("a hard state whose commit index is beyond the log refuses to start", async () => {
  const fs = await populated();
  const segs = await segments(fs);
  const last = segs[segs.length - 1]!;
  const extra = encodeRecords([{ type: "hardState", hardState: { term: 2, votedFor: 3, commitIndex: 90 } }]);
  fs.poke(last, new Uint8Array([...content(fs, last), ...extra]));
  assert.match(
    (await refusal(open(fs))).message,
    /commit index 90 is beyond the recovered log's last index 40/,
  );
});

async function withSnapshots(maxSegmentBytes: number): Promise<MemFileSystem> {
  const fs = new MemFileSystem();
  const s = open(fs, { maxSegmentBytes });
  await s.open();
  for (let i = 1; i <= 60; i += 5)
    await s.save({ term: 1, votedFor: 1, commitIndex: i + 4 }, entries(i, i + 4, 1), true);
  const a = imageOf(400, 1);
  const b = imageOf(500, 2);
  await s.saveSnapshot(metaFor(20, 1, a), a);
  await s.saveSnapshot(metaFor(50, 1, b), b);
  await s.close();
  return fs;
}

test("a damaged newest snapshot falls back to an older one when the WAL covers the gap", async () => {
  const fs = await withSnapshots(1 << 20);
  const newest = "/data/snap/00000000000000000050-00000000000000000001.snap";
  const bytes = fs.peek(newest);
  bytes[bytes.length - 3] = (bytes[bytes.length - 3] ?? 0) ^ 0xff;
  fs.poke(newest, bytes);
  const logger = capture();
  const s = open(fs, { logger, maxSegmentBytes: 1 << 20 });
  const state = await s.open();
  assert.equal(state.snapshot?.index, 20);
  assert.deepEqual(plain(state.entries), plain(entries(21, 60, 1)));
  assert.ok(logger.warnings.some((w) => w.fields["file"] === newest && /damaged/.test(w.message)));
  assert.ok(await fs.exists(`${newest}.corrupt`));
  assert.deepEqual((await s.loadSnapshotImage())?.image, imageOf(400, 1));
  await s.close();
});

test("a damaged or missing snapshot the WAL depends on refuses to start, naming it", async () => {
  const fs = await withSnapshots(300);
  assert.ok((await segments(fs)).length < 10, "compaction removed covered segments");
  const newest = "/data/snap/00000000000000000050-00000000000000000001.snap";
  const bytes = fs.peek(newest);
  bytes[bytes.length - 3] = (bytes[bytes.length - 3] ?? 0) ^ 0xff;
  fs.poke(newest, bytes);
  const err = await refusal(open(fs, { maxSegmentBytes: 300 }));
  assert.equal(err.code, "CORRUPT");
  assert.equal(err.file, newest);
  assert.match(err.message, /WAL no longer holds entries 21\.\.\d+/);

  for (const name of await fs.readdir("/data/snap")) await fs.unlink(`/data/snap/${name}`);
  assert.match((await refusal(open(fs, { maxSegmentBytes: 300 }))).message, /no snapshot covers/);
});

test("compaction keeps retainSnapshots snapshot files and removes covered segments", async () => {
  const fs = new MemFileSystem();
  const s = open(fs, { maxSegmentBytes: 300 });
  await s.open();
  for (let i = 1; i <= 60; i += 5)
    await s.save({ term: 1, votedFor: 1, commitIndex: i + 4 }, entries(i, i + 4, 1), true);
  const before = (await segments(fs)).length;
  for (const [index, seed] of [
    [10, 1],
    [30, 2],
    [55, 3],
  ] as const) {
    const image = imageOf(100, seed);
    await s.saveSnapshot(metaFor(index, 1, image), image);
  }
  assert.deepEqual(await fs.readdir("/data/snap"), [
    "00000000000000000030-00000000000000000001.snap",
    "00000000000000000055-00000000000000000001.snap",
  ]);
  const after = await segments(fs);
  assert.ok(after.length < before && after.length <= 3, `${before} -> ${after.length} segments`);
  await s.close();
  const state = await open(fs, { maxSegmentBytes: 300 }).open();
  assert.deepEqual(plain(state.entries), plain(entries(56, 60, 1)));
});

test("real files: a folder locked by a live process is refused; a stale lock is taken over", async () => {
  const root = await mkdtemp(join(tmpdir(), "raftkv-lock-"));
  try {
    const make = (): FileStorage =>
      new FileStorage({
        fs: new RealFileSystem(),
        dir: join(root, "d"),
        clusterId: "c",
        nodeId: 1,
        logger: capture(),
      });
    const a = make();
    await a.open();
    const err = await make()
      .open()
      .then(
        () => assert.fail("second opener must be refused"),
        (e: unknown) => e,
      );
    assert.ok(err instanceof RaftKvError && err.code === "STORAGE");
    assert.match(err.message, /already in use.*locked by running process \d+ \(this process\)/);
    await a.close();
    await writeFile(join(root, "d", "LOCK"), "999999999 1\n");
    const b = make();
    await b.open();
    await b.close();
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test("incarnation: made with a new folder and kept across opens; an older folder gets one at its first open, persisted; a bad one refuses", async () => {
  const fs = new MemFileSystem();
  const s0 = open(fs);
  const first = await s0.open();
  assert.match(first.incarnation ?? "", /^[0-9a-f]{16}$/);
  const idText = (): string => new TextDecoder().decode(fs.peek("/data/identity.json"));
  assert.equal(JSON.parse(idText()).incarnation, first.incarnation);
  await s0.save({ term: 1, votedFor: 1, commitIndex: 0 }, entries(1, 3, 1), true);
  await s0.close();
  const s = open(fs);
  assert.equal((await s.open()).incarnation, first.incarnation, "the same folder, the same incarnation");
  await s.close();

  // A folder as versions before incarnations wrote it: identity.json without one.
  const old = JSON.parse(idText()) as Record<string, unknown>;
  delete old["incarnation"];
  fs.poke("/data/identity.json", new TextEncoder().encode(`${JSON.stringify(old)}\n`));
  const upgraded = open(fs);
  const got = await upgraded.open();
  assert.match(got.incarnation ?? "", /^[0-9a-f]{16}$/);
  assert.notEqual(got.incarnation, first.incarnation);
  assert.deepEqual(
    got.entries.map((e) => e.index),
    [1, 2, 3],
    "the log is kept",
  );
  await upgraded.close();
  // Persisted durably (written atomically and the folder synced): a power loss keeps it.
  fs.crash(new Prng(7));
  const again = open(fs);
  assert.equal((await again.open()).incarnation, got.incarnation);
  await again.close();

  // A wiped folder (empty) under the same id is a new incarnation.
  const fresh = new MemFileSystem();
  assert.notEqual((await open(fresh).open()).incarnation, got.incarnation);

  const bad = JSON.parse(idText()) as Record<string, unknown>;
  bad["incarnation"] = "XYZ";
  fs.poke("/data/identity.json", new TextEncoder().encode(JSON.stringify(bad)));
  const refused = await refusal(open(fs));
  assert.equal(refused.code, "CORRUPT");
  assert.match(refused.message, /incarnation is not 16 lowercase hex digits/);
});
