// `npm run bench -- --idle SECONDS`: three raftkv nodes (and three etcd members, when `etcd` is on the
// PATH) with no load; each process's share of a core (utime + stime from /proc over the window) and its
// RSS at the end. Both clusters run side by side over the same window, so a busy machine slows both alike.

import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type { BenchArgs } from "./args.ts";
import { type Cluster, startEtcdCluster, startRaftkvCluster } from "./clusters.ts";
import { randomBasePort } from "./ports.ts";
import { cpuSecondsOf, readProc } from "./proc-stats.ts";

const MB = 1024 * 1024;
/** Time after the leader is elected before the window opens: start-up work (module loading, the first
 *  compactions of V8's heap) is not idle cost. */
const SETTLE_MS = 5000;

export interface IdleFigures {
  readonly system: string;
  /** Share of one core per member over the window. */
  readonly cpuShare: number[];
  readonly rssMb: number[];
}

export async function runIdle(a: BenchArgs, log: (line: string) => void): Promise<IdleFigures[]> {
  mkdirSync(a.outDir, { recursive: true });
  const dir = mkdtempSync(join(a.outDir, "idle-"));
  const clusters: Cluster[] = [];
  try {
    const raftkv = await startRaftkvCluster({
      dir,
      basePort: randomBasePort(),
      serveArgs: a.serverSettings.flatMap((x) => ["--set", x]),
      ...(a.idleProfile
        ? { nodeFlags: ["--cpu-prof", "--cpu-prof-dir", join(a.outDir, "idle-profiles")] }
        : {}),
    });
    clusters.push(raftkv);
    log(`raftkv nodes run ${raftkv.runs}`);
    if (spawnSync("etcd", ["--version"]).status === 0) {
      const base = randomBasePort();
      clusters.push(await startEtcdCluster({ dir, baseClientPort: base, basePeerPort: base + 10 }));
    } else log("etcd is not on the PATH: raftkv only");
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const pids = clusters.map((c) => c.members.map((m) => m.pid));
    const cpu0 = pids.map(cpuSecondsOf);
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, a.idleSeconds * 1000));
    const windowS = (performance.now() - t0) / 1000;
    const out = clusters.map((c, i) => {
      const cpu1 = cpuSecondsOf(pids[i]!);
      return {
        system: c.system,
        cpuShare: cpu1.map((v, j) => (v - (cpu0[i]![j] ?? 0)) / windowS),
        rssMb: pids[i]!.map((p) => (readProc(p)?.rssBytes ?? 0) / MB),
      };
    });
    log(`idle over ${windowS.toFixed(0)} s, per member:`);
    for (const f of out)
      log(
        `  ${f.system.padEnd(6)} CPU ${f.cpuShare.map((x) => `${(x * 100).toFixed(2)} %`).join(" / ")}, RSS ${f.rssMb.map((x) => `${x.toFixed(0)} MB`).join(" / ")}`,
      );
    return out;
  } finally {
    for (const c of clusters) await c.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
