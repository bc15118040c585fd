// An in-memory MvccApi for the etcd adapter's tests: one node's MVCC store (etcd's revisions, history,
// tombstones, compaction, txn, leases, watch), applied synchronously. It is not Raft: there is one
// replica and no log; what it serves is real (every answer comes from the data it holds). Lease expiry
// runs on the clock passed in (`expireLeases` is driven by the owner); the adapter never sees it.

import { compareBytes, inRange } from "../../src/etcd/keys.ts";
import type {
  Bytes,
  CompactOp,
  Compare,
  DeleteRangeOp,
  DeleteRangeResult,
  KeyValue,
  LeaseInfo,
  MvccError,
  MvccErrorCode,
  MvccResult,
  PutOp,
  PutResult,
  RangeOpResult,
  RangeRequest,
  RangeResult,
  TxnOp,
  TxnRequestOp,
  TxnResult,
  WatchEvent,
} from "../../src/kv/mvcc-types.ts";
import { crc32c } from "../../src/lib/crc32c.ts";
import type {
  MvccApi,
  MvccConsistency,
  MvccHeader,
  WatchDelivery,
  WatchHandle,
  WatchRequest,
} from "../../src/server/mvcc-api.ts";

/** One incarnation's version of a key, or a tombstone (`deleted`). */
interface Version {
  readonly kv: KeyValue;
  readonly deleted: boolean;
}

interface Lease {
  readonly id: bigint;
  readonly grantedTtlSeconds: number;
  expiresAtMs: number;
  readonly keys: Map<string, Bytes>;
}

interface Watcher {
  readonly request: WatchRequest;
  readonly onDelivery: (d: WatchDelivery) => void;
  /** Next revision it has not seen. */
  next: number;
  open: boolean;
}

class TxnFailure {
  constructor(readonly error: MvccError) {}
}

export interface MvccTwinOptions {
  readonly nowMs: () => number;
  /** The answer bound of every range (MvccApi's maxRangeItems). */
  readonly maxRangeItems?: number;
  readonly raftTerm?: number;
}

const name = (k: Bytes): string => Buffer.from(k).toString("latin1");

export class MvccTwin implements MvccApi {
  private readonly o: MvccTwinOptions;
  private current = 1;
  private compacted = 0;
  /** Every key's versions, oldest first (compaction drops those no read can see). */
  private readonly keys = new Map<string, Version[]>();
  /** The changes of each revision above the compacted one (for watchers that start in the past). */
  private readonly history: { revision: number; events: WatchEvent[] }[] = [];
  private readonly leaseTable = new Map<bigint, Lease>();
  private readonly watchers = new Set<Watcher>();
  private nextLeaseId = 0x694d_0000_0000n;
  /** Changes of the write being applied. */
  private pending: WatchEvent[] = [];

  constructor(o: MvccTwinOptions) {
    this.o = o;
  }

  // ---------------------------------------------------------------- MvccApi

  async range(
    request: RangeRequest,
    _consistency: MvccConsistency,
    _budgetMs: number,
  ): Promise<{ header: MvccHeader; result: RangeResult } | { header: MvccHeader; error: MvccError }> {
    const r = this.rangeAt(request);
    return r instanceof TxnFailure
      ? { header: this.header(), error: r.error }
      : { header: this.header(), result: r };
  }

  async write(
    command: PutOp | DeleteRangeOp | TxnOp | CompactOp,
    _budgetMs: number,
  ): Promise<{ header: MvccHeader; result: MvccResult }> {
    if (command.op === "compact") return { header: this.header(), result: this.compact(command.revision) };
    this.pending = [];
    try {
      const result = this.applyOp(command, this.current + 1);
      const changed = this.commit();
      return { header: this.header(), result: { ...result, revision: changed } } as {
        header: MvccHeader;
        result: MvccResult;
      };
    } catch (e) {
      if (!(e instanceof TxnFailure)) throw e;
      this.rollback();
      return { header: this.header(), result: { ...e.error, revision: this.current } };
    }
  }

  async leaseGrant(
    id: bigint,
    ttlSeconds: number,
    _budgetMs: number,
  ): Promise<{ header: MvccHeader; result: MvccResult }> {
    const leaseId = id === 0n ? this.nextLeaseId++ : id;
    if (this.leaseTable.has(leaseId))
      return { header: this.header(), result: this.error("leaseExists", "lease already exists") };
    this.leaseTable.set(leaseId, {
      id: leaseId,
      grantedTtlSeconds: ttlSeconds,
      expiresAtMs: this.o.nowMs() + ttlSeconds * 1000,
      keys: new Map(),
    });
    return {
      header: this.header(),
      result: { op: "leaseGrant", id: leaseId, ttlSeconds, revision: this.current },
    };
  }

  async leaseRevoke(id: bigint, _budgetMs: number): Promise<{ header: MvccHeader; result: MvccResult }> {
    const lease = this.leaseTable.get(id);
    if (lease === undefined)
      return { header: this.header(), result: this.error("leaseNotFound", "requested lease not found") };
    this.revoke(lease);
    return { header: this.header(), result: { op: "leaseRevoke", revision: this.current } };
  }

  async leaseKeepAlive(id: bigint): Promise<{ header: MvccHeader; ttlSeconds: number | null }> {
    const lease = this.leaseTable.get(id);
    if (lease === undefined) return { header: this.header(), ttlSeconds: null };
    lease.expiresAtMs = this.o.nowMs() + lease.grantedTtlSeconds * 1000;
    return { header: this.header(), ttlSeconds: lease.grantedTtlSeconds };
  }

  async leaseTimeToLive(
    id: bigint,
    withKeys: boolean,
  ): Promise<{ header: MvccHeader; info: (LeaseInfo & { ttlSeconds: number }) | null }> {
    const lease = this.leaseTable.get(id);
    if (lease === undefined) return { header: this.header(), info: null };
    const keys = withKeys ? [...lease.keys.values()].sort(compareBytes) : [];
    const ttlSeconds = Math.max(0, Math.floor((lease.expiresAtMs - this.o.nowMs()) / 1000));
    return {
      header: this.header(),
      info: { id, grantedTtlSeconds: lease.grantedTtlSeconds, keys, ttlSeconds },
    };
  }

  async leases(): Promise<{ header: MvccHeader; ids: readonly bigint[] }> {
    return { header: this.header(), ids: [...this.leaseTable.keys()] };
  }

  watch(request: WatchRequest, onDelivery: (d: WatchDelivery) => void): WatchHandle {
    const w: Watcher = {
      request,
      onDelivery,
      next: request.startRevision === 0 ? this.current + 1 : request.startRevision,
      open: true,
    };
    queueMicrotask(() => {
      if (!w.open) return;
      if (w.next < this.compacted) {
        w.open = false;
        onDelivery({
          kind: "canceled",
          reason: "mvcc: required revision has been compacted",
          compactRevision: this.compacted,
        });
        return;
      }
      this.watchers.add(w);
      for (const h of this.history) if (h.revision >= w.next) this.deliver(w, h.revision, h.events);
      w.next = Math.max(w.next, this.current + 1);
    });
    return {
      cancel: () => {
        w.open = false;
        this.watchers.delete(w);
      },
      requestProgress: () =>
        queueMicrotask(() => {
          if (w.open) onDelivery({ kind: "progress", revision: this.current });
        }),
    };
  }

  revisions(): { current: number; compacted: number } {
    return { current: this.current, compacted: this.compacted };
  }

  async hashKv(revision: number): Promise<{ header: MvccHeader; hash: number; compactRevision: number }> {
    const upTo = revision === 0 ? this.current : revision;
    let hash = 0;
    for (const k of [...this.keys.keys()].sort()) {
      for (const v of this.keys.get(k)!) {
        if (v.kv.modRevision > upTo) continue;
        hash = crc32c(v.kv.key, hash);
        hash = crc32c(Uint8Array.of(v.deleted ? 1 : 0, v.kv.modRevision & 0xff), hash);
        hash = crc32c(v.kv.value, hash);
      }
    }
    return { header: this.header(), hash, compactRevision: this.compacted };
  }

  // ---------------------------------------------------------------- owner's controls

  /** Revokes every lease whose TTL ran out (the owner calls it on a timer). */
  expireLeases(): void {
    const now = this.o.nowMs();
    for (const lease of [...this.leaseTable.values()]) if (lease.expiresAtMs <= now) this.revoke(lease);
  }

  /** Cancels every watcher, as a stopping node does. */
  close(): void {
    for (const w of this.watchers) {
      w.open = false;
      w.onDelivery({ kind: "canceled", reason: "the node is stopping", compactRevision: 0 });
    }
    this.watchers.clear();
  }

  // ---------------------------------------------------------------- applying

  private applyOp(op: TxnRequestOp, rev: number): PutResult | DeleteRangeResult | RangeOpResult | TxnResult {
    switch (op.op) {
      case "put":
        return this.put(op, rev);
      case "deleteRange":
        return this.deleteRange(op, rev);
      case "range": {
        const r = this.rangeAt(op.request, rev);
        if (r instanceof TxnFailure) throw r;
        return { op: "range", result: r };
      }
      case "txn": {
        const succeeded = op.compare.every((c) => this.compare(c, rev));
        const branch = succeeded ? op.success : op.failure;
        return { op: "txn", succeeded, responses: branch.map((o) => this.applyOp(o, rev)) };
      }
      default: {
        const never: never = op;
        return never;
      }
    }
  }

  private put(op: PutOp, rev: number): PutResult {
    const prev = this.live(op.key, rev);
    if ((op.ignoreValue || op.ignoreLease) && prev === null)
      throw this.failure("keyNotFound", "key not found");
    const lease = op.ignoreLease ? prev!.lease : op.lease;
    if (lease !== 0n && !this.leaseTable.has(lease))
      throw this.failure("leaseNotFound", "requested lease not found");
    const kv: KeyValue = {
      key: op.key,
      createRevision: prev?.createRevision ?? rev,
      modRevision: rev,
      version: (prev?.version ?? 0) + 1,
      value: op.ignoreValue ? prev!.value : op.value,
      lease,
    };
    this.record(kv, false);
    if (prev !== null && prev.lease !== 0n) this.leaseTable.get(prev.lease)?.keys.delete(name(op.key));
    if (lease !== 0n) this.leaseTable.get(lease)!.keys.set(name(op.key), op.key);
    this.pending.push({ type: "put", kv, prevKv: prev });
    return { op: "put", prevKv: op.prevKv ? prev : null };
  }

  private deleteRange(op: DeleteRangeOp, rev: number): DeleteRangeResult {
    const doomed = this.liveIn(op.key, op.rangeEnd, rev);
    for (const prev of doomed) {
      const kv: KeyValue = {
        key: prev.key,
        createRevision: 0,
        modRevision: rev,
        version: 0,
        value: new Uint8Array(0),
        lease: 0n,
      };
      this.record(kv, true);
      if (prev.lease !== 0n) this.leaseTable.get(prev.lease)?.keys.delete(name(prev.key));
      this.pending.push({ type: "delete", kv, prevKv: prev });
    }
    return { op: "deleteRange", deleted: doomed.length, prevKvs: op.prevKv ? doomed : [] };
  }

  private revoke(lease: Lease): void {
    this.leaseTable.delete(lease.id);
    this.pending = [];
    const rev = this.current + 1;
    for (const key of [...lease.keys.values()].sort(compareBytes))
      this.deleteRange({ op: "deleteRange", key, rangeEnd: new Uint8Array(0), prevKv: false }, rev);
    this.commit();
  }

  private compact(revision: number): MvccResult {
    if (revision <= this.compacted)
      return this.error("compacted", "mvcc: required revision has been compacted");
    if (revision > this.current)
      return this.error("futureRevision", "mvcc: required revision is a future revision");
    this.compacted = revision;
    for (const [k, versions] of this.keys) {
      let keepFrom = 0;
      for (let i = 0; i < versions.length; i++) if (versions[i]!.kv.modRevision <= revision) keepFrom = i;
      const kept = versions.slice(keepFrom);
      if (kept[0]!.deleted && kept[0]!.kv.modRevision <= revision) kept.shift();
      if (kept.length === 0) this.keys.delete(k);
      else this.keys.set(k, kept);
    }
    while (this.history.length > 0 && this.history[0]!.revision < revision) this.history.shift();
    return { op: "compact", revision: this.current };
  }

  /** Ends a write: the revision it made (or the current one when it changed nothing). */
  private commit(): number {
    const events = this.pending;
    this.pending = [];
    if (events.length === 0) return this.current;
    this.current++;
    this.history.push({ revision: this.current, events });
    for (const w of this.watchers) if (w.next <= this.current) this.deliver(w, this.current, events);
    return this.current;
  }

  /** Undoes the versions the failed write recorded (they all carry the next revision). */
  private rollback(): void {
    const rev = this.current + 1;
    for (const [k, versions] of this.keys) {
      while (versions.length > 0 && versions.at(-1)!.kv.modRevision === rev) versions.pop();
      if (versions.length === 0) this.keys.delete(k);
    }
    for (const e of this.pending) {
      if (e.prevKv !== null && e.prevKv.lease !== 0n)
        this.leaseTable.get(e.prevKv.lease)?.keys.set(name(e.kv.key), e.kv.key);
      if (e.type === "put" && e.kv.lease !== 0n && e.kv.lease !== e.prevKv?.lease)
        this.leaseTable.get(e.kv.lease)?.keys.delete(name(e.kv.key));
    }
    this.pending = [];
  }

  private deliver(w: Watcher, revision: number, events: readonly WatchEvent[]): void {
    const r = w.request;
    const mine = events
      .filter((e) => inRange(e.kv.key, r.key, r.rangeEnd))
      .filter((e) => !(e.type === "put" && r.noPut) && !(e.type === "delete" && r.noDelete))
      .map((e) => (r.prevKv ? e : { ...e, prevKv: null }));
    w.next = revision + 1;
    if (mine.length > 0) w.onDelivery({ kind: "events", revision, events: mine });
  }

  private record(kv: KeyValue, deleted: boolean): void {
    const k = name(kv.key);
    const versions = this.keys.get(k) ?? [];
    const last = versions.at(-1);
    if (last !== undefined && last.kv.modRevision === kv.modRevision) versions.pop(); // same txn, later op wins
    versions.push({ kv, deleted });
    this.keys.set(k, versions);
  }

  // ---------------------------------------------------------------- reading

  /** The key as of `rev` (the pending write's revision included), or null. */
  private live(key: Bytes, rev: number): KeyValue | null {
    const versions = this.keys.get(name(key));
    if (versions === undefined) return null;
    for (let i = versions.length - 1; i >= 0; i--) {
      const v = versions[i]!;
      if (v.kv.modRevision <= rev) return v.deleted ? null : v.kv;
    }
    return null;
  }

  private liveIn(key: Bytes, rangeEnd: Bytes, rev: number): KeyValue[] {
    const out: KeyValue[] = [];
    for (const versions of this.keys.values()) {
      const k = versions[0]!.kv.key;
      if (!inRange(k, key, rangeEnd)) continue;
      const kv = this.live(k, rev);
      if (kv !== null) out.push(kv);
    }
    return out.sort((a, b) => compareBytes(a.key, b.key));
  }

  private rangeAt(q: RangeRequest, pendingRev?: number): RangeResult | TxnFailure {
    const rev = q.revision === 0 ? (pendingRev ?? this.current) : q.revision;
    if (q.revision !== 0) {
      if (q.revision < this.compacted)
        return this.failure("compacted", "mvcc: required revision has been compacted");
      if (q.revision > this.current)
        return this.failure("futureRevision", "mvcc: required revision is a future revision");
    }
    const all = this.liveIn(q.key, q.rangeEnd, rev);
    let kvs = all.filter(
      (kv) =>
        (q.minModRevision === 0 || kv.modRevision >= q.minModRevision) &&
        (q.maxModRevision === 0 || kv.modRevision <= q.maxModRevision) &&
        (q.minCreateRevision === 0 || kv.createRevision >= q.minCreateRevision) &&
        (q.maxCreateRevision === 0 || kv.createRevision <= q.maxCreateRevision),
    );
    const order = q.sortOrder === "none" && q.sortTarget !== "key" ? "ascend" : q.sortOrder;
    if (order !== "none") {
      const by = sortKey(q.sortTarget);
      kvs = [...kvs].sort((a, b) => (order === "ascend" ? by(a, b) : by(b, a)));
    }
    const max = this.o.maxRangeItems ?? 1000;
    const limit = q.limit === 0 ? max : Math.min(q.limit, max);
    const more = kvs.length > limit;
    if (q.countOnly) return { kvs: [], more: false, count: all.length };
    kvs = kvs.slice(0, limit);
    if (q.keysOnly) kvs = kvs.map((kv) => ({ ...kv, value: new Uint8Array(0) }));
    return { kvs, more, count: all.length };
  }

  private compare(c: Compare, rev: number): boolean {
    const kvs =
      c.rangeEnd.length === 0
        ? [this.live(c.key, rev)].filter((kv) => kv !== null)
        : this.liveIn(c.key, c.rangeEnd, rev);
    if (kvs.length === 0) {
      if (c.against.target === "value") return false;
      return compareOne(c, {
        key: c.key,
        createRevision: 0,
        modRevision: 0,
        version: 0,
        value: new Uint8Array(0),
        lease: 0n,
      });
    }
    return kvs.every((kv) => compareOne(c, kv));
  }

  private header(): MvccHeader {
    return { revision: this.current, raftTerm: this.o.raftTerm ?? 1 };
  }

  private error(code: MvccErrorCode, message: string): MvccError & { revision: number } {
    return { op: "error", code, message, revision: this.current };
  }

  private failure(code: MvccErrorCode, message: string): TxnFailure {
    return new TxnFailure({ op: "error", code, message });
  }
}

function compareOne(c: Compare, kv: KeyValue): boolean {
  const a = c.against;
  let d: number;
  switch (a.target) {
    case "version":
      d = kv.version - a.version;
      break;
    case "create":
      d = kv.createRevision - a.createRevision;
      break;
    case "mod":
      d = kv.modRevision - a.modRevision;
      break;
    case "value":
      d = compareBytes(kv.value, a.value);
      break;
    case "lease":
      d = kv.lease === a.lease ? 0 : kv.lease < a.lease ? -1 : 1;
      break;
  }
  switch (c.result) {
    case "equal":
      return d === 0;
    case "notEqual":
      return d !== 0;
    case "greater":
      return d > 0;
    case "less":
      return d < 0;
  }
}

function sortKey(target: RangeRequest["sortTarget"]): (a: KeyValue, b: KeyValue) => number {
  switch (target) {
    case "key":
      return (a, b) => compareBytes(a.key, b.key);
    case "version":
      return (a, b) => a.version - b.version;
    case "create":
      return (a, b) => a.createRevision - b.createRevision;
    case "mod":
      return (a, b) => a.modRevision - b.modRevision;
    case "value":
      return (a, b) => compareBytes(a.value, b.value);
  }
}
