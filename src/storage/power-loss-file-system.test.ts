// The test-only power-loss emulation: after an emulated crash (the process gone, its memory lost) the data
// folder holds exactly what was synced: unsynced file data, creates, renames, removes and mkdirs are gone.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import type { Entry } from "../core/types.ts";
import { FileStorage } from "./file-storage.ts";
import { PowerLossFileSystem, type PowerLossRecovery, powerLossShadowDir } from "./power-loss-file-system.ts";
import { RealFileSystem } from "./real-file-system.ts";
import type { StorageLogger } from "./storage.ts";

const base = mkdtempSync(join(tmpdir(), "raftkv-powerloss-"));
after(() => rmSync(base, { recursive: true, force: true }));
let n = 0;

const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const str = (b: Uint8Array): string => new TextDecoder().decode(b);

/** A fresh data folder and a wrapper over it that has taken its lock. */
async function fresh(): Promise<{ root: string; fs: PowerLossFileSystem }> {
  const root = join(base, `d${++n}`);
  const fs = new PowerLossFileSystem(new RealFileSystem(), root);
  await fs.mkdir(root);
  await fs.lock(root);
  return { root, fs };
}

/** The process dies (its lock file stays, as after a SIGKILL); a new one starts on the folder. */
async function crashAndRestart(
  root: string,
): Promise<{ fs: PowerLossFileSystem; report: PowerLossRecovery }> {
  rmSync(join(root, "LOCK"), { force: true }); // the dead holder: RealFileSystem would take it over
  let report: PowerLossRecovery | null = null;
  const fs = new PowerLossFileSystem(new RealFileSystem(), root, { onRecovery: (r) => (report = r) });
  await fs.lock(root);
  assert.ok(report !== null);
  return { fs, report };
}

test("unsynced file data is gone after a crash; synced data and O_DSYNC writes stay", async () => {
  const { root, fs } = await fresh();
  const h = await fs.open(join(root, "a"), "create");
  await fs.syncDir(root);
  await h.append(text("hello"));
  await h.sync();
  await h.append(text(" world"));
  await h.writeDurable(11, text("!")); // durable alone: the gap before it reads as zeros after the crash
  await h.append(text(" lost"));
  assert.equal(str(await fs.readFile(join(root, "a"))), "hello world! lost", "the process sees its writes");
  const { fs: fs2, report } = await crashAndRestart(root);
  assert.equal(report.kind, "rebuilt");
  assert.deepEqual(report.rolledBack, ["a"]);
  assert.deepEqual([...(await fs2.readFile(join(root, "a")))], [...text("hello"), 0, 0, 0, 0, 0, 0, 33]);
});

test("a truncation is durable only once synced", async () => {
  const { root, fs } = await fresh();
  const h = await fs.open(join(root, "t"), "create");
  await h.append(text("0123456789"));
  await h.sync();
  await fs.syncDir(root);
  await h.truncate(3);
  const { fs: fs2 } = await crashAndRestart(root);
  assert.equal(str(await fs2.readFile(join(root, "t"))), "0123456789");
  const h2 = await fs2.open(join(root, "t"), "write");
  await h2.truncate(3);
  await h2.sync();
  const { fs: fs3 } = await crashAndRestart(root);
  assert.equal(str(await fs3.readFile(join(root, "t"))), "012");
});

test("a created file whose directory was not synced is gone, even with its data synced", async () => {
  const { root, fs } = await fresh();
  const h = await fs.open(join(root, "new"), "create");
  await h.append(text("data"));
  await h.sync();
  await fs.mkdir(join(root, "sub", "deeper"));
  const { fs: fs2, report } = await crashAndRestart(root);
  assert.equal(await fs2.exists(join(root, "new")), false);
  assert.equal(await fs2.exists(join(root, "sub")), false);
  assert.deepEqual([...report.dropped].sort(), ["new", "sub", "sub/deeper"]);
});

test("renames and removes count only once the directory is synced", async () => {
  const { root, fs } = await fresh();
  // Durable: old holds "v1".
  const h = await fs.open(join(root, "old"), "create");
  await h.append(text("v1"));
  await h.sync();
  await h.close();
  await fs.syncDir(root);
  // A temp file written and synced, renamed over "old", folder not synced; "gone" removed, not synced.
  const g = await fs.open(join(root, "gone"), "create");
  await g.append(text("g"));
  await g.sync();
  await fs.syncDir(root);
  const t = await fs.open(join(root, "old.tmp"), "overwrite");
  await t.append(text("v2"));
  await t.sync();
  await fs.rename(join(root, "old.tmp"), join(root, "old"));
  await fs.unlink(join(root, "gone"));
  assert.equal(str(await fs.readFile(join(root, "old"))), "v2");
  const { fs: fs2, report } = await crashAndRestart(root);
  assert.equal(str(await fs2.readFile(join(root, "old"))), "v1", "the rename was not durable");
  assert.equal(await fs2.exists(join(root, "old.tmp")), false, "nor the temp file's name");
  assert.equal(str(await fs2.readFile(join(root, "gone"))), "g", "the remove was not durable");
  assert.deepEqual(report.restored, ["gone"]);
  // The same with the folder synced: the rename and the remove stick.
  const t2 = await fs2.open(join(root, "old.tmp"), "overwrite");
  await t2.append(text("v3"));
  await t2.sync();
  await fs2.rename(join(root, "old.tmp"), join(root, "old"));
  await fs2.unlink(join(root, "gone"));
  await fs2.syncDir(root);
  const { fs: fs3 } = await crashAndRestart(root);
  assert.equal(str(await fs3.readFile(join(root, "old"))), "v3");
  assert.deepEqual(await fs3.readdir(root), ["LOCK", "old"]);
  assert.deepEqual(
    readFileSync(join(powerLossShadowDir(root), "state.json"), "utf8").includes("old.tmp"),
    false,
  );
});

test("without a shadow the folder is adopted as durable; the node's log and LOCK are never touched", async () => {
  const root = join(base, `d${++n}`);
  mkdirSync(join(root, "wal"), { recursive: true });
  writeFileSync(join(root, "wal", "seg"), "before");
  writeFileSync(join(root, "raftkv.log"), "log 1\n");
  const { fs, report } = await crashAndRestart(root);
  assert.deepEqual(
    { kind: report.kind, files: report.files, dirs: report.dirs },
    { kind: "adopted", files: 1, dirs: 1 },
  );
  const h = await fs.open(join(root, "wal", "seg"), "write");
  await h.append(text(" after"));
  writeFileSync(join(root, "raftkv.log"), "log 1\nlog 2\n");
  const { fs: fs2 } = await crashAndRestart(root);
  assert.equal(str(await fs2.readFile(join(root, "wal", "seg"))), "before");
  assert.equal(readFileSync(join(root, "raftkv.log"), "utf8"), "log 1\nlog 2\n");
  // Removing the shadow (the harness does after a plain kill) makes the folder as it is durable.
  await (await fs2.open(join(root, "wal", "seg"), "write")).append(text(" kept"));
  rmSync(powerLossShadowDir(root), { recursive: true });
  const { fs: fs3, report: r3 } = await crashAndRestart(root);
  assert.equal(r3.kind, "adopted");
  assert.equal(str(await fs3.readFile(join(root, "wal", "seg"))), "before kept");
});

const quiet: StorageLogger = { info: () => undefined, warn: () => undefined };

function entries(from: number, to: number, term: number): Entry[] {
  const out: Entry[] = [];
  for (let i = from; i <= to; i++) out.push({ index: i, term, kind: "command", data: text(`e${i}`) });
  return out;
}

test("FileStorage on the emulation: unsynced saves are lost at a crash, synced ones kept", async () => {
  const root = join(base, `d${++n}`);
  const open = async (): Promise<FileStorage> =>
    new FileStorage({
      fs: new PowerLossFileSystem(new RealFileSystem(), root),
      dir: root,
      clusterId: "c",
      nodeId: 1,
      logger: quiet,
    });
  const s = await open();
  await s.open();
  await s.save({ term: 1, votedFor: 1, commitIndex: 0 }, entries(1, 5, 1), true);
  await s.save({ term: 1, votedFor: 1, commitIndex: 5 }, entries(6, 9, 1), false);
  rmSync(join(root, "LOCK"));
  const s2 = await open();
  const r = await s2.open();
  assert.deepEqual(
    r.entries.map((e) => e.index),
    [1, 2, 3, 4, 5],
  );
  assert.deepEqual(r.hardState, { term: 1, votedFor: 1, commitIndex: 0 });
  await s2.save({ term: 2, votedFor: null, commitIndex: 5 }, entries(6, 7, 2), true);
  await s2.close();
  const s3 = await open();
  const r3 = await s3.open();
  assert.deepEqual(
    r3.entries.map((e) => `${e.index}/${e.term}`),
    ["1/1", "2/1", "3/1", "4/1", "5/1", "6/2", "7/2"],
  );
  await s3.close();
});

test("a real SIGKILL under the emulation loses the unsynced write, keeps the synced one", async () => {
  const root = join(base, `d${++n}`);
  const modUrl = new URL("./power-loss-file-system.ts", import.meta.url).href;
  const realUrl = new URL("./real-file-system.ts", import.meta.url).href;
  const script = join(base, `child-${n}.mts`);
  writeFileSync(
    script,
    `import { PowerLossFileSystem } from ${JSON.stringify(modUrl)};
import { RealFileSystem } from ${JSON.stringify(realUrl)};
const root = ${JSON.stringify(root)};
const fs = new PowerLossFileSystem(new RealFileSystem(), root);
await fs.mkdir(root);
await fs.lock(root);
const h = await fs.open(root + "/f", "create");
await fs.syncDir(root);
await h.append(new TextEncoder().encode("synced"));
await h.sync();
await h.append(new TextEncoder().encode(" unsynced"));
process.stdout.write("ready\\n");
setInterval(() => {}, 1000);
`,
  );
  const child = spawn(process.execPath, ["--import", "tsx", script], {
    cwd: fileURLToPath(new URL("../../", import.meta.url)),
    stdio: ["ignore", "pipe", "inherit"],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on("data", (d: Buffer) => {
      if (d.toString().includes("ready")) resolve();
    });
    child.once("exit", (code) => reject(new Error(`child exited early (${code})`)));
  });
  assert.equal(readFileSync(join(root, "f"), "utf8"), "synced unsynced", "the page cache has both");
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGKILL");
  await exited;
  assert.ok(existsSync(join(root, "LOCK")));
  const fs = new PowerLossFileSystem(new RealFileSystem(), root);
  await fs.lock(root); // the dead pid's lock is taken over, then the folder is rebuilt
  assert.equal(str(await fs.readFile(join(root, "f"))), "synced");
});
