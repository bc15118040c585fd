// Fuzz campaign CLI: runs the mutation fuzzer over the decoders and the WAL recovery in worker threads
// under a hang watchdog, saves each finding to fuzz-findings/, and replays a saved finding.
//
// Usage:
//   npx tsx scripts/fuzz.ts --minutes 10 --seed N [--target codec|command|snapshot|wal|history|proto|stream|all]
//                           [--jobs 2] [--out fuzz-findings] [--hang-seconds 10] [--verbose]
//   npx tsx scripts/fuzz.ts --replay fuzz-findings/<target>-<hash>.bin
// With --target all the minutes are shared among the targets; --jobs runs that many at once.
// Exit code: 0 no findings, 1 findings, 2 bad usage.

import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { parseArgs } from "node:util";
import { Worker } from "node:worker_threads";
import { runOne, SLOW_INPUT_MS } from "./fuzz/engine.ts";
import { TARGET_NAMES, type TargetName } from "./fuzz/target.ts";
import { TARGETS } from "./fuzz/targets/index.ts";
import {
  type SerializedStats,
  SHARED_HEADER_INTS,
  type WorkerInput,
  type WorkerMessage,
} from "./fuzz/worker-protocol.ts";

const USAGE =
  "usage: fuzz.ts --minutes M --seed N [--target <name>|all] [--jobs J] [--out DIR] [--hang-seconds S] [--verbose]\n" +
  "       fuzz.ts --replay <file.bin>";
const SHARED_INPUT_BYTES = 8 * 1024 * 1024;

interface Campaign {
  readonly targets: readonly TargetName[];
  readonly minutes: number;
  readonly seed: number;
  readonly jobs: number;
  readonly out: string;
  readonly hangMs: number;
  readonly verbose: boolean;
}

function parse(argv: readonly string[]): Campaign | { replay: string } | string {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      minutes: { type: "string" },
      seed: { type: "string" },
      target: { type: "string", default: "all" },
      jobs: { type: "string", default: "1" },
      out: { type: "string", default: "fuzz-findings" },
      "hang-seconds": { type: "string", default: "10" },
      verbose: { type: "boolean", default: false },
      replay: { type: "string" },
    },
  });
  if (values.replay !== undefined) return { replay: values.replay };
  const minutes = Number(values.minutes);
  const seed = Number(values.seed);
  const jobs = Number(values.jobs);
  const hangSeconds = Number(values["hang-seconds"]);
  if (!(minutes > 0)) return "--minutes must be a positive number";
  if (!Number.isSafeInteger(seed)) return "--seed must be an integer";
  if (!Number.isSafeInteger(jobs) || jobs < 1) return "--jobs must be >= 1";
  if (!(hangSeconds > 0)) return "--hang-seconds must be positive";
  const target = values.target;
  const targets = target === "all" ? TARGET_NAMES : TARGET_NAMES.filter((t) => t === target);
  if (targets.length === 0) return `unknown target ${target}; one of ${TARGET_NAMES.join(", ")} or all`;
  return {
    targets,
    minutes,
    seed,
    jobs,
    out: values.out,
    hangMs: hangSeconds * 1000,
    verbose: values.verbose,
  };
}

/** A distinct seed per target, derived from the campaign seed. */
function targetSeed(seed: number, target: TargetName, restart: number): number {
  return (seed * 31 + TARGET_NAMES.indexOf(target) * 1_000_003 + restart * 7919) >>> 0;
}

function save(out: string, target: string, input: Uint8Array): string {
  mkdirSync(out, { recursive: true });
  const hash = createHash("sha256").update(input).digest("hex").slice(0, 12);
  const path = join(out, `${target}-${hash}.bin`);
  writeFileSync(path, input);
  return path;
}

function reportFinding(target: string, m: Extract<WorkerMessage, { type: "finding" }>, path: string): void {
  const stack = m.stack === null ? "" : `\n  ${m.stack.split("\n").slice(0, 8).join("\n  ")}`;
  process.stdout.write(
    `\nFINDING [${target}] ${m.invariant}: ${m.detail.slice(0, 600)}${stack}\n` +
      `  input: ${path} (${m.input.length} bytes)\n  replay: npx tsx scripts/fuzz.ts --replay ${path}\n`,
  );
}

/** Runs one target in a worker for `durationMs`, restarting it (new seed) after a hang. */
async function runTarget(c: Campaign, target: TargetName, durationMs: number): Promise<SerializedStats[]> {
  const results: SerializedStats[] = [];
  const deadline = performance.now() + durationMs;
  for (let restart = 0; performance.now() < deadline - 200; restart++) {
    const shared = new SharedArrayBuffer(SHARED_HEADER_INTS * 4 + SHARED_INPUT_BYTES);
    const data: WorkerInput = {
      target,
      seed: targetSeed(c.seed, target, restart),
      durationMs: deadline - performance.now(),
      shared,
    };
    const hung = await runWorker(c, data, results);
    if (!hung) break;
  }
  return results;
}

/** Resolves true when the watchdog killed the worker on a hang. */
function runWorker(c: Campaign, data: WorkerInput, results: SerializedStats[]): Promise<boolean> {
  const url = new URL("./fuzz/worker.ts", import.meta.url).href;
  const boot = `import("tsx/esm/api").then((m) => { m.register(); return import(${JSON.stringify(url)}); })`;
  const worker = new Worker(boot, { eval: true, workerData: data });
  const header = new Int32Array(data.shared, 0, SHARED_HEADER_INTS);
  const startedAt = performance.now();
  return new Promise((resolve) => {
    let lastCount = -1;
    let lastChange = performance.now();
    let hung = false;
    const watchdog = setInterval(() => {
      const count = Atomics.load(header, 0);
      if (count !== lastCount) {
        lastCount = count;
        lastChange = performance.now();
        return;
      }
      if (count === 0 || performance.now() - lastChange < c.hangMs) return;
      hung = true;
      const inTarget = Atomics.load(header, 2) === 1;
      const length = Atomics.load(header, 1);
      const input =
        length < 0 ? new Uint8Array(0) : new Uint8Array(data.shared, SHARED_HEADER_INTS * 4, length).slice();
      const seconds = (c.hangMs / 1000).toFixed(0);
      const [invariant, detail] = inTarget
        ? [
            `${data.target}-hang`,
            `one input has run for over ${seconds} s${length < 0 ? " (too large to save)" : ""}`,
          ]
        : [
            `${data.target}-harness-stall`,
            `the fuzzer itself (mutating; the saved input is the last one run) stalled for ${seconds} s`,
          ];
      const path = save(c.out, data.target, input);
      reportFinding(
        data.target,
        { type: "finding", invariant, signature: invariant, detail, stack: null, input },
        path,
      );
      results.push(hangStats(data, count, performance.now() - startedAt));
      clearInterval(watchdog);
      void worker.terminate();
    }, 500);
    worker.on("message", (m: WorkerMessage) => {
      if (m.type === "finding") reportFinding(data.target, m, save(c.out, data.target, m.input));
      else results.push(m.stats);
    });
    worker.on("error", (e) => {
      // The harness broke (not the target: the engine turns target errors into findings). Say so and
      // go on with the other targets.
      process.stdout.write(`\nHARNESS ERROR [${data.target}]: ${e.stack ?? e.message}\n`);
      results.push({
        ...hangStats(data, Atomics.load(header, 0), performance.now() - startedAt),
        slowInputs: 0,
        signatures: [["harness error", 1]],
      });
    });
    worker.on("exit", () => {
      clearInterval(watchdog);
      resolve(hung);
    });
  });
}

/** Stats for a worker that never reported its own (killed on a hang, or broken). */
function hangStats(data: WorkerInput, inputs: number, elapsedMs: number): SerializedStats {
  return {
    target: data.target,
    seed: data.seed,
    inputs,
    accepted: 0,
    refused: 0,
    findings: 1,
    slowInputs: 1,
    elapsedMs,
    maxInputMs: Number.POSITIVE_INFINITY,
    labels: [],
    signatures: [["hang", 1]],
  };
}

async function campaign(c: Campaign): Promise<number> {
  const slots = Math.min(c.jobs, c.targets.length);
  const rounds = Math.ceil(c.targets.length / slots);
  const perTargetMs = (c.minutes * 60_000) / rounds;
  process.stdout.write(
    `fuzz: seed ${c.seed}, targets ${c.targets.join(", ")}, ${c.minutes} min total, ${slots} at a time ` +
      `(${(perTargetMs / 1000).toFixed(0)} s each), findings to ${c.out}/\n`,
  );
  const queue = [...c.targets];
  const all: SerializedStats[] = [];
  const lanes = Array.from({ length: slots }, async () => {
    for (let t = queue.shift(); t !== undefined; t = queue.shift())
      all.push(...(await runTarget(c, t, perTargetMs)));
  });
  await Promise.all(lanes);
  return summarize(c, all);
}

function summarize(c: Campaign, all: readonly SerializedStats[]): number {
  const rows: string[] = [];
  let totalInputs = 0;
  let totalFindings = 0;
  for (const t of c.targets) {
    const runs = all.filter((s) => s.target === t);
    const inputs = runs.reduce((n, s) => n + s.inputs, 0);
    const ms = runs.reduce((n, s) => n + s.elapsedMs, 0);
    const findings = runs.reduce((n, s) => n + s.findings, 0);
    const sum = (k: "accepted" | "refused" | "slowInputs") => runs.reduce((n, s) => n + s[k], 0);
    const maxMs = Math.max(0, ...runs.map((s) => s.maxInputMs));
    totalInputs += inputs;
    totalFindings += findings;
    rows.push(
      `  ${t.padEnd(9)} ${String(inputs).padStart(10)} ${(inputs / Math.max(1, ms / 1000)).toFixed(0).padStart(8)} ` +
        `${String(sum("accepted")).padStart(9)} ${String(sum("refused")).padStart(9)} ${String(findings).padStart(8)} ` +
        `${String(sum("slowInputs")).padStart(5)} ${maxMs.toFixed(1).padStart(9)}  ${(ms / 1000).toFixed(0)} s`,
    );
    if (c.verbose) rows.push(...details(runs));
  }
  process.stdout.write(
    `\n  target        inputs  inputs/s  accepted   refused findings  slow  max ms/in  time\n${rows.join("\n")}\n` +
      `  total ${String(totalInputs).padStart(14)}, ${totalFindings} distinct finding(s); an input over ${SLOW_INPUT_MS} ms three times running is a finding\n`,
  );
  return totalFindings === 0 ? 0 : 1;
}

function details(runs: readonly SerializedStats[]): string[] {
  const labels = new Map<string, number>();
  const signatures = new Map<string, number>();
  for (const s of runs) {
    for (const [k, v] of s.labels) labels.set(k, (labels.get(k) ?? 0) + v);
    for (const [k, v] of s.signatures) signatures.set(k, (signatures.get(k) ?? 0) + v);
  }
  const top = [...labels].sort((a, b) => b[1] - a[1]).slice(0, 30);
  return [
    ...top.map(([k, v]) => `      ${String(v).padStart(9)}  ${k}`),
    ...[...signatures].map(([k, v]) => `      finding x${v}: ${k}`),
  ];
}

async function replay(path: string): Promise<number> {
  const name = basename(path).split("-")[0] as TargetName;
  if (!TARGET_NAMES.includes(name)) {
    process.stderr.write(`fuzz: cannot tell the target from ${path} (expected <target>-<hash>.bin)\n`);
    return 2;
  }
  const target = TARGETS[name];
  const input = new Uint8Array(readFileSync(path));
  process.stdout.write(`replaying ${path} on target ${name}\n`);
  if (target.describe !== undefined) process.stdout.write(`input: ${target.describe(input)}\n`);
  const start = performance.now();
  const outcome = await runOne(target, input);
  const ms = performance.now() - start;
  if (outcome.kind !== "finding") {
    process.stdout.write(`${outcome.kind}: ${outcome.label} in ${ms.toFixed(1)} ms (no finding)\n`);
    return ms > SLOW_INPUT_MS ? 1 : 0;
  }
  process.stdout.write(
    `FINDING ${outcome.invariant}: ${outcome.detail}\n${outcome.stack ?? ""}\n(${ms.toFixed(1)} ms)\n`,
  );
  return 1;
}

async function main(): Promise<number> {
  const parsed = parse(process.argv.slice(2));
  if (typeof parsed === "string") {
    process.stderr.write(`fuzz: ${parsed}\n${USAGE}\n`);
    return 2;
  }
  if ("replay" in parsed) return replay(parsed.replay);
  return campaign(parsed);
}

process.exitCode = await main();
