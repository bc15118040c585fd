// What storage knows of the log without holding it: first and last index and the terms, to check each
// save (a mistake of ours or the core's is an assertion, never a silently odd log on disk).

import type { Entry, HardState } from "../core/types.ts";
import { assert } from "../lib/assert.ts";
import type { IndexTerm } from "./log-replay.ts";

function isIndex(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

export class LogBounds {
  /** The snapshot (or 0, 0): everything up to here is compacted. */
  snapshot: IndexTerm;
  lastIndex: number;
  /** First index of each run of equal terms in (snapshot.index, lastIndex], ascending. */
  private runs: IndexTerm[] = [];

  constructor(snapshot: IndexTerm, entries: readonly Entry[]) {
    this.snapshot = snapshot;
    this.lastIndex = snapshot.index;
    this.append(entries);
  }

  get lastTerm(): number {
    return this.runs[this.runs.length - 1]?.term ?? this.snapshot.term;
  }

  /** Term at `index`, or null when it is neither the snapshot's index nor in the log. */
  termAt(index: number): number | null {
    if (index === this.snapshot.index) return this.snapshot.term;
    if (index < this.snapshot.index || index > this.lastIndex) return null;
    let lo = 0;
    let hi = this.runs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.runs[mid]!.index <= index) lo = mid;
      else hi = mid - 1;
    }
    return this.runs[lo]!.term;
  }

  /** Asserts that a save is well-formed against this log and the previous hard state. */
  checkSave(prevHardState: HardState, hs: HardState | null, entries: readonly Entry[]): void {
    const first = entries[0];
    if (first !== undefined) {
      assert(
        first.index > this.snapshot.index && first.index <= this.lastIndex + 1,
        () =>
          `save: entries start at ${first.index}, the log holds (${this.snapshot.index}, ${this.lastIndex}]`,
      );
      let prevTerm = this.termAt(first.index - 1);
      for (let i = 0; i < entries.length; i++) {
        const e = entries[i]!;
        // Plain checks first: this runs for every entry of every save.
        const ok =
          e.index === first.index + i &&
          Number.isSafeInteger(e.term) &&
          e.term >= 1 &&
          (prevTerm === null || e.term >= prevTerm) &&
          (e.kind === "noop" || e.kind === "command" || e.kind === "config") &&
          e.data instanceof Uint8Array;
        if (!ok) {
          assert(
            e.index === first.index + i && Number.isSafeInteger(e.term) && e.term >= 1,
            () => `save: entry ${i} has index ${e.index} term ${e.term}, expected index ${first.index + i}`,
          );
          assert(
            prevTerm === null || e.term >= prevTerm,
            () => `save: entry ${e.index} term ${e.term} goes below ${prevTerm}`,
          );
          assert(
            e.kind === "noop" || e.kind === "command" || e.kind === "config",
            () => `save: entry ${e.index} has kind ${e.kind}`,
          );
          assert(false, () => `save: entry ${e.index} data is not bytes`);
        }
        prevTerm = e.term;
      }
    }
    if (hs !== null) {
      assert(
        isIndex(hs.term) && isIndex(hs.commitIndex) && (hs.votedFor === null || isIndex(hs.votedFor)),
        () => `save: malformed hard state ${JSON.stringify(hs)}`,
      );
      assert(
        hs.term >= prevHardState.term,
        () => `save: term goes back from ${prevHardState.term} to ${hs.term}`,
      );
      assert(
        hs.term > prevHardState.term ||
          prevHardState.votedFor === null ||
          hs.votedFor === prevHardState.votedFor,
        () => `save: vote changes within term ${hs.term}: ${prevHardState.votedFor} to ${hs.votedFor}`,
      );
      const last = first === undefined ? this.lastIndex : entries[entries.length - 1]!.index;
      assert(
        hs.commitIndex <= Math.max(last, this.snapshot.index),
        () => `save: commit index ${hs.commitIndex} beyond the log's last index ${last}`,
      );
    }
  }

  /** Truncates from entries[0].index when it is not past the end, then appends. */
  append(entries: readonly Entry[]): void {
    const first = entries[0];
    if (first === undefined) return;
    if (first.index <= this.lastIndex) this.truncateFrom(first.index);
    for (const e of entries) {
      if (e.term !== this.lastTerm || this.runs.length === 0)
        this.runs.push({ index: e.index, term: e.term });
      this.lastIndex = e.index;
    }
  }

  /** A snapshot of this log's own prefix: indexes up to `index` are no longer held. */
  compact(index: number, term: number): void {
    if (index > this.lastIndex || this.termAt(index) !== term) {
      this.reset(index, term);
      return;
    }
    if (index <= this.snapshot.index) return;
    const keep = this.runs.filter((r) => r.index > index);
    const covering = this.runs.filter((r) => r.index <= index).pop();
    if (
      covering !== undefined &&
      index < this.lastIndex &&
      (keep[0]?.index ?? this.lastIndex + 1) > index + 1
    )
      keep.unshift({ index: index + 1, term: covering.term });
    this.runs = keep;
    this.snapshot = { index, term };
  }

  /** An installed snapshot: the whole log is discarded and restarts after `index`. */
  reset(index: number, term: number): void {
    this.snapshot = { index, term };
    this.lastIndex = index;
    this.runs = [];
  }

  private truncateFrom(index: number): void {
    while (this.runs.length > 0 && this.runs[this.runs.length - 1]!.index >= index) this.runs.pop();
    this.lastIndex = index - 1;
  }
}
