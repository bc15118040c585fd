// WAL benchmark on the real disk: group-commit appends/s and fsyncs/s against the disk's raw fdatasync
// rate measured in the same run, and the restart time and peak memory of a large node.
//
// Run: npx tsx scripts/bench-wal.ts [--reps 5] [--seconds 1.5] [--image-mb 300] [--tail 100000] [--skip-restart]

import { spawnSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type { Entry } from "../src/core/types.ts";
import { crc32c } from "../src/lib/crc32c.ts";
import { FileStorage } from "../src/storage/file-storage.ts";
import { RealFileSystem } from "../src/storage/real-file-system.ts";
import type { StorageLogger } from "../src/storage/storage.ts";

const ENTRY_BYTES = 256;
const quiet: StorageLogger = { info: () => undefined, warn: () => undefined };

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : fallback;
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} must be a positive number`);
  return v;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function payload(i: number): Uint8Array {
  const data = new Uint8Array(ENTRY_BYTES);
  data.fill(i & 0xff);
  return data;
}

/** Raw rate: append 256 bytes + fdatasync, in a loop, through the same FileSystem the WAL uses. */
async function rawFsyncRate(dir: string, seconds: number): Promise<number> {
  const fs = new RealFileSystem();
  const h = await fs.open(join(dir, `raw-${performance.now()}.bin`), "overwrite");
  const data = payload(1);
  let n = 0;
  const start = performance.now();
  const deadline = start + seconds * 1000;
  while (performance.now() < deadline) {
    await h.append(data);
    await h.sync();
    n++;
  }
  const rate = n / ((performance.now() - start) / 1000);
  await h.close();
  return rate;
}

/** FileStorage saves of `batch` entries with sync=true: entries/s and saves (fsyncs)/s. */
async function walRate(
  dir: string,
  batch: number,
  seconds: number,
): Promise<{ appends: number; fsyncs: number }> {
  const s = new FileStorage({ fs: new RealFileSystem(), dir, clusterId: "bench", nodeId: 1, logger: quiet });
  await s.open();
  let next = 1;
  let saves = 0;
  const start = performance.now();
  const deadline = start + seconds * 1000;
  while (performance.now() < deadline) {
    const entries: Entry[] = [];
    for (let i = 0; i < batch; i++, next++)
      entries.push({ index: next, term: 1, kind: "command", data: payload(next) });
    await s.save(saves === 0 ? { term: 1, votedFor: 1, commitIndex: 0 } : null, entries, true);
    saves++;
  }
  const elapsed = (performance.now() - start) / 1000;
  await s.close();
  return { appends: (next - 1) / elapsed, fsyncs: saves / elapsed };
}

async function appendBench(reps: number, seconds: number): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), "raftkv-bench-wal-"));
  try {
    const raw: number[] = [];
    const b1: { appends: number; fsyncs: number }[] = [];
    const b64: { appends: number; fsyncs: number }[] = [];
    for (let r = 0; r < reps; r++) {
      raw.push(await rawFsyncRate(root, seconds));
      b1.push(await walRate(join(root, `b1-${r}`), 1, seconds));
      b64.push(await walRate(join(root, `b64-${r}`), 64, seconds));
      console.log(
        `rep ${r + 1}/${reps}: raw ${raw[r]!.toFixed(0)} fsync/s; batch 1 ${b1[r]!.appends.toFixed(0)} appends/s; batch 64 ${b64[r]!.appends.toFixed(0)} appends/s`,
      );
    }
    const rawRate = median(raw);
    const row = (name: string, xs: { appends: number; fsyncs: number }[]): string =>
      `${name.padEnd(10)} appends/s ${median(xs.map((x) => x.appends))
        .toFixed(0)
        .padStart(9)}   fsyncs/s ${median(xs.map((x) => x.fsyncs))
        .toFixed(0)
        .padStart(7)}`;
    const ratio = median(b64.map((x) => x.appends)) / (rawRate * 64);
    console.log(
      `\nWAL appends, ${ENTRY_BYTES}-byte entries, sync=true, ${reps} repetitions (medians), dir ${root}`,
    );
    console.log(`raw fdatasync (append ${ENTRY_BYTES} B + fdatasync): ${rawRate.toFixed(0)} /s`);
    console.log(row("batch 1", b1));
    console.log(row("batch 64", b64));
    console.log(
      `ratio (batch-64 appends/s) / (raw fsync rate * 64) = ${ratio.toFixed(3)} (target >= 0.8: ${ratio >= 0.8 ? "met" : "NOT met"})`,
    );
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

/** Builds a folder with a snapshot of `imageMb` MiB and a log tail of `tail` entries. */
async function buildLargeNode(dir: string, imageMb: number, tail: number): Promise<void> {
  const s = new FileStorage({ fs: new RealFileSystem(), dir, clusterId: "bench", nodeId: 1, logger: quiet });
  await s.open();
  const base = 1000;
  const small = (i: number): Uint8Array => new TextEncoder().encode(`SET key${i} value${i}`.padEnd(40, "."));
  const batch = (from: number, to: number): Entry[] => {
    const es: Entry[] = [];
    for (let i = from; i <= to; i++) es.push({ index: i, term: 1, kind: "command", data: small(i) });
    return es;
  };
  await s.save({ term: 1, votedFor: 1, commitIndex: base }, batch(1, base), true);
  const image = new Uint8Array(imageMb * 1024 * 1024);
  const block = new Uint8Array(4096);
  for (let i = 0; i < block.length; i++) block[i] = (i * 2654435761) >>> 24;
  for (let off = 0; off < image.length; off += block.length)
    image.set(block.subarray(0, Math.min(block.length, image.length - off)), off);
  for (let off = 0; off < image.length; off += 1 << 20) image[off] = (off >> 20) & 0xff;
  await s.saveSnapshot({ index: base, term: 1, sizeBytes: image.length, crc32c: crc32c(image) }, image);
  for (let i = base + 1; i <= base + tail; i += 1000) {
    const to = Math.min(base + tail, i + 999);
    await s.save({ term: 1, votedFor: 1, commitIndex: to }, batch(i, to), i % 10_000 === 1);
  }
  await s.close();
}

/** In a fresh process: open + loadSnapshotImage, printing the time and peak RSS as JSON. */
async function restartChild(dir: string): Promise<void> {
  const start = performance.now();
  const s = new FileStorage({ fs: new RealFileSystem(), dir, clusterId: "bench", nodeId: 1, logger: quiet });
  const state = await s.open();
  const snap = await s.loadSnapshotImage();
  const ms = performance.now() - start;
  await s.close();
  console.log(
    JSON.stringify({
      ms,
      maxRssMb: process.resourceUsage().maxRSS / 1024,
      entries: state.entries.length,
      imageBytes: snap?.image.length ?? 0,
    }),
  );
}

async function restartBench(imageMb: number, tail: number): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), "raftkv-bench-restart-"));
  try {
    const dir = join(root, "node");
    const t0 = performance.now();
    await buildLargeNode(dir, imageMb, tail);
    console.log(
      `\nrestart: built a node with a ${imageMb} MiB snapshot + ${tail} log entries in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
    const runs: { ms: number; maxRssMb: number; entries: number; imageBytes: number }[] = [];
    for (let r = 0; r < 3; r++) {
      const child = spawnSync(
        process.execPath,
        [...process.execArgv, process.argv[1]!, "--restart-child", dir],
        {
          encoding: "utf8",
        },
      );
      if (child.status !== 0) throw new Error(`restart child failed: ${child.stderr}`);
      runs.push(JSON.parse(child.stdout.trim().split("\n").pop()!) as (typeof runs)[number]);
    }
    const last = runs[runs.length - 1]!;
    console.log(
      `restart (open + loadSnapshotImage, fresh process, 3 runs): median ${median(runs.map((r) => r.ms)).toFixed(0)} ms, ` +
        `peak RSS ${median(runs.map((r) => r.maxRssMb)).toFixed(0)} MiB; recovered ${last.entries} entries and a ${(last.imageBytes / 1048576).toFixed(0)} MiB image (target < 10 s)`,
    );
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

const childAt = process.argv.indexOf("--restart-child");
if (childAt >= 0) {
  await restartChild(process.argv[childAt + 1]!);
} else {
  await appendBench(arg("reps", 5), arg("seconds", 1.5));
  if (!process.argv.includes("--skip-restart"))
    await restartBench(arg("image-mb", 300), arg("tail", 100_000));
}
