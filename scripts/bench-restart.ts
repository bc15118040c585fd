// Restart benchmark of a node holding 1 million small keys: time and peak memory from opening the data
// folder to a state machine caught up with snapshot plus log tail, measured in a fresh process. The
// child restores as a node does: the snapshot read in chunks into the state store (an LmdbStore).
//
// Run: npx tsx scripts/bench-restart.ts [--keys 1000000] [--value-bytes 256] [--tail 50000] [--reps 3]

import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type { Entry } from "../src/core/types.ts";
import { encodeCommand } from "../src/kv/command.ts";
import { StoreStateMachine } from "../src/kv/store-state-machine.ts";
import { KvState } from "../src/server/kv-state.ts";
import { FileStorage } from "../src/storage/file-storage.ts";
import { RealFileSystem } from "../src/storage/real-file-system.ts";
import type { StorageLogger } from "../src/storage/storage.ts";
import { LmdbStore } from "../src/store/lmdb-store.ts";

const quiet: StorageLogger = { info: () => undefined, warn: () => undefined };

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : fallback;
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} must be a positive number`);
  return v;
}

function storage(dir: string): FileStorage {
  return new FileStorage({ fs: new RealFileSystem(), dir, clusterId: "bench", nodeId: 0, logger: quiet });
}

function put(index: number, key: string, valueBytes: number): Entry {
  const value = new Uint8Array(valueBytes).fill(index & 0xff);
  return { index, term: 1, kind: "command", data: encodeCommand({ op: "put", key, value }) };
}

/** Builds the data folder: a snapshot of `keys` keys, then a log tail of `tail` more puts. */
async function build(dir: string, keys: number, valueBytes: number, tail: number): Promise<void> {
  const st = storage(dir);
  await st.open();
  const store = LmdbStore.open({ dir: join(dir, "build-state") });
  const sm = new StoreStateMachine({ store });
  const batch: Entry[] = [];
  const flush = async (): Promise<void> => {
    if (batch.length === 0) return;
    await st.save({ term: 1, votedFor: 0, commitIndex: batch[batch.length - 1]!.index }, batch, false);
    batch.length = 0;
  };
  let index = 0;
  for (let i = 0; i < keys; i++) {
    const e = put(++index, `key-${i.toString().padStart(8, "0")}`, valueBytes);
    batch.push(e);
    if (batch.length === 1024) {
      sm.applyEntries(batch);
      await store.backlogAtMost(4);
      await flush();
    }
  }
  sm.applyEntries(batch);
  await flush();
  const image = sm.snapshotStream();
  await st.saveSnapshotStream({ index, term: 1, sizeBytes: image.sizeBytes }, () => image.next());
  image.close();
  await store.close();
  await rm(join(dir, "build-state"), { recursive: true, force: true });
  for (let i = 0; i < tail; i++) {
    batch.push(put(++index, `key-${(i % keys).toString().padStart(8, "0")}`, valueBytes));
    if (batch.length === 1024) await flush();
  }
  await flush();
  await st.save({ term: 1, votedFor: 0, commitIndex: index }, [], true);
  await st.close();
}

/** In a fresh process: open, restore the snapshot, replay the tail; print ms and peak RSS. */
async function restartChild(dir: string): Promise<void> {
  const t0 = performance.now();
  const st = storage(dir);
  const rec = await st.open();
  // As a node restores (src/server/raft-node.ts): the snapshot in 4 MiB chunks into the KV state.
  const kv = new KvState({ stateDir: join(dir, "state"), maxSessions: 10_000 });
  if (rec.snapshot !== null) {
    const restoring = kv.restore(rec.snapshot);
    for (let at = 0; at < rec.snapshot.sizeBytes; ) {
      const chunk = await st.readSnapshotChunk(rec.snapshot, at, 4 * 1024 * 1024);
      if (chunk.length === 0) break;
      restoring.push(chunk);
      at += chunk.length;
    }
    restoring.finish();
    restoring.commit();
  }
  const sm = kv.current;
  for (const e of rec.entries) {
    if (e.index <= sm.appliedIndex || e.index > rec.hardState.commitIndex) continue;
    sm.apply(e.index, e.data);
  }
  const ms = performance.now() - t0;
  // VmHWM of this process's own memory: getrusage's maxRSS would also count the parent's pages at the
  // fork before exec (Linux keeps the old mm's high-water mark), i.e. the builder's RSS.
  const hwm = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync("/proc/self/status", "utf8"));
  const peakRssMb = Number(hwm?.[1] ?? Number.NaN) / 1024;
  const rssMb = process.memoryUsage().rss / 1024 / 1024;
  console.log(JSON.stringify({ ms, peakRssMb, rssMb, keys: sm.size, applied: sm.appliedIndex }));
  await kv.close();
  await st.close();
}

async function main(): Promise<void> {
  if (process.argv[2] === "--child") return restartChild(process.argv[3]!);
  const keys = arg("keys", 1_000_000);
  const valueBytes = arg("value-bytes", 256);
  const tail = arg("tail", 50_000);
  const reps = arg("reps", 3);
  const dir = await mkdtemp(join(tmpdir(), "raftkv-restart-"));
  try {
    console.log(`building: ${keys} keys of ${valueBytes} B in a snapshot, then ${tail} puts in the log...`);
    await build(dir, keys, valueBytes, tail);
    const runs: { ms: number; peakRssMb: number; keys: number }[] = [];
    for (let r = 0; r < reps; r++) {
      const out = spawnSync(process.execPath, [...process.execArgv, process.argv[1]!, "--child", dir], {
        encoding: "utf8",
      });
      if (out.status !== 0) throw new Error(`restart child failed: ${out.stderr}`);
      const line = out.stdout.trim().split("\n").pop()!;
      runs.push(JSON.parse(line) as { ms: number; peakRssMb: number; keys: number });
      console.log(`  restart ${r + 1}: ${line}`);
    }
    const ms = runs.map((r) => r.ms).sort((a, b) => a - b);
    const rss = runs.map((r) => r.peakRssMb).sort((a, b) => a - b);
    console.log(
      `restart with ${keys} keys + ${tail} log entries: median ${ms[ms.length >> 1]!.toFixed(0)} ms, peak RSS median ${rss[rss.length >> 1]!.toFixed(0)} MB`,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
