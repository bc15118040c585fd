// FileStorage: the Storage seam over a FileSystem: WAL segments, snapshot files, identity, lock, recovery.

import type { Entry, HardState, SnapshotMeta } from "../core/types.ts";
import { assert } from "../lib/assert.ts";
import { crc32c } from "../lib/crc32c.ts";
import { RaftKvError } from "../lib/errors.ts";
import type { DataDirLayout } from "./data-dir.ts";
import { layoutOf, snapshotName } from "./data-dir.ts";
import type { DirLock, FileHandle, FileSystem } from "./file-system.ts";
import { errnoOf, joinPath, parentOf } from "./file-system.ts";
import type { Identity } from "./identity.ts";
import { newIncarnation, writeIdentity } from "./identity.ts";
import { LogBounds } from "./log-bounds.ts";
import type { RecoveryPlan } from "./recovery.ts";
import { planRecovery } from "./recovery.ts";
import {
  encodeSnapshotHeader,
  listSnapshotFiles,
  publishSnapshotTemp,
  readSnapshotFile,
  writeSnapshotFile,
  writeSnapshotTemp,
} from "./snapshot-file.ts";
import type { RecoveredState, SnapshotStreamMeta, Storage, StorageLogger } from "./storage.ts";
import {
  DEFAULT_MAX_SEGMENT_BYTES,
  DEFAULT_RETAIN_SNAPSHOTS,
  EMPTY_HARD_STATE,
  MAX_ENTRIES_RECORD_BYTES,
  stderrLogger,
} from "./storage.ts";
import { corruptError, ioError, notReceiving, StorageError } from "./storage-error.ts";
import type { WalRecord } from "./wal-record.ts";
import { encodedEntryBytes, encodeRecords, FORMAT_VERSION } from "./wal-record.ts";
import { MAX_PREALLOC_BYTES, WalWriter } from "./wal-writer.ts";

export interface FileStorageOptions {
  readonly fs: FileSystem;
  /** The data folder (created if missing). */
  readonly dir: string;
  readonly clusterId: string;
  readonly nodeId: number;
  /** A segment at or past this size is closed and a new one started. Default 64 MiB. */
  readonly maxSegmentBytes?: number;
  /** Snapshot files kept (newest first). Default 2. */
  readonly retainSnapshots?: number;
  readonly logger?: StorageLogger;
  /** Makes the incarnation of a new folder (or of an older folder without one). Default: 64 bits from
   *  the operating system's random source; the simulator passes a seeded one. */
  readonly newIncarnation?: () => string;
}

interface SnapshotFileRef {
  readonly meta: SnapshotMeta;
  readonly path: string;
  readonly headerBytes: number;
}

interface Incoming {
  readonly meta: SnapshotMeta;
  readonly path: string;
  readonly handle: FileHandle;
  readonly headerBytes: number;
  written: number;
}

/** Splits entries into records of about MAX_ENTRIES_RECORD_BYTES each. */
function entryRecords(entries: readonly Entry[], totalBytes: number): WalRecord[] {
  if (totalBytes <= MAX_ENTRIES_RECORD_BYTES) return [{ type: "entries", entries }];
  const records: WalRecord[] = [];
  let batch: Entry[] = [];
  let bytes = 0;
  for (const e of entries) {
    const size = encodedEntryBytes(e);
    if (batch.length > 0 && bytes + size > MAX_ENTRIES_RECORD_BYTES) {
      records.push({ type: "entries", entries: batch });
      batch = [];
      bytes = 0;
    }
    batch.push(e);
    bytes += size;
  }
  if (batch.length > 0) records.push({ type: "entries", entries: batch });
  return records;
}

function sameMeta(a: SnapshotMeta, b: SnapshotMeta): boolean {
  return a.index === b.index && a.term === b.term && a.sizeBytes === b.sizeBytes && a.crc32c === b.crc32c;
}

/** Bytes read at a time to check a received snapshot. */
const INSTALL_CHECK_CHUNK_BYTES = 4 * 1024 * 1024;

export class FileStorage implements Storage {
  private readonly fs: FileSystem;
  private readonly layout: DataDirLayout;
  private readonly owner: Identity;
  private readonly maxSegmentBytes: number;
  private readonly preallocBytes: number;
  private readonly retainSnapshots: number;
  private readonly logger: StorageLogger;
  private readonly newIncarnation: () => string;
  private incarnation: string | null = null;

  private status: "closed" | "opening" | "open" = "closed";
  private lock: DirLock | null = null;
  private wal: WalWriter | null = null;
  private log = new LogBounds({ index: 0, term: 0 }, []);
  private hardState: HardState = EMPTY_HARD_STATE;
  private snapshot: SnapshotFileRef | null = null;
  private incoming: Incoming | null = null;
  private reader: { path: string; handle: FileHandle } | null = null;
  private failure: StorageError | null = null;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(options: FileStorageOptions) {
    const { nodeId, clusterId } = options;
    const badOption = (what: string): never => {
      throw new RaftKvError({
        code: "CONFIG",
        message: `storage option ${what}`,
        nodeId,
        hint: "fix the configuration",
      });
    };
    if (!Number.isSafeInteger(nodeId) || nodeId < 0)
      badOption(`nodeId must be a non-negative integer, got ${nodeId}`);
    if (clusterId.length === 0 || new TextEncoder().encode(clusterId).length > 256)
      badOption("clusterId must be 1 to 256 bytes");
    const maxSegmentBytes = options.maxSegmentBytes ?? DEFAULT_MAX_SEGMENT_BYTES;
    if (!Number.isSafeInteger(maxSegmentBytes) || maxSegmentBytes < 1)
      badOption("maxSegmentBytes must be positive");
    const retainSnapshots = options.retainSnapshots ?? DEFAULT_RETAIN_SNAPSHOTS;
    if (!Number.isSafeInteger(retainSnapshots) || retainSnapshots < 1)
      badOption("retainSnapshots must be >= 1");
    this.fs = options.fs;
    this.layout = layoutOf(options.dir);
    this.owner = { formatVersion: FORMAT_VERSION, clusterId, nodeId };
    this.maxSegmentBytes = maxSegmentBytes;
    this.preallocBytes = Math.min(MAX_PREALLOC_BYTES, maxSegmentBytes);
    this.retainSnapshots = retainSnapshots;
    this.logger = options.logger ?? stderrLogger;
    this.newIncarnation = options.newIncarnation ?? newIncarnation;
  }

  get nodeId(): number {
    return this.owner.nodeId;
  }

  /** The error that stopped writes, if one did. */
  get failed(): StorageError | null {
    return this.failure;
  }

  // ---- open and recovery ----

  open(): Promise<RecoveredState> {
    return this.exclusive(async () => {
      assert(this.status === "closed", () => `FileStorage.open: already ${this.status}`);
      this.status = "opening";
      try {
        return await this.openLocked();
      } catch (e) {
        this.status = "closed";
        await this.releaseAll();
        if (e instanceof RaftKvError) throw e;
        throw ioError(this.nodeId, "opening the data folder", this.layout.root, e);
      }
    });
  }

  private async openLocked(): Promise<RecoveredState> {
    const { fs, layout } = this;
    await fs.mkdir(layout.root);
    try {
      this.lock = await fs.lock(layout.root);
    } catch (e) {
      if (errnoOf(e) !== "ELOCKED") throw e;
      throw new StorageError({
        code: "STORAGE",
        message: `data folder is already in use: ${(e as Error).message}`,
        nodeId: this.nodeId,
        file: layout.root,
        hint: "stop the other raftkv process using this folder, or give this node its own folder",
      });
    }
    this.failure = null;
    this.incoming = null;
    const plan = await planRecovery(fs, layout, this.owner);
    let state: RecoveredState;
    if (plan.kind === "fresh") {
      await this.initFresh(plan.leftovers);
      state = { hardState: EMPTY_HARD_STATE, snapshot: null, entries: [] };
    } else {
      state = await this.applyPlan(plan);
      if (plan.incarnation === null) {
        // A folder from a version before incarnations: it gets one now, kept from then on.
        this.incarnation = this.newIncarnation();
        await writeIdentity(fs, layout.identityFile, this.owner, this.incarnation);
        this.logger.info(
          { dir: layout.root, nodeId: this.nodeId, incarnation: this.incarnation },
          "gave the data folder an incarnation (it was written by an older version)",
        );
      } else this.incarnation = plan.incarnation;
    }
    assert(this.incarnation !== null, () => "FileStorage.open: no incarnation");
    state.incarnation = this.incarnation;
    this.status = "open";
    return state;
  }

  private async initFresh(leftovers: readonly string[]): Promise<void> {
    const { fs, layout } = this;
    for (const path of leftovers) await fs.unlink(path);
    await fs.mkdir(layout.walDir);
    await fs.mkdir(layout.snapDir);
    await fs.syncDir(layout.root);
    await fs.syncDir(parentOf(layout.root));
    if (leftovers.length > 0) {
      await fs.syncDir(layout.walDir);
      await fs.syncDir(layout.snapDir);
    }
    this.log = new LogBounds({ index: 0, term: 0 }, []);
    this.hardState = EMPTY_HARD_STATE;
    this.snapshot = null;
    this.wal = await WalWriter.create(fs, layout.walDir, this.owner, this.preallocBytes, EMPTY_HARD_STATE, {
      index: 0,
      term: 0,
    });
    // Last: a folder with an identity file always has a complete WAL.
    this.incarnation = this.newIncarnation();
    await writeIdentity(fs, layout.identityFile, this.owner, this.incarnation);
    this.logger.info(
      { dir: layout.root, nodeId: this.nodeId, incarnation: this.incarnation },
      "initialized a new data folder",
    );
  }

  private async applyPlan(plan: RecoveryPlan): Promise<RecoveredState> {
    const { fs } = this;
    for (const w of plan.warnings)
      this.logger.warn({ file: w.file, offset: w.offset, nodeId: this.nodeId }, w.message);
    const touched = new Set<string>();
    for (const r of plan.repairs) {
      if (r.kind === "truncate") {
        const h = await fs.open(r.path, "write");
        try {
          await h.truncate(r.offset);
          await h.sync();
        } finally {
          await h.close();
        }
      } else if (r.kind === "unlink") {
        await fs.unlink(r.path);
        touched.add(parentOf(r.path));
      } else {
        await fs.rename(r.path, r.to);
        touched.add(parentOf(r.path));
      }
    }
    for (const dir of touched) await fs.syncDir(dir);
    this.hardState = plan.hardState;
    this.log = new LogBounds(plan.base, plan.entries);
    this.snapshot =
      plan.snapshot === null
        ? null
        : { meta: plan.snapshot.meta, path: plan.snapshot.path, headerBytes: plan.snapshot.headerBytes };
    this.wal = await WalWriter.resume(
      fs,
      this.layout.walDir,
      this.owner,
      this.preallocBytes,
      plan.segments,
      plan.lastSegmentBytes,
    );
    if (plan.needsResetMarker) {
      const { index, term } = plan.base;
      await this.wal.write(encodeRecords([{ type: "snapshot", index, term, reset: true }]), true);
    }
    return { hardState: plan.hardState, snapshot: this.snapshot?.meta ?? null, entries: plan.entries };
  }

  // ---- writes ----

  save(hardState: HardState | null, entries: readonly Entry[], sync: boolean): Promise<void> {
    return this.exclusive(async () => {
      const wal = this.writable();
      this.log.checkSave(this.hardState, hardState, entries);
      const records: WalRecord[] = [];
      const first = entries[0];
      if (first !== undefined && first.index <= this.log.lastIndex)
        records.push({ type: "truncate", fromIndex: first.index });
      let entriesBytes = 0;
      for (const e of entries) entriesBytes += encodedEntryBytes(e);
      if (entries.length > 0) records.push(...entryRecords(entries, entriesBytes));
      if (hardState !== null) records.push({ type: "hardState", hardState });
      await this.writing("appending to the WAL", wal.currentPath, async () => {
        if (records.length > 0) {
          if (wal.currentBytes >= this.maxSegmentBytes)
            await wal.roll(this.log.lastIndex + 1, this.hardState, this.log.snapshot);
          await wal.write(encodeRecords(records, 64 + records.length * 32 + entriesBytes), sync);
        } else if (sync) {
          await wal.sync();
        }
      });
      this.log.append(entries);
      if (hardState !== null) this.hardState = hardState;
    });
  }

  saveSnapshot(meta: SnapshotMeta, image: Uint8Array): Promise<void> {
    return this.exclusive(async () => {
      this.writable();
      this.checkImage(meta, image);
      const chunks = [image];
      await this.writeSnapshot(meta, () => chunks.pop() ?? null);
    });
  }

  /** The image goes to disk (under a temporary name, synced) outside the storage lock, so that the WAL
   *  keeps taking appends meanwhile: at a million keys that takes seconds, and a node whose appends
   *  waited behind it fell silent long enough to lose its leadership or fall behind the leader's log.
   *  Only putting the file in place, noting it in the WAL and compacting take the lock. */
  async saveSnapshotStream(
    streamMeta: SnapshotStreamMeta,
    nextChunk: () => Uint8Array | null,
  ): Promise<SnapshotMeta> {
    this.writable();
    if (streamMeta.index <= this.log.snapshot.index) return this.writeSnapshot(streamMeta, nextChunk);
    this.checkSnapshotInLog(streamMeta);
    const path = joinPath(this.layout.snapDir, snapshotName(streamMeta.index, streamMeta.term));
    const tmp = `${path}.stream.tmp`;
    const meta = await this.writing("writing a snapshot", tmp, () =>
      writeSnapshotTemp(this.fs, tmp, this.owner, streamMeta, nextChunk),
    );
    return this.exclusive(async () => {
      const wal = this.writable();
      if (meta.index <= this.log.snapshot.index) {
        // A newer snapshot came in meanwhile (InstallSnapshot): ours is not needed any more.
        await this.fs.unlink(tmp).catch(() => undefined);
        return meta;
      }
      this.checkSnapshotInLog(meta);
      return await this.writing("writing a snapshot", path, async () => {
        await publishSnapshotTemp(this.fs, tmp, path, this.layout.snapDir);
        return await this.noteSnapshot(wal, meta, path);
      });
    });
  }

  private checkSnapshotInLog(m: SnapshotStreamMeta): void {
    assert(
      m.index <= this.log.lastIndex && this.log.termAt(m.index) === m.term,
      () => `saveSnapshot: ${m.index}/${m.term} is not an entry of the log (last ${this.log.lastIndex})`,
    );
  }

  /** Inside exclusive(), once the snapshot file is in place: records it in the WAL and compacts. */
  private async noteSnapshot(wal: WalWriter, meta: SnapshotMeta, path: string): Promise<SnapshotMeta> {
    this.setSnapshot(meta, path);
    await wal.write(
      encodeRecords([{ type: "snapshot", index: meta.index, term: meta.term, reset: false }]),
      false,
    );
    this.log.compact(meta.index, meta.term);
    await wal.removeCovered(meta.index);
    await this.pruneSnapshots();
    return meta;
  }

  /** Inside exclusive(): writes the snapshot file, notes it in the WAL, compacts; returns the full meta. */
  private async writeSnapshot(
    streamMeta: SnapshotStreamMeta,
    nextChunk: () => Uint8Array | null,
  ): Promise<SnapshotMeta> {
    const wal = this.writable();
    if (streamMeta.index <= this.log.snapshot.index) {
      let crc = 0; // an older snapshot than ours: nothing to write, but the caller gets its meta
      let size = 0;
      for (let chunk = nextChunk(); chunk !== null; chunk = nextChunk()) {
        crc = crc32c(chunk, crc);
        size += chunk.length;
      }
      return { ...streamMeta, sizeBytes: size, crc32c: crc };
    }
    this.checkSnapshotInLog(streamMeta);
    return await this.writing("writing a snapshot", this.layout.snapDir, async () => {
      const { path, meta } = await writeSnapshotFile(
        this.fs,
        this.layout.snapDir,
        this.owner,
        streamMeta,
        nextChunk,
      );
      return await this.noteSnapshot(wal, meta, path);
    });
  }

  writeSnapshotChunk(meta: SnapshotMeta, offset: number, data: Uint8Array): Promise<void> {
    return this.exclusive(async () => {
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
      if (offset === 0) {
        await this.discardIncoming();
        const path = joinPath(this.layout.snapDir, "incoming.snap.tmp");
        await this.writing("receiving a snapshot", path, async () => {
          const handle = await this.fs.open(path, "overwrite");
          const header = encodeSnapshotHeader(this.owner, meta);
          this.incoming = { meta, path, handle, headerBytes: header.length, written: 0 };
          await handle.append(header);
        });
      }
      const incoming = this.incoming;
      if (incoming === null || !sameMeta(incoming.meta, meta))
        return bad(`no snapshot ${meta.index}/${meta.term} is being received at offset ${offset}`);
      if (offset > incoming.written)
        bad(`offset ${offset} leaves a gap after ${incoming.written} bytes received`);
      await this.writing("receiving a snapshot", incoming.path, () =>
        incoming.handle.writeAt(incoming.headerBytes + offset, data),
      );
      incoming.written = Math.max(incoming.written, offset + data.length);
    });
  }

  installIncomingSnapshot(meta: SnapshotMeta): Promise<void> {
    return this.exclusive(async () => {
      const wal = this.writable();
      const incoming = this.incoming;
      if (incoming === null || !sameMeta(incoming.meta, meta)) throw notReceiving(this.nodeId, meta);
      // Checked in 4 MiB reads: the image need not be in memory whole (the state machine reads it
      // back in chunks, with readSnapshotChunk).
      const fileBytes = await incoming.handle.size();
      let crc = 0;
      for (let at = incoming.headerBytes; at < fileBytes; at += INSTALL_CHECK_CHUNK_BYTES)
        crc = crc32c(
          await incoming.handle.read(at, Math.min(INSTALL_CHECK_CHUNK_BYTES, fileBytes - at)),
          crc,
        );
      const received = fileBytes - incoming.headerBytes;
      if (received !== meta.sizeBytes || crc !== meta.crc32c) {
        await this.discardIncoming();
        throw corruptError(
          this.nodeId,
          incoming.path,
          incoming.headerBytes,
          received !== meta.sizeBytes
            ? `received snapshot ${meta.index}/${meta.term} has ${received} bytes, expected ${meta.sizeBytes}`
            : `received snapshot ${meta.index}/${meta.term} fails its checksum`,
          "the sender should send the snapshot again from offset 0",
        );
      }
      await this.writing("installing a snapshot", incoming.path, async () => {
        await incoming.handle.sync();
        await incoming.handle.close();
        this.incoming = null;
        const path = joinPath(this.layout.snapDir, snapshotFileName(meta));
        await this.fs.rename(incoming.path, path);
        await this.fs.syncDir(this.layout.snapDir);
        this.setSnapshot(meta, path);
        await wal.write(
          encodeRecords([{ type: "snapshot", index: meta.index, term: meta.term, reset: true }]),
          true,
        );
        this.log.reset(meta.index, meta.term);
        await wal.roll(meta.index + 1, this.hardState, this.log.snapshot);
        await wal.removeCovered(meta.index);
        await this.pruneSnapshots();
      });
    });
  }

  // ---- reads ----

  loadSnapshotImage(): Promise<{ meta: SnapshotMeta; image: Uint8Array } | null> {
    return this.exclusive(async () => {
      this.readable();
      const snap = this.snapshot;
      if (snap === null) return null;
      try {
        const loaded = await readSnapshotFile(this.fs, snap.path, this.owner, true);
        return { meta: loaded.meta, image: loaded.image ?? new Uint8Array(0) };
      } catch (e) {
        if (e instanceof RaftKvError) throw e;
        throw ioError(this.nodeId, "reading a snapshot", snap.path, e);
      }
    });
  }

  readSnapshotChunk(meta: SnapshotMeta, offset: number, length: number): Promise<Uint8Array> {
    return this.exclusive(async () => {
      this.readable();
      const snap = this.snapshot;
      if (snap === null || !sameMeta(snap.meta, meta))
        throw new StorageError({
          code: "INVALID_ARGUMENT",
          message: `snapshot ${meta.index}/${meta.term} is not the newest snapshot (now ${snap === null ? "none" : `${snap.meta.index}/${snap.meta.term}`})`,
          nodeId: this.nodeId,
          hint: "send the newest snapshot instead",
        });
      if (!Number.isSafeInteger(offset) || offset < 0 || offset > meta.sizeBytes || length < 0)
        throw new StorageError({
          code: "INVALID_ARGUMENT",
          message: `snapshot read at ${offset} (+${length}) is outside the image of ${meta.sizeBytes} bytes`,
          nodeId: this.nodeId,
        });
      try {
        if (this.reader?.path !== snap.path) {
          await this.reader?.handle.close();
          this.reader = { path: snap.path, handle: await this.fs.open(snap.path, "read") };
        }
        return await this.reader.handle.read(
          snap.headerBytes + offset,
          Math.min(length, meta.sizeBytes - offset),
        );
      } catch (e) {
        throw ioError(this.nodeId, "reading a snapshot chunk", snap.path, e);
      }
    });
  }

  readIncomingSnapshotChunk(meta: SnapshotMeta, offset: number, length: number): Promise<Uint8Array> {
    return this.exclusive(async () => {
      this.readable();
      const incoming = this.incoming;
      if (incoming === null || !sameMeta(incoming.meta, meta)) throw notReceiving(this.nodeId, meta);
      if (!Number.isSafeInteger(offset) || offset < 0 || length < 0)
        throw new StorageError({
          code: "INVALID_ARGUMENT",
          message: `incoming snapshot read at ${offset} (+${length}) is out of range`,
          nodeId: this.nodeId,
        });
      const end = Math.min(offset + length, incoming.written);
      if (end <= offset) return new Uint8Array(0);
      try {
        return await incoming.handle.read(incoming.headerBytes + offset, end - offset);
      } catch (e) {
        throw ioError(this.nodeId, "reading a received snapshot", incoming.path, e);
      }
    });
  }

  /** For the simulator's crashes: this storage's process is gone, so whatever of its work is still in
   *  flight must not touch the file system any more (the restarted node's storage owns it now). */
  abandon(): void {
    this.failure = new StorageError({
      code: "STORAGE",
      message: "storage abandoned by a simulated crash",
      nodeId: this.nodeId,
      hint: "none: only the simulator abandons storage",
    });
  }

  close(): Promise<void> {
    return this.exclusive(async () => {
      if (this.status === "closed") return;
      this.status = "closed";
      // A clean shutdown makes everything saved durable (best effort: an error here changes nothing acknowledged).
      if (this.failure === null) await this.wal?.sync().catch(() => undefined);
      await this.releaseAll();
    });
  }

  // ---- helpers ----

  /** Runs operations one at a time, in call order. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private readable(): void {
    assert(this.status === "open", () => `FileStorage used while ${this.status}`);
  }

  private writable(): WalWriter {
    this.readable();
    if (this.failure !== null)
      throw new StorageError({
        code: "STORAGE",
        message: `storage refuses writes after an earlier error: ${this.failure.message}`,
        nodeId: this.nodeId,
        ...(this.failure.file === undefined ? {} : { file: this.failure.file }),
        hint: "this node must stop acknowledging; fix the cause and restart it (what was synced is kept)",
        cause: this.failure,
      });
    return this.wal!;
  }

  /** Runs a write; any error stops all further writes (never retry an fsync, never ack past a failure). */
  private async writing<T>(what: string, file: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      const err = e instanceof StorageError ? e : ioError(this.nodeId, what, file, e);
      this.failure = err;
      throw err;
    }
  }

  private checkImage(meta: SnapshotMeta, image: Uint8Array): void {
    if (image.length !== meta.sizeBytes || crc32c(image) !== meta.crc32c)
      throw new StorageError({
        code: "INVALID_ARGUMENT",
        message: `snapshot image does not match its meta (${image.length} bytes, meta says ${meta.sizeBytes} and crc ${meta.crc32c})`,
        nodeId: this.nodeId,
        hint: "compute meta.sizeBytes and meta.crc32c from the image",
      });
  }

  private setSnapshot(meta: SnapshotMeta, path: string): void {
    this.snapshot = { meta, path, headerBytes: encodeSnapshotHeader(this.owner, meta).length };
  }

  private async pruneSnapshots(): Promise<void> {
    const names = await listSnapshotFiles(this.fs, this.layout.snapDir);
    const doomed = names.slice(this.retainSnapshots).map((n) => joinPath(this.layout.snapDir, n));
    for (const path of doomed) if (path !== this.snapshot?.path) await this.fs.unlink(path);
    if (doomed.length > 0) await this.fs.syncDir(this.layout.snapDir);
  }

  private async discardIncoming(): Promise<void> {
    const incoming = this.incoming;
    if (incoming === null) return;
    this.incoming = null;
    await incoming.handle.close();
    await this.fs.unlink(incoming.path).catch(() => undefined);
  }

  private async releaseAll(): Promise<void> {
    const steps: (() => Promise<void>)[] = [
      async () => this.wal?.close(),
      async () => this.reader?.handle.close(),
      async () => this.incoming?.handle.close(),
      async () => this.lock?.release(),
    ];
    for (const step of steps) await step().catch(() => undefined);
    this.wal = null;
    this.reader = null;
    this.incoming = null;
    this.lock = null;
  }
}

function snapshotFileName(meta: SnapshotMeta): string {
  return `${String(meta.index).padStart(20, "0")}-${String(meta.term).padStart(20, "0")}.snap`;
}
