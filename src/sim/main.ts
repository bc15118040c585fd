// `npm run sim`: run many seeds (split over worker processes), print figures and violations; replay one
// seed with --seed N --trace. A failing seed prints the command that replays it.

import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { Command } from "commander";
import { seedOptions } from "./defaults.ts";
import { formatHistoryLine } from "./history.ts";
import { type FaultLevel, runSeed, type SimResult } from "./run.ts";

interface Options {
  seeds: string;
  start: string;
  seed?: string;
  nodes: string;
  faults: string;
  durationMs: string;
  clients: string;
  keys: string;
  workers: string;
  trace?: boolean;
  json?: boolean;
  history?: string;
}

type Summary = Omit<SimResult, "history">;

const program = new Command()
  .name("sim")
  .description("Seeded whole-cluster simulation of raftkv with faults and checkers")
  .option("--seeds <n>", "number of seeds", "100")
  .option("--start <n>", "first seed", "1")
  .option("--seed <n>", "run just this seed (replay)")
  .option("--nodes <list>", "cluster sizes, comma separated, alternating by seed", "3,5")
  .option("--faults <level>", "none | normal | heavy", "heavy")
  .option("--duration-ms <n>", "simulated milliseconds under faults per seed", "60000")
  .option("--clients <n>", "concurrent clients", "6")
  .option("--keys <n>", "key space", "5")
  .option("--workers <n>", "worker processes", "2")
  .option("--trace", "print the run's events (with --seed)")
  .option("--history <file>", "write the client history as JSON lines (with --seed)")
  .option("--json", "one JSON summary line per seed (used by workers)")
  .parse();

const opts = program.opts<Options>();
const sizes = opts.nodes.split(",").map(Number);

async function runOne(seed: number, o: Options): Promise<SimResult> {
  return runSeed(
    seedOptions(seed, {
      sizes,
      faults: o.faults as FaultLevel,
      durationMs: Number(o.durationMs),
      clients: Number(o.clients),
      keys: Number(o.keys),
      trace: o.trace === true,
    }),
  );
}

function describe(r: Summary): string {
  return `seed ${r.seed} nodes ${r.nodes}: ${r.ok ? "ok" : "VIOLATION"} ops ${r.ops} (ok ${r.opsOk}, unknown ${r.opsUnknown}) elections ${r.elections} crashes ${r.crashes} partitions ${r.partitions} pauses ${r.pauses} churned ${r.churned} leaseReads ${r.leaseReads} readIndex ${r.readIndexReads} leaderAfterHeal ${r.leaderAfterHealMs?.toFixed(0) ?? "none"}ms events ${r.events} wall ${r.wallMs.toFixed(0)}ms`;
}

function replayHint(r: Summary): string {
  return `  replay: npm run sim -- --seed ${r.seed} --nodes ${opts.nodes} --faults ${opts.faults} --duration-ms ${opts.durationMs} --trace`;
}

async function runInProcess(seeds: readonly number[]): Promise<Summary[]> {
  const out: Summary[] = [];
  for (const seed of seeds) {
    const { history, ...summary } = await runOne(seed, opts);
    if (opts.history !== undefined)
      writeFileSync(opts.history, `${history.map(formatHistoryLine).join("\n")}\n`);
    if (opts.json) console.log(JSON.stringify(summary));
    out.push(summary);
  }
  return out;
}

function runWorker(seeds: readonly number[]): Promise<Summary[]> {
  const args = [
    ...process.execArgv,
    process.argv[1]!,
    "--json",
    "--start",
    String(seeds[0]),
    "--seeds",
    String(seeds.length),
    "--nodes",
    opts.nodes,
    "--faults",
    opts.faults,
    "--duration-ms",
    opts.durationMs,
    "--clients",
    opts.clients,
    "--keys",
    opts.keys,
    "--workers",
    "1",
  ];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "inherit"] });
    const results: Summary[] = [];
    let buf = "";
    child.stdout.on("data", (d: Buffer) => {
      buf += d.toString();
      let nl = buf.indexOf("\n");
      while (nl >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.startsWith("{")) {
          const r = JSON.parse(line) as Summary;
          results.push(r);
          if (!r.ok)
            console.log(`${describe(r)}\n${r.violations.map((v) => `  ${v}`).join("\n")}\n${replayHint(r)}`);
        }
        nl = buf.indexOf("\n");
      }
    });
    child.on("error", reject);
    child.on("exit", (code) => {
      if (results.length !== seeds.length)
        reject(new Error(`sim worker exited with ${code} after ${results.length} of ${seeds.length} seeds`));
      else resolve(results);
    });
  });
}

async function main(): Promise<number> {
  const t0 = performance.now();
  const seeds =
    opts.seed !== undefined
      ? [Number(opts.seed)]
      : Array.from({ length: Number(opts.seeds) }, (_, i) => Number(opts.start) + i);
  const workers = Math.max(1, Math.min(Number(opts.workers), seeds.length));
  let results: Summary[];
  if (workers === 1 || opts.json) {
    results = await runInProcess(seeds);
    if (opts.json) return 0;
  } else {
    const per = Math.ceil(seeds.length / workers);
    const parts = Array.from({ length: workers }, (_, w) => seeds.slice(w * per, (w + 1) * per)).filter(
      (p) => p.length > 0,
    );
    results = (await Promise.all(parts.map(runWorker))).flat();
  }
  const failed = results.filter((r) => !r.ok);
  if (workers === 1) {
    for (const r of results) {
      if (!r.ok || seeds.length <= 20) console.log(describe(r));
      if (!r.ok) {
        for (const v of r.violations) console.log(`  ${v}`);
        console.log(replayHint(r));
      }
    }
  }
  const sum = (f: (r: Summary) => number): number => results.reduce((a, r) => a + f(r), 0);
  const minOps = Math.min(...results.map((r) => r.ops));
  const slowest = results.reduce<Summary | null>(
    (a, r) => ((r.convergedAfterMs ?? 0) > (a?.convergedAfterMs ?? 0) ? r : a),
    null,
  );
  console.log(
    `seeds ${results.length}, violations ${failed.length}, operations ${sum((r) => r.ops)} (checked ${sum((r) => r.opsChecked)}, fewest in one seed ${minOps}, fewest checked ${Math.min(...results.map((r) => r.opsChecked))}, unknown outcome ${sum((r) => r.opsUnknown)}), simulated ${sum((r) => r.simSeconds).toFixed(0)} s, elections ${sum((r) => r.elections)}, crashes ${sum((r) => r.crashes)}, partitions ${sum((r) => r.partitions)}, pauses ${sum((r) => r.pauses)}, leaders churned ${sum((r) => r.churned)}, membership changes ${sum((r) => r.memberChanges)} in ${results.filter((r) => r.memberChanges > 0).length} seeds (nodes added ${sum((r) => r.nodesAdded)}, retired ${sum((r) => r.nodesRetired)}), wipes ${sum((r) => r.wipes)} in ${results.filter((r) => r.wipes > 0).length} seeds (${sum((r) => r.refusedByIncarnation)} messages refused for their incarnation), lease reads ${sum((r) => r.leaseReads)}, disk I/Os ${sum((r) => r.diskIos)}, crashes inside an I/O ${sum((r) => r.crashesInIo)}, aimed crashes ${sum((r) => r.io.aimedAfterSend)} after a send and ${sum((r) => r.io.aimedInIo)} inside an fsync/rename (${sum((r) => r.io.correlated)} correlated), request stalls ${sum((r) => r.io.requestPauses)}, transfer stalls ${sum((r) => r.io.transferStalls)}, slow links ${sum((r) => r.io.slowLinks)}, disk stalls ${sum((r) => r.io.diskStalls)}, disk faults ${sum((r) => r.io.fsyncFailures + r.io.diskFullEpisodes + r.io.corruptReads)} (${sum((r) => r.io.storageStops)} nodes stopped on them), slowest convergence ${slowest === null ? "none" : `${slowest.convergedAfterMs!.toFixed(0)} ms (seed ${slowest.seed})`}, wall ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  return failed.length === 0 ? 0 : 1;
}

process.exitCode = await main();
