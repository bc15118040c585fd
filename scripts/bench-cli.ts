// CLI latency: the wall time of one `raftkv get KEY` (a fresh process: node start-up, module loading,
// connecting, the read) against a local 3-node cluster, as a user runs it, `./raftkv` (bin/raftkv.mjs).
// Prints medians and spreads; asserts nothing (the target, under 300 ms, is read off the output).
//
// Run: npm run bench:cli [-- --runs 30 --npx]   (--npx also times `npx raftkv get`, slower: npm's start-up)

import { spawnSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { startRaftkvCluster } from "../src/bench/clusters.ts";
import { RaftKvClient } from "../src/client/index.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : fallback;
  if (!Number.isSafeInteger(v) || v <= 0) throw new Error(`--${name} must be a positive integer`);
  return v;
}

function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
}

/** Runs `command args` `runs` times; returns the wall times in ms, sorted. */
function time(command: string, args: readonly string[], runs: number, expect: string): number[] {
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const r = spawnSync(command, args, { cwd: ROOT, encoding: "utf8" });
    ms.push(performance.now() - t0);
    if (r.status !== 0 || r.stdout !== expect)
      throw new Error(
        `${command} ${args.join(" ")}: exit ${r.status}, stdout ${JSON.stringify(r.stdout)}, stderr ${r.stderr}`,
      );
  }
  return ms.sort((a, b) => a - b);
}

function row(what: string, ms: readonly number[]): string {
  const f = (v: number): string => v.toFixed(0).padStart(5);
  return `${what.padEnd(44)} median ${f(quantile(ms, 0.5))} ms   p90 ${f(quantile(ms, 0.9))}   min ${f(ms[0]!)}   max ${f(ms.at(-1)!)}`;
}

/** A port nobody listens on now (the cluster takes it and the next two). */
async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

async function main(): Promise<void> {
  const runs = arg("runs", 30);
  const dir = await mkdtemp(join(tmpdir(), "raftkv-bench-cli-"));
  // The two ports after a free one are most likely free too; the cluster start fails loudly if not.
  const cluster = await startRaftkvCluster({ dir, basePort: await freePort(), nodes: 3 });
  try {
    const endpoints = cluster.members.map((m) => m.endpoint).join(",");
    const kv = new RaftKvClient({ endpoints: endpoints.split(","), timeoutMs: 5000 });
    await kv.put("bench-cli", "hello");
    kv.close();
    console.log(`cluster: 3 nodes (${cluster.runs}); ${runs} runs each, one process per run`);
    console.log(
      `load average before: ${(await import("node:os"))
        .loadavg()
        .map((l) => l.toFixed(1))
        .join(" ")}`,
    );
    const bin = join(ROOT, "bin/raftkv.mjs");
    const get = ["get", "bench-cli", "--endpoints", endpoints];
    console.log(row("node -e 0 (Node start-up alone)", time(process.execPath, ["-e", "0"], runs, "")));
    console.log(row("raftkv --version", time(process.execPath, [bin, "--version"], runs, `${version()}\n`)));
    console.log(
      row(
        "raftkv get KEY (./raftkv, bin/raftkv.mjs)",
        time(process.execPath, [bin, ...get], runs, "hello\n"),
      ),
    );
    console.log(
      row(
        "raftkv get KEY --consistency stale",
        time(process.execPath, [bin, ...get, "--consistency", "stale"], runs, "hello\n"),
      ),
    );
    if (process.argv.includes("--npx"))
      console.log(
        row(
          "npx raftkv get KEY (in this checkout)",
          time("npx", ["raftkv", ...get], Math.min(runs, 10), "hello\n"),
        ),
      );
    console.log(
      `load average after:  ${(await import("node:os"))
        .loadavg()
        .map((l) => l.toFixed(1))
        .join(" ")}`,
    );
  } finally {
    await cluster.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

function version(): string {
  return spawnSync(process.execPath, [join(ROOT, "bin/raftkv.mjs"), "--version"], {
    encoding: "utf8",
  }).stdout.trim();
}

await main();
