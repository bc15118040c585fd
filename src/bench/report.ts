// Benchmark rows and their presentation: medians over repetitions, the text tables (one per system and
// path, and raftkv / etcd ratios per row), and the floors checked against the medians.

import { median } from "./stats.ts";
import { ETCD_COUNTERPART, type RaftkvWorkload, type Workload } from "./workloads.ts";

/** One measured row of one repetition. */
export interface RowResult {
  /** "raftkv", "etcd", "noop" (the generator's ceiling against a grpc-js server that does nothing),
   *  "noop-h2" (the same from a bare node:http2 server, unary only), or "base"
   *  (raftkv built from another checkout, for before/after comparisons in one run). */
  readonly system: "raftkv" | "etcd" | "noop" | "noop-h2" | "base";
  /** How the client sent requests: "stream" (raftkv Session) or "unary". */
  readonly path: "stream" | "unary";
  /** What the no-op server stood in for (noop rows only). */
  readonly client: "raftkv" | "etcd";
  readonly workload: Workload;
  readonly concurrency: number;
  readonly rep: number;
  readonly opsPerSec: number;
  readonly errors: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** CPU seconds of each server process in the window (empty when the servers are not ours to see). */
  readonly serverCpuSeconds: readonly number[];
  /** Sum over server processes, per 1,000 operations. */
  readonly serverCpuSecondsPerKop: number;
  /** The load generator's own CPU (all its threads) per 1,000 operations. */
  readonly generatorCpuSecondsPerKop: number;
  /** Peak VmRSS of each server process during the row, in MB. */
  readonly peakRssMb: readonly number[];
  /** Cores' worth of CPU that other processes of the machine used during the row (noise). */
  readonly otherCpuCores: number;
  readonly errorSamples: readonly string[];
}

export interface MedianRow {
  readonly label: string;
  readonly system: RowResult["system"];
  readonly path: RowResult["path"];
  readonly client: RowResult["client"];
  readonly workload: Workload;
  readonly concurrency: number;
  readonly reps: number;
  readonly opsPerSec: number;
  readonly errors: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly serverCpuSecondsPerKop: number;
  readonly generatorCpuSecondsPerKop: number;
  /** Largest peak RSS of any member, MB (median over reps). */
  readonly peakRssMb: number;
  /** Median of the other processes' load during the rows, in cores. */
  readonly otherCpuCores: number;
  /** Every repetition's ops/s, to show the spread. */
  readonly opsPerSecRuns: readonly number[];
}

export function labelOf(r: Pick<RowResult, "system" | "path" | "client">): string {
  if (r.system === "noop" || r.system === "noop-h2") return `${r.system}(${r.client}/${r.path})`;
  // raftkv driven through the etcd client, on its etcd v3 API.
  if (r.system !== "etcd" && r.client === "etcd") return `${r.system}/etcd-api`;
  return `${r.system}/${r.path}`;
}

export function medians(rows: readonly RowResult[]): MedianRow[] {
  const groups = new Map<string, RowResult[]>();
  for (const r of rows) {
    const k = `${labelOf(r)}|${r.workload}|${r.concurrency}`;
    const g = groups.get(k) ?? [];
    g.push(r);
    groups.set(k, g);
  }
  return [...groups.values()].map((g) => {
    const f = g[0]!;
    const m = (pick: (r: RowResult) => number): number => median(g.map(pick));
    return {
      label: labelOf(f),
      system: f.system,
      path: f.path,
      client: f.client,
      workload: f.workload,
      concurrency: f.concurrency,
      reps: g.length,
      opsPerSec: m((r) => r.opsPerSec),
      errors: m((r) => r.errors),
      p50Ms: m((r) => r.p50Ms),
      p99Ms: m((r) => r.p99Ms),
      maxMs: m((r) => r.maxMs),
      serverCpuSecondsPerKop: m((r) => r.serverCpuSecondsPerKop),
      generatorCpuSecondsPerKop: m((r) => r.generatorCpuSecondsPerKop),
      peakRssMb: m((r) => Math.max(0, ...r.peakRssMb)),
      otherCpuCores: m((r) => r.otherCpuCores),
      opsPerSecRuns: g.map((r) => Math.round(r.opsPerSec)),
    };
  });
}

function fmt(v: number, digits: number): string {
  return Number.isFinite(v) ? v.toFixed(digits) : "n/a";
}

function table(header: readonly string[], body: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => (r[i] ?? "").length)));
  const line = (r: readonly string[]): string =>
    r.map((c, i) => (i < 3 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...body.map(line)].join("\n");
}

export function mediansTable(rows: readonly MedianRow[]): string {
  return table(
    [
      "target",
      "workload",
      "c",
      "ops/s",
      "p50 ms",
      "p99 ms",
      "max ms",
      "errors",
      "srv CPU s/kop",
      "gen CPU s/kop",
      "peak RSS MB",
      "other load",
      "ops/s of each rep",
    ],
    rows.map((r) => [
      r.label,
      r.workload,
      String(r.concurrency),
      fmt(r.opsPerSec, 0),
      fmt(r.p50Ms, 2),
      fmt(r.p99Ms, 2),
      fmt(r.maxMs, 1),
      fmt(r.errors, 0),
      fmt(r.serverCpuSecondsPerKop, 3),
      fmt(r.generatorCpuSecondsPerKop, 3),
      fmt(r.peakRssMb, 0),
      fmt(r.otherCpuCores, 2),
      r.opsPerSecRuns.join(" "),
    ]),
  );
}

export interface Ratio {
  readonly raftkv: string;
  readonly workload: RaftkvWorkload;
  readonly etcdWorkload: string;
  readonly concurrency: number;
  readonly raftkvOpsPerSec: number;
  readonly etcdOpsPerSec: number;
  /** raftkv / etcd throughput (above 1: raftkv faster). */
  readonly throughput: number;
  /** raftkv / etcd p50 latency (below 1: raftkv faster). */
  readonly p50: number;
  /** raftkv / etcd server CPU per operation (below 1: raftkv cheaper). */
  readonly cpuPerOp: number;
}

/** raftkv rows against `other`'s matching rows (etcd: the counterpart workload; base: the same one). */
export function ratios(rows: readonly MedianRow[], other: "etcd" | "base" = "etcd"): Ratio[] {
  const out: Ratio[] = [];
  for (const r of rows) {
    if (r.system !== "raftkv") continue;
    // A row through the etcd client already runs etcd's workload; shown as its raftkv counterpart.
    const viaEtcd = r.client === "etcd";
    const w = viaEtcd ? raftkvCounterpart(r.workload) : (r.workload as RaftkvWorkload);
    const want = other === "etcd" ? ETCD_COUNTERPART[w] : viaEtcd ? r.workload : w;
    const e = rows.find(
      (x) =>
        x.system === other &&
        x.workload === want &&
        x.concurrency === r.concurrency &&
        (other === "etcd" || (x.path === r.path && x.client === r.client)),
    );
    if (e === undefined) continue;
    out.push({
      raftkv: r.label,
      workload: w,
      etcdWorkload: e.workload,
      concurrency: r.concurrency,
      raftkvOpsPerSec: r.opsPerSec,
      etcdOpsPerSec: e.opsPerSec,
      throughput: r.opsPerSec / e.opsPerSec,
      p50: r.p50Ms / e.p50Ms,
      cpuPerOp: r.serverCpuSecondsPerKop / e.serverCpuSecondsPerKop,
    });
  }
  return out;
}

export function ratiosTable(rs: readonly Ratio[], other = "etcd"): string {
  return table(
    [
      "raftkv",
      `workload (${other})`,
      "c",
      "raftkv ops/s",
      `${other} ops/s`,
      "ops ratio",
      "p50 ratio",
      "CPU/op ratio",
    ],
    rs.map((r) => [
      r.raftkv,
      `${r.workload} (${r.etcdWorkload})`,
      String(r.concurrency),
      fmt(r.raftkvOpsPerSec, 0),
      fmt(r.etcdOpsPerSec, 0),
      `${fmt(r.throughput, 2)}x`,
      fmt(r.p50, 2),
      fmt(r.cpuPerOp, 2),
    ]),
  );
}

export interface FloorCheck {
  readonly floor: string;
  readonly met: boolean | null;
  readonly detail: string;
}

/** The raftkv workload an etcd workload stands for (raftkv's etcd API serves linearizable reads under
 *  the lease and serializable ones from the node's own state). */
function raftkvCounterpart(w: Workload): RaftkvWorkload {
  const found = (Object.keys(ETCD_COUNTERPART) as RaftkvWorkload[]).find(
    (k) => ETCD_COUNTERPART[k] === w && k !== "get-readIndex",
  );
  return found ?? (w as RaftkvWorkload);
}

/** Issue 18's floors for raftkv driven through the etcd client on its etcd API, against etcd. */
export function checkEtcdApiFloors(rs: readonly Ratio[]): FloorCheck[] {
  const at = (w: RaftkvWorkload, c: number): Ratio | undefined =>
    rs.find((r) => r.raftkv === "raftkv/etcd-api" && r.workload === w && r.concurrency === c);
  const row = (floor: string, r: Ratio | undefined, ok: (r: Ratio) => boolean, show: (r: Ratio) => string) =>
    r === undefined ? { floor, met: null, detail: "not run" } : { floor, met: ok(r), detail: show(r) };
  const tput = (r: Ratio): string =>
    `${fmt(r.raftkvOpsPerSec, 0)} vs ${fmt(r.etcdOpsPerSec, 0)} ops/s = ${fmt(r.throughput, 2)}x`;
  const cpu = (r: Ratio): string => `CPU per op ratio ${fmt(r.cpuPerOp, 2)}`;
  return [
    row("puts >= etcd's at c=64", at("put", 64), (r) => r.throughput >= 1, tput),
    row("puts >= etcd's at c=256", at("put", 256), (r) => r.throughput >= 1, tput),
    row("linearizable reads >= 2x etcd's at c=64", at("get-lease", 64), (r) => r.throughput >= 2, tput),
    row("server CPU per put <= etcd's (c=64)", at("put", 64), (r) => r.cpuPerOp <= 1, cpu),
    row(
      "server CPU per linearizable read <= etcd's (c=64)",
      at("get-lease", 64),
      (r) => r.cpuPerOp <= 1,
      cpu,
    ),
  ];
}

/** Issue 6's floors, on the medians of this run (null: the rows needed were not run). */
export function checkFloors(rs: readonly Ratio[], path: string): FloorCheck[] {
  const at = (w: RaftkvWorkload, c: number): Ratio | undefined =>
    rs.find((r) => r.raftkv === `raftkv/${path}` && r.workload === w && r.concurrency === c);
  const check = (
    floor: string,
    r: Ratio | undefined,
    ok: (r: Ratio) => boolean,
    show: (r: Ratio) => string,
  ) => (r === undefined ? { floor, met: null, detail: "not run" } : { floor, met: ok(r), detail: show(r) });
  const tput = (r: Ratio): string =>
    `${fmt(r.raftkvOpsPerSec, 0)} vs ${fmt(r.etcdOpsPerSec, 0)} ops/s = ${fmt(r.throughput, 2)}x`;
  const cpu = (r: Ratio): string => `CPU per op ratio ${fmt(r.cpuPerOp, 2)}`;
  return [
    check("puts >= 1.5x etcd at c=64", at("put", 64), (r) => r.throughput >= 1.5, tput),
    check("puts >= 1.5x etcd at c=256", at("put", 256), (r) => r.throughput >= 1.5, tput),
    check(
      "put p50 at c=1 <= etcd's",
      at("put", 1),
      (r) => r.p50 <= 1,
      (r) => `p50 ratio ${fmt(r.p50, 2)}`,
    ),
    check("lease reads >= 3x etcd linearizable at c=64", at("get-lease", 64), (r) => r.throughput >= 3, tput),
    check(
      "readIndex reads >= etcd linearizable at c=64",
      at("get-readIndex", 64),
      (r) => r.throughput >= 1,
      tput,
    ),
    check("server CPU per put < etcd's (c=64)", at("put", 64), (r) => r.cpuPerOp < 1, cpu),
    check(
      "server CPU per lease read < 1/3 etcd's per linearizable get (c=64)",
      at("get-lease", 64),
      (r) => r.cpuPerOp < 1 / 3,
      cpu,
    ),
  ];
}

export function floorsText(fs: readonly FloorCheck[]): string {
  return fs
    .map((f) => `${f.met === null ? "  ?  " : f.met ? " met " : "SHORT"}  ${f.floor}: ${f.detail}`)
    .join("\n");
}
