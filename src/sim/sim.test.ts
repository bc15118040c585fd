// The simulator in the test suite: hundreds of faulty seeds across 3 and 5 nodes must show no violation,
// a seed must replay identically, and the run must cover the time and operations it promises.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { availableParallelism, loadavg } from "node:os";
import { test } from "node:test";
import type { Membership } from "../core/membership.ts";
import { quorumsIntersect } from "./checkers.ts";
import { seedOptions } from "./defaults.ts";
import { runSeed, type SimOptions } from "./run.ts";
import { simFileDisk, simMemDisk } from "./sim-disk.ts";

const SEEDS = Number(process.env.SIM_SEEDS ?? 500);
/** A guard against a hung simulator, far above what 500 seeds take on a quiet machine. */
const SIM_TIMEOUT_MS = 20 * 60_000;

function options(seed: number, over: Partial<SimOptions> = {}): SimOptions {
  return {
    seed,
    nodes: 3,
    faults: "heavy",
    durationMs: 8000,
    clients: 4,
    keys: 4,
    snapshotEveryEntries: 20,
    trace: false,
    makeDisk: (id, ctx) => simFileDisk(id, ctx),
    ...over,
  };
}

test("the same seed replays the same run, operation for operation", async () => {
  const a = await runSeed(options(42, { nodes: 5 }));
  const b = await runSeed(options(42, { nodes: 5 }));
  assert.ok(a.ok, a.violations.join("\n"));
  assert.deepEqual(b.history, a.history);
  assert.equal(b.elections, a.elections);
  assert.equal(b.messagesDelivered, a.messagesDelivered);
  const c = await runSeed(options(43, { nodes: 5 }));
  assert.notDeepEqual(c.history, a.history);
});

test("the MemStorage twin and the real WAL on the in-memory file system both survive faults", async () => {
  let crashes = 0;
  for (const seed of [7, 8, 9]) {
    const mem = await runSeed(options(seed, { makeDisk: (id) => simMemDisk(id) }));
    const file = await runSeed(options(seed));
    assert.ok(mem.ok, mem.violations.join("\n"));
    assert.ok(file.ok, file.violations.join("\n"));
    crashes += file.crashes;
  }
  assert.ok(crashes > 0, "no crash was injected: the test proves nothing about recovery");
});

/** Seeds that once found a bug, replayed with the default options forever. */
const REGRESSIONS: readonly { seed: number; bug: string }[] = [
  { seed: 189, bug: "a follower installing an old snapshot discarded entries it had acknowledged" },
  {
    seed: 127,
    bug: "float rounding scheduled a node's tick at the same instant forever (simulator live-lock)",
  },
  {
    seed: 1793,
    bug: "checker false alarm: a leader of an older term, elected late by delayed votes, owes no newer entries",
  },
];

for (const { seed, bug } of REGRESSIONS) {
  test(`regression seed ${seed}: ${bug}`, async () => {
    // Pinned to the run that found the bug (these seeds predate leader churn and membership episodes).
    const r = await runSeed({ ...seedOptions(seed), leaderChurn: false, membership: false });
    assert.ok(r.ok, r.violations.join("\n"));
  });
}

/** Seeds that found a bug once membership episodes ran (they draw one; the seed pins it). */
const MEMBERSHIP_REGRESSIONS: readonly { seed: number; bug: string }[] = [
  {
    seed: 26,
    bug: "a follower cut off through several changes dropped the appends of a leader its configuration did not name",
  },
  {
    seed: 44,
    bug: "checker false alarm: one step committed a configuration and then an entry under it",
  },
  {
    seed: 212,
    bug: "no heartbeats to a follower receiving a snapshot: with empty new voters in the quorum each leader lost check-quorum and none served after healing",
  },
  {
    seed: 440,
    bug: "checker false alarm: a member added late, catching up one entry per fsync, met the others after the fixed 3 s convergence window",
  },
  {
    seed: 300,
    bug: "the commit of a configuration was not synced: after a power loss the nodes were back in the joint configuration, needing the old voters an operator had stopped",
  },
  {
    seed: 484,
    bug: "the same: 5 -> 3 committed, the 2 removed stopped, a power loss, and every election needed all 3 survivors",
  },
  {
    seed: 160,
    bug: "a leader elected with a joint entry and the entry leaving it uncommitted committed both on the old majority alone (and the checker compared only the ends of that step)",
  },
  {
    seed: 424,
    bug: "followers installing a snapshot went silent: leaders whose new voters were installing stepped down on check-quorum, one after another, past the liveness bound",
  },
];

for (const { seed, bug } of MEMBERSHIP_REGRESSIONS) {
  test(`membership regression seed ${seed}: ${bug}`, async () => {
    const r = await runSeed({ ...seedOptions(seed), membership: true });
    assert.ok(r.ok, r.violations.join("\n"));
    assert.ok(r.memberChanges > 0, "no membership change ran");
  });
}

test("wipe (issue 13): members restarted on an empty disk under their old id are refused and replaced; without incarnations the checkers see it", async () => {
  // Few other faults, so that the aimed wipes (entries committed on the leader and the victim alone,
  // then the victim wiped and the leader crashed) decide the outcome.
  const quiet = (seed: number, incarnations: boolean): SimOptions =>
    options(seed, {
      faults: "normal",
      ioFaults: false,
      membership: false,
      leaderChurn: false,
      wipe: true,
      incarnations,
    });
  let wipes = 0;
  let refused = 0;
  let caught = 0;
  // Seeds whose unsafe run breaks safety on this build (which seeds do changes with every change to the
  // core or the simulator: re-pick them from a scan when this fails; 7 of seeds 1-16 did at 937c155).
  for (const seed of [3, 4, 8]) {
    const safe = await runSeed(quiet(seed, true));
    assert.ok(safe.ok, `seed ${seed}: ${safe.violations.join("\n")}`);
    wipes += safe.wipes;
    refused += safe.refusedByIncarnation;
    const unsafe = await runSeed(quiet(seed, false));
    if (!unsafe.ok) caught++;
  }
  assert.ok(wipes >= 3 && refused > 0, `wipes ${wipes}, refused ${refused}`);
  // These seeds each broke a safety property when a wiped member's vote counted (two leaders in a term,
  // entries replacing committed ones): the checkers must keep seeing it, or the test proves nothing.
  assert.equal(caught, 3, "without incarnation checks the wiped members' votes must break safety");
});

test("convergence window: seed 1681 (the slowest of 2000 in the CLI run) passes and reports its convergence time", async () => {
  // A fixed 3 s window failed runs like this one (seed 440, then 234, before the fixes above): Raft
  // promises that a live member catches up, not how fast; the wait now fails only after 3 s without any
  // progress (or 30 s in all). Which seed needs more than 3 s changes with every change to the core, so
  // the time is reported, not asserted (`npm run sim -- --seeds 2000` found 1681 the slowest, 5343 ms,
  // when this was written).
  const r = await runSeed({ ...seedOptions(1681), membership: true });
  assert.ok(r.ok, r.violations.join("\n"));
  assert.equal(typeof r.convergedAfterMs, "number", "the convergence time is reported");
  console.log(`seed 1681 converged ${r.convergedAfterMs} ms after healing`);
});

/**
 * Seeds that caught a deliberately broken build (scratch copies, never committed; issue 14) and pass on
 * the correct one: they keep the windows those bugs need in the suite (a crash right after an ack or a
 * vote, inside an fsync, a stall between a lease read and its reply), whatever else changes.
 */
const CHECKER_POWER: readonly { seed: number; caught: string }[] = [
  { seed: 22, caught: "append responses sent before the entries were written" },
  { seed: 98, caught: "a vote sent before it was persisted (two leaders in one term)" },
  { seed: 96, caught: "a hard state (term, vote) written without fsync" },
  { seed: 36, caught: "a snapshot installed and acknowledged before its file and directory were synced" },
  { seed: 50, caught: "the late lease check in KvService.get removed (a stale lease read)" },
];

for (const { seed, caught } of CHECKER_POWER) {
  test(`checker power seed ${seed} (caught: ${caught}) passes on the correct build`, async () => {
    // Pinned to the runs that caught them (these seeds predate membership episodes).
    const r = await runSeed({ ...seedOptions(seed), membership: false });
    assert.ok(r.ok, r.violations.join("\n"));
  });
}

test("membership episodes grow and shrink the cluster under faults, and every checker passes", async () => {
  let changes = 0;
  let added = 0;
  let retired = 0;
  for (const seed of [1, 2, 3, 4]) {
    const r = await runSeed(options(seed, { nodes: seed % 2 === 0 ? 5 : 3, membership: true }));
    assert.ok(r.ok, `seed ${seed}: ${r.violations.join("\n")}`);
    changes += r.memberChanges;
    added += r.nodesAdded;
    retired += r.nodesRetired;
  }
  assert.ok(
    changes > 0 && added > 0 && retired > 0,
    `changes ${changes}, added ${added}, retired ${retired}`,
  );
});

test("quorums of two configurations intersect exactly when joint consensus would let them both act", () => {
  const m = (voters: number[], outgoing: number[] = []): Membership => ({
    voters,
    outgoing,
    learners: [],
    addresses: [],
    removed: [],
  });
  assert.ok(quorumsIntersect(m([0, 1, 2]), m([0, 1, 2, 3], [0, 1, 2])));
  assert.ok(quorumsIntersect(m([0, 1, 2, 3, 4], [0, 1, 2]), m([0, 1, 2, 3, 4])));
  assert.ok(!quorumsIntersect(m([0, 1, 2]), m([0, 1, 2, 3, 4])), "3 -> 5 in one step");
  assert.ok(!quorumsIntersect(m([0, 1, 2]), m([0, 3, 4])), "a replaced majority");
});

test(`${SEEDS} seeds, 3 and 5 nodes, heavy faults, 60 simulated seconds each: no violation`, () => {
  const r = spawnSync(
    process.execPath,
    ["--import", "tsx", "src/sim/main.ts", "--seeds", String(SEEDS), "--start", "1", "--workers", "2"],
    { encoding: "utf8", timeout: SIM_TIMEOUT_MS },
  );
  const out = `${r.stdout}\n${r.stderr}`;
  assert.ok(
    r.signal === null,
    `the simulator was stopped (${r.signal}) after ${SIM_TIMEOUT_MS / 60_000} min; load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(
        " ",
      )} on ${availableParallelism()} cores (500 seeds take a few minutes on a quiet 2-core machine; ` +
      `SIM_SEEDS=100 runs fewer)\n${out}`,
  );
  assert.equal(r.status, 0, out);
  const m =
    /seeds (\d+), violations (\d+), operations \d+ \(checked (\d+), fewest in one seed (\d+).*simulated (\d+) s/.exec(
      out,
    );
  assert.ok(m !== null, out);
  assert.equal(Number(m[1]), SEEDS);
  assert.equal(Number(m[2]), 0, out);
  assert.ok(Number(m[4]) >= 200, `a seed checked only ${m[4]} operations`);
  assert.ok(Number(m[5]) >= 60 * SEEDS, `simulated only ${m[5]} s`);
  const membership = /membership changes (\d+) in (\d+) seeds/.exec(out);
  assert.ok(
    // At least 30 % of the suite's seeds (a handful, as SIM_SEEDS may ask for, need only one).
    membership !== null && Number(membership[2]) >= (SEEDS >= 100 ? 0.3 * SEEDS : 1),
    `membership episodes ran in too few seeds: ${membership?.[0]}`,
  );
  const churned = /leaders churned (\d+)/.exec(out);
  assert.ok(
    churned !== null && Number(churned[1]) > 0,
    "no leader churn episode ran: Figure 8 goes untested",
  );
  // The windows issue 14 is about: crashes that find I/O in flight, crashes aimed at sends and at
  // fsyncs, stalls inside requests, disk faults that stop nodes.
  for (const [what, re] of [
    ["crashes inside an I/O", /crashes inside an I\/O (\d+)/],
    ["aimed crashes after a send", /aimed crashes (\d+) after a send/],
    ["aimed crashes inside an fsync", /and (\d+) inside an fsync/],
    ["request stalls", /request stalls (\d+)/],
    ["nodes stopped on disk faults", /\((\d+) nodes stopped on them\)/],
  ] as const) {
    const f = re.exec(out);
    assert.ok(f !== null && Number(f[1]) > 0, `no ${what}: the run does not reach that window`);
  }
  console.log(out.trim().split("\n").pop());
});
