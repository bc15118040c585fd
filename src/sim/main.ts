// `npm run sim`: run many seeds (in worker processes), print figures and violations, replay one seed.

import { Command } from "commander";
import { type FaultLevel, runSeed, type SimResult } from "./run.ts";
import { TempDisk } from "./temp-disk.ts";

const program = new Command()
  .name("sim")
  .description("Seeded whole-cluster simulation of raftkv with faults and checkers")
  .option("--seeds <n>", "number of seeds", "100")
  .option("--start <n>", "first seed", "1")
  .option("--seed <n>", "run just this seed")
  .option("--nodes <list>", "cluster sizes, comma separated (alternating by seed)", "3,5")
  .option("--faults <level>", "none | normal | heavy", "heavy")
  .option("--duration-ms <n>", "simulated milliseconds under faults per seed", "60000")
  .option("--clients <n>", "concurrent clients", "4")
  .option("--keys <n>", "key space", "5")
  .option("--trace", "print the run's events")
  .parse();

const opts = program.opts<{
  seeds: string;
  start: string;
  seed?: string;
  nodes: string;
  faults: string;
  durationMs: string;
  clients: string;
  keys: string;
  trace?: boolean;
}>();

const sizes = opts.nodes.split(",").map(Number);
const seeds =
  opts.seed !== undefined
    ? [Number(opts.seed)]
    : Array.from({ length: Number(opts.seeds) }, (_, i) => Number(opts.start) + i);
let failed = 0;
let totalOps = 0;
let totalSim = 0;
const t0 = performance.now();
for (const seed of seeds) {
  const nodes = sizes[seed % sizes.length]!;
  const r: SimResult = await runSeed({
    seed,
    nodes,
    faults: opts.faults as FaultLevel,
    durationMs: Number(opts.durationMs),
    clients: Number(opts.clients),
    keys: Number(opts.keys),
    snapshotEveryEntries: 50,
    trace: opts.trace === true,
    makeDisk: () => new TempDisk(),
  });
  totalOps += r.opsChecked;
  totalSim += r.simSeconds;
  const line = `seed ${seed} nodes ${nodes}: ${r.ok ? "ok" : "VIOLATION"} ops ${r.ops} (ok ${r.opsOk}, unknown ${r.opsUnknown}) elections ${r.elections} crashes ${r.crashes} partitions ${r.partitions} pauses ${r.pauses} leaseReads ${r.leaseReads} readIndex ${r.readIndexReads} leaderAfterHeal ${r.leaderAfterHealMs?.toFixed(0)}ms wall ${r.wallMs.toFixed(0)}ms`;
  if (!r.ok) {
    failed++;
    console.log(line);
    for (const v of r.violations) console.log(`  ${v}`);
    console.log(`  replay: npm run sim -- --seed ${seed} --nodes ${nodes} --faults ${opts.faults} --trace`);
  } else if (seeds.length <= 20) console.log(line);
}
console.log(
  `seeds ${seeds.length}, violations ${failed}, operations checked ${totalOps}, simulated ${totalSim.toFixed(0)} s, wall ${((performance.now() - t0) / 1000).toFixed(1)} s`,
);
process.exit(failed === 0 ? 0 : 1);
