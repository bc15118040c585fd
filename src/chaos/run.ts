// One chaos run: start the cluster, run clients and the nemesis, heal, wait for convergence, read every
// key, compare the replicas, check the history, and write history.jsonl, faults.jsonl and summary.json.

import { appendFileSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type { NodeStatus } from "../client/index.ts";
import { Prng } from "../lib/prng.ts";
import { formatHistoryLine, type HistoryOp } from "../sim/history.ts";
import { type CheckResult, checkHistory } from "../sim/linearizability.ts";
import { ChaosCluster, sleep } from "./cluster.ts";
import { type FaultKind, Nemesis } from "./faults.ts";
import { LeaseMonitor, type LeaseOverlap } from "./lease-monitor.ts";
import { ClusterOps } from "./members.ts";
import { type ElectionFigures, readElectionFigures } from "./node-logs.ts";
import { Workload } from "./workload.ts";

export interface ChaosOptions {
  readonly nodes: number;
  readonly durationS: number;
  readonly faults: readonly FaultKind[];
  readonly seed: number;
  readonly outDir: string;
  readonly clients: number;
  readonly keys: number;
  readonly repoRoot: string;
  readonly heartbeatMs: number;
  readonly electionTimeoutMinMs: number;
  readonly electionTimeoutMaxMs: number;
  /** Extra `raftkv serve` flags. */
  readonly serveArgs: readonly string[];
  /** Client deadline per request, retries included, and per attempt. */
  readonly clientTimeoutMs: number;
  readonly attemptTimeoutMs: number;
  /** Clients keep running this long after the heal (pending operations must complete). */
  readonly healWindowS: number;
  /** Keep the nodes' data folders (out/data) even when the run passes. */
  readonly keepData: boolean;
  readonly maxCheckStepsPerKey?: number;
  /** Scales the gaps between faults and their holds (default 1). */
  readonly faultPace?: number;
  /** Faults go on past durationS, for at most this long, until every enabled kind has come up once
   *  and minOkOps operations succeeded (default 120 s), so that neither depends on how long each fault
   *  happened to take or how fast a loaded host ran the clients. */
  readonly coverageGraceS?: number;
  /** Operations that must have succeeded before the faults stop (default 0; see coverageGraceS). */
  readonly minOkOps?: number;
  /** Status poll period of the lease monitor (0: off). */
  readonly leaseMonitorMs: number;
  /** Progress lines (also written to out/chaos.log). */
  readonly print: (line: string) => void;
  /** Aborting kills the nodes at once and ends the run with a problem (tests use it on timeout). */
  readonly signal?: AbortSignal;
}

export interface ChaosSummary {
  readonly ok: boolean;
  /** Each reason the run failed; empty when ok. */
  readonly problems: readonly string[];
  /** Reasons the run proves less than it should (too many unknown outcomes, a key the checker could not
   *  decide, a fault kind or an operation count not reached): never a violation, so not a failure. */
  readonly warnings: readonly string[];
  readonly seed: number;
  readonly nodes: number;
  readonly clients: number;
  readonly keys: number;
  readonly durationS: number;
  readonly faultsEnabled: readonly FaultKind[];
  readonly wallS: number;
  /** os.loadavg() (1, 5, 15 min) at the end and the number of CPUs: context for elections and unknowns. */
  readonly load: { readonly average: readonly number[]; readonly cpus: number };
  readonly ops: OpFigures;
  readonly clientErrors: Record<string, number>;
  readonly unexpectedClientErrors: readonly string[];
  readonly faults: {
    readonly total: number;
    readonly byKind: Record<FaultKind, number>;
    /** Seconds the faults ran past durationS so that every enabled kind came up (and minOkOps). */
    readonly extendedS: number;
    /** Member faults finished (each a node replaced by a new member), and those caught up by snapshot. */
    readonly replacements: { readonly done: number; readonly bySnapshot: number };
    /** Leadership transfers the leader accepted, and those refused or of unknown outcome. */
    readonly transfers: { readonly done: number; readonly refused: number };
  };
  /** Each node's clock rate at the end (clock faults; 1 is the real clock). */
  readonly clockRates: readonly number[];
  readonly faultErrors: readonly string[];
  /** Held leases seen by polling Status, and pairs of nodes seen holding one at the same instant. */
  readonly leases: {
    readonly polls: number;
    readonly sightings: number;
    readonly overlapsFound: number;
    readonly overlaps: readonly LeaseOverlap[];
  };
  /** Totals over the link proxies: peer connections, harness clients let through, resets, loss stalls. */
  readonly links: {
    readonly peerConnections: number;
    readonly clientConnections: number;
    readonly resets: number;
    readonly stalls: number;
    readonly bytesForwarded: number;
  };
  readonly elections: ElectionFigures;
  readonly liveness: {
    readonly leaderAfterHealMs: number | null;
    readonly convergedAfterMs: number | null;
    readonly appliedIndex: number | null;
  };
  readonly replicas: {
    readonly identical: boolean | null;
    readonly method: string;
    readonly appliedIndexes: readonly (number | null)[];
    readonly keysPerNode: readonly (number | null)[];
    readonly mismatches: readonly string[];
  };
  readonly unplannedExits: readonly { node: number; code: number | null; signal: string | null }[];
  readonly checker: {
    readonly verdict: CheckResult["verdict"];
    readonly opsChecked: number;
    readonly opsUnknownOutcome: number;
    readonly timedOutKeys: readonly string[];
    readonly violations: readonly { readonly key: string; readonly message: string }[];
    readonly checkMs: number;
  };
}

export interface OpFigures {
  readonly total: number;
  readonly ok: number;
  readonly failed: number;
  readonly unknown: number;
  /** Unknown outcomes over all operations, in percent. */
  readonly unknownPercent: number;
  /** Unknown writes over all writes, in percent. */
  readonly unknownWritePercent: number;
  readonly byKind: Record<string, { ok: number; failed: number; unknown: number }>;
  readonly finalReads: number;
}

/** TESTING.md: beyond ~20 % unknown outcomes a run is too weak to count. */
const WEAK_UNKNOWN_PERCENT = 20;
const START_TIMEOUT_MS = 60_000;
const LEADER_TIMEOUT_MS = 60_000;
const CONVERGE_TIMEOUT_MS = 60_000;
/** How long the replicas may take to hold still (same applied index everywhere, before and after their
 *  key spaces are read) for a comparison: an election's no-op moving in between is not a divergence. */
const SETTLE_TIMEOUT_MS = 60_000;
const FINAL_READ_ATTEMPTS = 10;
const DEFAULT_COVERAGE_GRACE_S = 120;
/** With member faults: a snapshot every 1000 entries, 200 kept behind it (before --serve-arg flags). */
const MEMBER_SNAPSHOT_ARGS = ["--snapshot-every-entries", "1000", "--set", "keepEntriesAfterSnapshot=200"];
const REPLICA_STATE_METHOD =
  "Status exposes no state hash: applied indexes compared via Status, then every key read with stale " +
  "consistency from each node (a range over all keys) and compared";

export async function runChaos(o: ChaosOptions): Promise<ChaosSummary> {
  const origin = performance.now();
  mkdirSync(o.outDir, { recursive: true });
  const chaosLog = join(o.outDir, "chaos.log");
  const note = (line: string): void => {
    const stamped = `[${((performance.now() - origin) / 1000).toFixed(1).padStart(6)}s] ${line}`;
    appendFileSync(chaosLog, `${stamped}\n`);
    o.print(stamped);
  };
  const prng = new Prng(o.seed);
  const dataRoot = join(o.outDir, "data");
  note(
    `seed ${o.seed}: ${o.nodes} nodes, ${o.clients} clients on ${o.keys} keys, ${o.durationS} s of ` +
      `${o.faults.join(",") || "no faults"}; out ${o.outDir}`,
  );
  const cluster = await ChaosCluster.start({
    nodes: o.nodes,
    repoRoot: o.repoRoot,
    dataRoot,
    logDir: o.outDir,
    clusterId: `chaos-${o.seed}`,
    serveArgs: [
      ...["--heartbeat-ms", String(o.heartbeatMs)],
      ...["--election-timeout-min-ms", String(o.electionTimeoutMinMs)],
      ...["--election-timeout-max-ms", String(o.electionTimeoutMaxMs)],
      // Snapshots often, so that a replaced member (fault member) catches up by snapshot.
      ...(o.faults.includes("member") ? MEMBER_SNAPSHOT_ARGS : []),
      ...o.serveArgs,
    ],
    prng: prng.fork(),
    startTimeoutMs: START_TIMEOUT_MS,
    powerLoss: o.faults.includes("powerloss"),
    note,
  });
  const workload = new Workload(
    {
      clients: o.clients,
      keys: o.keys,
      endpoints: cluster.endpoints,
      timeoutMs: o.clientTimeoutMs,
      attemptTimeoutMs: o.attemptTimeoutMs,
      readIndexShare: 0.2,
      runId: `s${o.seed}`,
    },
    prng.fork(),
  );
  const nemesis = new Nemesis(cluster, prng.fork(), {
    kinds: o.faults,
    electionTimeoutMaxMs: o.electionTimeoutMaxMs,
    driftBound: driftBoundOf(o.serveArgs),
    pace: o.faultPace ?? 1,
    workload,
    originMs: origin,
    note,
  });
  const leases = new LeaseMonitor(cluster, o.leaseMonitorMs, origin);
  const signal = o.signal ?? new AbortController().signal;
  const onAbort = (): void => {
    note("aborted: killing the nodes");
    nemesis.stop();
    void workload.stop();
    void cluster.destroy();
  };
  signal.addEventListener("abort", onAbort, { once: true });
  if (signal.aborted) onAbort();
  const problems: string[] = [];
  let leaderAfterHealMs: number | null = null;
  let extendedS = 0;
  let converged: { ms: number; appliedIndex: number } | null = null;
  let finalValues = new Map<string, string | null | undefined>();
  let replicas: ChaosSummary["replicas"] = {
    identical: null,
    method: REPLICA_STATE_METHOD,
    appliedIndexes: [],
    keysPerNode: [],
    mismatches: [],
  };
  try {
    note(`cluster up: ${cluster.endpoints.join(" ")}`);
    const first = await waitForLeader(cluster, LEADER_TIMEOUT_MS, signal);
    if (first === null) throw new Error(`no leader within ${LEADER_TIMEOUT_MS} ms of start`);
    note(`leader ${first.id}; clients start`);
    workload.start();
    leases.start();
    const nemesisDone = nemesis.run();
    await sleepUnless(o.durationS * 1000, signal);
    checkAborted(signal);
    const graceEnd = performance.now() + (o.coverageGraceS ?? DEFAULT_COVERAGE_GRACE_S) * 1000;
    const coverageStart = performance.now();
    const minOk = o.minOkOps ?? 0;
    const short = (): boolean => nemesis.uncovered().length > 0 || workload.okCount < minOk;
    if (short())
      note(
        `faults go on until every kind has come up (missing: ${nemesis.uncovered().join(", ") || "none"}) ` +
          `and ${minOk} operations succeeded (${workload.okCount} so far)`,
      );
    while (short() && performance.now() < graceEnd && !signal.aborted) await sleepUnless(200, signal);
    checkAborted(signal);
    extendedS = (performance.now() - coverageStart) / 1000;
    note("faults stop: healing");
    nemesis.stop();
    await nemesisDone;
    const healStart = performance.now();
    await cluster.healAll();
    const leader = await waitForLeader(cluster, LEADER_TIMEOUT_MS, signal);
    if (leader === null) problems.push(`no leader within ${LEADER_TIMEOUT_MS} ms of the heal`);
    else leaderAfterHealMs = performance.now() - healStart;
    note(`healed; leader ${leader?.id ?? "none"} after ${leaderAfterHealMs?.toFixed(0) ?? "-"} ms`);
    await sleepUnless(o.healWindowS * 1000, signal);
    checkAborted(signal);
    note("clients stop");
    await Promise.all([workload.stop(), leases.stop()]);
    converged = await waitForConvergence(cluster, CONVERGE_TIMEOUT_MS, signal);
    checkAborted(signal);
    if (converged === null) problems.push(`the nodes did not converge within ${CONVERGE_TIMEOUT_MS} ms`);
    else note(`converged at applied index ${converged.appliedIndex} after ${converged.ms.toFixed(0)} ms`);
    const membership = await checkMembership(cluster);
    if (membership !== null) problems.push(membership);
    finalValues = await workload.finalReads(o.clients, FINAL_READ_ATTEMPTS);
    const unread = [...finalValues].filter(([, v]) => v === undefined).map(([k]) => k);
    if (unread.length > 0) problems.push(`final linearizable reads failed for ${unread.join(", ")}`);
    replicas = await compareReplicas(cluster, workload.keyNames, finalValues, signal);
    if (replicas.identical === false)
      problems.push(`replicas differ: ${replicas.mismatches.slice(0, 5).join("; ")}`);
  } catch (err) {
    const msg = `run aborted: ${err instanceof Error ? err.message : String(err)}`;
    problems.push(msg);
    note(msg);
  } finally {
    signal.removeEventListener("abort", onAbort);
    nemesis.stop();
    await Promise.all([workload.stop(), leases.stop()]);
    await cluster.destroy();
  }
  const history = [...workload.history].sort((a, b) => a.call - b.call);
  writeFileSync(join(o.outDir, "history.jsonl"), history.map((op) => `${formatHistoryLine(op)}\n`).join(""));
  writeFileSync(join(o.outDir, "faults.jsonl"), nemesis.log.map((r) => `${JSON.stringify(r)}\n`).join(""));
  note(`checking ${history.length} operations`);
  const checkStart = performance.now();
  const checked = checkHistory(
    history,
    o.maxCheckStepsPerKey === undefined ? {} : { maxStepsPerKey: o.maxCheckStepsPerKey },
  );
  const checkMs = performance.now() - checkStart;
  const elections = readElectionFigures(new Map(cluster.ids.map((id) => [id, cluster.logFile(id)])));
  const ops = opFigures(history, o.clients);
  if (checked.verdict === "not-linearizable")
    problems.push(`history not linearizable: ${checked.violations.length} key(s) violated`);
  if (leases.overlapsFound > 0)
    problems.push(`${leases.overlapsFound} times two nodes held a leader lease at the same instant`);
  for (const t of elections.twoLeaderTerms)
    problems.push(`two leaders in term ${t.term}: nodes ${t.nodes.join(", ")}`);
  for (const e of cluster.unplannedExits)
    problems.push(`node ${e.node} exited on its own (code ${e.code}, signal ${e.signal})`);
  problems.push(...nemesis.errors);
  const warnings: string[] = [];
  const missing = nemesis.uncovered();
  if (missing.length > 0)
    warnings.push(
      `fault kinds that never came up (even ${extendedS.toFixed(0)} s past the duration): ${missing.join(", ")}`,
    );
  if (checked.verdict === "unknown")
    warnings.push(
      `checker inconclusive: keys ${checked.timedOutKeys.join(", ")} ran out of search steps (no violation found)`,
    );
  if (ops.ok < (o.minOkOps ?? 0))
    warnings.push(`only ${ops.ok} operations succeeded (wanted ${o.minOkOps}): a thin history`);
  if (ops.unknownPercent > WEAK_UNKNOWN_PERCENT)
    warnings.push(
      `${ops.unknownPercent.toFixed(1)} % of operations have unknown outcomes: too weak to count`,
    );
  const summary: ChaosSummary = {
    ok: problems.length === 0,
    problems,
    warnings,
    seed: o.seed,
    nodes: o.nodes,
    clients: o.clients,
    keys: o.keys,
    durationS: o.durationS,
    faultsEnabled: o.faults,
    wallS: (performance.now() - origin) / 1000,
    load: { average: loadavg().map((x) => Math.round(x * 100) / 100), cpus: cpus().length },
    ops,
    clientErrors: workload.errors.byCode,
    unexpectedClientErrors: workload.errors.unexpected,
    faults: {
      total: nemesis.log.length,
      byKind: nemesis.counts(),
      extendedS,
      replacements: nemesis.replacements,
      transfers: nemesis.transfers,
    },
    clockRates: cluster.ids.map((id) => cluster.clockRate(id)),
    faultErrors: nemesis.errors,
    leases: {
      polls: leases.polls,
      sightings: leases.sightings,
      overlapsFound: leases.overlapsFound,
      overlaps: leases.overlaps,
    },
    links: linkTotals(cluster),
    elections,
    liveness: {
      leaderAfterHealMs,
      convergedAfterMs: converged?.ms ?? null,
      appliedIndex: converged?.appliedIndex ?? null,
    },
    replicas,
    unplannedExits: cluster.unplannedExits.map(({ node, code, signal }) => ({ node, code, signal })),
    checker: {
      verdict: checked.verdict,
      opsChecked: checked.opsChecked,
      opsUnknownOutcome: checked.opsUnknownOutcome,
      timedOutKeys: checked.timedOutKeys,
      violations: checked.violations.map((v) => ({ key: v.key, message: v.message })),
      checkMs,
    },
  };
  writeFileSync(join(o.outDir, "summary.json"), `${JSON.stringify(summary, null, 2)}\n`);
  if (summary.ok && !o.keepData) rmSync(dataRoot, { recursive: true, force: true });
  return summary;
}

async function waitForLeader(
  cluster: ChaosCluster,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<{ id: number } | null> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline && !signal.aborted) {
    const id = await cluster.leader();
    if (id !== null) return { id };
    await sleep(50);
  }
  return null;
}

/** All nodes answer, one leader, equal terms, equal commit and applied indexes, twice in a row. */
async function waitForConvergence(
  cluster: ChaosCluster,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<{ ms: number; appliedIndex: number } | null> {
  const started = performance.now();
  let previous: string | null = null;
  while (performance.now() - started < timeoutMs && !signal.aborted) {
    const all = await Promise.all(cluster.ids.map((id) => cluster.status(id, 1000)));
    const key = convergedKey(all);
    if (key !== null && key === previous)
      return { ms: performance.now() - started, appliedIndex: all[0]!.appliedIndex };
    previous = key;
    await sleep(300);
  }
  return null;
}

function convergedKey(all: readonly (NodeStatus | null)[]): string | null {
  const s = all.filter((x): x is NodeStatus => x !== null);
  if (s.length !== all.length || s.length === 0) return null;
  const leaders = s.filter((x) => x.role === "leader");
  if (leaders.length !== 1) return null;
  const f = s[0]!;
  const same = s.every(
    (x) =>
      x.term === f.term &&
      x.commitIndex === f.commitIndex &&
      x.appliedIndex === f.appliedIndex &&
      x.appliedIndex === x.commitIndex &&
      x.lastLogIndex === f.lastLogIndex,
  );
  return same ? `${f.term}/${f.commitIndex}/${leaders[0]!.nodeId}` : null;
}

/**
 * Every node's whole key space read with stale consistency, compared with each other and the final reads.
 * The reads count only when they held still: every node's applied index the same, before and after its
 * range (no client writes run now, but an election after the convergence appends a no-op, which may
 * reach the nodes at different moments). Until then it retries; after SETTLE_TIMEOUT_MS the last round
 * is reported as it is.
 */
async function compareReplicas(
  cluster: ChaosCluster,
  keys: readonly string[],
  finalValues: ReadonlyMap<string, string | null | undefined>,
  signal: AbortSignal,
): Promise<ChaosSummary["replicas"]> {
  const deadline = performance.now() + SETTLE_TIMEOUT_MS;
  for (;;) {
    const round = await readReplicas(cluster);
    const still =
      round.before.every((x) => x !== null && x === round.before[0]) &&
      round.after.every((x, i) => x === round.before[i]);
    if (still || performance.now() >= deadline || signal.aborted) {
      const mismatches = [...round.errors];
      if (!still)
        mismatches.push(
          `the replicas did not hold still within ${SETTLE_TIMEOUT_MS} ms: applied indexes ${round.before.join(", ")}, then ${round.after.join(", ")}`,
        );
      else mismatches.push(...compareStates(round.ids, round.states, keys, finalValues));
      return {
        identical: mismatches.length === 0,
        method: REPLICA_STATE_METHOD,
        appliedIndexes: round.after,
        keysPerNode: round.states.map((s) => s?.size ?? null),
        mismatches,
      };
    }
    await sleep(300);
  }
}

interface ReplicaRound {
  readonly ids: readonly number[];
  readonly before: readonly (number | null)[];
  readonly after: readonly (number | null)[];
  readonly states: readonly (Map<string, string> | null)[];
  readonly errors: readonly string[];
}

async function readReplicas(cluster: ChaosCluster): Promise<ReplicaRound> {
  const ids = cluster.ids;
  const applied = async (): Promise<(number | null)[]> =>
    Promise.all(ids.map(async (id) => (await cluster.status(id, 1000))?.appliedIndex ?? null));
  const before = await applied();
  const errors: string[] = [];
  const states: (Map<string, string> | null)[] = [];
  for (const id of ids) {
    const c = cluster.clientFor(id);
    try {
      const r = await c.range("", { consistency: "stale" });
      if (r.more) errors.push(`node ${id} holds more keys than one range returns`);
      const m = new Map<string, string>();
      for (const kv of r.items) m.set(kv.key, new TextDecoder().decode(kv.value));
      states.push(m);
    } catch (err) {
      errors.push(`node ${id}: stale range failed: ${err instanceof Error ? err.message : String(err)}`);
      states.push(null);
    } finally {
      c.close();
    }
  }
  return { ids, before, after: await applied(), states, errors };
}

function compareStates(
  ids: readonly number[],
  states: readonly (Map<string, string> | null)[],
  keys: readonly string[],
  finalValues: ReadonlyMap<string, string | null | undefined>,
): string[] {
  const mismatches: string[] = [];
  const first = states[0];
  if (first === null || first === undefined) return mismatches;
  states.forEach((s, i) => {
    if (s === null) return;
    for (const k of new Set([...s.keys(), ...first.keys()]))
      if (s.get(k) !== first.get(k))
        mismatches.push(
          `key ${k}: node ${ids[0]} has ${show(first.get(k))}, node ${ids[i]} has ${show(s.get(k))}`,
        );
  });
  for (const k of keys) {
    const read = finalValues.get(k);
    if (read !== undefined && (first.get(k) ?? null) !== read)
      mismatches.push(
        `key ${k}: the final read saw ${show(read)}, node ${ids[0]} holds ${show(first.get(k))}`,
      );
  }
  return mismatches;
}

/** Null when the leader's configuration is every slot's node as a voter, not joint; else what differs.
 *  The leader is asked until one answers (a Status round can time out on a loaded host), 30 s at most. */
async function checkMembership(cluster: ChaosCluster): Promise<string | null> {
  const ops = new ClusterOps(cluster);
  try {
    const deadline = performance.now() + 30_000;
    let v = await ops.leaderView();
    while (v === null && performance.now() < deadline) {
      await sleep(200);
      v = await ops.leaderView();
    }
    if (v === null) return "no leader answered MemberList within 30 s after the convergence";
    const want = cluster.ids.map((id) => cluster.memberId(id)).sort((a, b) => a - b);
    const voters = v.list.members
      .filter((m) => m.role === "VOTER")
      .map((m) => Number(m.id))
      .sort((a, b) => a - b);
    const ok = !v.list.joint && voters.length === v.list.members.length && voters.join() === want.join();
    return ok
      ? null
      : `the configuration at the end is ${v.list.description}${v.list.joint ? " (joint)" : ""}, not voters {${want.join(",")}}`;
  } finally {
    ops.close();
  }
}

function linkTotals(cluster: ChaosCluster): ChaosSummary["links"] {
  const t = { peerConnections: 0, clientConnections: 0, resets: 0, stalls: 0, bytesForwarded: 0 };
  for (const l of cluster.allLinks()) {
    t.peerConnections += l.stats.connections;
    t.clientConnections += l.stats.clientConnections;
    t.resets += l.stats.resets;
    t.stalls += l.stats.stalls;
    t.bytesForwarded += l.stats.bytesForwarded;
  }
  return t;
}

/** The --drift-bound among the extra serve flags, or the server's default (1.1). */
export function driftBoundOf(serveArgs: readonly string[]): number {
  let bound = 1.1;
  serveArgs.forEach((a, i) => {
    const v = a.startsWith("--drift-bound=")
      ? a.slice("--drift-bound=".length)
      : a === "--drift-bound"
        ? serveArgs[i + 1]
        : undefined;
    if (v !== undefined && Number.isFinite(Number(v)) && Number(v) >= 1) bound = Number(v);
  });
  return bound;
}

function checkAborted(signal: AbortSignal): void {
  if (signal.aborted) throw new Error("the run was aborted");
}

/** Sleeps `ms`, or less if `signal` aborts meanwhile. */
function sleepUnless(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

function show(v: string | null | undefined): string {
  return v === undefined || v === null ? "absent" : JSON.stringify(v);
}

function opFigures(history: readonly HistoryOp[], finalClient: number): OpFigures {
  const byKind: OpFigures["byKind"] = {};
  let ok = 0;
  let failed = 0;
  let unknown = 0;
  let writes = 0;
  let unknownWrites = 0;
  for (const op of history) {
    const k = (byKind[op.op] ??= { ok: 0, failed: 0, unknown: 0 });
    if (op.ok === true) {
      ok++;
      k.ok++;
    } else if (op.ok === false) {
      failed++;
      k.failed++;
    } else {
      unknown++;
      k.unknown++;
    }
    if (op.op !== "get") {
      writes++;
      if (op.ok === null) unknownWrites++;
    }
  }
  const pct = (a: number, b: number): number => (b === 0 ? 0 : (100 * a) / b);
  return {
    total: history.length,
    ok,
    failed,
    unknown,
    unknownPercent: pct(unknown, history.length),
    unknownWritePercent: pct(unknownWrites, writes),
    byKind,
    finalReads: history.filter((op) => op.client === finalClient).length,
  };
}
