// State at scale (issue 16), scaled down to this shared machine: a 3-node cluster filled with --keys keys
// of --value-bytes through the real client (c=256, closed loop), in ten parts; then every node killed with
// SIGKILL and started again. Prints per tenth of the fill ops/s, p99 and failed puts; the terms before and
// after (leader changes); each node's RSS after the fill; the time from the restart to the first
// linearizable (lease) read answered. `--checkout DIR` runs the nodes of another checkout (before/after).
//
// Run: npx tsx scripts/bench-scale.ts [--keys 200000] [--value-bytes 256] [--checkout DIR]
//        [--serve-args "FLAGS"] (extra `raftkv serve` flags for every node, e.g. timing)

import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { startRaftkvCluster } from "../src/bench/clusters.ts";
import { LoadGenerator } from "../src/bench/generator.ts";
import { readProc } from "../src/bench/proc-stats.ts";
import { summarize } from "../src/bench/stats.ts";
import { RaftKvClient } from "../src/client/index.ts";

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function num(name: string, fallback: number): number {
  const v = Number(arg(name) ?? fallback);
  if (!Number.isSafeInteger(v) || v <= 0) throw new Error(`--${name} must be a positive integer`);
  return v;
}

const MB = 1024 * 1024;

/** What each node's log says about its leadership during the fill: why leaders changed. */
function logSummary(dir: string, ids: readonly number[]): string[] {
  return ids.map((id) => {
    let text = "";
    try {
      text = readFileSync(join(dir, `raftkv-${id}.stderr`), "utf8");
    } catch {
      return `  node ${id}: no log`;
    }
    let stalls = 0;
    let maxLateMs = 0;
    let elections = 0;
    let stepDowns = 0;
    let lapses = 0;
    for (const line of text.split("\n")) {
      if (!line.startsWith("{")) continue;
      let rec: { msg?: string; event?: string; lateMs?: number };
      try {
        rec = JSON.parse(line) as typeof rec;
      } catch {
        continue;
      }
      if (rec.msg?.startsWith("event loop stalled") === true) {
        stalls++;
        maxLateMs = Math.max(maxLateMs, rec.lateMs ?? 0);
      } else if (rec.msg?.startsWith("election timeout") === true) elections++;
      else if (rec.event === "stepDown") stepDowns++;
      else if (rec.msg?.startsWith("leader lease lapsed") === true) lapses++;
    }
    return `  node ${id}: ${elections} election timeouts, ${stepDowns} step-downs, ${lapses} lease lapses; ${stalls} event-loop stalls over half the election timeout (longest ${maxLateMs} ms late)`;
  });
}

async function maxTerm(endpoints: string[]): Promise<number> {
  const client = new RaftKvClient({ endpoints, timeoutMs: 2000, path: "unary" });
  try {
    const rows = await client.clusterStatus({ timeoutMs: 2000 });
    return Math.max(...rows.map((r) => (r.ok ? r.status.term : 0)));
  } finally {
    client.close();
  }
}

async function main(): Promise<void> {
  const keys = num("keys", 200_000);
  const valueBytes = num("value-bytes", 256);
  const checkout = arg("checkout");
  const out = join(process.cwd(), "bench-out");
  mkdirSync(out, { recursive: true });
  const dir = mkdtempSync(join(out, "scale-"));
  const basePort = 20_000 + Math.floor(Math.random() * 20_000);
  // Extra `raftkv serve` flags for every node, e.g. --serve-args "--election-timeout-min-ms 1000".
  const serveArgs = (arg("serve-args") ?? "").split(" ").filter((a) => a !== "");
  const options = { dir, basePort, serveArgs, ...(checkout === undefined ? {} : { checkout }) };
  let cluster = await startRaftkvCluster(options);
  const endpoints = cluster.members.map((m) => m.endpoint);
  const gen = LoadGenerator.start(2);
  try {
    console.log(`nodes run ${cluster.runs}; filling ${keys} keys of ${valueBytes} B at c=256 in ten parts`);
    const termBefore = await maxTerm(endpoints);
    const leader = await cluster.leader();
    const target = {
      system: "raftkv" as const,
      endpoints: [leader.endpoint, ...endpoints.filter((e) => e !== leader.endpoint)],
      path: "stream" as const,
    };
    const tenth = Math.ceil(keys / 10);
    const parts: { opsPerS: number; p99Ms: number; errors: number }[] = [];
    const t0 = performance.now();
    for (let i = 0; i < 10; i++) {
      const started = performance.now();
      const count = Math.min(tenth, keys - i * tenth);
      const r = await gen.fill(
        { target, concurrency: 256, keySpace: keys, valueBytes, seed: 7 + i },
        count,
        i * tenth,
      );
      const seconds = (performance.now() - started) / 1000;
      const s = summarize(r.latencies);
      parts.push({ opsPerS: r.ops / seconds, p99Ms: s.p99Ms, errors: r.errors });
      console.log(
        `  tenth ${i + 1}: ${(r.ops / seconds).toFixed(0)} puts/s, p99 ${s.p99Ms.toFixed(1)} ms, ${r.errors} failed`,
      );
    }
    const fillSeconds = (performance.now() - t0) / 1000;
    const termAfter = await maxTerm(endpoints);
    const rss = cluster.members.map((m) => ((readProc(m.pid)?.rssBytes ?? 0) / MB).toFixed(0));
    const first = parts[0]!;
    const last = parts[9]!;
    console.log(
      `fill ${fillSeconds.toFixed(0)} s; failed puts ${parts.reduce((n, p) => n + p.errors, 0)}; term ${termBefore} -> ${termAfter}; last/first tenth throughput ${(last.opsPerS / first.opsPerS).toFixed(2)}, p99 ${(last.p99Ms / first.p99Ms).toFixed(2)}; RSS ${rss.join(" / ")} MB`,
    );
    for (const line of logSummary(
      dir,
      cluster.members.map((m) => m.id),
    ))
      console.log(line);
    for (const m of cluster.members) process.kill(m.pid, "SIGKILL");
    await cluster.stop();
    const restartAt = performance.now();
    cluster = await startRaftkvCluster(options);
    const client = new RaftKvClient({ endpoints, timeoutMs: 5000 });
    try {
      for (;;) {
        const v = await client.getString("key-000000", { consistency: "lease" }).catch(() => undefined);
        if (v !== undefined) break;
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      client.close();
    }
    console.log(
      `restart (kill -9 of all three, then start) to the first lease read: ${((performance.now() - restartAt) / 1000).toFixed(1)} s`,
    );
  } finally {
    await gen.close();
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
