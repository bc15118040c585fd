// Crash tests of LmdbStore. LMDB writes its file with its own system calls from its own threads, so the
// FileSystem seam's power-loss emulation cannot see them; instead:
// 1. Process crashes: a child process writes batches (crash-workload.ts) and is killed with SIGKILL at
//    random points, again and again on the same folder; each reopening must hold a whole batch prefix
//    (contents equal to the model at its applied index) and nothing the child saw flushed may be lost.
// 2. Power loss: the child runs once under strace, which records every pwrite, fsync/fdatasync and the
//    child's "flushed N" lines, with the bytes written. At every point of that record the test rebuilds
//    data.mdb as a power loss could have left it: every write covered by a completed fsync (or written
//    through LMDB's O_DSYNC descriptor) is there, and of the writes not yet covered each 4 KiB piece is
//    there or not at random (seeded): the disk may have written any of them, in any order. The store
//    opened on that file must again hold a whole batch prefix with nothing flushed lost. Skipped (and
//    says so) when strace is not installed.

import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { Prng } from "../lib/prng.ts";
import { contentsOf, modelAt } from "./crash-workload.ts";
import { LmdbStore } from "./lmdb-store.ts";

const WORKLOAD = "src/store/crash-workload.ts";

async function checkReopened(dir: string, flushed: number, what: string): Promise<number> {
  const store = LmdbStore.open({ dir });
  try {
    const applied = store.appliedIndex;
    assert.ok(applied >= flushed, `${what}: applied index ${applied} is behind the flushed ${flushed}`);
    assert.deepEqual(
      contentsOf(store),
      modelAt(applied),
      `${what}: contents differ from batches 1..${applied}`,
    );
    return applied;
  } finally {
    await store.close();
  }
}

test("LmdbStore: SIGKILL at random points loses nothing flushed and never leaves a partial batch", async () => {
  const seed = 20260;
  const prng = new Prng(seed);
  const root = mkdtempSync(join(tmpdir(), "raftkv-lmdb-kill-"));
  const dir = join(root, "state");
  try {
    let flushed = 0;
    for (let round = 0; round < 6; round++) {
      const killAfter = 1 + (prng.nextU32() % 12);
      const seen = await new Promise<number>((resolve, reject) => {
        const child = spawn(process.execPath, ["--import", "tsx", WORKLOAD, dir, "100000", "2"], {
          stdio: ["ignore", "pipe", "inherit"],
        });
        let lines = 0;
        let last = flushed;
        let buf = "";
        child.stdout.on("data", (d: Buffer) => {
          buf += d.toString();
          for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
            const line = buf.slice(0, i);
            buf = buf.slice(i + 1);
            const m = /^flushed (\d+)$/.exec(line);
            if (m === null) continue;
            last = Number(m[1]);
            if (++lines === killAfter) child.kill("SIGKILL");
          }
        });
        child.on("error", reject);
        child.on("exit", (code, signal) => {
          if (signal === "SIGKILL") resolve(last);
          else reject(new Error(`crash-workload exited with ${code} before the kill (seed ${seed})`));
        });
      });
      flushed = await checkReopened(dir, seen, `round ${round} (seed ${seed})`);
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

interface Write {
  readonly startAt: number;
  readonly doneAt: number;
  readonly offset: number;
  readonly data: Uint8Array;
  readonly dsync: boolean;
}

interface Trace {
  readonly writes: Write[];
  /** fsync/fdatasync of the data file: [line where it started, line where it returned]. */
  readonly syncs: [number, number][];
  /** "flushed N" printed by the child: [line, N]. */
  readonly flushed: [number, number][];
  /** The line of "opened": the store exists durably from there on. */
  readonly openedAt: number;
  readonly lines: number;
}

/** Reads strace's record (-f -e write=all) of the child, keeping what concerns `dataFile`. */
function parseTrace(text: string, dataFile: string): Trace {
  const lines = text.split("\n");
  const fds = new Map<number, { data: boolean; dsync: boolean; position: number }>();
  const pending = new Map<string, { call: string; args: string; at: number }>();
  const writes: Write[] = [];
  const syncs: [number, number][] = [];
  const flushed: [number, number][] = [];
  let openedAt = -1;
  const complete = (
    call: string,
    args: string,
    at: number,
    doneAt: number,
    result: string,
    dump: number[],
  ) => {
    if (call === "openat") {
      const fd = Number(result);
      if (fd >= 0)
        fds.set(fd, { data: args.includes(`"${dataFile}"`), dsync: args.includes("O_DSYNC"), position: 0 });
      return;
    }
    const fd = Number(/^(\d+)/.exec(args)?.[1] ?? -1);
    const f = fds.get(fd);
    if (call === "write" && fd === 1) {
      const m = /"flushed (\d+)\\n"/.exec(args);
      if (m !== null) flushed.push([doneAt, Number(m[1])]);
      if (args.includes('"opened ')) openedAt = doneAt;
      return;
    }
    if (f === undefined || !f.data) return;
    if (call === "fdatasync" || call === "fsync") syncs.push([at, doneAt]);
    else if (call === "lseek") {
      assert.ok(args.endsWith("SEEK_SET"), `lseek ${args}`);
      f.position = Number(result);
    } else if (call === "writev" || call === "write") {
      assert.equal(dump.length, Number(result), `${call} dump of ${dump.length} bytes, returned ${result}`);
      writes.push({ startAt: at, doneAt, offset: f.position, data: Uint8Array.from(dump), dsync: f.dsync });
      f.position += dump.length;
    } else if (call === "pwrite64") {
      const offset = Number(/, (\d+)\s*$/.exec(args)?.[1]);
      assert.ok(Number.isSafeInteger(offset), `pwrite64 without an offset: ${args}`);
      assert.equal(dump.length, Number(result), `pwrite64 dump of ${dump.length} bytes, returned ${result}`);
      writes.push({ startAt: at, doneAt, offset, data: Uint8Array.from(dump), dsync: f.dsync });
    } else throw new Error(`unexpected ${call} on the data file: LMDB's writes changed, update this test`);
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const m = /^(\d+)\s+(.*)$/.exec(line); // strace -f pads pids to five columns
    if (m === null) continue;
    const [, pid, rest] = m as unknown as [string, string, string];
    const dump: number[] = [];
    for (let j = i + 1; j < lines.length && /^ [|*] /.test(lines[j]!); j++) {
      if (lines[j]!.startsWith(" * ")) continue; // "* N bytes in buffer k" of a writev
      for (const h of lines[j]!.slice(10, 58).trim().split(/\s+/))
        if (h.length === 2) dump.push(parseInt(h, 16));
    }
    const unfinished = /^(\w+)\((.*) <unfinished \.\.\.>$/.exec(rest);
    if (unfinished !== null) {
      pending.set(pid, { call: unfinished[1]!, args: unfinished[2]!, at: i });
      continue;
    }
    const resumed = /^<\.\.\. (\w+) resumed>.*\)\s+= (-?\d+)/.exec(rest);
    if (resumed !== null) {
      const p = pending.get(pid);
      pending.delete(pid);
      if (p !== undefined) complete(p.call, p.args, p.at, i, resumed[2]!, dump);
      continue;
    }
    const whole = /^(\w+)\((.*)\)\s+= (-?\d+)/.exec(rest);
    if (whole !== null) complete(whole[1]!, whole[2]!, i, i, whole[3]!, dump);
  }
  assert.ok(openedAt >= 0, "the trace has no 'opened' line");
  return { writes, syncs, flushed, openedAt, lines: lines.length };
}

/** data.mdb as a power loss at line `at` may leave it (see the file's comment). */
function imageAt(t: Trace, at: number, prng: Prng): Uint8Array {
  let size = 0;
  for (const w of t.writes) if (w.startAt < at) size = Math.max(size, w.offset + w.data.length);
  const out = new Uint8Array(size);
  for (const w of t.writes) {
    if (w.startAt >= at) continue;
    const durable = w.doneAt < at && (w.dsync || t.syncs.some(([s, d]) => s > w.doneAt && d < at));
    if (durable) out.set(w.data, w.offset);
    else {
      for (let o = 0; o < w.data.length; o += 4096)
        if (prng.nextU32() % 2 === 0) out.set(w.data.subarray(o, o + 4096), w.offset + o);
    }
  }
  return out;
}

const strace = spawnSync("strace", ["-V"], { encoding: "utf8" });

test("LmdbStore: a power loss at any point of a strace'd run loses nothing flushed and never leaves a partial batch", {
  skip:
    strace.status === 0
      ? false
      : "strace is not installed (apt-get install strace): power-loss emulation of LMDB skipped",
}, async () => {
  const seed = 4242;
  const root = mkdtempSync(join(tmpdir(), "raftkv-lmdb-power-"));
  try {
    const dir = join(root, "state");
    const traceFile = join(root, "trace");
    const run = spawnSync(
      "strace",
      [
        "-f",
        "-qq",
        "-o",
        traceFile,
        "-e",
        "trace=openat,lseek,pwrite64,pwritev,pwritev2,write,writev,fdatasync,fsync,msync,ftruncate,fallocate",
        "-e",
        "write=all",
        process.execPath,
        "--import",
        "tsx",
        WORKLOAD,
        dir,
        "40",
        "3",
      ],
      { encoding: "utf8", maxBuffer: 1 << 24 },
    );
    assert.equal(run.status, 0, `traced run failed: ${run.stderr}`);
    const t = parseTrace(readFileSync(traceFile, "utf8"), join(dir, "data.mdb"));
    assert.ok(t.flushed.length >= 10, `only ${t.flushed.length} flushes traced`);
    const prng = new Prng(seed);
    const check = join(root, "check");
    const points = new Set<number>();
    for (const w of t.writes) points.add(w.doneAt + 1);
    for (const [s, d] of t.syncs) points.add(s).add(d + 1);
    for (const [at] of t.flushed) points.add(at + 1);
    let checked = 0;
    const appliedSeen = new Set<number>();
    for (const at of [...points].sort((a, b) => a - b)) {
      if (at <= t.openedAt) continue;
      const flushed = Math.max(0, ...t.flushed.filter(([l]) => l < at).map(([, n]) => n));
      for (let variant = 0; variant < 2; variant++) {
        rmSync(check, { recursive: true, force: true });
        mkdirSync(check);
        writeFileSync(join(check, "data.mdb"), imageAt(t, at, prng));
        appliedSeen.add(
          await checkReopened(
            check,
            flushed,
            `power loss at trace line ${at}, variant ${variant} (seed ${seed})`,
          ),
        );
        checked++;
      }
    }
    assert.ok(checked > 50, `only ${checked} crash points`);
    assert.ok(appliedSeen.size > 5, `crash points reached only applied indexes ${[...appliedSeen]}`);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
