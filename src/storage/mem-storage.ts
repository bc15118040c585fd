// MemStorage: the in-memory twin of Storage (no files), with the same semantics, a crash() that drops
// what was saved with sync=false since the last sync, and injectable write errors.

import type { Entry, HardState, SnapshotMeta } from "../core/types.ts";
import { assert } from "../lib/assert.ts";
import { crc32c } from "../lib/crc32c.ts";
import { FsError } from "./file-system.ts";
import { LogBounds } from "./log-bounds.ts";
import type { IndexTerm } from "./log-replay.ts";
import type { RecoveredState, SnapshotStreamMeta, Storage } from "./storage.ts";
import { DEFAULT_RETAIN_SNAPSHOTS, EMPTY_HARD_STATE } from "./storage.ts";
import { corruptError, ioError, notReceiving, StorageError } from "./storage-error.ts";

interface MemSnapshot {
  readonly meta: SnapshotMeta;
  readonly image: Uint8Array;
}

/** One copy of everything a node persists. */
interface MemState {
  hardState: HardState;
  base: IndexTerm;
  entries: Entry[];
  snapshots: MemSnapshot[];
}

export interface MemStorageOptions {
  readonly nodeId?: number;
  readonly retainSnapshots?: number;
  /** The incarnation open() reports (a FileStorage makes one with its folder); none when absent. */
  readonly incarnation?: string;
}

function copyEntry(e: Entry): Entry {
  return { index: e.index, term: e.term, kind: e.kind, data: e.data.slice() };
}

function cloneState(s: MemState): MemState {
  return { hardState: s.hardState, base: s.base, entries: [...s.entries], snapshots: [...s.snapshots] };
}

/** Truncate-then-append, ignoring entries a snapshot already covers. */
function applyEntries(s: MemState, entries: readonly Entry[]): void {
  const fresh = entries.filter((e) => e.index > s.base.index);
  const first = fresh[0];
  if (first === undefined) return;
  const keep = first.index - s.base.index - 1;
  assert(keep <= s.entries.length, () => `MemStorage: entry ${first.index} leaves a gap`);
  s.entries.length = keep;
  s.entries.push(...fresh);
}

function compact(s: MemState, index: number, term: number): void {
  const at = s.entries[index - s.base.index - 1];
  if (at !== undefined && at.term === term) s.entries = s.entries.slice(index - s.base.index);
  else s.entries = [];
  s.base = { index, term };
}

function sameMeta(a: SnapshotMeta, b: SnapshotMeta): boolean {
  return a.index === b.index && a.term === b.term && a.sizeBytes === b.sizeBytes && a.crc32c === b.crc32c;
}

export class MemStorage implements Storage {
  readonly nodeId: number;
  private readonly retainSnapshots: number;
  private readonly incarnation: string | undefined;
  private durable: MemState = {
    hardState: EMPTY_HARD_STATE,
    base: { index: 0, term: 0 },
    entries: [],
    snapshots: [],
  };
  private current: MemState = cloneState(this.durable);
  /** Saves applied to `current` but not yet to `durable`. */
  private pending: { hardState: HardState | null; entries: readonly Entry[] }[] = [];
  private log = new LogBounds({ index: 0, term: 0 }, []);
  private status: "closed" | "open" = "closed";
  private failure: StorageError | null = null;
  private incoming: { meta: SnapshotMeta; image: Uint8Array; written: number } | null = null;
  private writeFault: string | null = null;

  constructor(options: MemStorageOptions = {}) {
    this.nodeId = options.nodeId ?? 0;
    this.retainSnapshots = options.retainSnapshots ?? DEFAULT_RETAIN_SNAPSHOTS;
    this.incarnation = options.incarnation;
  }

  /** Power loss: whatever was saved with sync=false since the last sync is gone; the "process" is down. */
  crash(): void {
    this.current = cloneState(this.durable);
    this.pending = [];
    this.status = "closed";
    this.failure = null;
    this.incoming = null;
  }

  /** Every later write fails with this errno-style code (e.g. "ENOSPC"), or none (null: space returned). */
  setWriteFault(code: string | null): void {
    this.writeFault = code;
  }

  async open(): Promise<RecoveredState> {
    if (this.status === "open")
      throw new StorageError({
        code: "STORAGE",
        message: "storage is already open (locked by a running node)",
        nodeId: this.nodeId,
        hint: "stop the other opener first",
      });
    this.status = "open";
    this.failure = null;
    const s = this.current;
    this.log = new LogBounds(s.base, s.entries);
    const newest = s.snapshots[s.snapshots.length - 1];
    const state: RecoveredState = {
      hardState: s.hardState,
      snapshot: newest?.meta ?? null,
      entries: s.entries.map(copyEntry),
    };
    if (this.incarnation !== undefined) state.incarnation = this.incarnation;
    return state;
  }

  async save(hardState: HardState | null, entries: readonly Entry[], sync: boolean): Promise<void> {
    this.writable();
    this.log.checkSave(this.current.hardState, hardState, entries);
    this.failIfFaulty();
    const copied = entries.map(copyEntry);
    applyEntries(this.current, copied);
    if (hardState !== null) this.current.hardState = hardState;
    this.log.append(copied);
    this.pending.push({ hardState, entries: copied });
    if (sync) this.syncPending();
  }

  async saveSnapshot(meta: SnapshotMeta, image: Uint8Array): Promise<void> {
    this.writable();
    if (image.length !== meta.sizeBytes || crc32c(image) !== meta.crc32c)
      throw new StorageError({
        code: "INVALID_ARGUMENT",
        message: `snapshot image does not match its meta (${image.length} bytes, meta says ${meta.sizeBytes})`,
        nodeId: this.nodeId,
        hint: "compute meta.sizeBytes and meta.crc32c from the image",
      });
    if (meta.index <= this.log.snapshot.index) return;
    assert(
      meta.index <= this.log.lastIndex && this.log.termAt(meta.index) === meta.term,
      () =>
        `saveSnapshot: ${meta.index}/${meta.term} is not an entry of the log (last ${this.log.lastIndex})`,
    );
    this.failIfFaulty();
    const snap = { meta, image: image.slice() };
    for (const s of [this.current, this.durable]) {
      compact(s, meta.index, meta.term);
      s.snapshots = [...s.snapshots, snap].slice(-this.retainSnapshots);
    }
    this.log.compact(meta.index, meta.term);
  }

  async saveSnapshotStream(
    streamMeta: SnapshotStreamMeta,
    nextChunk: () => Uint8Array | null,
  ): Promise<SnapshotMeta> {
    const chunks: Uint8Array[] = [];
    let size = 0;
    for (let chunk = nextChunk(); chunk !== null; chunk = nextChunk()) {
      chunks.push(chunk.slice());
      size += chunk.length;
    }
    const announced = streamMeta.sizeBytes;
    assert(
      announced === null || size === announced,
      () => `snapshot image is ${size} bytes, not ${announced}`,
    );
    const image = new Uint8Array(size);
    let at = 0;
    for (const c of chunks) {
      image.set(c, at);
      at += c.length;
    }
    const meta = { ...streamMeta, sizeBytes: size, crc32c: crc32c(image) };
    await this.saveSnapshot(meta, image);
    return meta;
  }

  async writeSnapshotChunk(meta: SnapshotMeta, offset: number, data: Uint8Array): Promise<void> {
    this.writable();
    const bad = (what: string): never => {
      throw new StorageError({
        code: "INVALID_ARGUMENT",
        message: `snapshot chunk refused: ${what}`,
        nodeId: this.nodeId,
        hint: "the sender should restart the snapshot from offset 0",
      });
    };
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + data.length > meta.sizeBytes)
      bad(`offset ${offset} + ${data.length} bytes is outside the image of ${meta.sizeBytes} bytes`);
    if (offset === 0) this.incoming = { meta, image: new Uint8Array(meta.sizeBytes), written: 0 };
    const incoming = this.incoming;
    if (incoming === null || !sameMeta(incoming.meta, meta))
      return bad(`no snapshot ${meta.index}/${meta.term} is being received at offset ${offset}`);
    if (offset > incoming.written)
      bad(`offset ${offset} leaves a gap after ${incoming.written} bytes received`);
    this.failIfFaulty();
    incoming.image.set(data, offset);
    incoming.written = Math.max(incoming.written, offset + data.length);
  }

  async readIncomingSnapshotChunk(meta: SnapshotMeta, offset: number, length: number): Promise<Uint8Array> {
    const incoming = this.incoming;
    if (incoming === null || !sameMeta(incoming.meta, meta)) throw notReceiving(this.nodeId, meta);
    const end = Math.min(offset + length, incoming.written);
    return end <= offset ? new Uint8Array(0) : incoming.image.slice(offset, end);
  }

  async installIncomingSnapshot(meta: SnapshotMeta): Promise<void> {
    this.writable();
    const incoming = this.incoming;
    if (incoming === null || !sameMeta(incoming.meta, meta)) throw notReceiving(this.nodeId, meta);
    const image = incoming.image.subarray(0, incoming.written);
    if (incoming.written !== meta.sizeBytes || crc32c(image) !== meta.crc32c) {
      this.incoming = null;
      throw corruptError(
        this.nodeId,
        "(memory)",
        undefined,
        `received snapshot ${meta.index}/${meta.term} has ${incoming.written} bytes or fails its checksum`,
        "the sender should send the snapshot again from offset 0",
      );
    }
    this.failIfFaulty();
    this.incoming = null;
    this.syncPending();
    const snap = { meta, image };
    for (const s of [this.current, this.durable]) {
      s.entries = [];
      s.base = { index: meta.index, term: meta.term };
      s.snapshots = [...s.snapshots, snap].slice(-this.retainSnapshots);
    }
    this.log.reset(meta.index, meta.term);
  }

  async loadSnapshotImage(): Promise<{ meta: SnapshotMeta; image: Uint8Array } | null> {
    this.readable();
    const newest = this.current.snapshots[this.current.snapshots.length - 1];
    return newest === undefined ? null : { meta: newest.meta, image: newest.image.slice() };
  }

  async readSnapshotChunk(meta: SnapshotMeta, offset: number, length: number): Promise<Uint8Array> {
    this.readable();
    const newest = this.current.snapshots[this.current.snapshots.length - 1];
    if (newest === undefined || !sameMeta(newest.meta, meta))
      throw new StorageError({
        code: "INVALID_ARGUMENT",
        message: `snapshot ${meta.index}/${meta.term} is not the newest snapshot`,
        nodeId: this.nodeId,
        hint: "send the newest snapshot instead",
      });
    if (!Number.isSafeInteger(offset) || offset < 0 || offset > meta.sizeBytes || length < 0)
      throw new StorageError({
        code: "INVALID_ARGUMENT",
        message: `snapshot read at ${offset} (+${length}) is outside the image of ${meta.sizeBytes} bytes`,
        nodeId: this.nodeId,
      });
    return newest.image.slice(offset, Math.min(meta.sizeBytes, offset + length));
  }

  /** A clean shutdown: what was saved is kept (as a file system keeps written data after close). */
  async close(): Promise<void> {
    if (this.status === "closed") return;
    if (this.failure === null) this.syncPending();
    this.status = "closed";
    this.incoming = null;
  }

  private syncPending(): void {
    for (const p of this.pending) {
      applyEntries(this.durable, p.entries);
      if (p.hardState !== null) this.durable.hardState = p.hardState;
    }
    this.pending = [];
  }

  private readable(): void {
    assert(this.status === "open", () => `MemStorage used while ${this.status}`);
  }

  private writable(): void {
    this.readable();
    if (this.failure !== null)
      throw new StorageError({
        code: "STORAGE",
        message: `storage refuses writes after an earlier error: ${this.failure.message}`,
        nodeId: this.nodeId,
        hint: "this node must stop acknowledging; fix the cause and restart it (what was synced is kept)",
        cause: this.failure,
      });
  }

  private failIfFaulty(): void {
    if (this.writeFault === null) return;
    this.failure = ioError(
      this.nodeId,
      "writing",
      "(memory)",
      new FsError(this.writeFault, "(memory)", "injected"),
    );
    throw this.failure;
  }
}
