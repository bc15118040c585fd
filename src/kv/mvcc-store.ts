// etcd's MVCC data model on the Store (issue 18): revisions, per-key history with tombstones, reads at a
// past revision, Range with its options, Put/DeleteRange/Txn, Compact, leases as log commands, and the
// change list of each revision for watchers. Pure and deterministic: what apply writes depends only on
// the store and the command. The table layout is mvcc-layout.ts; the semantics are mvcc-types.ts.
//
// Writes happen inside a store batch the caller opens (StoreStateMachine: one batch per applied entry or
// batch of entries); each write request is one WriteTxn, which takes the next revision on its first
// change. Changes are held until the caller drains them after the batch is written.

import { AssertionError, assert, unreachable } from "../lib/assert.ts";
import { crc32c } from "../lib/crc32c.ts";
import { compareBytes, type StoreReader, type StoreWriter } from "../store/store.ts";
import {
  currentKey,
  decodeEvent,
  decodeIndexKey,
  decodeRecord,
  EVENT_DELETE,
  EVENT_PUT,
  encodeEvent,
  encodeRecord,
  historyKey,
  historyRevision,
  indexAfter,
  indexBound,
  indexKey,
  indexPrefix,
  type KeyRecord,
  leaseIdOf,
  leaseKey,
  leaseKeysKey,
  leaseKeysPrefix,
  META_COMPACTED,
  META_KEY_COUNT,
  META_REVISION,
  readU64,
  TABLE_HISTORY,
  TABLE_KEY_INDEX,
  TABLE_KEYS,
  TABLE_LEASE_KEYS,
  TABLE_LEASES,
  u64Bytes,
} from "./mvcc-layout.ts";
import { finishRange } from "./mvcc-range.ts";
import type {
  Compare,
  DeleteRangeOp,
  DeleteRangeResult,
  KeyValue,
  LeaseInfo,
  MvccCommand,
  MvccError,
  MvccErrorCode,
  MvccResult,
  PutOp,
  PutResult,
  RangeOpResult,
  RangeRequest,
  RangeResult,
  RevisionChanges,
  TxnOp,
  TxnRequestOp,
  TxnResult,
  WatchEvent,
} from "./mvcc-types.ts";
import { txnIntervalError } from "./mvcc-validate.ts";

/** etcd's messages for its typed errors (the adapters pass them on unchanged). */
export const MVCC_ERROR_MESSAGES: Readonly<Record<Exclude<MvccErrorCode, "invalid">, string>> = {
  compacted: "mvcc: required revision has been compacted",
  futureRevision: "mvcc: required revision is a future revision",
  keyNotFound: "etcdserver: key not found",
  leaseNotFound: "etcdserver: requested lease not found",
  leaseExists: "etcdserver: lease already exists",
  duplicateKey: "etcdserver: duplicate key given in txn request",
  tooManyOps: "etcdserver: too many operations in txn request",
};

export function mvccError(code: MvccErrorCode, message?: string): MvccError {
  const text = code === "invalid" ? (message ?? "invalid request") : MVCC_ERROR_MESSAGES[code];
  return { op: "error", code, message: text };
}

/** What a range may return at most (the server's bounds; `more` says when they cut the answer). */
export interface RangeBounds {
  readonly maxItems: number;
  readonly maxBytes: number;
}

export const UNBOUNDED: RangeBounds = {
  maxItems: Number.MAX_SAFE_INTEGER,
  maxBytes: Number.MAX_SAFE_INTEGER,
};

const EMPTY = new Uint8Array(0);

/** [start, end) of a range request in key bytes; end null: no upper bound; single: rangeEnd empty. */
interface KeySpan {
  readonly start: Uint8Array;
  readonly end: Uint8Array | null;
  readonly single: boolean;
}

function spanOf(key: Uint8Array, rangeEnd: Uint8Array): KeySpan {
  if (rangeEnd.length === 0) return { start: key, end: null, single: true };
  if (rangeEnd.length === 1 && rangeEnd[0] === 0) return { start: key, end: null, single: false };
  return { start: key, end: rangeEnd, single: false };
}

function toKv(key: Uint8Array, r: KeyRecord): KeyValue {
  return {
    key,
    createRevision: r.createRevision,
    modRevision: r.modRevision,
    version: r.version,
    value: r.value,
    lease: r.lease,
  };
}

function readRecord(r: StoreReader, key: Uint8Array): KeyRecord | null {
  const bytes = r.get(currentKey(key));
  return bytes === null ? null : decodeRecord(bytes);
}

/** The state the MVCC logic keeps beside the store: counters mirrored from the meta table, and the
 *  changes of the batch being written. */
export class MvccStore {
  private current: number;
  private compactedAt: number;
  private liveKeys: number;
  private pending: RevisionChanges[] = [];

  constructor(reader: StoreReader) {
    this.current = readU64(reader.get(META_REVISION), 1, "store revision");
    this.compactedAt = readU64(reader.get(META_COMPACTED), 0, "compacted revision");
    this.liveKeys = readU64(reader.get(META_KEY_COUNT), 0, "key count");
  }

  get revision(): number {
    return this.current;
  }

  get compacted(): number {
    return this.compactedAt;
  }

  get keyCount(): number {
    return this.liveKeys;
  }

  /** One write request (one revision at most) inside the store batch `w`. */
  begin(w: StoreWriter): WriteTxn {
    return new WriteTxn(this, w, this.current);
  }

  /** The changes of the revisions written since the last drain, in revision order. */
  drainChanges(): RevisionChanges[] {
    const out = this.pending;
    this.pending = [];
    return out;
  }

  /** @internal WriteTxn.end */
  commitTxn(w: StoreWriter, revision: number, events: WatchEvent[], keyDelta: number): void {
    assert(revision === this.current + 1, () => `txn revision ${revision} after ${this.current}`);
    this.current = revision;
    w.put(META_REVISION, u64Bytes(revision));
    if (keyDelta !== 0) {
      this.liveKeys += keyDelta;
      assert(this.liveKeys >= 0, () => `live key count ${this.liveKeys} < 0`);
      w.put(META_KEY_COUNT, u64Bytes(this.liveKeys));
    }
    this.pending.push({ revision, events });
  }

  /** Applies one MVCC command in the batch `w`. */
  apply(w: StoreWriter, cmd: MvccCommand): MvccResult {
    switch (cmd.op) {
      case "put": {
        const err = checkPut(w, cmd);
        if (err !== null) return { ...err, revision: this.current };
        const txn = this.begin(w);
        const result = txn.put(cmd);
        return { ...result, revision: txn.end() };
      }
      case "deleteRange": {
        const txn = this.begin(w);
        const result = txn.deleteRange(cmd);
        return { ...result, revision: txn.end() };
      }
      case "txn":
        return this.txn(w, cmd);
      case "compact":
        return this.compact(w, cmd.revision);
      case "leaseGrant":
        if (cmd.id === 0n)
          return { ...mvccError("invalid", "lease id 0 is reserved"), revision: this.current };
        if (w.get(leaseKey(cmd.id)) !== null) return { ...mvccError("leaseExists"), revision: this.current };
        w.put(leaseKey(cmd.id), u64Bytes(cmd.ttlSeconds));
        return { op: "leaseGrant", id: cmd.id, ttlSeconds: cmd.ttlSeconds, revision: this.current };
      case "leaseRevoke":
        return this.revoke(w, cmd.id);
      default:
        return unreachable(cmd);
    }
  }

  private txn(w: StoreWriter, cmd: TxnOp): MvccResult {
    const shape = txnIntervalError(cmd);
    if (shape !== null) return { ...shape, revision: this.current };
    // etcd: the branch of every nested txn is chosen against the state before the txn, and the ops of
    // that path are checked before anything is written (a failed check fails the whole txn).
    const path = choosePath(w, cmd);
    const err = checkPath(w, cmd, path, this.current, this.compactedAt);
    if (err !== null) return { ...err, revision: this.current };
    const txn = this.begin(w);
    const result = txn.txn(cmd, path);
    return { ...result, revision: txn.end() };
  }

  private compact(w: StoreWriter, revision: number): MvccResult {
    if (revision <= this.compactedAt) return { ...mvccError("compacted"), revision: this.current };
    if (revision > this.current) return { ...mvccError("futureRevision"), revision: this.current };
    // Per key: of the changes at or below `revision` keep only the newest, and that only if it is a put.
    const doomed: Uint8Array[] = [];
    let previous: { key: Uint8Array; entryKey: Uint8Array; kind: number } | null = null;
    const flush = () => {
      if (previous !== null && previous.kind === EVENT_DELETE) doomed.push(previous.entryKey);
    };
    for (const e of w.scan({
      start: new Uint8Array([TABLE_KEY_INDEX]),
      end: new Uint8Array([TABLE_KEY_INDEX + 1]),
    })) {
      const at = decodeIndexKey(e.key);
      if (at.revision > revision) continue;
      if (previous !== null && compareBytes(previous.key, at.key) === 0) doomed.push(previous.entryKey);
      else flush();
      previous = { key: at.key, entryKey: e.key, kind: e.value[0] ?? 0 };
    }
    flush();
    for (const entryKey of doomed) {
      const at = decodeIndexKey(entryKey);
      w.delete(entryKey);
      const gone = w.delete(historyKey(at.revision, at.sub));
      assert(gone, () => `history entry ${at.revision}.${at.sub} missing at compaction`);
    }
    this.compactedAt = revision;
    w.put(META_COMPACTED, u64Bytes(revision));
    return { op: "compact", revision: this.current };
  }

  private revoke(w: StoreWriter, id: bigint): MvccResult {
    if (w.get(leaseKey(id)) === null) return { ...mvccError("leaseNotFound"), revision: this.current };
    const keys = attachedKeys(w, id);
    const txn = this.begin(w);
    for (const key of keys) {
      const prev = txn.deleteKey(key);
      assert(prev !== null, () => `key attached to lease ${id} is missing`);
    }
    w.delete(leaseKey(id));
    return { op: "leaseRevoke", revision: txn.end() };
  }

  /** Range at `request.revision` (0: now). Reads through `r`, whose state is at revision `at` (the
   *  store's revision, or a txn's read revision). */
  range(
    r: StoreReader,
    request: RangeRequest,
    bounds: RangeBounds = UNBOUNDED,
    at = this.current,
  ): RangeResult | MvccError {
    const rev = request.revision <= 0 ? at : request.revision;
    if (rev > at) return mvccError("futureRevision");
    if (rev < this.compactedAt) return mvccError("compacted");
    const span = spanOf(request.key, request.rangeEnd);
    const kvs = rev === at ? currentKvs(r, span) : pastKvs(r, span, rev);
    return finishRange(kvs, request, bounds);
  }

  /** The changes of the revisions from `fromRevision` on, whole revisions, until at least `maxEvents`
   *  events (or the history's end); each event with the key's previous version. `fromRevision` must not
   *  be below the compacted revision (the caller says ErrCompacted). */
  changesFrom(r: StoreReader, fromRevision: number, maxEvents: number): RevisionChanges[] {
    assert(
      fromRevision >= this.compactedAt,
      () => `history from ${fromRevision} < compacted ${this.compactedAt}`,
    );
    const out: RevisionChanges[] = [];
    let events: WatchEvent[] = [];
    let revision = -1;
    let count = 0;
    const start = historyKey(Math.max(fromRevision, 0), 0);
    for (const e of r.scan({ start, end: new Uint8Array([TABLE_HISTORY + 1]) })) {
      const at = historyRevision(e.key);
      if (at.revision !== revision) {
        if (events.length > 0) out.push({ revision, events });
        if (count >= maxEvents) return out;
        events = [];
        revision = at.revision;
      }
      events.push(eventOf(r, decodeEvent(e.value), at.revision, at.sub));
      count++;
    }
    if (events.length > 0) out.push({ revision, events });
    return out;
  }

  leaseIds(r: StoreReader): bigint[] {
    const out: bigint[] = [];
    for (const e of r.scan({
      start: new Uint8Array([TABLE_LEASES]),
      end: new Uint8Array([TABLE_LEASES + 1]),
    }))
      out.push(leaseIdOf(e.key));
    return out;
  }

  lease(r: StoreReader, id: bigint): LeaseInfo | null {
    const ttl = r.get(leaseKey(id));
    if (ttl === null) return null;
    return { id, grantedTtlSeconds: readU64(ttl, 0, "lease TTL"), keys: attachedKeys(r, id) };
  }

  /** etcd's HashKV: CRC32C over the history up to `revision` (0: now). */
  hashKv(r: StoreReader, revision: number): { hash: number; compactRevision: number } | MvccError {
    const rev = revision <= 0 ? this.current : revision;
    if (rev > this.current) return mvccError("futureRevision");
    if (rev < this.compactedAt) return mvccError("compacted");
    let crc = 0;
    const end = historyKey(rev + 1, 0);
    for (const e of r.scan({ start: new Uint8Array([TABLE_HISTORY]), end }))
      crc = crc32c(e.value, crc32c(e.key, crc));
    return { hash: crc, compactRevision: this.compactedAt };
  }
}

/** The keys attached to lease `id`, in key order. */
function attachedKeys(r: StoreReader, id: bigint): Uint8Array[] {
  const prefix = leaseKeysPrefix(id);
  const end = id === (1n << 63n) - 1n ? new Uint8Array([TABLE_LEASE_KEYS + 1]) : leaseKeysPrefix(id + 1n);
  const out: Uint8Array[] = [];
  for (const e of r.scan({ start: prefix, end })) out.push(e.key.slice(9));
  return out;
}

function eventOf(
  r: StoreReader,
  ev: ReturnType<typeof decodeEvent>,
  revision: number,
  sub: number,
): WatchEvent {
  const key = ev.key.slice();
  const prevKv = versionBefore(r, key, revision, sub);
  if (ev.record === null) return { type: "delete", kv: tombstoneKv(key, revision), prevKv };
  return { type: "put", kv: toKv(key, ev.record), prevKv };
}

function tombstoneKv(key: Uint8Array, revision: number): KeyValue {
  return { key, createRevision: 0, modRevision: revision, version: 0, value: EMPTY, lease: 0n };
}

/** The live version of `key` just before the change (revision, sub), from the history. */
function versionBefore(r: StoreReader, key: Uint8Array, revision: number, sub: number): KeyValue | null {
  for (const e of r.scan({
    start: indexPrefix(key),
    end: indexKey(key, revision, sub),
    reverse: true,
    limit: 1,
  })) {
    if (e.value[0] !== EVENT_PUT) return null;
    const at = decodeIndexKey(e.key);
    return recordAt(r, key, at.revision, at.sub);
  }
  return null;
}

function recordAt(r: StoreReader, key: Uint8Array, revision: number, sub: number): KeyValue {
  const bytes = r.get(historyKey(revision, sub));
  assert(bytes !== null, () => `history entry ${revision}.${sub} missing for an index entry`);
  const ev = decodeEvent(bytes);
  assert(ev.record !== null, () => `history entry ${revision}.${sub} is not a put`);
  return toKv(key, ev.record);
}

function* currentKvs(r: StoreReader, span: KeySpan): Generator<KeyValue> {
  if (span.single) {
    const rec = readRecord(r, span.start);
    if (rec !== null) yield toKv(span.start.slice(), rec);
    return;
  }
  if (span.end !== null && compareBytes(span.end, span.start) <= 0) return;
  const end = span.end === null ? new Uint8Array([TABLE_KEYS + 1]) : currentKey(span.end);
  for (const e of r.scan({ start: currentKey(span.start), end }))
    yield toKv(e.key.slice(1), decodeRecord(e.value));
}

function* pastKvs(r: StoreReader, span: KeySpan, rev: number): Generator<KeyValue> {
  if (span.end !== null && compareBytes(span.end, span.start) <= 0) return;
  const end = span.single
    ? indexAfter(span.start)
    : span.end === null
      ? new Uint8Array([TABLE_KEY_INDEX + 1])
      : indexBound(span.end);
  let start = indexBound(span.start);
  for (;;) {
    let key: Uint8Array | null = null;
    for (const e of r.scan({ start, end, limit: 1 })) key = decodeIndexKey(e.key).key;
    if (key === null) return;
    const kv = versionAt(r, key, rev);
    if (kv !== null) yield kv;
    start = indexAfter(key);
  }
}

function versionAt(r: StoreReader, key: Uint8Array, rev: number): KeyValue | null {
  return versionBefore(r, key, rev + 1, 0);
}

// ------------------------------------------------------------------ txn: compares, paths, checks

/** etcd's compareKV on one key's state (a missing key compares as the zero KeyValue). */
function compareOne(c: Compare, kv: KeyValue | null): boolean {
  let d: number;
  const a = c.against;
  switch (a.target) {
    case "value":
      if (kv === null) return false;
      d = compareBytes(kv.value, a.value);
      break;
    case "version":
      d = (kv?.version ?? 0) - a.version;
      break;
    case "create":
      d = (kv?.createRevision ?? 0) - a.createRevision;
      break;
    case "mod":
      d = (kv?.modRevision ?? 0) - a.modRevision;
      break;
    case "lease": {
      const l = kv?.lease ?? 0n;
      d = l < a.lease ? -1 : l > a.lease ? 1 : 0;
      break;
    }
    default:
      return unreachable(a);
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
    default:
      return unreachable(c.result);
  }
}

export function evaluateCompare(r: StoreReader, c: Compare): boolean {
  let any = false;
  for (const kv of currentKvs(r, spanOf(c.key, c.rangeEnd))) {
    any = true;
    if (!compareOne(c, kv)) return false;
  }
  return any || compareOne(c, null);
}

/** The branch taken by a txn and by each nested txn on it, in op order (etcd's txnPath). */
interface TxnPath {
  readonly succeeded: boolean;
  readonly nested: readonly TxnPath[];
}

function choosePath(r: StoreReader, cmd: TxnOp): TxnPath {
  const succeeded = cmd.compare.every((c) => evaluateCompare(r, c));
  const nested: TxnPath[] = [];
  for (const op of succeeded ? cmd.success : cmd.failure) if (op.op === "txn") nested.push(choosePath(r, op));
  return { succeeded, nested };
}

function checkPut(r: StoreReader, op: PutOp): MvccError | null {
  if ((op.ignoreValue || op.ignoreLease) && readRecord(r, op.key) === null) return mvccError("keyNotFound");
  if (op.lease !== 0n && r.get(leaseKey(op.lease)) === null) return mvccError("leaseNotFound");
  return null;
}

function checkPath(
  r: StoreReader,
  cmd: TxnOp,
  path: TxnPath,
  current: number,
  compacted: number,
): MvccError | null {
  const ops: TxnRequestOp[] = [];
  const walk = (t: TxnOp, p: TxnPath) => {
    let n = 0;
    for (const op of p.succeeded ? t.success : t.failure) {
      if (op.op === "txn") walk(op, p.nested[n++]!);
      else ops.push(op);
    }
  };
  walk(cmd, path);
  for (const op of ops) {
    const err = op.op === "put" ? checkPut(r, op) : null;
    if (err !== null) return err;
  }
  for (const op of ops) {
    if (op.op !== "range") continue;
    if (op.request.revision > current) return mvccError("futureRevision");
    if (op.request.revision > 0 && op.request.revision < compacted) return mvccError("compacted");
  }
  return null;
}

// ------------------------------------------------------------------ one write request

/** One write request: all its changes share one revision (the store's next), with sub-revisions in
 *  execution order; end() commits the revision if anything changed. */
export class WriteTxn {
  private sub = 0;
  private keyDelta = 0;
  private readonly events: WatchEvent[] = [];
  private ended = false;

  constructor(
    private readonly mvcc: MvccStore,
    private readonly w: StoreWriter,
    private readonly begun: number,
  ) {}

  /** The revision reads inside this request see (the new one once something changed). */
  get readRevision(): number {
    return this.sub > 0 ? this.begun + 1 : this.begun;
  }

  get changed(): boolean {
    return this.sub > 0;
  }

  /** Sets `key` (a record from the put); returns the previous version. */
  set(key: Uint8Array, value: Uint8Array, lease: bigint): KeyValue | null {
    assert(!this.ended, () => "write after the txn ended");
    const old = readRecord(this.w, key);
    const revision = this.begun + 1;
    const rec: KeyRecord = {
      createRevision: old?.createRevision ?? revision,
      modRevision: revision,
      version: (old?.version ?? 0) + 1,
      lease,
      value,
    };
    this.w.put(currentKey(key), encodeRecord(rec));
    this.w.put(historyKey(revision, this.sub), encodeEvent(key, rec));
    this.w.put(indexKey(key, revision, this.sub), new Uint8Array([EVENT_PUT]));
    const oldLease = old?.lease ?? 0n;
    if (oldLease !== lease) {
      if (oldLease !== 0n) this.w.delete(leaseKeysKey(oldLease, key));
      if (lease !== 0n) this.w.put(leaseKeysKey(lease, key), EMPTY);
    }
    if (old === null) this.keyDelta++;
    const prevKv = old === null ? null : toKv(key, old);
    this.events.push({ type: "put", kv: toKv(key, rec), prevKv });
    this.sub++;
    return prevKv;
  }

  /** Deletes `key` if it is there; returns what was deleted. */
  deleteKey(key: Uint8Array): KeyValue | null {
    assert(!this.ended, () => "write after the txn ended");
    const old = readRecord(this.w, key);
    if (old === null) return null;
    const revision = this.begun + 1;
    this.w.delete(currentKey(key));
    this.w.put(historyKey(revision, this.sub), encodeEvent(key, null));
    this.w.put(indexKey(key, revision, this.sub), new Uint8Array([EVENT_DELETE]));
    if (old.lease !== 0n) this.w.delete(leaseKeysKey(old.lease, key));
    this.keyDelta--;
    const prevKv = toKv(key, old);
    this.events.push({ type: "delete", kv: tombstoneKv(key, revision), prevKv });
    this.sub++;
    return prevKv;
  }

  put(op: PutOp): PutResult {
    const old = readRecord(this.w, op.key);
    const value = op.ignoreValue && old !== null ? old.value : op.value;
    const lease = op.ignoreLease && old !== null ? old.lease : op.lease;
    const prev = this.set(op.key, value, lease);
    return { op: "put", prevKv: op.prevKv ? prev : null };
  }

  deleteRange(op: DeleteRangeOp): DeleteRangeResult {
    const keys: Uint8Array[] = [];
    for (const kv of currentKvs(this.w, spanOf(op.key, op.rangeEnd))) keys.push(kv.key);
    const prevKvs: KeyValue[] = [];
    for (const key of keys) {
      const prev = this.deleteKey(key);
      assert(prev !== null, () => "a key seen in the range vanished");
      if (op.prevKv) prevKvs.push(prev);
    }
    return { op: "deleteRange", deleted: keys.length, prevKvs };
  }

  /** Runs the ops of the branches `path` chose (checked beforehand by the caller). */
  txn(cmd: TxnOp, path: TxnPath): TxnResult {
    const responses: (PutResult | DeleteRangeResult | RangeOpResult | TxnResult)[] = [];
    let n = 0;
    for (const op of path.succeeded ? cmd.success : cmd.failure) {
      switch (op.op) {
        case "put":
          responses.push(this.put(op));
          break;
        case "deleteRange":
          responses.push(this.deleteRange(op));
          break;
        case "range": {
          const result = this.mvcc.range(this.w, op.request, UNBOUNDED, this.readRevision);
          if ("op" in result) throw new AssertionError(`range in a checked txn failed: ${result.message}`);
          responses.push({ op: "range", result });
          break;
        }
        case "txn":
          responses.push(this.txn(op, path.nested[n++]!));
          break;
        default:
          unreachable(op);
      }
    }
    return { op: "txn", succeeded: path.succeeded, responses };
  }

  /** Ends the request; the store revision after it. */
  end(): number {
    assert(!this.ended, () => "txn ended twice");
    this.ended = true;
    if (this.sub === 0) return this.begun;
    this.mvcc.commitTxn(this.w, this.begun + 1, this.events, this.keyDelta);
    return this.begun + 1;
  }
}
