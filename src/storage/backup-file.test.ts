// Backup files on the in-memory file system: a streamed backup is checked as it completes (a short
// stream or a wrong checksum leaves no file), a damaged one is refused by checkBackup, and a restore
// gives a data folder that FileStorage opens at the backup's index, with the new members and cluster id.

import assert from "node:assert/strict";
import { test } from "node:test";
import { crc32c } from "../lib/crc32c.ts";
import { RaftKvError } from "../lib/errors.ts";
import { BackupWriter, checkBackup, restoreBackup } from "./backup-file.ts";
import { FileStorage } from "./file-storage.ts";
import { MemFileSystem } from "./mem-file-system.ts";

const image = new Uint8Array(10_000).map((_, i) => (i * 7) & 0xff);
const source = { clusterId: "prod", nodeId: 2 };

async function saved(fs: MemFileSystem, file: string): Promise<void> {
  const w = new BackupWriter(fs, file);
  await w.begin(source, { index: 42, term: 5, sizeBytes: image.length });
  for (let at = 0; at < image.length; at += 3000) await w.write(image.subarray(at, at + 3000));
  await w.finish(crc32c(image));
}

test("a saved backup reads back with its index, term, size and source", async () => {
  const fs = new MemFileSystem();
  await saved(fs, "/b.rkv");
  const info = await checkBackup(fs, "/b.rkv");
  assert.deepEqual(
    { ...info.meta, source: info.source.clusterId, node: info.source.nodeId },
    { index: 42, term: 5, sizeBytes: image.length, crc32c: crc32c(image), source: "prod", node: 2 },
  );
  assert.equal(await fs.exists("/b.rkv.part"), false);
});

test("a stream cut short or with a wrong checksum fails and leaves no backup", async () => {
  const fs = new MemFileSystem();
  const short = new BackupWriter(fs, "/s.rkv");
  await short.begin(source, { index: 1, term: 1, sizeBytes: 100 });
  await short.write(new Uint8Array(50));
  await assert.rejects(short.finish(crc32c(new Uint8Array(50))), /ended after 50 of 100 bytes/);
  await short.abort();
  assert.equal(await fs.exists("/s.rkv"), false);
  assert.equal(await fs.exists("/s.rkv.part"), false);
  const wrong = new BackupWriter(fs, "/w.rkv");
  await wrong.begin(source, { index: 1, term: 1, sizeBytes: 4 });
  await wrong.write(new Uint8Array([1, 2, 3, 4]));
  await assert.rejects(wrong.finish(12345), /do not match the checksum/);
  const over = new BackupWriter(fs, "/o.rkv");
  await over.begin(source, { index: 1, term: 1, sizeBytes: 2 });
  await assert.rejects(over.write(new Uint8Array(3)), /more than the 2 bytes/);
});

test("checkBackup refuses a file that is not a backup, one cut short, and one with a flipped bit", async () => {
  const fs = new MemFileSystem();
  const h = await fs.open("/junk", "create");
  await h.writeAt(0, new TextEncoder().encode("bbolt? no"));
  await h.close();
  await assert.rejects(checkBackup(fs, "/junk"), /not a raftkv backup/);
  await assert.rejects(checkBackup(fs, "/missing"), /no such file/);
  await saved(fs, "/b.rkv");
  const bytes = await fs.readFile("/b.rkv");
  const cut = await fs.open("/cut.rkv", "create");
  await cut.writeAt(0, bytes.subarray(0, bytes.length - 1));
  await cut.close();
  await assert.rejects(checkBackup(fs, "/cut.rkv"), /cut short/);
  const flipped = bytes.slice();
  flipped[flipped.length - 1]! ^= 1;
  const f = await fs.open("/flip.rkv", "create");
  await f.writeAt(0, flipped);
  await f.close();
  await assert.rejects(checkBackup(fs, "/flip.rkv"), /fails its checksum/);
});

test("restore builds a folder FileStorage opens at the backup's index, with the new members", async () => {
  const fs = new MemFileSystem();
  await saved(fs, "/b.rkv");
  const members = new Map([
    [0, "10.0.0.1:7000"],
    [1, "10.0.0.2:7000"],
    [2, "10.0.0.3:7000"],
  ]);
  const base = { fs, file: "/b.rkv", members };
  await assert.rejects(
    restoreBackup({ ...base, dataDir: "/d", clusterId: "prod", nodeId: 0 }),
    (e: unknown) => e instanceof RaftKvError && /another --cluster-id/.test(e.message),
  );
  await assert.rejects(
    restoreBackup({ ...base, dataDir: "/d", clusterId: "new", nodeId: 7 }),
    /--id 7 is not one of the members/,
  );
  await restoreBackup({ ...base, dataDir: "/d", clusterId: "new", nodeId: 1 });
  await assert.rejects(
    restoreBackup({ ...base, dataDir: "/d", clusterId: "new", nodeId: 1 }),
    /is not empty/,
  );
  const storage = new FileStorage({ fs, dir: "/d", clusterId: "new", nodeId: 1 });
  const state = await storage.open();
  assert.equal(state.snapshot?.index, 42);
  assert.deepEqual(state.snapshot?.membership?.voters, [0, 1, 2]);
  assert.deepEqual(state.entries, []);
  assert.equal(state.hardState.commitIndex, 42);
  const loaded = await storage.loadSnapshotImage();
  assert.deepEqual(loaded?.image, image);
  await storage.close();
  // The folder belongs to the new cluster: opening it as the old one is refused.
  await assert.rejects(new FileStorage({ fs, dir: "/d", clusterId: "prod", nodeId: 1 }).open());
});
