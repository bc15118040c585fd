// WAL benchmark on the real disk: group-commit appends/s and fsyncs/s against the disk's raw fdatasync
// rate measured in the same run, and the restart time and peak memory of a large node.
//
// Run: npx tsx scripts/bench-wal.ts [--reps 5] [--seconds 3] [--image-mb 300] [--tail 100000] [--skip-restart]

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

interface Meter {
  count: number;
  syncs: number;
  ms: number;
}

/** Runs `step` repeatedly for `ms` milliseconds, adding to the meter (count of appends, syncs). */
async function measure(meter: Meter, ms: number, step: () => Promise<number>): Promise<void> {
  const start = performance.now();
  while (performance.now() - start < ms) {
    meter.count += await step();
    meter.syncs++;
  }
  meter.ms += performance.now() - start;
}

/** One repetition: short windows of the three loads, interleaved, so that the disk's changing speed
 *  (shared virtual disks vary a lot within seconds) affects them alike. */
async function repetition(root: string, rep: number, seconds: number, rounds: number): Promise<Meter[]> {
  const fs = new RealFileSystem();
  const raw = await fs.open(join(root, `raw-${rep}.bin`), "overwrite");
  const rawData = payload(1);
  const open = async (name: string): Promise<FileStorage> => {
    const s = new FileStorage({
      fs,
      dir: join(root, `${name}-${rep}`),
      clusterId: "bench",
      nodeId: 1,
      logger: quiet,
    });
    await s.open();
    await s.save({ term: 1, votedFor: 1, commitIndex: 0 }, [], true);
    return s;
  };
  const stores = [await open("b1"), await open("b64")];
  const next = [1, 1];
  const saveBatch = (k: number, batch: number) => async (): Promise<number> => {
    const entries: Entry[] = [];
    for (let i = 0; i < batch; i++, next[k]!++)
      entries.push({ index: next[k]!, term: 1, kind: "command", data: payload(next[k]!) });
    await stores[k]!.save(null, entries, true);
    return batch;
  };
  const meters: Meter[] = [0, 1, 2].map(() => ({ count: 0, syncs: 0, ms: 0 }));
  const windowMs = (seconds * 1000) / rounds;
  for (let r = 0; r < rounds; r++) {
    await measure(meters[0]!, windowMs, async () => {
      await raw.append(rawData);
      await raw.sync();
      return 1;
    });
    await measure(meters[1]!, windowMs, saveBatch(0, 1));
    await measure(meters[2]!, windowMs, saveBatch(1, 64));
  }
  await raw.close();
  for (const s of stores) await s.close();
  return meters;
}

async function appendBench(reps: number, seconds: number): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), "raftkv-bench-wal-"));
  try {
    const raw: number[] = [];
    const b1: { appends: number; fsyncs: number }[] = [];
    const b64: { appends: number; fsyncs: number }[] = [];
    const ratios: number[] = [];
    for (let r = 0; r < reps; r++) {
      const [m0, m1, m64] = await repetition(root, r, seconds, 10);
      const perSec = (m: Meter) => ({ appends: m.count / (m.ms / 1000), fsyncs: m.syncs / (m.ms / 1000) });
      raw.push(perSec(m0!).fsyncs);
      b1.push(perSec(m1!));
      b64.push(perSec(m64!));
      ratios.push(b64[r]!.appends / (raw[r]! * 64));
      console.log(
        `rep ${r + 1}/${reps}: raw ${raw[r]!.toFixed(0)} fsync/s; batch 1 ${b1[r]!.appends.toFixed(0)} appends/s; ` +
          `batch 64 ${b64[r]!.appends.toFixed(0)} appends/s (${b64[r]!.fsyncs.toFixed(0)} fsync/s); ratio ${ratios[r]!.toFixed(3)}`,
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
      `\nWAL appends, ${ENTRY_BYTES}-byte entries, sync=true, ${reps} repetitions (medians), in ${tmpdir()}`,
    );
    console.log(`raw fdatasync (append ${ENTRY_BYTES} B + fdatasync): ${rawRate.toFixed(0)} /s`);
    console.log(row("batch 1", b1));
    console.log(row("batch 64", b64));
    console.log(
      `ratio (batch-64 appends/s) / (raw fsync rate * 64): ${ratio.toFixed(3)} from the medians; median of the per-repetition ratios ${median(ratios).toFixed(3)} (target >= 0.8: ${median(ratios) >= 0.8 ? "met" : "NOT met"})`,
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
  await appendBench(arg("reps", 5), arg("seconds", 3));
  if (!process.argv.includes("--skip-restart"))
    await restartBench(arg("image-mb", 300), arg("tail", 100_000));
}
