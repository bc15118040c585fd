// Replays WAL records into the log they describe, refusing gaps, overlaps and terms going backwards.

import type { Entry, HardState } from "../core/types.ts";
import { corruptError } from "./storage-error.ts";
import type { SegmentHeaderRecord, WalRecord } from "./wal-record.ts";

export interface IndexTerm {
  readonly index: number;
  readonly term: number;
}

/** The log as the WAL describes it: entries from `start`, contiguous; the latest hard state; markers. */
export class LogReplay {
  /** Index of entries[0] (the first index the WAL still holds). */
  start: number;
  entries: Entry[] = [];
  hardState: HardState | null = null;
  /** Index and term just before `start`, when known. */
  prev: IndexTerm | null;
  /** The newest snapshot marker seen. */
  snapshotMarker: IndexTerm | null = null;

  constructor(
    first: SegmentHeaderRecord,
    private readonly nodeId: number,
  ) {
    this.start = first.firstIndex;
    this.prev =
      first.snapshotIndex === first.firstIndex - 1
        ? { index: first.snapshotIndex, term: first.snapshotTerm }
        : null;
  }

  get nextIndex(): number {
    return this.start + this.entries.length;
  }

  get lastTerm(): number | null {
    return this.entries[this.entries.length - 1]?.term ?? this.prev?.term ?? null;
  }

  /** Term of the entry at `index`, if the replayed log holds it (or it is `prev`). */
  termAt(index: number): number | null {
    if (index >= this.start && index < this.nextIndex) return this.entries[index - this.start]!.term;
    if (this.prev !== null && index === this.prev.index) return this.prev.term;
    return null;
  }

  /** The header of the second and later segments: it must start where the log ended. */
  beginSegment(h: SegmentHeaderRecord, file: string): void {
    if (h.firstIndex !== this.nextIndex)
      throw corruptError(
        this.nodeId,
        file,
        0,
        `WAL segment starts at index ${h.firstIndex} but the segments before it end at index ${this.nextIndex - 1}: a segment is missing or out of order`,
      );
  }

  apply(r: WalRecord, file: string, offset: number): void {
    const fail = (what: string): never => {
      throw corruptError(this.nodeId, file, offset, what);
    };
    switch (r.type) {
      case "segmentHeader":
        return;
      case "entries":
        for (const e of r.entries) {
          if (e.index > this.nextIndex)
            fail(`gap in the log: entry ${e.index} follows ${this.nextIndex - 1}`);
          if (e.index < this.nextIndex)
            fail(
              `entry ${e.index} rewrites the log (last index ${this.nextIndex - 1}) without a truncate marker`,
            );
          const lastTerm = this.lastTerm;
          if (lastTerm !== null && e.term < lastTerm)
            fail(`term goes backwards: entry ${e.index} has term ${e.term} after term ${lastTerm}`);
          this.entries.push(e);
        }
        return;
      case "truncate":
        if (r.fromIndex > this.nextIndex)
          fail(`truncate marker from index ${r.fromIndex} is beyond the log's end ${this.nextIndex - 1}`);
        if (r.fromIndex >= this.start) {
          this.entries.length = r.fromIndex - this.start;
        } else {
          // Truncating below what these segments hold (older segments were compacted away): the log
          // here restarts at fromIndex; what precedes it is covered by a snapshot or refused later.
          this.entries = [];
          this.start = r.fromIndex;
          this.prev = null;
        }
        return;
      case "hardState": {
        const prev = this.hardState;
        const hs = r.hardState;
        if (prev !== null && hs.term < prev.term)
          fail(`hard state term goes backwards: ${hs.term} after ${prev.term}`);
        if (prev !== null && hs.term === prev.term && prev.votedFor !== null && hs.votedFor !== prev.votedFor)
          fail(`hard state changes its vote within term ${hs.term}: ${prev.votedFor} then ${hs.votedFor}`);
        this.hardState = hs;
        return;
      }
      case "snapshot": {
        if (r.reset) {
          this.entries = [];
          this.start = r.index + 1;
          this.prev = { index: r.index, term: r.term };
        } else {
          const t = this.termAt(r.index);
          if (t !== null && t !== r.term)
            fail(`snapshot marker at index ${r.index} has term ${r.term} but the log has term ${t} there`);
        }
        if (this.snapshotMarker === null || r.index >= this.snapshotMarker.index)
          this.snapshotMarker = { index: r.index, term: r.term };
        return;
      }
    }
  }
}
