// One benchmark run: the generator's ceiling against the no-op server, then every (repetition, workload,
// concurrency) row on each system, alternating systems row by row, with the servers' CPU and RSS from
// /proc; prints the tables and writes everything as JSON under the output folder.

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type { ClientPath } from "../client/index.ts";
import {
  type Cluster,
  type Member,
  startEtcdCluster,
  startNoopServer,
  startRaftkvCluster,
} from "./clusters.ts";
import { LoadGenerator } from "./generator.ts";
import { randomBasePort } from "./ports.ts";
import { cpuSecondsOf, machineBusySeconds, RssSampler } from "./proc-stats.ts";
import {
  checkEtcdApiFloors,
  checkFloors,
  floorsText,
  labelOf,
  type MedianRow,
  medians,
  mediansTable,
  type RowResult,
  ratios,
  ratiosTable,
} from "./report.ts";
import { summarize } from "./stats.ts";
import { ETCD_COUNTERPART, type RaftkvWorkload, type Target, type Workload } from "./workloads.ts";

export interface SuiteOptions {
  readonly etcd: boolean;
  /** raftkv client paths to run (each is its own target). */
  readonly paths: readonly ClientPath[];
  readonly workloads: readonly RaftkvWorkload[];
  readonly concurrencies: readonly number[];
  readonly reps: number;
  readonly warmupMs: number;
  readonly durationMs: number;
  readonly threads: number;
  readonly keySpace: number;
  readonly valueBytes: number;
  readonly ceiling: boolean;
  /** Also drive raftkv through the etcd client (raftkv/etcd-api rows). */
  readonly etcdApi?: boolean;
  readonly outDir: string;
  /** Existing raftkv endpoints to drive instead of starting a cluster (no CPU/RSS figures then). */
  readonly endpoints: readonly string[] | null;
  /** Another raftkv checkout to run beside this one ("base" rows). */
  readonly compareWith: string | null;
  /** `raftkv serve --set` settings for the raftkv clusters started. */
  readonly serverSettings: readonly string[];
  readonly log: (line: string) => void;
}

/** A system as the rows see it: how to reach it and which processes to watch. */
export interface System {
  readonly name: "raftkv" | "etcd" | "noop" | "noop-h2" | "base";
  readonly pids: readonly number[];
  readonly targets: readonly {
    readonly target: Target;
    readonly path: ClientPath;
    readonly client: "raftkv" | "etcd";
  }[];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function runSuite(o: SuiteOptions): Promise<{ medians: MedianRow[]; file: string }> {
  mkdirSync(o.outDir, { recursive: true });
  const started = new Date();
  const stamp = started.toISOString().replace(/[:.]/g, "-");
  const dataDir = mkdtempSync(join(o.outDir, "data-"));
  const gen = LoadGenerator.start(o.threads);
  const rows: RowResult[] = [];
  const clusters: Cluster[] = [];
  const idle: Record<string, number> = {};
  const done = new Set<string>();
  let seed = 1;
  const measure = async (
    s: System,
    t: System["targets"][number],
    workload: Workload,
    c: number,
    rep: number,
  ) => {
    const row = await measureRow(gen, s, t, workload, c, rep, o, seed++);
    rows.push(row);
    o.log(progressLine(row));
  };
  try {
    o.log(
      `raftkv bench: ${cpus().length} cores, node ${process.version}, ${o.threads} generator threads, ` +
        `${o.reps} reps of ${o.warmupMs} ms warm-up + ${o.durationMs} ms, ${o.keySpace} keys, ${o.valueBytes} B values`,
    );
    if (o.ceiling) {
      const noop = await startNoopServer();
      try {
        const ep = [noop.endpoint];
        const s: System = {
          name: "noop",
          pids: [noop.pid],
          targets: [
            ...o.paths.map((path) => ({
              target: { system: "raftkv", endpoints: ep, path } as const,
              path,
              client: "raftkv" as const,
            })),
            ...(o.etcd
              ? [
                  {
                    target: { system: "etcd", endpoints: ep, leader: noop.endpoint } as const,
                    path: "unary" as const,
                    client: "etcd" as const,
                  },
                ]
              : []),
          ],
        };
        // The same canned answers from a bare node:http2 server, unary only: what grpc-js's own server
        // costs per call (issue 17), in the same run.
        const h2ep = [noop.http2Endpoint];
        const h2: System = {
          name: "noop-h2",
          pids: [noop.pid],
          targets: [
            ...(o.paths.includes("unary")
              ? [
                  {
                    target: { system: "raftkv", endpoints: h2ep, path: "unary" } as const,
                    path: "unary" as const,
                    client: "raftkv" as const,
                  },
                ]
              : []),
            ...(o.etcd
              ? [
                  {
                    target: { system: "etcd", endpoints: h2ep, leader: noop.http2Endpoint } as const,
                    path: "unary" as const,
                    client: "etcd" as const,
                  },
                ]
              : []),
          ],
        };
        o.log("generator ceiling (no-op servers: grpc-js, and bare node:http2 for unary):");
        for (let rep = 0; rep < o.reps; rep++)
          for (const c of o.concurrencies.filter((x) => x >= 64))
            for (const sys of [s, h2])
              for (const t of sys.targets)
                await measure(sys, t, t.client === "etcd" ? "get-linearizable" : "get-lease", c, rep);
      } finally {
        await noop.stop();
      }
    }
    const systems: System[] = [];
    if (o.endpoints !== null) {
      systems.push(raftkvSystem(o.endpoints, [], o.paths));
    } else {
      const serveArgs = o.serverSettings.flatMap((x) => ["--set", x]);
      const raftkv = await startRaftkvCluster({ dir: dataDir, basePort: randomBasePort(), serveArgs });
      clusters.push(raftkv);
      o.log(`raftkv nodes run ${raftkv.runs}`);
      const eps = await endpointsLeaderFirst(raftkv);
      const sys = raftkvSystem(eps, pidsOf(raftkv), o.paths);
      systems.push(
        o.etcdApi === true && o.etcd
          ? {
              ...sys,
              targets: [
                ...sys.targets,
                // The etcd client etcd's rows use, pointed at raftkv's etcd v3 API (issue 18).
                {
                  target: { system: "etcd", endpoints: eps, leader: eps[0]! },
                  path: "unary",
                  client: "etcd",
                },
              ],
            }
          : sys,
      );
    }
    if (o.compareWith !== null) {
      const base = await startRaftkvCluster({
        dir: join(dataDir, "base"),
        basePort: randomBasePort(),
        checkout: o.compareWith,
        serveArgs: o.serverSettings.flatMap((x) => ["--set", x]),
      });
      clusters.push(base);
      o.log(`base nodes run ${base.runs}`);
      systems.push({
        ...raftkvSystem(await endpointsLeaderFirst(base), pidsOf(base), o.paths),
        name: "base",
      });
    }
    if (o.etcd) {
      const etcdPort = randomBasePort();
      const etcd = await startEtcdCluster({
        dir: dataDir,
        baseClientPort: etcdPort,
        basePeerPort: etcdPort + 10,
      });
      clusters.push(etcd);
      const leader = await etcd.leader();
      const eps = etcd.members.map((m) => m.endpoint);
      systems.push({
        name: "etcd",
        pids: pidsOf(etcd),
        targets: [
          {
            target: { system: "etcd", endpoints: eps, leader: leader.endpoint },
            path: "unary",
            client: "etcd",
          },
        ],
      });
    }
    for (const s of systems) {
      const t = s.targets[0]!;
      const r = await gen.fill(
        { target: t.target, concurrency: 64, keySpace: o.keySpace, valueBytes: o.valueBytes, seed: seed++ },
        o.keySpace,
      );
      o.log(`${s.name}: filled ${r.ops} keys (${r.errors} errors)`);
      idle[s.name] = await idleCpu(s.pids);
    }
    if (Object.keys(idle).length > 0)
      o.log(
        `idle server CPU (all members, s per s): ${Object.entries(idle)
          .map(([k, v]) => `${k} ${v.toFixed(3)}`)
          .join(", ")}`,
      );
    for (let rep = 0; rep < o.reps; rep++)
      for (const w of o.workloads)
        for (const c of o.concurrencies)
          for (const s of systems)
            for (const t of s.targets) {
              const workload = t.client === "etcd" ? ETCD_COUNTERPART[w] : w;
              // get-lease and get-readIndex share their etcd counterpart: measure it once per rep.
              const key = `${labelOf({ system: s.name, path: t.path, client: t.client })}|${workload}|${c}|${rep}`;
              if (done.has(key)) continue;
              done.add(key);
              await measure(s, t, workload, c, rep);
            }
  } finally {
    await gen.close();
    for (const c of clusters) await c.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
  const med = medians(rows);
  const sorted = sortRows(med, o.etcd);
  const rs = ratios(sorted);
  const vsBase = o.compareWith === null ? [] : ratios(sorted, "base");
  o.log(`\nmedians of ${o.reps} reps:\n${mediansTable(sorted)}`);
  const floors = [
    ...o.paths.flatMap((p) => checkFloors(rs, p).map((f) => ({ ...f, floor: `[${p}] ${f.floor}` }))),
    ...(o.etcdApi === true
      ? checkEtcdApiFloors(rs).map((f) => ({ ...f, floor: `[etcd-api] ${f.floor}` }))
      : []),
  ];
  if (vsBase.length > 0)
    o.log(`\nthis checkout / ${o.compareWith} (base), same run:\n${ratiosTable(vsBase, "base")}`);
  if (o.etcd) {
    o.log(
      `\nraftkv / etcd, same run (ops ratio > 1 and p50, CPU/op ratios < 1 favour raftkv):\n${ratiosTable(rs)}`,
    );
    o.log(`\nfloors of issues 6, 17 (unary) and 18 (etcd-api):\n${floorsText(floors)}`);
  }
  const file = join(o.outDir, `bench${o.etcd ? "-etcd" : ""}-${stamp}.json`);
  const options = { ...o, log: undefined };
  writeFileSync(
    file,
    `${JSON.stringify(
      {
        started: started.toISOString(),
        machine: { cores: cpus().length, node: process.version },
        options,
        idleCpuSecondsPerSecond: idle,
        medians: sorted,
        ratios: rs,
        ratiosAgainstBase: vsBase,
        floors: o.etcd ? floors : [],
        rows,
      },
      null,
      1,
    )}\n`,
  );
  o.log(`\nwrote ${file}`);
  return { medians: sorted, file };
}

function raftkvSystem(
  endpoints: readonly string[],
  pids: readonly number[],
  paths: readonly ClientPath[],
): System {
  return {
    name: "raftkv",
    pids,
    targets: paths.map((path) => ({ target: { system: "raftkv", endpoints, path }, path, client: "raftkv" })),
  };
}

function pidsOf(c: Cluster): number[] {
  return c.members.map((m: Member) => m.pid);
}

/** Every member's endpoint, the leader's first (the client starts there; no redirect to learn). */
async function endpointsLeaderFirst(c: Cluster): Promise<string[]> {
  const leader = await c.leader();
  return [leader.endpoint, ...c.members.filter((m) => m.id !== leader.id).map((m) => m.endpoint)];
}

async function idleCpu(pids: readonly number[]): Promise<number> {
  const a = cpuSecondsOf(pids);
  const t0 = performance.now();
  await sleep(2000);
  const b = cpuSecondsOf(pids);
  return (b.reduce((x, y) => x + y, 0) - a.reduce((x, y) => x + y, 0)) / ((performance.now() - t0) / 1000);
}

export async function measureRow(
  gen: LoadGenerator,
  s: System,
  t: System["targets"][number],
  workload: Workload,
  concurrency: number,
  rep: number,
  o: Pick<SuiteOptions, "warmupMs" | "durationMs" | "keySpace" | "valueBytes">,
  seed: number,
): Promise<RowResult> {
  const rss = new RssSampler(s.pids);
  const running = gen.run({
    target: t.target,
    workload,
    concurrency,
    warmupMs: o.warmupMs,
    durationMs: o.durationMs,
    keySpace: o.keySpace,
    valueBytes: o.valueBytes,
    seed,
  });
  await sleep(o.warmupMs);
  const cpu0 = cpuSecondsOf(s.pids);
  const busy0 = machineBusySeconds();
  const gen0 = process.cpuUsage();
  const t0 = performance.now();
  await sleep(o.durationMs);
  const cpu1 = cpuSecondsOf(s.pids);
  const busy1 = machineBusySeconds();
  const genCpu = process.cpuUsage(gen0);
  const windowS = (performance.now() - t0) / 1000;
  const res = await running;
  const peaks = rss.takePeaks();
  rss.stop();
  const lat = summarize(res.latencies);
  const serverCpu = cpu1.map((v, i) => v - (cpu0[i] ?? 0));
  const kops = res.ops / 1000;
  const oursS = serverCpu.reduce((a, b) => a + b, 0) + (genCpu.user + genCpu.system) / 1e6;
  return {
    system: s.name,
    path: t.path,
    client: t.client,
    workload,
    concurrency,
    rep,
    opsPerSec: res.ops / (o.durationMs / 1000),
    errors: res.errors,
    ...lat,
    serverCpuSeconds: serverCpu,
    serverCpuSecondsPerKop:
      s.pids.length === 0 || kops === 0 ? Number.NaN : serverCpu.reduce((a, b) => a + b, 0) / kops,
    generatorCpuSecondsPerKop:
      kops === 0
        ? Number.NaN
        : (genCpu.user + genCpu.system) / 1e6 / kops / (windowS / (o.durationMs / 1000)),
    peakRssMb: peaks.map((b) => b / (1024 * 1024)),
    otherCpuCores: Math.max(0, (busy1 - busy0 - oursS) / windowS),
    errorSamples: res.errorSamples,
  };
}

export function progressLine(r: RowResult): string {
  const who = labelOf(r);
  const cpu = Number.isFinite(r.serverCpuSecondsPerKop)
    ? ` srv ${r.serverCpuSecondsPerKop.toFixed(3)} s/kop`
    : "";
  const other = ` other load ${r.otherCpuCores.toFixed(2)} cores`;
  const errs = r.errors > 0 ? ` ERRORS ${r.errors} (${r.errorSamples[0] ?? ""})` : "";
  return `  rep ${r.rep + 1} ${who} ${r.workload} c=${r.concurrency}: ${r.opsPerSec.toFixed(0)} ops/s p50 ${r.p50Ms.toFixed(2)} p99 ${r.p99Ms.toFixed(2)} max ${r.maxMs.toFixed(1)} ms${cpu} gen ${r.generatorCpuSecondsPerKop.toFixed(3)} s/kop${other}${errs}`;
}

/** Noop rows first, then by workload (raftkv rows beside their etcd counterparts), concurrency, target. */
function sortRows(rows: readonly MedianRow[], etcd: boolean): MedianRow[] {
  const order = (r: MedianRow): string => {
    const w = r.system === "etcd" ? etcdAnchor(r.workload) : r.workload;
    return `${r.system === "noop" || r.system === "noop-h2" ? 0 : 1}|${w}|${String(r.concurrency).padStart(4, "0")}|${r.system === "etcd" ? "z" : r.label}`;
  };
  return [...rows]
    .sort((a, b) => (order(a) < order(b) ? -1 : order(a) > order(b) ? 1 : 0))
    .filter((r) => etcd || r.system !== "etcd");
}

function etcdAnchor(w: Workload): string {
  const first = (Object.keys(ETCD_COUNTERPART) as RaftkvWorkload[]).filter((k) => ETCD_COUNTERPART[k] === w);
  return `${first[first.length - 1] ?? w}~`;
}
