// The fuzz loop: seeds first, then mutations of a growing corpus (inputs that reached an outcome not
// seen before are kept), each input timed, findings deduplicated by signature. Seeded and replayable.

import { Prng } from "../../src/lib/prng.ts";
import { errorText, type Finding, type FuzzTarget, finding, hex, type Outcome } from "./target.ts";

/** An input slower than this is a hang candidate (re-run twice to confirm before it is reported). */
export const SLOW_INPUT_MS = 100;
const MAX_CORPUS = 2000;

export interface FuzzOptions {
  readonly seed: number;
  /** Stop after this long (wall clock) ... */
  readonly durationMs?: number;
  /** ... or after this many inputs, whichever comes first. */
  readonly maxInputs?: number;
  /** Called with each new finding (first input per signature). */
  readonly onFinding?: (f: Finding, input: Uint8Array) => void;
  /** Called before each input runs (the watchdog keeps it, to save it if the input never returns). */
  readonly beforeInput?: (input: Uint8Array) => void;
  /** Called when it has returned (a stall after this is the harness's: mutation, bookkeeping). */
  readonly afterInput?: () => void;
  /** Wall-clock milliseconds; injected so the loop itself stays deterministic apart from timing. */
  readonly now: () => number;
  /** Default SLOW_INPUT_MS; tests on a shared CI machine raise it. */
  readonly slowInputMs?: number;
}

export interface FuzzStats {
  readonly target: string;
  readonly seed: number;
  inputs: number;
  accepted: number;
  refused: number;
  findings: number;
  slowInputs: number;
  elapsedMs: number;
  /** The slowest input, in ms. */
  maxInputMs: number;
  /** Outcome label to count. */
  readonly labels: Map<string, number>;
  /** Finding signature to count (all inputs, not only the first). */
  readonly signatures: Map<string, number>;
}

/** Runs one input, turning anything the target lets escape into a finding. */
export async function runOne(target: FuzzTarget, input: Uint8Array): Promise<Outcome> {
  try {
    const r = target.run(input);
    return r instanceof Promise ? await r : r;
  } catch (e) {
    return finding(`${target.name}-harness-escape`, `the target threw ${errorText(e)}`, e);
  }
}

async function timed(target: FuzzTarget, input: Uint8Array, now: () => number): Promise<[Outcome, number]> {
  const start = now();
  const outcome = await runOne(target, input);
  return [outcome, now() - start];
}

export async function fuzz(target: FuzzTarget, o: FuzzOptions): Promise<FuzzStats> {
  const prng = new Prng(o.seed);
  const stats: FuzzStats = {
    target: target.name,
    seed: o.seed,
    inputs: 0,
    accepted: 0,
    refused: 0,
    findings: 0,
    slowInputs: 0,
    elapsedMs: 0,
    maxInputMs: 0,
    labels: new Map(),
    signatures: new Map(),
  };
  const slowMs = o.slowInputMs ?? SLOW_INPUT_MS;
  const start = o.now();
  const seeds = await target.seeds(prng.fork());
  const corpus = seeds.slice();
  const done = () =>
    (o.maxInputs !== undefined && stats.inputs >= o.maxInputs) ||
    (o.durationMs !== undefined && o.now() - start >= o.durationMs);

  const record = async (input: Uint8Array): Promise<void> => {
    o.beforeInput?.(input);
    let [outcome, ms] = await timed(target, input, o.now);
    // GC pauses and a busy machine make a slow run noise: it counts only if three runs are all slow.
    for (let retry = 0; retry < 2 && ms > slowMs; retry++) {
      const [, again] = await timed(target, input, o.now);
      ms = Math.min(ms, again);
    }
    o.afterInput?.();
    if (ms > slowMs) {
      stats.slowInputs++;
      if (outcome.kind !== "finding")
        outcome = finding(
          `${target.name}-slow-input`,
          `one input took ${ms.toFixed(0)} ms (limit ${slowMs})`,
        );
    }
    stats.inputs++;
    stats.maxInputMs = Math.max(stats.maxInputMs, ms);
    if (outcome.kind === "finding") {
      const seen = stats.signatures.get(outcome.signature) ?? 0;
      stats.signatures.set(outcome.signature, seen + 1);
      if (seen === 0) {
        stats.findings++;
        o.onFinding?.(outcome, input);
      }
      return;
    }
    if (outcome.kind === "accepted") stats.accepted++;
    else stats.refused++;
    const key = `${outcome.kind}: ${outcome.label}`;
    const count = stats.labels.get(key) ?? 0;
    stats.labels.set(key, count + 1);
    if (count === 0) {
      if (corpus.length < MAX_CORPUS) corpus.push(input);
      else corpus[prng.int(0, corpus.length - 1)] = input;
    }
  };

  for (const input of seeds) {
    if (done()) break;
    await record(input);
  }
  while (!done()) {
    const base = prng.pick(corpus);
    const other = prng.pick(corpus);
    let input: Uint8Array;
    try {
      input = target.mutate(base, other, prng);
    } catch (e) {
      // A mutator bug is the harness's, not the target's; report it the same way so it gets fixed.
      const f = finding(`${target.name}-mutator-threw`, errorText(e), e);
      if (!stats.signatures.has(f.signature)) o.onFinding?.(f, base);
      stats.signatures.set(f.signature, (stats.signatures.get(f.signature) ?? 0) + 1);
      continue;
    }
    await record(input);
  }
  stats.elapsedMs = o.now() - start;
  return stats;
}

/** A short deterministic run for a regression test: the findings, each with its input in hex (and
 *  `allowed` signatures left out: known bugs, each pinned by its own test). */
export async function shortRun(
  target: FuzzTarget,
  seed: number,
  maxInputs: number,
  allowed: readonly RegExp[] = [],
): Promise<{ findings: string[]; stats: FuzzStats }> {
  const findings: string[] = [];
  const stats = await fuzz(target, {
    seed,
    maxInputs,
    now: () => performance.now(),
    slowInputMs: 1000,
    onFinding: (f, input) => {
      if (allowed.some((re) => re.test(f.signature))) return;
      findings.push(`${f.invariant}: ${f.detail}\n${f.stack ?? ""}\ninput: ${hex(input, 2048)}`);
    },
  });
  return { findings, stats };
}
