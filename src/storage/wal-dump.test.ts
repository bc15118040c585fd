// wal dump and verify: readable lines (text and JSON) and problems reported without touching the files.

import assert from "node:assert/strict";
import { test } from "node:test";
import { FileStorage } from "./file-storage.ts";
import { MemFileSystem } from "./mem-file-system.ts";
import type { StorageLogger } from "./storage.ts";
import { entry, imageOf, metaFor } from "./storage-conformance.ts";
import { dumpWal, verifyWal } from "./wal-dump.ts";
import { writtenExtent } from "./wal-scan.ts";

const quiet: StorageLogger = { info: () => undefined, warn: () => undefined };

async function sample(): Promise<MemFileSystem> {
  const fs = new MemFileSystem();
  const s = new FileStorage({
    fs,
    dir: "/data",
    clusterId: "c9",
    nodeId: 2,
    maxSegmentBytes: 300,
    logger: quiet,
  });
  await s.open();
  await s.save(
    { term: 1, votedFor: 1, commitIndex: 0 },
    [{ index: 1, term: 1, kind: "noop", data: new Uint8Array() }],
    true,
  );
  await s.save(
    { term: 1, votedFor: 1, commitIndex: 3 },
    [entry(2, 1, "SET a 1"), entry(3, 1, "SET b 2")],
    true,
  );
  const image = imageOf(50, 1);
  await s.saveSnapshot(metaFor(2, 1, image), image);
  await s.save(
    { term: 2, votedFor: 3, commitIndex: 3 },
    [{ index: 4, term: 2, kind: "noop", data: new Uint8Array() }],
    true,
  );
  await s.save(null, [{ index: 5, term: 2, kind: "command", data: Uint8Array.of(0, 255) }], true);
  await s.close();
  return fs;
}

test("dumpWal prints hard state, snapshot, then one entry a line", async () => {
  const fs = await sample();
  const lines = await dumpWal(fs, "/data");
  assert.deepEqual(lines, [
    "identity cluster=c9 node=2 format=1",
    "hardstate term=2 vote=3 commit=3",
    `snapshot index=2 term=1 size=50 crc32c=0x${metaFor(2, 1, imageOf(50, 1)).crc32c.toString(16).padStart(8, "0")} file=/data/snap/00000000000000000002-00000000000000000001.snap`,
    "3 1 command SET b 2",
    "NO-OP 2",
    "5 2 command 0x00ff",
  ]);
  const described = await dumpWal(fs, "/data", { describe: (d) => `<${d.length} bytes>` });
  assert.equal(described[3], "3 1 command <7 bytes>");
});

test("dumpWal --json gives one parseable object a line", async () => {
  const fs = await sample();
  const objects = (await dumpWal(fs, "/data", { json: true })).map(
    (l) => JSON.parse(l) as Record<string, unknown>,
  );
  assert.deepEqual(objects[1], { type: "hardState", term: 2, votedFor: 3, commitIndex: 3 });
  assert.deepEqual(objects[objects.length - 1], {
    type: "entry",
    index: 5,
    term: 2,
    kind: "command",
    data: "00ff",
    text: "0x00ff",
  });
  assert.deepEqual(objects[4], { type: "entry", index: 4, term: 2, kind: "noop", data: "" });
});

test("verifyWal reports a torn tail as a warning and damage as a problem, changing nothing", async () => {
  const fs = await sample();
  assert.deepEqual(await verifyWal(fs, "/data"), { ok: true, problems: [], warnings: [] });
  const segs = (await fs.readdir("/data/wal")).filter((n) => n.endsWith(".wal"));
  const last = `/data/wal/${segs[segs.length - 1]}`;
  const raw = fs.peek(last);
  const bytes = raw.subarray(0, writtenExtent(raw));
  fs.poke(last, bytes.subarray(0, bytes.length - 3));
  const torn = await verifyWal(fs, "/data");
  assert.equal(torn.ok, true);
  assert.match(torn.warnings[0] ?? "", /WAL tail torn at byte \d+ of \/data\/wal\//);
  assert.equal(fs.peek(last).length, bytes.length - 3, "verify must not truncate");
  const damaged = bytes.slice();
  damaged[20] = (damaged[20] ?? 0) ^ 4;
  fs.poke(last, damaged);
  const bad = await verifyWal(fs, "/data");
  assert.equal(bad.ok, false);
  assert.match(bad.problems[0] ?? "", /CORRUPT: .*at byte 0\]/);
  await assert.rejects(dumpWal(fs, "/data"), /CORRUPT/);
});
