// The FileSystem seam: the same behaviour from RealFileSystem and MemFileSystem, and the twin's model
// of durability (unsynced data, directory entries, torn writes) and faults.

import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { Prng } from "../lib/prng.ts";
import type { FileSystem } from "./file-system.ts";
import { errnoOf } from "./file-system.ts";
import { MemFileSystem, SimulatedCrash } from "./mem-file-system.ts";
import { RealFileSystem } from "./real-file-system.ts";

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const text = (b: Uint8Array): string => new TextDecoder().decode(b);

async function conformance(fs: FileSystem, root: string): Promise<void> {
  const dir = `${root}/a/b`;
  await fs.mkdir(dir);
  await fs.mkdir(dir);
  assert.equal(await fs.exists(dir), true);
  const h = await fs.open(`${dir}/f`, "create");
  await h.append(bytes("hello "));
  await h.append(bytes("world"));
  await h.writeAt(0, bytes("J"));
  assert.equal(await h.size(), 11);
  assert.equal(text(await h.read(1, 4)), "ello");
  assert.equal(text(await h.read(6, 100)), "world");
  assert.equal((await h.read(50, 10)).length, 0);
  await h.truncate(5);
  await h.append(bytes("!"));
  await h.sync();
  await h.close();
  assert.equal(text(await fs.readFile(`${dir}/f`)), "Jello!");
  const w = await fs.open(`${dir}/f`, "write");
  await w.append(bytes("?"));
  await w.close();
  assert.equal(text(await fs.readFile(`${dir}/f`)), "Jello!?");
  const o = await fs.open(`${dir}/g`, "overwrite");
  await o.append(bytes("x"));
  await o.close();
  await fs.rename(`${dir}/g`, `${dir}/h`);
  assert.deepEqual(await fs.readdir(dir), ["f", "h"]);
  await fs.unlink(`${dir}/h`);
  await fs.syncDir(dir);
  assert.deepEqual(await fs.readdir(dir), ["f"]);
  await assert.rejects(fs.open(`${dir}/missing`, "read"), (e: unknown) => errnoOf(e) === "ENOENT");
  await assert.rejects(fs.open(`${dir}/missing`, "write"), (e: unknown) => errnoOf(e) === "ENOENT");
  await assert.rejects(fs.unlink(`${dir}/missing`), (e: unknown) => errnoOf(e) === "ENOENT");
  assert.equal(await fs.exists(`${dir}/missing`), false);
  const lock = await fs.lock(root);
  await assert.rejects(fs.lock(root), (e: unknown) => errnoOf(e) === "ELOCKED");
  await lock.release();
  const again = await fs.lock(root);
  await again.release();
}

test("FileSystem conformance: MemFileSystem", async () => {
  const fs = new MemFileSystem();
  await conformance(fs, "/r");
});

test("FileSystem conformance: RealFileSystem", async () => {
  const root = await mkdtemp(join(tmpdir(), "raftkv-fs-"));
  try {
    await conformance(new RealFileSystem(), root);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

/** A seed whose first draw decides "no tear" (false) or "tear" (true). */
function seedFor(tear: boolean): number {
  for (let seed = 1; ; seed++) if (new Prng(seed).chance(0.5) === tear) return seed;
}

test("crash drops unsynced data and directory entries; synced ones survive", async () => {
  const fs = new MemFileSystem();
  await fs.mkdir("/d");
  await fs.syncDir("/");
  const a = await fs.open("/d/a", "create");
  await a.append(bytes("synced"));
  await a.sync();
  await fs.syncDir("/d");
  await a.append(bytes("+lost"));
  const b = await fs.open("/d/b", "create");
  await b.append(bytes("b"));
  await b.sync(); // data synced, but its directory entry is not
  await fs.rename("/d/a", "/d/renamed");
  fs.crash(new Prng(seedFor(false)));
  assert.deepEqual(await fs.readdir("/d"), ["a"]);
  assert.equal(text(await fs.readFile("/d/a")), "synced");
  await assert.rejects(a.append(bytes("x")), (e: unknown) => errnoOf(e) === "EBADF");
});

test("crash sometimes tears the last unsynced write, keeping a strict prefix of it", async () => {
  const fs = new MemFileSystem();
  const h = await fs.open("/f", "create");
  await h.append(bytes("base"));
  await h.sync();
  await fs.syncDir("/");
  await h.append(bytes("-first"));
  await h.append(bytes("-second-write"));
  fs.crash(new Prng(seedFor(true)));
  const after = text(await fs.readFile("/f"));
  assert.ok(after.startsWith("base-first") && "base-first-second-write".startsWith(after), after);
  assert.notEqual(after, "base-first-second-write");
});

test("crashAfter stops every operation at the chosen point; faults fire on demand", async () => {
  const fs = new MemFileSystem();
  const h = await fs.open("/f", "create");
  const start = fs.pointCount;
  fs.crashAfter(2);
  await h.append(bytes("1"));
  await h.sync();
  await assert.rejects(h.append(bytes("2")), (e: unknown) => e instanceof SimulatedCrash);
  await assert.rejects(fs.readFile("/f"), (e: unknown) => e instanceof SimulatedCrash);
  assert.equal(fs.pointCount, start + 2);
  fs.crash(new Prng(1));
  assert.equal(await fs.exists("/f"), false, "never synced into its directory");

  const g = await fs.open("/g", "create");
  fs.injectFault("sync", "EIO");
  await assert.rejects(g.sync(), (e: unknown) => errnoOf(e) === "EIO");
  await g.sync();
  fs.setDiskFull(true);
  await assert.rejects(g.append(bytes("x")), (e: unknown) => errnoOf(e) === "ENOSPC");
  fs.setDiskFull(false);
  await g.append(bytes("x"));
  const lock = await fs.lock("/");
  fs.crash(new Prng(1));
  await (await fs.lock("/")).release();
  await lock.release();
});
