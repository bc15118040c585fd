// State-store benchmark: the candidates for the state machine's durable store, each in a fresh process,
// measured the same way, printed as a table (issue 16). Never asserts.
//   lmdb  src/store/lmdb-store.ts: LMDB B+tree in a memory-mapped file, batches committed on lmdb's
//         worker thread, reads through an overlay of uncommitted batches.
//   log   our own log-structured store (Bitcask-like): an append-only file of checksummed records, one
//         write + fdatasync (off the main thread) per batch, the index in memory (src/kv's off-heap
//         KeyIndex + SortedKeys, the value offsets in typed arrays), rebuilt at start by reading the log.
//         (Hint files would cut its restart; its RSS grows with the keys either way.)
// Per candidate and key count: fill in apply-loop batches (ascending keys, as `npm run bench` fills),
// waiting while more than 64 batches are uncommitted, the first and last tenth's throughput and batch p99, the longest event-loop stall; random overwrites;
// point reads (mean, p99); range scans; RSS split into anonymous memory and file pages (the page
// cache mapped by LMDB), after a full GC; close and reopen to a first read.
//
// Measured on this 2-core machine with other work on it (load average 13-22 throughout: the figures are
// noisy, the orders of magnitude are not), 256 B values, batches of 128:
// | candidate | keys | fill puts/s (first → last tenth) | random overwrite puts/s | get mean / p99 µs | scan entries/s | RSS anon MB (page cache) | file MB | restart to first read |
// | lmdb | 1M  | 70,248 (50,489 → 69,261) | 11,368 | 12.7 / 6.9  | 277,541 | 138 (471)   | 367   | 39 ms |
// | log  | 1M  | 102,409 (48,477 → 205,907) | 73,706 | 14.4 / 8.4 | 181,863 | 151 (45)    | 323   | 4.4 s |
// | lmdb | 10M | 56,380 (41,419 → 81,146) | 7,594  | 14.1 / 21.7 | 251,059 | 153 (4,866) | 3,115 | 16 ms |
// | log  | 10M | 45,128 (59,816 → 73,437) | 143,001 | 57.7 / 24.4 | 41,391 | 578 (45)    | 2,753 | 111 s |
// (lmdb rows with the back pressure of 64 batches; without it a 1M fill ran 1,437 batches ahead of LMDB's
// commits and RSS anon reached 472 MB at 1M, 786 MB at 10M. The log store's longest event-loop stall at 10M
// was 9.8 s, its first range after the fill sorting 10M keys.)
//
// Run: npx tsx scripts/bench-store.ts [--keys 1000000[,10000000]] [--value-bytes 256] [--batch 128]
//      [--candidates lmdb,log] [--dir /tmp]

import { spawnSync } from "node:child_process";
import {
  closeSync,
  fdatasync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import { KeyIndex } from "../src/kv/key-index.ts";
import { lowerBound, SortedKeys } from "../src/kv/sorted-keys.ts";
import { crc32c } from "../src/lib/crc32c.ts";
import { Prng } from "../src/lib/prng.ts";
import { LmdbStore } from "../src/store/lmdb-store.ts";

interface Candidate {
  put(key: string, value: Uint8Array): void;
  commit(index: number): void;
  get(key: string): Uint8Array | null;
  /** Up to `limit` entries from `start`; returns how many. */
  scan(start: string, limit: number): number;
  flush(): Promise<void>;
  close(): Promise<void>;
  fileBytes(): number;
  /** Batches written and not yet committed by the store (0 where the store has no backlog). */
  backlog(): number;
  /** Waits while more than `batches` batches are not committed (the apply loop's back pressure). */
  backlogAtMost(batches: number): Promise<void>;
}

const enc = new TextEncoder();

function lmdbCandidate(dir: string): Candidate {
  const store = LmdbStore.open({ dir });
  let batch: [Uint8Array, Uint8Array][] = [];
  return {
    put: (k, v) => batch.push([enc.encode(k), v]),
    commit: (index) => {
      const b = batch;
      batch = [];
      store.write(index, (w) => {
        for (const [k, v] of b) w.put(k, v);
      });
    },
    get: (k) => store.get(enc.encode(k)),
    scan: (start, limit) => {
      let n = 0;
      for (const _ of store.scan({ start: enc.encode(start), limit })) n++;
      return n;
    },
    flush: async () => {
      await store.flush();
    },
    close: () => store.close(),
    fileBytes: () => store.stats().fileBytes,
    backlog: () => store.stats().pendingBatches,
    backlogAtMost: (n) => store.backlogAtMost(n),
  };
}

/** The log-structured candidate: record = u32 crc | u32 keyLen | u32 valueLen | u32 index lo | key | value. */
class LogCandidate implements Candidate {
  private readonly fd: number;
  private index = new KeyIndex();
  private keys = new SortedKeys(this.index);
  private offsets = new Float64Array(1 << 16);
  private lengths = new Uint32Array(1 << 16);
  private handles = 0;
  private end = 0;
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private syncing: Promise<void> | null = null;
  private syncAgain = false;

  constructor(readonly path: string) {
    this.fd = openSync(path, "a+");
    this.recover();
  }

  private recover(): void {
    const size = statSync(this.path).size;
    const chunk = new Uint8Array(8 * 1024 * 1024);
    let carry = new Uint8Array(0);
    let at = 0;
    while (at < size) {
      const n = readSync(this.fd, chunk, 0, chunk.length, at);
      const buf = new Uint8Array(carry.length + n);
      buf.set(carry);
      buf.set(chunk.subarray(0, n), carry.length);
      const base = at - carry.length;
      at += n;
      const dv = new DataView(buf.buffer);
      let p = 0;
      while (p + 16 <= buf.length) {
        const kl = dv.getUint32(p + 4, true);
        const vl = dv.getUint32(p + 8, true);
        if (p + 16 + kl + vl > buf.length) break;
        if (crc32c(buf.subarray(p + 4, p + 16 + kl + vl)) !== dv.getUint32(p, true))
          throw new Error(`log record at ${base + p} is corrupt`);
        const key = new TextDecoder().decode(buf.subarray(p + 16, p + 16 + kl));
        this.setHandle(key, base + p + 16 + kl, vl);
        p += 16 + kl + vl;
      }
      carry = buf.slice(p);
    }
    this.end = size;
  }

  private setHandle(key: string, offset: number, length: number): void {
    const old = this.index.get(key);
    const h = old >= 0 ? old : this.handles++;
    if (h >= this.offsets.length) {
      const o = new Float64Array(this.offsets.length * 2);
      o.set(this.offsets);
      this.offsets = o;
      const l = new Uint32Array(this.lengths.length * 2);
      l.set(this.lengths);
      this.lengths = l;
    }
    this.offsets[h] = offset;
    this.lengths[h] = length;
    if (old < 0) this.index.set(key, h);
  }

  put(key: string, value: Uint8Array): void {
    const k = enc.encode(key);
    const r = new Uint8Array(16 + k.length + value.length);
    const dv = new DataView(r.buffer);
    dv.setUint32(4, k.length, true);
    dv.setUint32(8, value.length, true);
    r.set(k, 16);
    r.set(value, 16 + k.length);
    this.pending.push(r);
    this.pendingBytes += r.length;
  }

  commit(index: number): void {
    const out = new Uint8Array(this.pendingBytes);
    let at = 0;
    for (const r of this.pending) {
      const dv = new DataView(r.buffer);
      dv.setUint32(12, index >>> 0, true);
      dv.setUint32(0, crc32c(r.subarray(4)), true);
      out.set(r, at);
      const kl = dv.getUint32(4, true);
      const key = new TextDecoder().decode(r.subarray(16, 16 + kl));
      this.setHandle(key, this.end + at + 16 + kl, dv.getUint32(8, true));
      at += r.length;
    }
    writeSync(this.fd, out, 0, out.length, this.end);
    this.end += out.length;
    this.pending = [];
    this.pendingBytes = 0;
    this.sync();
  }

  /** One fdatasync in flight on libuv's thread pool; batches written meanwhile share the next one. */
  private sync(): void {
    if (this.syncing !== null) {
      this.syncAgain = true;
      return;
    }
    this.syncing = new Promise<void>((resolve, reject) =>
      fdatasync(this.fd, (err) => (err ? reject(err) : resolve())),
    ).then(() => {
      this.syncing = null;
      if (this.syncAgain) {
        this.syncAgain = false;
        this.sync();
      }
    });
  }

  get(key: string): Uint8Array | null {
    const h = this.index.get(key);
    if (h < 0) return null;
    const out = new Uint8Array(this.lengths[h]!);
    readSync(this.fd, out, 0, out.length, this.offsets[h]!);
    return out;
  }

  scan(start: string, limit: number): number {
    const ids = this.keys.current();
    let n = 0;
    for (let i = lowerBound(this.index, ids, start); i < ids.length && n < limit; i++, n++) {
      const h = this.index.handleOf(ids[i]!);
      const out = new Uint8Array(this.lengths[h]!);
      readSync(this.fd, out, 0, out.length, this.offsets[h]!);
    }
    return n;
  }

  async flush(): Promise<void> {
    while (this.syncing !== null) await this.syncing;
  }

  async close(): Promise<void> {
    await this.flush();
    closeSync(this.fd);
  }

  fileBytes(): number {
    return this.end;
  }

  backlog(): number {
    return 0;
  }

  async backlogAtMost(_batches: number): Promise<void> {}
}

function openCandidate(name: string, dir: string): Candidate {
  if (name === "lmdb") return lmdbCandidate(join(dir, "lmdb"));
  if (name === "log") return new LogCandidate(join(dir, "store.log"));
  throw new Error(`unknown candidate ${name}`);
}

/** Memory after a full GC (the child runs with --expose-gc), so garbage of the last phase is not counted. */
function memory(): { rssAnonMb: number; rssFileMb: number; heapUsedMb: number } {
  (globalThis as { gc?: () => void }).gc?.();
  const status = readFileSync("/proc/self/status", "utf8");
  const kb = (field: string): number =>
    Number(new RegExp(`^${field}:\\s+(\\d+)`, "m").exec(status)?.[1] ?? 0);
  return {
    rssAnonMb: kb("RssAnon") / 1024,
    rssFileMb: (kb("RssFile") + kb("RssShmem")) / 1024,
    heapUsedMb: process.memoryUsage().heapUsed / 2 ** 20,
  };
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0;
}

/** The apply loop waits while more batches than this are not committed (see DurableStore.backlogAtMost). */
const MAX_BACKLOG_BATCHES = 64;

const keyName = (k: number, width: number): string => `key-${k.toString().padStart(width, "0")}`;
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

async function child(name: string, keys: number, valueBytes: number, batch: number, dir: string) {
  const prng = new Prng(11);
  const value = new Uint8Array(valueBytes).map(() => prng.nextU32() & 0xff);
  const width = String(keys).length - 1;
  const stall = monitorEventLoopDelay({ resolution: 5 });
  let c = openCandidate(name, dir);
  stall.enable();
  // Fill: batches of `batch` puts, one commit each, a turn of the event loop between them (the apply loop).
  const tenth = Math.max(batch, Math.floor(keys / 10));
  const tenths: { opsPerSec: number; p99Ms: number }[] = [];
  let index = 0;
  let tenthStart = performance.now();
  let batchMs: number[] = [];
  let maxBacklog = 0;
  const t0 = performance.now();
  for (let k = 0; k < keys; ) {
    const s = performance.now();
    const upto = Math.min(keys, k + batch);
    for (; k < upto; k++) c.put(keyName(k, width), value);
    c.commit(++index);
    batchMs.push(performance.now() - s);
    maxBacklog = Math.max(maxBacklog, c.backlog());
    await c.backlogAtMost(MAX_BACKLOG_BATCHES);
    if (k % tenth < batch || k === keys) {
      const secs = (performance.now() - tenthStart) / 1000;
      tenths.push({ opsPerSec: (batchMs.length * batch) / secs, p99Ms: percentile(batchMs, 99) });
      batchMs = [];
      tenthStart = performance.now();
    }
    await turn();
  }
  await c.flush();
  const fillSecs = (performance.now() - t0) / 1000;
  const fillStallMs = stall.max / 1e6;
  const afterFill = memory();
  // Random overwrites.
  const overwrites = Math.min(keys, 200_000);
  let t = performance.now();
  for (let i = 0; i < overwrites; ) {
    for (const upto = i + batch; i < upto; i++) c.put(keyName(prng.nextU32() % keys, width), value);
    c.commit(++index);
    await c.backlogAtMost(MAX_BACKLOG_BATCHES);
    await turn();
  }
  await c.flush();
  const overwritePerSec = overwrites / ((performance.now() - t) / 1000);
  // Point reads.
  const readUs: number[] = [];
  for (let i = 0; i < 200_000; i++) {
    const key = keyName(prng.nextU32() % keys, width);
    const s = performance.now();
    const v = c.get(key);
    readUs.push((performance.now() - s) * 1000);
    if (v === null) throw new Error(`${key} missing`);
  }
  // Range scans of 10k entries from random keys.
  t = performance.now();
  let scanned = 0;
  for (let i = 0; i < 50; i++) scanned += c.scan(keyName(prng.nextU32() % keys, width), 10_000);
  const scanPerSec = scanned / ((performance.now() - t) / 1000);
  const loaded = memory();
  const fileMb = c.fileBytes() / 2 ** 20;
  await c.close();
  // Restart: open and serve a first read (the log candidate rebuilds its index from the file).
  t = performance.now();
  c = openCandidate(name, dir);
  if (c.get(keyName(keys - 1, width)) === null) throw new Error("last key missing after reopen");
  const restartMs = performance.now() - t;
  const reopened = memory();
  await c.close();
  stall.disable();
  const first = tenths[0]!;
  const last = tenths[tenths.length - 1]!;
  return {
    candidate: name,
    keys,
    fillSecs,
    fillOpsPerSec: keys / fillSecs,
    firstTenthOpsPerSec: first.opsPerSec,
    lastTenthOpsPerSec: last.opsPerSec,
    firstTenthBatchP99Ms: first.p99Ms,
    lastTenthBatchP99Ms: last.p99Ms,
    fillMaxStallMs: fillStallMs,
    fillMaxBacklogBatches: maxBacklog,
    overwritePerSec,
    readMeanUs: readUs.reduce((a, b) => a + b, 0) / readUs.length,
    readP99Us: percentile(readUs, 99),
    scanEntriesPerSec: scanPerSec,
    fileMb,
    afterFill,
    loaded,
    restartMs,
    reopened,
  };
}

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? fallback) : fallback;
}

const f0 = (x: number): string => x.toFixed(0);
const f1 = (x: number): string => x.toFixed(1);

if (process.argv.includes("--child")) {
  const r = await child(
    arg("candidate", "lmdb"),
    Number(arg("keys", "1000000")),
    Number(arg("value-bytes", "256")),
    Number(arg("batch", "128")),
    arg("dir", ""),
  );
  process.stdout.write(`${JSON.stringify(r)}\n`);
} else {
  const keyCounts = arg("keys", "1000000").split(",").map(Number);
  const candidates = arg("candidates", "lmdb,log").split(",");
  const valueBytes = arg("value-bytes", "256");
  const batch = arg("batch", "128");
  const base = arg("dir", tmpdir());
  console.log(
    `state-store bench: values ${valueBytes} B, batches of ${batch} puts, load ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`,
  );
  const header =
    "| candidate | keys | fill puts/s (first → last tenth) | batch p99 ms (first → last) | max stall ms | random overwrite puts/s | get mean / p99 µs | scan entries/s | RSS anon MB (page cache MB) | file MB | restart to first read ms |";
  console.log(header);
  console.log(
    `|${header
      .split("|")
      .slice(1, -1)
      .map(() => " --- ")
      .join("|")}|`,
  );
  for (const keys of keyCounts) {
    for (const name of candidates) {
      const dir = mkdtempSync(join(base, `raftkv-bench-store-${name}-`));
      try {
        const out = spawnSync(
          process.execPath,
          [
            ...process.execArgv,
            "--expose-gc",
            process.argv[1]!,
            "--child",
            "--candidate",
            name,
            "--keys",
            String(keys),
            "--value-bytes",
            valueBytes,
            "--batch",
            batch,
            "--dir",
            dir,
          ],
          { encoding: "utf8", maxBuffer: 1 << 20, stdio: ["ignore", "pipe", "inherit"] },
        );
        if (out.status !== 0) {
          console.log(`| ${name} | ${keys} | failed (exit ${out.status}) |`);
          continue;
        }
        const r = JSON.parse(out.stdout.trim().split("\n").pop()!) as Awaited<ReturnType<typeof child>>;
        console.log(
          `| ${r.candidate} | ${r.keys} | ${f0(r.fillOpsPerSec)} (${f0(r.firstTenthOpsPerSec)} → ${f0(r.lastTenthOpsPerSec)}) | ${f1(r.firstTenthBatchP99Ms)} → ${f1(r.lastTenthBatchP99Ms)} | ${f0(r.fillMaxStallMs)} | ${f0(r.overwritePerSec)} | ${f1(r.readMeanUs)} / ${f1(r.readP99Us)} | ${f0(r.scanEntriesPerSec)} | ${f0(r.loaded.rssAnonMb)} (${f0(r.loaded.rssFileMb)}) | ${f0(r.fileMb)} | ${f0(r.restartMs)} (then RSS anon ${f0(r.reopened.rssAnonMb)}) |`,
        );
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  }
}
