// The single-purpose runs of `npm run bench`: --profile (the leader's CPU profile under c=64 load, puts
// unless --workloads names one workload),
// --memory-keys (RSS of each node holding N values) and --soak (RSS of each node under constant load).

import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type { BenchArgs } from "./args.ts";
import { type Cluster, startRaftkvCluster } from "./clusters.ts";
import { LoadGenerator } from "./generator.ts";
import { randomBasePort } from "./ports.ts";
import { RssSampler, readProc } from "./proc-stats.ts";
import { profileText, summarizeProfile, type WindowUs } from "./profile-summary.ts";
import { measureRow, progressLine, type System } from "./suite.ts";

/** --memory-keys and --soak clusters serve /metrics on this port + node id, for the heap figures
 *  (the block's last 10 ports; the members use its first). */
const METRICS_BASE_PORT = randomBasePort() + 40;
const MB = 1024 * 1024;

type Log = (line: string) => void;

function stamp(): string {
  return new Date().toISOString().replace(/[:.]/g, "-");
}

async function withCluster<T>(
  a: BenchArgs,
  nodeFlags: readonly string[],
  body: (c: Cluster, s: System, gen: LoadGenerator) => Promise<T>,
  metrics = false,
): Promise<T> {
  mkdirSync(a.outDir, { recursive: true });
  const dir = mkdtempSync(join(a.outDir, "data-"));
  const cluster = await startRaftkvCluster({
    dir,
    basePort: METRICS_BASE_PORT - 40,
    nodeFlags,
    serveArgs: a.serverSettings.flatMap((x) => ["--set", x]),
    ...(metrics ? { metricsBasePort: METRICS_BASE_PORT } : {}),
  });
  const gen = LoadGenerator.start(a.threads);
  try {
    const leader = await cluster.leader();
    const endpoints = [
      leader.endpoint,
      ...cluster.members.filter((m) => m !== leader).map((m) => m.endpoint),
    ];
    const path = a.paths[0] ?? "stream";
    const s: System = {
      name: "raftkv",
      pids: cluster.members.map((m) => m.pid),
      targets: [{ target: { system: "raftkv", endpoints, path }, path, client: "raftkv" }],
    };
    return await body(cluster, s, gen);
  } finally {
    await gen.close();
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** c=64 load for `profileSeconds` with --cpu-prof on every node; prints the leader's profile summary.
 *  The workload is puts, or the one workload --workloads names (keys are written first for reads). */
export async function runProfile(a: BenchArgs, log: Log): Promise<void> {
  const profDir = join(a.outDir, `profile-${stamp()}`);
  mkdirSync(profDir, { recursive: true });
  let leaderPid = 0;
  let window: WindowUs | undefined;
  await withCluster(a, ["--cpu-prof", "--cpu-prof-dir", profDir], async (cluster, s, gen) => {
    log(`raftkv nodes run ${cluster.runs}`);
    leaderPid = (await cluster.leader()).pid;
    const t = s.targets[0]!;
    const c = a.concurrencies.length === 1 ? a.concurrencies[0]! : 64;
    const workload = a.workloads.length === 1 ? a.workloads[0]! : "put";
    if (workload !== "put") {
      await gen.fill(
        { target: t.target, concurrency: 64, keySpace: a.keySpace, valueBytes: a.valueBytes, seed: 3 },
        a.keySpace,
      );
    }
    const fromUs = Number(process.hrtime.bigint() / 1000n) + a.warmupMs * 1000;
    const row = await measureRow(gen, s, t, workload, c, 0, { ...a, durationMs: a.profileSeconds * 1000 }, 1);
    window = { fromUs, toUs: fromUs + a.profileSeconds * 1e6 };
    log(progressLine(row));
  });
  const file = readdirSync(profDir).find((f) => f.includes(`.${leaderPid}.`) && f.endsWith(".cpuprofile"));
  if (file === undefined) throw new Error(`no profile of the leader (pid ${leaderPid}) in ${profDir}`);
  const text = profileText(summarizeProfile(join(profDir, file), window));
  writeFileSync(join(profDir, "leader-summary.txt"), `${text}\n`);
  const span =
    window === undefined ? "" : ` (samples from ${window.fromUs} to ${window.toUs} µs, CLOCK_MONOTONIC)`;
  log(`leader profile ${join(profDir, file)}${span}:\n${text}`);
}

/** Writes `memoryKeys` keys of `valueBytes` and reports each node's RSS (now and peak). */
export async function runMemory(a: BenchArgs, log: Log): Promise<void> {
  await withCluster(
    a,
    [],
    async (cluster, s, gen) => {
      log(`raftkv nodes run ${cluster.runs}`);
      const rss = new RssSampler(s.pids, 500);
      const t0 = performance.now();
      const r = await gen.fill(
        {
          target: s.targets[0]!.target,
          concurrency: 256,
          keySpace: a.memoryKeys,
          valueBytes: a.valueBytes,
          seed: 7,
        },
        a.memoryKeys,
      );
      const seconds = (performance.now() - t0) / 1000;
      // Each node counts the first leader it learns as a change too: more than 1 means an election.
      const changes = await Promise.all(s.pids.map((_, i) => leaderChanges(i)));
      log(
        `wrote ${r.ops} keys of ${a.valueBytes} B in ${seconds.toFixed(0)} s (${(r.ops / seconds).toFixed(0)} puts/s, ${r.errors} errors); leader changes seen per node since start: ${changes.map((c) => c ?? "?").join(", ")}`,
      );
      await new Promise((res) => setTimeout(res, 5000));
      const peaks = rss.takePeaks();
      rss.stop();
      const leader = (await cluster.leader(5000).catch(() => null))?.id ?? -1;
      const heaps = await Promise.all(s.pids.map((_, i) => processMemory(i)));
      const rows = s.pids.map((pid, i) => {
        const p = readProc(pid);
        return {
          node: i,
          leader: i === leader,
          rssMb: (p?.rssBytes ?? 0) / MB,
          peakDuringFillMb: (peaks[i] ?? 0) / MB,
          vmHwmMb: (p?.peakRssBytes ?? 0) / MB,
          memory: heaps[i] ?? null,
        };
      });
      for (const x of rows)
        log(
          `  node ${x.node}${x.leader ? " (leader)" : ""}: RSS ${x.rssMb.toFixed(0)} MB now, ${x.peakDuringFillMb.toFixed(0)} MB peak sampled, VmHWM ${x.vmHwmMb.toFixed(0)} MB; ${memoryText(x.memory)}`,
        );
      const file = join(a.outDir, `memory-${stamp()}.json`);
      writeFileSync(
        file,
        `${JSON.stringify({ keys: a.memoryKeys, valueBytes: a.valueBytes, ops: r.ops, errors: r.errors, seconds, leaderChanges: changes, nodes: rows }, null, 1)}\n`,
      );
      log(`wrote ${file}`);
    },
    true,
  );
}

/** The node's raftkv_leader_changes_total (leader changes it saw since it started), or null if unreadable. */
async function leaderChanges(id: number): Promise<number | null> {
  try {
    const res = await fetch(`http://127.0.0.1:${METRICS_BASE_PORT + id}/metrics`);
    const m = /^raftkv_leader_changes_total(?:\{[^}]*\})? (\S+)$/m.exec(await res.text());
    return m === null ? null : Number(m[1]);
  } catch {
    return null;
  }
}

/** The node's process.memoryUsage() in MB, from its raftkv_process_memory_bytes gauge (null if unreadable). */
async function processMemory(id: number): Promise<Record<string, number> | null> {
  try {
    const res = await fetch(`http://127.0.0.1:${METRICS_BASE_PORT + id}/metrics`);
    const text = await res.text();
    const out: Record<string, number> = {};
    for (const m of text.matchAll(/^raftkv_process_memory_bytes\{kind="(\w+)"\} (\S+)$/gm))
      out[m[1]!] = Number(m[2]) / MB;
    return Object.keys(out).length === 0 ? null : out;
  } catch {
    return null;
  }
}

function memoryText(m: Record<string, number> | null): string {
  if (m === null) return "heap unknown";
  const f = (k: string): string => (m[k] ?? Number.NaN).toFixed(0);
  return `heap used ${f("heapUsed")} of ${f("heapTotal")} MB, external ${f("external")} MB (array buffers ${f("arrayBuffers")} MB)`;
}

/** Constant load (the first --workloads entry, default mix) at c=64 in 10 s windows for `soakSeconds`;
 *  each node's RSS after every window, and the trend. */
export async function runSoak(a: BenchArgs, log: Log): Promise<void> {
  const workload = a.workloads.length === 5 ? "mix" : a.workloads[0]!;
  const windowMs = 10_000;
  await withCluster(
    a,
    [],
    async (cluster, s, gen) => {
      log(`raftkv nodes run ${cluster.runs}`);
      const t = s.targets[0]!;
      await gen.fill(
        { target: t.target, concurrency: 64, keySpace: a.keySpace, valueBytes: a.valueBytes, seed: 3 },
        a.keySpace,
      );
      const samples: {
        atS: number;
        opsPerSec: number;
        errors: number;
        leader: number;
        rssMb: number[];
        heapUsedMb: (number | null)[];
      }[] = [];
      const t0 = performance.now();
      for (let i = 0; (i * windowMs) / 1000 < a.soakSeconds; i++) {
        const c = a.concurrencies.length === 1 ? a.concurrencies[0]! : 64;
        const row = await measureRow(
          gen,
          s,
          t,
          workload,
          c,
          i,
          { ...a, warmupMs: 0, durationMs: windowMs },
          100 + i,
        );
        const rssMb = s.pids.map((p) => (readProc(p)?.rssBytes ?? 0) / MB);
        const heapUsedMb = (await Promise.all(s.pids.map((_, i) => processMemory(i)))).map(
          (m) => m?.heapUsed ?? null,
        );
        const leader = (await cluster.leader(5000).catch(() => null))?.id ?? -1;
        const atS = (performance.now() - t0) / 1000;
        samples.push({ atS, opsPerSec: row.opsPerSec, errors: row.errors, leader, rssMb, heapUsedMb });
        log(
          `  ${atS.toFixed(0)} s: ${row.opsPerSec.toFixed(0)} ops/s, ${row.errors} errors, leader ${leader}, RSS ${rssMb.map((m) => m.toFixed(0)).join(" / ")} MB, heap used ${heapUsedMb.map((m) => m?.toFixed(0) ?? "?").join(" / ")} MB`,
        );
      }
      const trend = s.pids.map((_, i) => slopeMbPerMin(samples.slice(Math.floor(samples.length / 2)), i));
      log(
        `RSS trend over the second half (MB per minute, per node): ${trend.map((x) => x.toFixed(2)).join(" / ")}`,
      );
      const file = join(a.outDir, `soak-${stamp()}.json`);
      writeFileSync(
        file,
        `${JSON.stringify({ workload, seconds: a.soakSeconds, samples, trendMbPerMin: trend }, null, 1)}\n`,
      );
      log(`wrote ${file}`);
    },
    true,
  );
}

/** Least-squares slope of node i's RSS over time, MB per minute. */
function slopeMbPerMin(xs: readonly { atS: number; rssMb: number[] }[], i: number): number {
  const n = xs.length;
  if (n < 2) return Number.NaN;
  const mx = xs.reduce((s, x) => s + x.atS, 0) / n;
  const my = xs.reduce((s, x) => s + (x.rssMb[i] ?? 0), 0) / n;
  let num = 0;
  let den = 0;
  for (const x of xs) {
    num += (x.atS - mx) * ((x.rssMb[i] ?? 0) - my);
    den += (x.atS - mx) ** 2;
  }
  return (num / den) * 60;
}
