// Client sessions for exactly-once writes (thesis §6.3): per client, the writes applied within a window of
// sequence numbers and their results, bounded.
//
// A write carrying (clientId, seq) runs unless it was applied before. A client may have up to
// WRITES_IN_FLIGHT_PER_CLIENT writes in flight on one id, which the log may order differently from their
// seqs (a pipelining client, a retry that overtakes): every seq in (highest - window, highest] is
// remembered as applied or not, so a write of that window that never applied still applies, once, and a
// retry of one that did gets its cached result. A seq at or below highest - window is refused
// (STALE_SEQUENCE, "stale sequence number"): it may or may not have applied before, and its result is
// gone. At most `maxSessions` clients are remembered; past that, the session whose last write has the
// oldest log index is evicted. Every replica applies the same entries, so every replica evicts the same
// client. As in the thesis and etcd, an evicted client that retries a write will have it applied a second
// time; the limit must be large enough that only long-idle clients are evicted, and the same on every
// replica. Worst-case memory is maxSessions x WRITES_IN_FLIGHT_PER_CLIENT cached results (a failed cas
// caches the current value).

import { assert } from "../lib/assert.ts";
import { RaftKvError } from "../lib/errors.ts";
import type { ClientSession } from "./command.ts";
import type { ErrorResult, KvResult } from "./result.ts";

export const DEFAULT_MAX_SESSIONS = 10_000;

/** Writes one client id may have in flight at once (Kafka's idempotent producer allows 5): the window of
 *  seqs below the highest applied one whose outcome is remembered. Part of the replicated state's rules:
 *  the same on every replica (a constant, not a setting), and in the snapshot format. */
export const WRITES_IN_FLIGHT_PER_CLIENT = 5;

export const STALE_SEQUENCE: ErrorResult = {
  type: "error",
  message: `stale sequence number: ${WRITES_IN_FLIGHT_PER_CLIENT} or more below the highest applied for this client id (at most ${WRITES_IN_FLIGHT_PER_CLIENT} writes may be in flight per client id)`,
};

export interface SessionWrite {
  readonly seq: number;
  /** Log index that applied it. */
  readonly index: number;
  readonly result: KvResult;
}

export interface Session {
  /** The writes applied with a seq in the window (highest - WRITES_IN_FLIGHT_PER_CLIENT, highest],
   *  ascending by seq; never empty (the highest is always there). */
  readonly writes: readonly SessionWrite[];
  /** The highest log index among them: the session's age for eviction. */
  readonly index: number;
}

/** The highest seq the session applied. */
export function highestSeq(s: Session): number {
  return s.writes[s.writes.length - 1]!.seq;
}

export class SessionTable {
  private readonly sessions = new Map<string, Session>();
  // Eviction queue in ascending index order with lazy deletion: an entry is live only while its
  // client's session still has that index. (A Map used as a queue is O(holes) per eviction in V8.)
  private queueIds: string[] = [];
  private queueIndexes: number[] = [];
  private head = 0;
  private lastIndex = 0;

  constructor(readonly maxSessions: number = DEFAULT_MAX_SESSIONS) {
    if (!Number.isSafeInteger(maxSessions) || maxSessions < 1) {
      throw new RaftKvError({
        code: "CONFIG",
        message: `maxSessions must be a safe integer >= 1, got ${maxSessions}`,
        hint: "use the same value on every replica",
      });
    }
  }

  get size(): number {
    return this.sessions.size;
  }

  /** The result to return instead of applying `s`, or null when `s` has not applied and should. */
  check(s: ClientSession): KvResult | null {
    const last = this.sessions.get(s.clientId);
    if (last === undefined) return null;
    const highest = highestSeq(last);
    if (s.seq > highest) return null;
    if (s.seq <= highest - WRITES_IN_FLIGHT_PER_CLIENT) return STALE_SEQUENCE;
    for (const w of last.writes) if (w.seq === s.seq) return w.result;
    return null; // in the window and never applied: a write that the log ordered after a later one
  }

  /** Records the result of a write applied at `index` (check() said it should apply), evicting the
   *  oldest session past the limit; returns the client evicted, or null. */
  record(clientId: string, seq: number, index: number, result: KvResult): string | null {
    assert(index > this.lastIndex, () => `session index ${index} not after ${this.lastIndex}`);
    const last = this.sessions.get(clientId);
    const writes: SessionWrite[] = [];
    if (last !== undefined) {
      const highest = highestSeq(last);
      assert(
        seq > highest - WRITES_IN_FLIGHT_PER_CLIENT && last.writes.every((w) => w.seq !== seq),
        () => `seq ${seq} of ${clientId} not new (highest ${highest})`,
      );
      const top = Math.max(seq, highest);
      for (const w of last.writes) if (w.seq > top - WRITES_IN_FLIGHT_PER_CLIENT) writes.push(w);
    }
    let at = writes.length;
    while (at > 0 && writes[at - 1]!.seq > seq) at--;
    writes.splice(at, 0, { seq, index, result });
    this.lastIndex = index;
    this.sessions.set(clientId, { writes, index });
    this.queueIds.push(clientId);
    this.queueIndexes.push(index);
    const evicted = this.sessions.size > this.maxSessions ? this.evictOldest() : null;
    if (this.queueIds.length > 2 * this.sessions.size + 1024) this.compact();
    return evicted;
  }

  get(clientId: string): Session | undefined {
    return this.sessions.get(clientId);
  }

  /** Sessions, oldest last-applied index first. */
  *entries(): IterableIterator<[string, Session]> {
    for (let i = this.head; i < this.queueIds.length; i++) {
      const s = this.liveAt(i);
      if (s !== undefined) yield [this.queueIds[i]!, s];
    }
  }

  /** Loads sessions from a snapshot, oldest first (already validated: each session's writes ascending
   *  by seq within the window, its index their highest); keeps the newest maxSessions. */
  load(entries: readonly (readonly [string, Session])[]): void {
    assert(this.sessions.size === 0, () => "load into a non-empty session table");
    for (const [clientId, s] of entries.slice(Math.max(0, entries.length - this.maxSessions))) {
      assert(s.index > this.lastIndex, () => `session index ${s.index} not after ${this.lastIndex}`);
      this.lastIndex = s.index;
      this.sessions.set(clientId, { writes: [...s.writes], index: s.index });
      this.queueIds.push(clientId);
      this.queueIndexes.push(s.index);
    }
  }

  private liveAt(i: number): Session | undefined {
    const s = this.sessions.get(this.queueIds[i]!);
    return s !== undefined && s.index === this.queueIndexes[i] ? s : undefined;
  }

  private evictOldest(): string {
    for (; this.head < this.queueIds.length; this.head++) {
      if (this.liveAt(this.head) !== undefined) {
        const clientId = this.queueIds[this.head]!;
        this.sessions.delete(clientId);
        this.head++;
        return clientId;
      }
    }
    assert(false, () => "evict from an empty session table");
  }

  /** Drops dead queue entries; called when they outnumber live ones, so amortized O(1) per record. */
  private compact(): void {
    const ids: string[] = [];
    const indexes: number[] = [];
    for (let i = this.head; i < this.queueIds.length; i++) {
      if (this.liveAt(i) === undefined) continue;
      ids.push(this.queueIds[i]!);
      indexes.push(this.queueIndexes[i]!);
    }
    this.queueIds = ids;
    this.queueIndexes = indexes;
    this.head = 0;
  }
}
