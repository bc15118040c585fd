// `npm run chaos -- ...`: parses the flags, runs one chaos run, prints the summary; exit 0 when every check
// passed, 1 on any violation or failed check, 2 on bad flags.
//
// Usage: npm run chaos -- [--nodes 3|5] [--duration S]
//   [--faults kill,pause,partition,latency,loss,torn,powerloss,clock,lease,member,transfer|all]
//   [--seed N] [--out DIR] [--clients N] [--keys N] [--heartbeat-ms MS] [--election-timeout-min-ms MS]
//   [--election-timeout-max-ms MS] [--client-timeout-ms MS] [--attempt-timeout-ms MS] [--heal-window S]
//   [--lease-monitor-ms MS] [--serve-arg FLAG]... [--keep-data] [--quiet]

import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { FAULT_KINDS, type FaultKind } from "./faults.ts";
import { type ChaosOptions, type ChaosSummary, runChaos } from "./run.ts";

const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

const SPEC = {
  nodes: { type: "string", default: "3" },
  duration: { type: "string", default: "60" },
  faults: { type: "string", default: "all" },
  seed: { type: "string" },
  out: { type: "string" },
  clients: { type: "string", default: "5" },
  keys: { type: "string", default: "8" },
  "heartbeat-ms": { type: "string", default: "50" },
  "election-timeout-min-ms": { type: "string", default: "300" },
  "election-timeout-max-ms": { type: "string", default: "600" },
  "client-timeout-ms": { type: "string", default: "5000" },
  "attempt-timeout-ms": { type: "string", default: "1000" },
  "heal-window": { type: "string", default: "5" },
  "lease-monitor-ms": { type: "string", default: "50" },
  "serve-arg": { type: "string", multiple: true },
  "keep-data": { type: "boolean", default: false },
  quiet: { type: "boolean", default: false },
  help: { type: "boolean", default: false },
} as const;

class UsageError extends Error {}

const USAGE = `usage: npm run chaos -- [--nodes 3|5] [--duration S] [--faults ${FAULT_KINDS.join(",")}|all|none]
  [--seed N] [--out DIR] [--clients N] [--keys N] [--heartbeat-ms MS] [--election-timeout-min-ms MS]
  [--election-timeout-max-ms MS] [--client-timeout-ms MS] [--attempt-timeout-ms MS] [--heal-window S]
  [--lease-monitor-ms MS (0: off)] [--serve-arg FLAG]... [--keep-data] [--quiet]`;

export function parseChaosArgs(argv: readonly string[], print: (line: string) => void): ChaosOptions {
  const { values } = parseArgs({ args: [...argv], options: SPEC, allowPositionals: false, strict: true });
  if (values.help) throw new UsageError(USAGE);
  const int = (name: keyof typeof SPEC, min: number, max: number): number => {
    const raw = values[name];
    const n = Number(raw);
    if (typeof raw !== "string" || !Number.isSafeInteger(n) || n < min || n > max)
      throw new UsageError(`--${name} must be an integer in ${min}..${max}, got ${String(raw)}`);
    return n;
  };
  const nodes = int("nodes", 1, 9);
  if (nodes !== 3 && nodes !== 5) throw new UsageError(`--nodes must be 3 or 5, got ${nodes}`);
  const seed = values.seed === undefined ? Math.floor(Math.random() * 1_000_000) : int("seed", 0, 0xffffffff);
  return {
    nodes,
    durationS: int("duration", 1, 86_400),
    faults: parseFaults(values.faults),
    seed,
    outDir: resolve(values.out ?? join(tmpdir(), `raftkv-chaos-${seed}-${Date.now()}`)),
    clients: int("clients", 1, 100),
    keys: int("keys", 1, 1000),
    repoRoot: REPO_ROOT,
    heartbeatMs: int("heartbeat-ms", 1, 10_000),
    electionTimeoutMinMs: int("election-timeout-min-ms", 1, 60_000),
    electionTimeoutMaxMs: int("election-timeout-max-ms", 1, 60_000),
    serveArgs: values["serve-arg"] ?? [],
    clientTimeoutMs: int("client-timeout-ms", 1, 600_000),
    attemptTimeoutMs: int("attempt-timeout-ms", 1, 600_000),
    healWindowS: int("heal-window", 0, 3600),
    leaseMonitorMs: int("lease-monitor-ms", 0, 60_000),
    keepData: values["keep-data"],
    print: values.quiet ? () => {} : print,
  };
}

export function parseFaults(text: string): FaultKind[] {
  if (text === "all") return [...FAULT_KINDS];
  if (text === "none" || text === "") return [];
  const out: FaultKind[] = [];
  for (const part of text.split(",").map((s) => s.trim())) {
    const kind = FAULT_KINDS.find((k) => k === part);
    if (kind === undefined)
      throw new UsageError(`--faults: unknown fault "${part}"; known: ${FAULT_KINDS.join(", ")}, all, none`);
    if (!out.includes(kind)) out.push(kind);
  }
  return out;
}

/** The summary for people: what ran, what it found. */
export function describeSummary(s: ChaosSummary, outDir: string): string {
  const pct = (x: number): string => `${x.toFixed(1)} %`;
  const kinds = Object.entries(s.faults.byKind)
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `${k} ${n}`)
    .join(", ");
  const lines = [
    `raftkv chaos: seed ${s.seed}, ${s.nodes} nodes, ${s.clients} clients, ${s.durationS} s of faults (${s.faultsEnabled.join(",")})`,
    `  operations  ${s.ops.total}: ok ${s.ops.ok}, failed ${s.ops.failed}, unknown ${s.ops.unknown} (${pct(s.ops.unknownPercent)}; writes ${pct(s.ops.unknownWritePercent)})`,
    `  faults      ${s.faults.total}: ${kinds || "none"}${s.faults.extendedS > 0.05 ? ` (ran ${s.faults.extendedS.toFixed(1)} s past the duration until every kind came up)` : ""}${s.clockRates.some((r) => r !== 1) ? `; clock rates at the end ${s.clockRates.join(", ")}` : ""}`,
    ...(s.faults.replacements.done + s.faults.transfers.done + s.faults.transfers.refused > 0
      ? [
          `  membership  ${s.faults.replacements.done} nodes replaced by new members (${s.faults.replacements.bySnapshot} caught up by snapshot); ${s.faults.transfers.done} leadership transfers done, ${s.faults.transfers.refused} refused or unknown`,
        ]
      : []),
    `  links       ${s.links.peerConnections} peer connections (${s.links.resets} resets, ${s.links.stalls} loss stalls), ${s.links.clientConnections} client connections let through`,
    `  elections   ${s.elections.elections} started (${s.elections.preVotes} pre-vote rounds), leaders in ${s.elections.leaderTerms} terms`,
    `  liveness    leader ${ms(s.liveness.leaderAfterHealMs)} after the heal, converged in ${ms(s.liveness.convergedAfterMs)} at index ${s.liveness.appliedIndex ?? "-"}`,
    `  leases      ${s.leases.sightings} held leases seen in ${s.leases.polls} Status rounds; ${s.leases.overlapsFound} overlaps`,
    `  replicas    ${s.replicas.identical === null ? "not compared" : s.replicas.identical ? "identical" : "DIFFER"} (applied ${s.replicas.appliedIndexes.join(", ")})`,
    `  checker     ${s.checker.verdict}: ${s.checker.opsChecked} ops checked in ${ms(s.checker.checkMs)}`,
    `  host        load ${s.load.average.join(" ")} on ${s.load.cpus} CPUs; ${s.wallS.toFixed(0)} s wall`,
  ];
  for (const v of s.checker.violations.slice(0, 3))
    lines.push(`  violation   ${v.message.split("\n").join("\n              ")}`);
  for (const w of s.warnings) lines.push(`  WEAK        ${w}`);
  for (const p of s.problems) lines.push(`  PROBLEM     ${p}`);
  lines.push(`  verdict     ${s.ok ? "PASS" : "FAIL"}; ${outDir}/summary.json, history.jsonl, node-*.log`);
  return lines.join("\n");
}

function ms(v: number | null): string {
  return v === null ? "-" : `${Math.round(v)} ms`;
}

async function main(argv: readonly string[]): Promise<number> {
  let o: ChaosOptions;
  try {
    o = parseChaosArgs(argv, (line) => process.stdout.write(`${line}\n`));
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    process.stderr.write(msg === USAGE ? `${USAGE}\n` : `chaos: ${msg}\n${USAGE}\n`);
    return 2;
  }
  const summary = await runChaos(o);
  process.stdout.write(`${describeSummary(summary, o.outDir)}\n`);
  return summary.ok ? 0 : 1;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  // SIGINT/SIGTERM: exit, which SIGKILLs the nodes (ChaosCluster's exit hook).
  for (const sig of ["SIGINT", "SIGTERM"] as const) process.on(sig, () => process.exit(130));
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`chaos: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}
