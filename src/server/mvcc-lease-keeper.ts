// TTL leases under Raft (issue 18): expiry is decided here, by the leader's monotonic clock, and takes
// effect only through the log (a LeaseRevoke proposal); the state machine never reads a clock. The
// keeper tracks a deadline per lease while this node leads. When it becomes leader every lease's full
// TTL starts again (etcd's Promote: no key expires because of an election), and so does any lease it
// finds in the state that it did not track yet (granted under the previous leader). Keepalives reach
// the leader only. Followers track nothing.

import type { MonotonicTime } from "../clock/monotonic-clock.ts";

export interface LeaseKeeperSource {
  /** Whether this node is the leader now. */
  isLeader(): boolean;
  /** The leases in the applied state, with their granted TTLs. */
  leases(): readonly { readonly id: bigint; readonly ttlSeconds: number }[];
  /** Proposes revoking `id`; resolves when applied (or rejects). */
  revoke(id: bigint): Promise<unknown>;
}

export interface LeaseKeeperOptions {
  readonly clock: MonotonicTime;
  /** How long after a failed revoke proposal it is tried again. */
  readonly retryMs: number;
}

interface Tracked {
  ttlSeconds: number;
  deadlineMs: number;
  /** A revoke proposal is in flight (or failed at this time: retry after retryMs). */
  revoking: boolean;
  failedAtMs: number | null;
}

export class LeaseKeeper {
  private readonly tracked = new Map<bigint, Tracked>();
  private leading = false;

  constructor(
    private readonly source: LeaseKeeperSource,
    private readonly o: LeaseKeeperOptions,
  ) {}

  /** Called periodically (every few hundred ms): follows leadership, the applied leases, and expiry. */
  check(): void {
    const now = this.o.clock.nowMs();
    const leader = this.source.isLeader();
    if (!leader) {
      this.leading = false;
      this.tracked.clear();
      return;
    }
    if (!this.leading) {
      this.leading = true;
      this.tracked.clear(); // every lease starts its TTL again under this leader
    }
    const live = new Set<bigint>();
    for (const l of this.source.leases()) {
      live.add(l.id);
      if (!this.tracked.has(l.id))
        this.tracked.set(l.id, {
          ttlSeconds: l.ttlSeconds,
          deadlineMs: now + l.ttlSeconds * 1000,
          revoking: false,
          failedAtMs: null,
        });
    }
    for (const [id, t] of this.tracked) {
      if (!live.has(id)) {
        if (!t.revoking) this.tracked.delete(id); // revoked, or not applied here yet after a grant
        continue;
      }
      if (now < t.deadlineMs || t.revoking) continue;
      if (t.failedAtMs !== null && now - t.failedAtMs < this.o.retryMs) continue;
      this.expire(id, t);
    }
  }

  private expire(id: bigint, t: Tracked): void {
    t.revoking = true;
    this.source.revoke(id).then(
      () => {
        this.tracked.delete(id);
      },
      () => {
        t.revoking = false;
        t.failedAtMs = this.o.clock.nowMs();
      },
    );
  }

  /** A lease this leader granted: its TTL runs from now. */
  granted(id: bigint, ttlSeconds: number): void {
    if (!this.leading) return;
    this.tracked.set(id, {
      ttlSeconds,
      deadlineMs: this.o.clock.nowMs() + ttlSeconds * 1000,
      revoking: false,
      failedAtMs: null,
    });
  }

  /** Renews `id` at this leader; the TTL granted, or null when there is no such lease (or it is being
   *  revoked). Call on the leader only (check() first, so that leadership is current). */
  keepAlive(id: bigint, ttlSeconds: number | null): number | null {
    if (ttlSeconds === null) return null;
    const t = this.tracked.get(id);
    if (t?.revoking) return null;
    this.tracked.set(id, {
      ttlSeconds,
      deadlineMs: this.o.clock.nowMs() + ttlSeconds * 1000,
      revoking: false,
      failedAtMs: null,
    });
    return ttlSeconds;
  }

  /** Seconds left of `id` at this leader (rounded up), or null if untracked. */
  remainingSeconds(id: bigint): number | null {
    const t = this.tracked.get(id);
    if (t === undefined) return null;
    return Math.max(0, Math.ceil((t.deadlineMs - this.o.clock.nowMs()) / 1000));
  }

  get size(): number {
    return this.tracked.size;
  }
}
