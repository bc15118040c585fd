// A deliberately simple model of etcd's MVCC semantics (mvcc-types.ts) for differential tests and
// checkers: the whole key set is copied at every revision, so a read at a revision is a lookup. Slow and
// obviously right; mvcc-store.ts must answer exactly as it does.

import { unreachable } from "../lib/assert.ts";
import { compareBytes } from "../store/store.ts";
import { mvccError } from "./mvcc-store.ts";
import type {
  Compare,
  DeleteRangeResult,
  KeyValue,
  MvccCommand,
  MvccError,
  MvccResult,
  PutOp,
  PutResult,
  RangeOpResult,
  RangeRequest,
  RangeResult,
  RevisionChanges,
  SortTarget,
  TxnOp,
  TxnRequestOp,
  TxnResult,
  WatchEvent,
} from "./mvcc-types.ts";
import { txnIntervalError } from "./mvcc-validate.ts";

type State = ReadonlyMap<string, KeyValue>;

const hexOf = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const EMPTY = new Uint8Array(0);

function inSpan(key: Uint8Array, start: Uint8Array, end: Uint8Array): boolean {
  if (end.length === 0) return compareBytes(key, start) === 0;
  if (compareBytes(key, start) < 0) return false;
  return (end.length === 1 && end[0] === 0) || compareBytes(key, end) < 0;
}

function matching(state: State, key: Uint8Array, end: Uint8Array): KeyValue[] {
  return [...state.values()]
    .filter((kv) => inSpan(kv.key, key, end))
    .sort((a, b) => compareBytes(a.key, b.key));
}

function targetOf(kv: KeyValue, t: SortTarget): number | Uint8Array {
  switch (t) {
    case "key":
      return kv.key;
    case "version":
      return kv.version;
    case "create":
      return kv.createRevision;
    case "mod":
      return kv.modRevision;
    case "value":
      return kv.value;
    default:
      return unreachable(t);
  }
}

function cmp(a: number | Uint8Array, b: number | Uint8Array): number {
  return typeof a === "number" ? a - (b as number) : compareBytes(a, b as Uint8Array);
}

export class MvccModel {
  /** states[r]: the keys at revision r (index 0 unused). */
  private readonly states: State[] = [new Map(), new Map()];
  private compactedAt = 0;
  private readonly leases = new Map<bigint, number>();
  readonly changes: RevisionChanges[] = [];

  get revision(): number {
    return this.states.length - 1;
  }

  get compacted(): number {
    return this.compactedAt;
  }

  private get now(): State {
    return this.states[this.revision]!;
  }

  leaseIds(): bigint[] {
    return [...this.leases.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  range(r: RangeRequest, at: State | null = null): RangeResult | MvccError {
    const rev = r.revision === 0 ? this.revision : r.revision;
    if (at === null) {
      if (rev > this.revision) return mvccError("futureRevision");
      if (rev < this.compactedAt) return mvccError("compacted");
    }
    const state = at !== null && r.revision === 0 ? at : this.states[rev]!;
    const all = matching(state, r.key, r.rangeEnd);
    let kvs = all.filter(
      (kv) =>
        (r.minModRevision === 0 || kv.modRevision >= r.minModRevision) &&
        (r.maxModRevision === 0 || kv.modRevision <= r.maxModRevision) &&
        (r.minCreateRevision === 0 || kv.createRevision >= r.minCreateRevision) &&
        (r.maxCreateRevision === 0 || kv.createRevision <= r.maxCreateRevision),
    );
    const order = r.sortOrder === "none" && r.sortTarget !== "key" ? "ascend" : r.sortOrder;
    if (order !== "none") {
      const s = order === "ascend" ? 1 : -1;
      kvs = [...kvs].sort((a, b) => s * cmp(targetOf(a, r.sortTarget), targetOf(b, r.sortTarget)));
    }
    if (r.countOnly) return { kvs: [], more: false, count: all.length };
    const more = r.limit > 0 && kvs.length > r.limit;
    if (more) kvs = kvs.slice(0, r.limit);
    if (r.keysOnly) kvs = kvs.map((kv) => ({ ...kv, value: EMPTY }));
    return { kvs, more, count: all.length };
  }

  apply(cmd: MvccCommand): MvccResult {
    const rev = this.revision;
    switch (cmd.op) {
      case "put": {
        const err = this.checkPut(cmd);
        if (err !== null) return { ...err, revision: rev };
        const w = new Writing(this.now, rev + 1);
        const result = w.put(cmd);
        return { ...result, revision: this.commit(w) };
      }
      case "deleteRange": {
        const w = new Writing(this.now, rev + 1);
        const result = w.deleteRange(cmd.key, cmd.rangeEnd, cmd.prevKv);
        return { ...result, revision: this.commit(w) };
      }
      case "txn":
        return this.txn(cmd);
      case "compact":
        if (cmd.revision <= this.compactedAt) return { ...mvccError("compacted"), revision: rev };
        if (cmd.revision > rev) return { ...mvccError("futureRevision"), revision: rev };
        this.compactedAt = cmd.revision;
        return { op: "compact", revision: rev };
      case "leaseGrant":
        if (cmd.id === 0n) return { ...mvccError("invalid", "lease id 0 is reserved"), revision: rev };
        if (this.leases.has(cmd.id)) return { ...mvccError("leaseExists"), revision: rev };
        this.leases.set(cmd.id, cmd.ttlSeconds);
        return { op: "leaseGrant", id: cmd.id, ttlSeconds: cmd.ttlSeconds, revision: rev };
      case "leaseRevoke": {
        if (!this.leases.has(cmd.id)) return { ...mvccError("leaseNotFound"), revision: rev };
        this.leases.delete(cmd.id);
        const w = new Writing(this.now, rev + 1);
        for (const kv of matching(this.now, new Uint8Array([0]), new Uint8Array([0])))
          if (kv.lease === cmd.id) w.deleteRange(kv.key, EMPTY, false);
        return { op: "leaseRevoke", revision: this.commit(w) };
      }
      default:
        return unreachable(cmd);
    }
  }

  /** A raftkv.v1 put or delete (no lease). */
  applyKv(op: "put" | "delete", key: Uint8Array, value: Uint8Array): void {
    const w = new Writing(this.now, this.revision + 1);
    if (op === "put") w.set(key, value, 0n);
    else w.deleteRange(key, EMPTY, false);
    this.commit(w);
  }

  private commit(w: Writing): number {
    if (w.events.length === 0) return this.revision;
    this.states.push(w.state);
    this.changes.push({ revision: this.revision, events: w.events });
    return this.revision;
  }

  private checkPut(op: PutOp): MvccError | null {
    if ((op.ignoreValue || op.ignoreLease) && !this.now.has(hexOf(op.key))) return mvccError("keyNotFound");
    if (op.lease !== 0n && !this.leases.has(op.lease)) return mvccError("leaseNotFound");
    return null;
  }

  private compares(cs: readonly Compare[]): boolean {
    return cs.every((c) => {
      const kvs = matching(this.now, c.key, c.rangeEnd);
      if (kvs.length === 0) return c.against.target !== "value" && holds(c, null);
      return kvs.every((kv) => holds(c, kv));
    });
  }

  private txn(cmd: TxnOp): MvccResult {
    const rev = this.revision;
    const dup = txnIntervalError(cmd);
    if (dup !== null) return { ...dup, revision: rev };
    // Flatten the path chosen against the state before the txn, and check its ops first.
    const ops: TxnRequestOp[] = [];
    const choose = (t: TxnOp): boolean[] => {
      const ok = this.compares(t.compare);
      const picks = [ok];
      for (const op of ok ? t.success : t.failure) {
        if (op.op === "txn") picks.push(...choose(op));
        else ops.push(op);
      }
      return picks;
    };
    const picks = choose(cmd);
    for (const op of ops) {
      const err = op.op === "put" ? this.checkPut(op) : null;
      if (err !== null) return { ...err, revision: rev };
    }
    for (const op of ops) {
      if (op.op !== "range") continue;
      if (op.request.revision > rev) return { ...mvccError("futureRevision"), revision: rev };
      if (op.request.revision > 0 && op.request.revision < this.compactedAt)
        return { ...mvccError("compacted"), revision: rev };
    }
    const w = new Writing(this.now, rev + 1);
    let p = 0;
    const run = (t: TxnOp): TxnResult => {
      const succeeded = picks[p++]!;
      const responses: (PutResult | DeleteRangeResult | RangeOpResult | TxnResult)[] = [];
      for (const op of succeeded ? t.success : t.failure) {
        if (op.op === "put") responses.push(w.put(op));
        else if (op.op === "deleteRange") responses.push(w.deleteRange(op.key, op.rangeEnd, op.prevKv));
        else if (op.op === "txn") responses.push(run(op));
        else responses.push({ op: "range", result: this.range(op.request, w.state) as RangeResult });
      }
      return { op: "txn", succeeded, responses };
    };
    const result = run(cmd);
    return { ...result, revision: this.commit(w) };
  }
}

function holds(c: Compare, kv: KeyValue | null): boolean {
  const a = c.against;
  let d: number;
  if (a.target === "value") d = compareBytes(kv?.value ?? EMPTY, a.value);
  else if (a.target === "lease") {
    const l = kv?.lease ?? 0n;
    d = l === a.lease ? 0 : l < a.lease ? -1 : 1;
  } else if (a.target === "version") d = (kv?.version ?? 0) - a.version;
  else if (a.target === "create") d = (kv?.createRevision ?? 0) - a.createRevision;
  else d = (kv?.modRevision ?? 0) - a.modRevision;
  return { equal: d === 0, notEqual: d !== 0, greater: d > 0, less: d < 0 }[c.result];
}

/** One write request on a copy of the state. */
class Writing {
  readonly state: Map<string, KeyValue>;
  readonly events: WatchEvent[] = [];

  constructor(
    from: State,
    private readonly revision: number,
  ) {
    this.state = new Map(from);
  }

  set(key: Uint8Array, value: Uint8Array, lease: bigint): KeyValue | null {
    const old = this.state.get(hexOf(key)) ?? null;
    const kv: KeyValue = {
      key,
      value,
      lease,
      createRevision: old?.createRevision ?? this.revision,
      modRevision: this.revision,
      version: (old?.version ?? 0) + 1,
    };
    this.state.set(hexOf(key), kv);
    this.events.push({ type: "put", kv, prevKv: old });
    return old;
  }

  put(op: PutOp): PutResult {
    const old = this.state.get(hexOf(op.key)) ?? null;
    const prev = this.set(
      op.key,
      op.ignoreValue && old !== null ? old.value : op.value,
      op.ignoreLease && old !== null ? old.lease : op.lease,
    );
    return { op: "put", prevKv: op.prevKv ? prev : null };
  }

  deleteRange(key: Uint8Array, end: Uint8Array, prevKv: boolean): DeleteRangeResult {
    const gone = matching(this.state, key, end);
    for (const kv of gone) {
      this.state.delete(hexOf(kv.key));
      const tomb: KeyValue = {
        key: kv.key,
        value: EMPTY,
        lease: 0n,
        createRevision: 0,
        modRevision: this.revision,
        version: 0,
      };
      this.events.push({ type: "delete", kv: tomb, prevKv: kv });
    }
    return { op: "deleteRange", deleted: gone.length, prevKvs: prevKv ? gone : [] };
  }
}
