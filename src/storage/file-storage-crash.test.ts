// Crash tests: power loss at every write and sync point of scripted and random runs of FileStorage on
// MemFileSystem; recovery must keep everything acknowledged and land on a state the writes passed through.

import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import type { Entry, HardState, SnapshotMeta } from "../core/types.ts";
import { Prng } from "../lib/prng.ts";
import { FileStorage } from "./file-storage.ts";
import { MemFileSystem, SimulatedCrash } from "./mem-file-system.ts";
import type { RecoveredState, StorageLogger } from "./storage.ts";
import { imageOf, metaFor, plain } from "./storage-conformance.ts";

const quiet: StorageLogger = { info: () => undefined, warn: () => undefined };

type Step =
  | {
      readonly kind: "save";
      readonly hs: HardState | null;
      readonly entries: Entry[];
      readonly sync: boolean;
    }
  | { readonly kind: "snapshot"; readonly meta: SnapshotMeta; readonly image: Uint8Array }
  | { readonly kind: "install"; readonly meta: SnapshotMeta; readonly image: Uint8Array };

interface Log {
  readonly base: { index: number; term: number };
  readonly entries: readonly Entry[];
}
interface ModelState {
  readonly hs: HardState;
  readonly log: Log;
}

function ents(from: number, to: number, term: number, pad = 20): Entry[] {
  const out: Entry[] = [];
  for (let i = from; i <= to; i++)
    out.push({
      index: i,
      term,
      kind: "command",
      data: new TextEncoder().encode(`${i}/${term}`.padEnd(pad, "x")),
    });
  return out;
}

const hs = (term: number, votedFor: number | null, commitIndex: number): HardState => ({
  term,
  votedFor,
  commitIndex,
});

function appendLog(log: Log, entries: readonly Entry[]): Log {
  const first = entries[0];
  if (first === undefined) return log;
  return { base: log.base, entries: [...log.entries.slice(0, first.index - log.base.index - 1), ...entries] };
}

function termIn(log: Log, index: number): number | null {
  if (index === log.base.index) return log.base.term;
  return log.entries[index - log.base.index - 1]?.term ?? null;
}

/** States the WAL passes through: after each step, and inside each step at record boundaries. */
function modelStates(steps: readonly Step[]): { after: ModelState[]; partials: ModelState[][] } {
  const after: ModelState[] = [{ hs: hs(0, null, 0), log: { base: { index: 0, term: 0 }, entries: [] } }];
  const partials: ModelState[][] = [];
  for (const step of steps) {
    const prev = after[after.length - 1]!;
    const mid: ModelState[] = [];
    let next: ModelState = prev;
    if (step.kind === "save") {
      const first = step.entries[0];
      if (first !== undefined) {
        const truncated: Log = {
          base: prev.log.base,
          entries: prev.log.entries.slice(0, first.index - prev.log.base.index - 1),
        };
        mid.push({ hs: prev.hs, log: truncated });
      }
      const log = appendLog(prev.log, step.entries);
      mid.push({ hs: prev.hs, log });
      next = { hs: step.hs ?? prev.hs, log };
    } else if (step.kind === "install") {
      next = { hs: prev.hs, log: { base: { index: step.meta.index, term: step.meta.term }, entries: [] } };
      mid.push(next);
    }
    partials.push(mid);
    after.push(next);
  }
  return { after, partials };
}

/** The log recovery derives from a WAL state and the snapshot it found. */
function joinSnapshot(log: Log, snap: SnapshotMeta | null): Entry[] | null {
  if (snap === null) return log.base.index === 0 ? [...log.entries] : null;
  if (snap.index < log.base.index) return null;
  const t = termIn(log, snap.index);
  if (t !== snap.term) return [];
  return log.entries.filter((e) => e.index > snap.index);
}

interface RunOutcome {
  /** Steps that resolved. */
  readonly resolved: number;
  /** The step in progress when the crash came (-1: inside open; steps.length: none). */
  readonly crashedIn: number;
}

function storageOn(fs: MemFileSystem, maxSegmentBytes: number): FileStorage {
  return new FileStorage({ fs, dir: "/data", clusterId: "c", nodeId: 1, maxSegmentBytes, logger: quiet });
}

async function runSteps(
  fs: MemFileSystem,
  steps: readonly Step[],
  maxSegmentBytes: number,
): Promise<RunOutcome> {
  const s = storageOn(fs, maxSegmentBytes);
  let i = -1;
  try {
    await s.open();
    for (i = 0; i < steps.length; i++) {
      const step = steps[i]!;
      if (step.kind === "save") await s.save(step.hs, step.entries, step.sync);
      else if (step.kind === "snapshot") await s.saveSnapshot(step.meta, step.image);
      else {
        const half = Math.floor(step.image.length / 2);
        await s.writeSnapshotChunk(step.meta, 0, step.image.subarray(0, half));
        await s.writeSnapshotChunk(step.meta, half, step.image.subarray(half));
        await s.installIncomingSnapshot(step.meta);
      }
    }
    return { resolved: steps.length, crashedIn: steps.length };
  } catch (e) {
    const root = e instanceof Error && e.cause !== undefined ? e.cause : e;
    const crashed =
      root instanceof SimulatedCrash || (root instanceof Error && root.cause instanceof SimulatedCrash);
    if (!crashed) throw e;
    return { resolved: Math.max(0, i), crashedIn: i };
  }
}

function describeState(r: RecoveredState): string {
  return JSON.stringify({
    hs: r.hardState,
    snap: r.snapshot,
    log: r.entries.map((e) => `${e.index}/${e.term}`).join(" "),
  });
}

/** Checks a recovered state against what the run acknowledged and the states its writes passed through. */
function checkRecovered(steps: readonly Step[], outcome: RunOutcome, r: RecoveredState, label: string): void {
  const { after, partials } = modelStates(steps);
  let acked = 0;
  let ackedSnapshot: SnapshotMeta | null = null;
  for (let i = 0; i < outcome.resolved; i++) {
    const step = steps[i]!;
    if ((step.kind === "save" && step.sync) || step.kind === "install") acked = i + 1;
    if (step.kind !== "save") ackedSnapshot = step.meta;
  }
  const last = Math.min(outcome.crashedIn + 1, steps.length);
  const startedSnapshots = steps
    .slice(0, last)
    .filter((s) => s.kind !== "save")
    .map((s) => s.meta);
  if (r.snapshot !== null)
    assert.ok(
      startedSnapshots.some((m) => m.index === r.snapshot!.index && m.term === r.snapshot!.term),
      `${label}: unknown snapshot ${JSON.stringify(r.snapshot)}`,
    );
  if (ackedSnapshot !== null)
    assert.ok((r.snapshot?.index ?? 0) >= ackedSnapshot.index, `${label}: acknowledged snapshot lost`);
  const candidates: ModelState[] = [];
  for (let j = acked; j <= last; j++) {
    candidates.push(after[j]!);
    if (j < last) candidates.push(...partials[j]!);
  }
  const got = plain(r.entries);
  const ok = candidates.some((c) => {
    const expected = joinSnapshot(c.log, r.snapshot);
    return (
      expected !== null &&
      JSON.stringify(c.hs) === JSON.stringify(r.hardState) &&
      JSON.stringify(plain(expected)) === JSON.stringify(got)
    );
  });
  assert.ok(ok, `${label}: recovered ${describeState(r)} is not a state between step ${acked} and ${last}`);
}

/** Opens after a crash (sometimes crashing again inside recovery first), checks, then writes on. */
async function recoverAndCheck(
  fs: MemFileSystem,
  prng: Prng,
  steps: readonly Step[],
  outcome: RunOutcome,
  maxSegmentBytes: number,
  label: string,
): Promise<void> {
  fs.crash(prng);
  if (prng.chance(0.3)) {
    fs.crashAfter(prng.int(0, 6));
    const s = storageOn(fs, maxSegmentBytes);
    await s.open().then(
      () => s.close(),
      () => undefined,
    );
    fs.crash(prng);
  }
  const s = storageOn(fs, maxSegmentBytes);
  const r = await s.open();
  checkRecovered(steps, outcome, r, label);
  // The recovered storage takes new writes and keeps them.
  const lastIndex = r.entries[r.entries.length - 1]?.index ?? r.snapshot?.index ?? 0;
  const term =
    Math.max(r.hardState.term, r.entries[r.entries.length - 1]?.term ?? 0, r.snapshot?.term ?? 0) + 1;
  const more = ents(lastIndex + 1, lastIndex + 2, term);
  await s.save(hs(term, null, r.hardState.commitIndex), more, true);
  fs.crash(prng);
  const s2 = storageOn(fs, maxSegmentBytes);
  const r2 = await s2.open();
  assert.deepEqual(plain(r2.entries), plain([...r.entries, ...more]), `${label}: writes after recovery`);
  assert.deepEqual(r2.hardState, hs(term, null, r.hardState.commitIndex));
  await s2.close();
}

function scriptedSteps(): Step[] {
  const snap = (index: number, term: number, seed: number): Step => {
    const image = imageOf(300 + seed * 50, seed);
    return { kind: "snapshot", meta: metaFor(index, term, image), image };
  };
  const image20 = imageOf(700, 9);
  return [
    { kind: "save", hs: hs(1, 1, 0), entries: [], sync: true },
    { kind: "save", hs: null, entries: ents(1, 3, 1), sync: false },
    { kind: "save", hs: hs(1, 1, 2), entries: ents(4, 6, 1), sync: true },
    { kind: "save", hs: hs(2, 2, 2), entries: ents(5, 7, 2), sync: true },
    { kind: "save", hs: hs(2, 2, 4), entries: ents(8, 10, 2), sync: false },
    snap(4, 1, 1),
    { kind: "save", hs: hs(2, 2, 7), entries: ents(11, 14, 2), sync: false },
    { kind: "save", hs: hs(3, null, 7), entries: ents(9, 12, 3), sync: true },
    snap(8, 2, 2),
    { kind: "install", meta: metaFor(20, 4, image20), image: image20 },
    { kind: "save", hs: hs(4, 3, 20), entries: ents(21, 23, 4), sync: true },
    { kind: "save", hs: hs(4, 3, 22), entries: ents(24, 30, 4, 60), sync: false },
    { kind: "save", hs: hs(5, 5, 22), entries: ents(23, 25, 5), sync: true },
    snap(24, 5, 3),
    { kind: "save", hs: hs(5, 5, 25), entries: [], sync: true },
    { kind: "save", hs: hs(6, 1, 25), entries: ents(26, 28, 6), sync: false },
  ];
}

test("crash at every write and sync point of a scripted run: acknowledged data survives", async () => {
  const steps = scriptedSteps();
  const maxSegmentBytes = 600;
  const probe = new MemFileSystem();
  const full = await runSteps(probe, steps, maxSegmentBytes);
  assert.equal(full.resolved, steps.length);
  const points = probe.pointCount;
  assert.ok(points > 80, `only ${points} points`);
  for (const seed of [1, 2]) {
    for (let k = 0; k <= points; k++) {
      const fs = new MemFileSystem();
      fs.crashAfter(k);
      const outcome = await runSteps(fs, steps, maxSegmentBytes);
      await recoverAndCheck(
        fs,
        new Prng(seed * 100_000 + k),
        steps,
        outcome,
        maxSegmentBytes,
        `seed ${seed} point ${k}`,
      );
    }
  }
});

test("property: random runs crashed at a random point recover to an acknowledged-or-later state", async () => {
  const stepArb = fc.record({
    kind: fc.constantFrom("append", "append", "append", "truncate", "vote", "snapshot", "install"),
    count: fc.integer({ min: 1, max: 6 }),
    back: fc.integer({ min: 0, max: 5 }),
    sync: fc.boolean(),
    pad: fc.integer({ min: 1, max: 120 }),
  });
  await fc.assert(
    fc.asyncProperty(
      fc.array(stepArb, { minLength: 1, maxLength: 14 }),
      fc.integer({ min: 0, max: 400 }),
      fc.integer(),
      async (specs, crashPoint, seed) => {
        // Turn the specs into a valid script by tracking the model as we go.
        const steps: Step[] = [];
        let term = 1;
        let vote: number | null = null;
        let last = 0;
        let snapIndex = 0;
        let log: Log = { base: { index: 0, term: 0 }, entries: [] };
        let commit = 0;
        for (const spec of specs) {
          if (spec.kind === "vote") {
            term++;
            vote = spec.count;
            steps.push({ kind: "save", hs: hs(term, vote, commit), entries: [], sync: spec.sync });
          } else if (spec.kind === "snapshot" && commit > snapIndex) {
            const image = imageOf(spec.pad * 3, spec.count);
            const index = commit;
            const meta = metaFor(index, termIn(log, index)!, image);
            steps.push({ kind: "snapshot", meta, image });
            snapIndex = index;
          } else if (spec.kind === "install") {
            term++;
            const image = imageOf(spec.pad * 2, spec.count);
            const index = last + spec.count;
            const meta = metaFor(index, term, image);
            steps.push({ kind: "install", meta, image });
            log = { base: { index, term }, entries: [] };
            last = index;
            snapIndex = index;
            commit = index;
            steps.push({ kind: "save", hs: hs(term, vote, commit), entries: [], sync: spec.sync });
          } else {
            const from = spec.kind === "truncate" ? Math.max(commit + 1, last + 1 - spec.back) : last + 1;
            if (spec.kind === "truncate" && from <= last) term++;
            const es = ents(from, from + spec.count - 1, term, spec.pad);
            log = appendLog(log, es);
            last = from + spec.count - 1;
            commit = Math.max(commit, Math.min(last, commit + spec.back));
            steps.push({ kind: "save", hs: hs(term, vote, commit), entries: es, sync: spec.sync });
          }
        }
        const fs = new MemFileSystem();
        fs.crashAfter(crashPoint);
        const outcome = await runSteps(fs, steps, 700);
        await recoverAndCheck(
          fs,
          new Prng(seed),
          steps,
          outcome,
          700,
          `crash point ${crashPoint} seed ${seed}`,
        );
      },
    ),
    { numRuns: 150 },
  );
});
