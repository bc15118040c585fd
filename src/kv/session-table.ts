// Client sessions for exactly-once writes (thesis §6.3): the last seq and result per client, bounded.
//
// A write carrying (clientId, seq) runs only if seq is above the client's last applied seq. A retry
// of the last seq gets the cached result; an older seq gets a "stale sequence number" error. At most
// `maxSessions` clients are remembered; past that, the session with the oldest last-applied index is
// evicted. Every replica applies the same entries, so every replica evicts the same client. As in the
// thesis and etcd, an evicted client that retries a write will have it applied a second time; the
// limit must be large enough that only long-idle clients are evicted, and the same on every replica.
// Worst-case memory is maxSessions cached results (a failed cas caches the current value).

import { assert } from "../lib/assert.ts";
import { RaftKvError } from "../lib/errors.ts";
import type { ClientSession } from "./command.ts";
import type { ErrorResult, KvResult } from "./result.ts";

export const DEFAULT_MAX_SESSIONS = 10_000;

export const STALE_SEQUENCE: ErrorResult = { type: "error", message: "stale sequence number" };

export interface Session {
  /** Last applied sequence number. */
  readonly seq: number;
  /** Log index that applied it. */
  readonly index: number;
  readonly result: KvResult;
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

  /** The result to return instead of applying `s` again, or null when `s` is new and should apply. */
  check(s: ClientSession): KvResult | null {
    const last = this.sessions.get(s.clientId);
    if (last === undefined || s.seq > last.seq) return null;
    return s.seq === last.seq ? last.result : STALE_SEQUENCE;
  }

  /** Records the result of a write applied at `index`, evicting the oldest session past the limit;
   *  returns the client evicted, or null. */
  record(clientId: string, seq: number, index: number, result: KvResult): string | null {
    assert(index > this.lastIndex, () => `session index ${index} not after ${this.lastIndex}`);
    const last = this.sessions.get(clientId);
    assert(last === undefined || seq > last.seq, () => `seq ${seq} of ${clientId} not new`);
    this.lastIndex = index;
    this.sessions.set(clientId, { seq, index, result });
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

  /** Loads sessions from a snapshot, oldest first (already validated); keeps the newest maxSessions. */
  load(entries: readonly (readonly [string, Session])[]): void {
    assert(this.sessions.size === 0, () => "load into a non-empty session table");
    for (const [clientId, s] of entries.slice(Math.max(0, entries.length - this.maxSessions))) {
      this.record(clientId, s.seq, s.index, s.result);
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
