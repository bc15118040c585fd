// A short chaos run in CI: 3 real nodes, every fault kind, about a minute; it must pass. The seed is
// random unless CHAOS_SEED is set, and is printed (with the summary) so a failure can be replayed.

import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { FAULT_KINDS } from "../../src/chaos/faults.ts";
import { describeSummary } from "../../src/chaos/main.ts";
import { type ChaosSummary, runChaos } from "../../src/chaos/run.ts";
import { parseHistoryJsonl } from "../../src/sim/history.ts";

const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));
const SEED =
  process.env.CHAOS_SEED === undefined
    ? Math.floor(Math.random() * 1_000_000)
    : Number(process.env.CHAOS_SEED);
/** Whole test bound: the run is about 60 s on a quiet host. Start-up, the coverage grace, the heal,
 *  convergence and the checker are each bounded inside it, generously for a loaded CI host. */
const TEST_TIMEOUT_MS = 600_000;
/** Succeeded operations the history must hold before the faults stop (the run goes on until then). */
const MIN_OK_OPS = 500;

const out = mkdtempSync(join(tmpdir(), "raftkv-chaos-test-"));
const abort = new AbortController();
let running: Promise<ChaosSummary> | null = null;

after(async () => {
  // On success the run is over; on a timeout or failure this kills what is left, then removes the files.
  abort.abort();
  if (running !== null)
    await Promise.race([running.catch(() => undefined), new Promise((r) => setTimeout(r, 30_000).unref())]);
  rmSync(out, { recursive: true, force: true });
});

test(`chaos: 3 nodes, every fault kind, about 60 s (seed ${SEED}; replay with CHAOS_SEED=${SEED})`, {
  timeout: TEST_TIMEOUT_MS,
}, async (t) => {
  const lines: string[] = [];
  running = runChaos({
    nodes: 3,
    durationS: 45,
    faults: [...FAULT_KINDS],
    seed: SEED,
    outDir: out,
    clients: 5,
    keys: 8,
    repoRoot: REPO_ROOT,
    heartbeatMs: 50,
    electionTimeoutMinMs: 300,
    electionTimeoutMaxMs: 600,
    serveArgs: [],
    clientTimeoutMs: 5000,
    attemptTimeoutMs: 1000,
    healWindowS: 3,
    leaseMonitorMs: 50,
    // Shorter gaps and holds, so that every kind comes up (with power loss, clock and lease faults in).
    faultPace: 0.5,
    coverageGraceS: 180,
    minOkOps: MIN_OK_OPS,
    keepData: false,
    print: (line) => lines.push(line),
    signal: abort.signal,
  });
  const s = await running;
  const report = `${lines.join("\n")}\n${describeSummary(s, out)}`;
  for (const line of report.split("\n")) t.diagnostic(line);
  // Violations and failed checks (liveness after the heal included): each is a defect.
  assert.deepEqual(s.problems, [], report);
  // No key's history is non-linearizable. A key the checker could not decide in its step budget (many
  // unknown outcomes on a loaded host) is a weakness, printed with the summary, not a failure.
  assert.notEqual(s.checker.verdict, "not-linearizable", report);
  assert.equal(s.replicas.identical, true, report);
  // Guaranteed by the run, not by luck or the host's speed: a skipped fault comes up again, and the faults
  // go on past the duration (within a generous bound) until every kind has been injected and MIN_OK_OPS
  // operations succeeded. The share of unknown outcomes depends on the host's load alone: it is printed
  // (a run beyond ~20 % is weak, TESTING.md), never asserted.
  for (const kind of FAULT_KINDS)
    assert.ok(s.faults.byKind[kind] > 0, `no ${kind} fault was injected\n${report}`);
  assert.ok(s.ops.ok >= MIN_OK_OPS, `only ${s.ops.ok} operations succeeded\n${report}`);
  // The files promised by the CLI are there and the history parses.
  for (const f of ["history.jsonl", "summary.json", "node-0.log", "node-1.log", "node-2.log"])
    assert.ok(existsSync(join(out, f)), `${f} written`);
  const history = parseHistoryJsonl(readFileSync(join(out, "history.jsonl"), "utf8"));
  assert.equal(history.length, s.ops.total);
});
