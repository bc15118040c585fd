// The in-memory Raft log since the last snapshot: append, conflict handling, commit and apply cursors.

import { assert } from "../lib/assert.ts";
import type { Entry, SnapshotMeta } from "./types.ts";

export class RaftLog {
  /** Index and term of the last entry covered by the snapshot (0/0 when none). */
  snapshotIndex = 0;
  snapshotTerm = 0;
  /** entries[i].index === snapshotIndex + 1 + i */
  private entries: Entry[] = [];
  /** Highest index known committed (§5.3). Never decreases. */
  committed = 0;
  /** Highest index handed to the host for applying. */
  applied = 0;
  /** Highest index known durable on this node. */
  persisted = 0;
  /** First index not yet handed to the host for persisting. */
  unstableFrom = 1;
  /** Bytes of command data held in `entries` (what bounds this log's memory, with the entry count). */
  dataBytes = 0;

  /** Rebuild from what storage recovered. */
  static recover(snapshot: SnapshotMeta | null, entries: readonly Entry[], commitIndex: number): RaftLog {
    const log = new RaftLog();
    if (snapshot !== null) {
      log.snapshotIndex = snapshot.index;
      log.snapshotTerm = snapshot.term;
    }
    let expected = log.snapshotIndex + 1;
    for (const e of entries) {
      assert(
        e.index === expected,
        () => `recovered log has a gap: expected index ${expected}, got ${e.index}`,
      );
      expected++;
    }
    log.entries = entries.slice();
    for (const e of entries) log.dataBytes += e.data.length;
    log.persisted = log.lastIndex();
    log.unstableFrom = log.lastIndex() + 1;
    log.committed = Math.min(Math.max(commitIndex, log.snapshotIndex), log.lastIndex());
    log.applied = log.snapshotIndex;
    return log;
  }

  firstIndex(): number {
    return this.snapshotIndex + 1;
  }

  lastIndex(): number {
    return this.snapshotIndex + this.entries.length;
  }

  lastTerm(): number {
    const last = this.entries[this.entries.length - 1];
    return last === undefined ? this.snapshotTerm : last.term;
  }

  /** Term of the entry at index, or undefined if compacted away or beyond the end. */
  term(index: number): number | undefined {
    if (index === this.snapshotIndex) return this.snapshotTerm;
    if (index < this.snapshotIndex || index > this.lastIndex()) return undefined;
    return this.entries[index - this.snapshotIndex - 1]!.term;
  }

  entry(index: number): Entry | undefined {
    if (index <= this.snapshotIndex) return undefined;
    return this.entries[index - this.snapshotIndex - 1];
  }

  matchTerm(index: number, term: number): boolean {
    return this.term(index) === term;
  }

  /** §5.4.1: is a log ending at (lastIndex, lastTerm) at least as up-to-date as ours? */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const ourTerm = this.lastTerm();
    return lastTerm > ourTerm || (lastTerm === ourTerm && lastIndex >= this.lastIndex());
  }

  /** Leader append of new entries at the end. */
  append(entries: readonly Entry[]): void {
    for (const e of entries) {
      assert(
        e.index === this.lastIndex() + 1,
        () => `append at ${e.index} but last index is ${this.lastIndex()}`,
      );
      assert(e.term >= this.lastTerm(), () => `append of term ${e.term} after term ${this.lastTerm()}`);
      this.entries.push(e);
      this.dataBytes += e.data.length;
    }
  }

  /**
   * Follower side of AppendEntries (§5.3): if the log matches at prevIndex/prevTerm, drop any conflicting
   * suffix, append what is new and return the index of the last entry the message vouches for; else null.
   * Entries that would replace committed ones (only a forged or broken leader sends them, §5.4) change
   * nothing and return "conflictsWithCommitted".
   */
  maybeAppend(
    prevIndex: number,
    prevTerm: number,
    entries: readonly Entry[],
  ): number | null | "conflictsWithCommitted" {
    if (prevIndex < this.snapshotIndex) {
      // The prefix is covered by our snapshot (already committed): skip entries we compacted.
      const skip = this.snapshotIndex - prevIndex;
      if (skip > entries.length) return prevIndex + entries.length;
      const rest = entries.slice(skip);
      return this.maybeAppend(this.snapshotIndex, this.snapshotTerm, rest);
    }
    if (!this.matchTerm(prevIndex, prevTerm)) return null;
    const lastNew = prevIndex + entries.length;
    for (const e of entries) {
      const existing = this.term(e.index);
      if (existing === e.term) continue;
      if (existing !== undefined) {
        if (e.index <= this.committed) return "conflictsWithCommitted";
        this.truncateFrom(e.index);
      }
      this.append(entries.slice(e.index - prevIndex - 1));
      break;
    }
    return lastNew;
  }

  private truncateFrom(index: number): void {
    assert(
      index > this.committed,
      () => `truncate at ${index} would remove committed entries (commit ${this.committed})`,
    );
    assert(index > this.snapshotIndex, () => `truncate at ${index} inside snapshot ${this.snapshotIndex}`);
    const keep = index - this.snapshotIndex - 1;
    for (let i = keep; i < this.entries.length; i++) this.dataBytes -= this.entries[i]!.data.length;
    this.entries.length = keep;
    this.unstableFrom = Math.min(this.unstableFrom, index);
    this.persisted = Math.min(this.persisted, index - 1);
  }

  commitTo(index: number): void {
    if (index <= this.committed) return;
    assert(index <= this.lastIndex(), () => `commit ${index} beyond last index ${this.lastIndex()}`);
    this.committed = index;
  }

  /** Entries [lo, hi] inclusive, stopping after maxBytes of data (always at least one). */
  slice(lo: number, hi: number, maxCount: number, maxBytes: number): Entry[] {
    assert(lo > this.snapshotIndex, () => `slice from ${lo} reaches into snapshot ${this.snapshotIndex}`);
    const out: Entry[] = [];
    let bytes = 0;
    for (let i = lo; i <= hi && out.length < maxCount; i++) {
      const e = this.entries[i - this.snapshotIndex - 1]!;
      bytes += e.data.length;
      if (out.length > 0 && bytes > maxBytes) break;
      out.push(e);
    }
    return out;
  }

  /** Entries to hand to the host for persisting; moves the unstable cursor. */
  takeUnstable(): Entry[] {
    const lo = Math.max(this.unstableFrom, this.firstIndex());
    const out = lo > this.lastIndex() ? [] : this.entries.slice(lo - this.snapshotIndex - 1);
    this.unstableFrom = this.lastIndex() + 1;
    return out;
  }

  /** The host made entries up to (index, term) durable. */
  markPersisted(index: number, term: number): void {
    if (this.matchTerm(index, term) && index > this.persisted) this.persisted = index;
  }

  /** Committed, durable entries not yet handed out for applying; moves the applied cursor. */
  takeCommitted(maxCount: number): Entry[] {
    const hi = Math.min(this.committed, this.persisted);
    if (hi <= this.applied) return [];
    const out = this.slice(this.applied + 1, hi, maxCount, Number.MAX_SAFE_INTEGER);
    this.applied += out.length;
    return out;
  }

  /** The host saved a snapshot through `index` (already applied): drop the entries it covers. */
  compact(index: number, term: number): void {
    if (index <= this.snapshotIndex) return;
    assert(index <= this.applied, () => `compact to ${index} beyond applied ${this.applied}`);
    assert(
      this.term(index) === term,
      () => `compact to ${index}: term ${term} does not match ${this.term(index)}`,
    );
    const drop = index - this.snapshotIndex;
    for (let i = 0; i < drop; i++) this.dataBytes -= this.entries[i]!.data.length;
    this.entries = this.entries.slice(drop);
    this.snapshotIndex = index;
    this.snapshotTerm = term;
  }

  /** A snapshot from the leader replaces the whole log (thesis §5.3, InstallSnapshot). */
  restore(meta: SnapshotMeta): void {
    assert(meta.index > this.committed, () => `restore to ${meta.index} not beyond commit ${this.committed}`);
    this.entries = [];
    this.dataBytes = 0;
    this.snapshotIndex = meta.index;
    this.snapshotTerm = meta.term;
    this.committed = meta.index;
    this.applied = meta.index;
    this.persisted = meta.index;
    this.unstableFrom = meta.index + 1;
  }

  /** Bytes of command data in the entries [lo, hi] held in memory. */
  bytesBetween(lo: number, hi: number): number {
    let bytes = 0;
    for (let i = Math.max(lo, this.firstIndex()); i <= Math.min(hi, this.lastIndex()); i++)
      bytes += this.entries[i - this.snapshotIndex - 1]!.data.length;
    return bytes;
  }

  /** The lowest index i <= hi such that entries (i, hi] hold at most maxBytes of data, scanning back
   *  from hi (so a log compacted to it keeps at most maxBytes behind hi). */
  compactionPointKeeping(hi: number, maxBytes: number): number {
    let bytes = 0;
    let i = Math.min(hi, this.lastIndex());
    while (i > this.snapshotIndex) {
      bytes += this.entries[i - this.snapshotIndex - 1]!.data.length;
      if (bytes > maxBytes) return i;
      i--;
    }
    return this.snapshotIndex;
  }

  /** For fast backtracking: the first index of `term` at or before `index` in our log. */
  firstIndexOfTerm(term: number, index: number): number {
    let i = index;
    while (i > this.snapshotIndex + 1 && this.term(i - 1) === term) i--;
    return i;
  }

  /** For the leader's side of backtracking: last index whose term is <= term, or 0. */
  lastIndexAtOrBeforeTerm(term: number, below: number): number {
    let i = Math.min(below, this.lastIndex());
    while (i > this.snapshotIndex) {
      const t = this.term(i)!;
      if (t <= term) return i;
      i--;
    }
    return this.snapshotIndex;
  }
}
