// Flood benchmark: a real 3-node cluster (`raftkv serve` processes); good clients' latency on the leader
// without and then with a flood of oversized and malformed requests, garbage TCP connections and idle
// connections (each kind from its own process), and after it. Prints the flood rates, the latencies, and
// the CPU the leader and the flooders used (they share the machine's cores).
// Usage: npx tsx scripts/flood/main.ts [--seconds 15] [--clients 4] [--concurrency 32] [--idle 2000]
//        [--kinds oversized,malformed,garbageTcp,idleConnections]

import { fork } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { RaftKvClient } from "../../src/client/index.ts";
import { TestCluster } from "../../test/e2e/harness.ts";
import { FLOOD_KINDS, Flood, type FloodKind, percentiles } from "./load.ts";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "15" },
    clients: { type: "string", default: "4" },
    concurrency: { type: "string", default: "32" },
    idle: { type: "string", default: "2000" },
    kinds: { type: "string", default: FLOOD_KINDS.join(",") },
    flooder: { type: "string" },
    address: { type: "string" },
    seed: { type: "string", default: "1" },
  },
});
const seconds = Number(values.seconds);

if (values.flooder !== undefined) await runFlooder(values.flooder as FloodKind, values.address ?? "");
else await main();

/** Child process: one kind of flood for `seconds`, then its counts and CPU as one JSON line on stdout. */
async function runFlooder(kind: FloodKind, address: string): Promise<void> {
  const flood = new Flood({
    address,
    kinds: [kind],
    concurrency: Number(values.concurrency),
    idleConnections: Number(values.idle),
    seed: Number(values.seed),
  });
  flood.start();
  await sleep(seconds * 1000);
  const [c] = await flood.stop();
  const cpu = process.cpuUsage();
  const report: FlooderReport = {
    kind,
    sent: c?.sent ?? 0,
    outcomes: Object.fromEntries(c?.outcomes ?? []),
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
  };
  process.stdout.write(`${JSON.stringify(report)}\n`);
  process.exit(0);
}

interface FlooderReport {
  readonly kind: FloodKind;
  readonly sent: number;
  readonly outcomes: Record<string, number>;
  readonly cpuSeconds: number;
}

interface Phase {
  readonly name: string;
  readonly seconds: number;
  readonly put: number[];
  readonly get: number[];
  errors: number;
  readonly errorCodes: Map<string, number>;
  /** The leader process's CPU over the phase, in % of one core. */
  leaderCpu: number;
}

async function main(): Promise<void> {
  // Election timeouts 1-2 s rather than 300-600 ms: on a shared machine the baseline must not churn
  // leaders by itself, or nothing is measured.
  const timing = ["--heartbeat-ms", "100", "--election-timeout-min-ms", "1000"];
  const cluster = await TestCluster.start({
    nodes: 3,
    serveArgs: [...timing, "--election-timeout-max-ms", "2000"],
  });
  try {
    const leader = await cluster.waitForLeader();
    const address = cluster.node(leader.nodeId).address;
    const pid = cluster.node(leader.nodeId).proc?.pid ?? 0;
    const clients = Array.from(
      { length: Number(values.clients) },
      () => new RaftKvClient({ endpoints: [address], timeoutMs: 5000 }),
    );
    await Promise.all(clients.map((c, i) => c.put(`warm/${i}`, "x")));
    const out = (s: string): boolean => process.stdout.write(`${s}\n`);
    out(`leader node ${leader.nodeId} at ${address} (pid ${pid}); ${clients.length} good clients`);

    const baseline = await measure("baseline", clients, seconds, pid);
    const rssBefore = rssMb(pid);
    const kinds = (values.kinds ?? "")
      .split(",")
      .filter((k): k is FloodKind => (FLOOD_KINDS as readonly string[]).includes(k));
    const flooders = kinds.map((kind) => startFlooder(kind, address, seconds + 2));
    await sleep(1000);
    let peakRss = rssMb(pid);
    const rssTimer = setInterval(() => (peakRss = Math.max(peakRss, rssMb(pid))), 250);
    const flooded = await measure("flood", clients, seconds, pid);
    clearInterval(rssTimer);
    const reports = await Promise.all(flooders);
    const after = await measure("after", clients, Math.max(3, seconds / 3), pid);
    const alive = cluster.node(leader.nodeId).proc !== null;

    out("\nflood (each kind from its own process, against the leader):");
    for (const r of reports) {
      const rate = Math.round(r.sent / (seconds + 2));
      const cpu = Math.round((r.cpuSeconds / (seconds + 2)) * 100);
      out(
        `  ${r.kind.padEnd(16)} ${String(rate).padStart(6)}/s  flooder CPU ${cpu}%  ${JSON.stringify(r.outcomes)}`,
      );
    }
    out("\ngood clients (latency in ms):");
    for (const p of [baseline, flooded, after]) {
      const put = percentiles(p.put);
      const get = percentiles(p.get);
      const rate = Math.round((put.count + get.count) / p.seconds);
      out(
        `  ${p.name.padEnd(9)} leader CPU ${String(p.leaderCpu).padStart(3)}%  ops/s ${String(rate).padStart(5)}` +
          `  put p50 ${put.p50.toFixed(2)} p99 ${put.p99.toFixed(2)} max ${put.max.toFixed(1)}` +
          `  get p50 ${get.p50.toFixed(2)} p99 ${get.p99.toFixed(2)} max ${get.max.toFixed(1)}` +
          `  errors ${p.errors} ${JSON.stringify(Object.fromEntries(p.errorCodes))}`,
      );
    }
    out(`\nleader RSS ${rssBefore} MB before, peak ${peakRss} MB during the flood; alive after: ${alive}`);
    for (const c of clients) c.close();
  } finally {
    await cluster.close();
  }
}

async function measure(
  name: string,
  clients: readonly RaftKvClient[],
  forSeconds: number,
  pid: number,
): Promise<Phase> {
  const phase: Phase = {
    name,
    seconds: forSeconds,
    put: [],
    get: [],
    errors: 0,
    errorCodes: new Map(),
    leaderCpu: 0,
  };
  const cpuBefore = cpuSecondsOf(pid);
  const started = performance.now();
  const until = started + forSeconds * 1000;
  await Promise.all(
    clients.map(async (c, i) => {
      for (let n = 0; performance.now() < until; n++) {
        const key = `good/${i}/${n % 100}`;
        for (const op of ["put", "get"] as const) {
          const t = performance.now();
          try {
            if (op === "put") await c.put(key, `v${n}`);
            else await c.get(key);
            phase[op].push(performance.now() - t);
          } catch (err) {
            phase.errors++;
            const code = (err as { code?: string }).code ?? "?";
            phase.errorCodes.set(code, (phase.errorCodes.get(code) ?? 0) + 1);
          }
        }
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  phase.leaderCpu = Math.round(((cpuSecondsOf(pid) - cpuBefore) / elapsed) * 100);
  return phase;
}

function startFlooder(kind: FloodKind, address: string, forSeconds: number): Promise<FlooderReport> {
  const args = [
    ...["--flooder", kind, "--address", address, "--seconds", String(forSeconds)],
    ...[
      "--concurrency",
      String(values.concurrency),
      "--idle",
      String(values.idle),
      "--seed",
      String(values.seed),
    ],
  ];
  const child = fork(fileURLToPath(import.meta.url), args, { stdio: ["ignore", "pipe", "inherit", "ipc"] });
  let text = "";
  child.stdout?.on("data", (d: Buffer) => (text += d.toString()));
  const empty: FlooderReport = { kind, sent: 0, outcomes: {}, cpuSeconds: 0 };
  return new Promise((resolve) =>
    child.on("exit", () => {
      try {
        resolve({
          ...empty,
          ...(JSON.parse(text.trim().split("\n").pop() ?? "{}") as Partial<FlooderReport>),
        });
      } catch {
        resolve(empty);
      }
    }),
  );
}

/** utime + stime of a process, in seconds (Linux /proc, 100 ticks a second). */
function cpuSecondsOf(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

function rssMb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m === null ? 0 : Math.round(Number(m[1]) / 1024);
  } catch {
    return 0;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
