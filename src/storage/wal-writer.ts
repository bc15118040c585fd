// The WAL writer: appends encoded records to the current segment (one write, at most one fdatasync per
// group commit), rolls to new segments, and removes segments a snapshot has made unnecessary.

import type { HardState } from "../core/types.ts";
import { NEWEST_SEGMENT_FILE, segmentName } from "./data-dir.ts";
import type { FileHandle, FileSystem } from "./file-system.ts";
import { joinPath } from "./file-system.ts";
import type { Identity } from "./identity.ts";
import type { IndexTerm } from "./log-replay.ts";
import type { SegmentInfo } from "./recovery.ts";
import { encodeRecords } from "./wal-record.ts";
import { encodeNewestSegment } from "./wal-scan.ts";

/** Zeros written ahead of the records at most this far (less when segments are smaller). */
export const MAX_PREALLOC_BYTES = 4 * 1024 * 1024;

export class WalWriter {
  private dirty = false;

  private constructor(
    private readonly fs: FileSystem,
    private readonly walDir: string,
    private readonly owner: Identity,
    private readonly preallocBytes: number,
    private readonly segments: SegmentInfo[],
    private handle: FileHandle,
    /** Logical end: where the next record goes. */
    private bytes: number,
    /** Physical size: records plus zero-preallocated space. Overwriting preallocated blocks makes an
     *  fdatasync cheaper than extending the file (no block allocation, no size change to journal). */
    private allocated: number,
  ) {}

  /** Starts a WAL in an empty folder (segment 1, whose header and hard state are durable on return). */
  static async create(
    fs: FileSystem,
    walDir: string,
    owner: Identity,
    preallocBytes: number,
    hardState: HardState,
    snapshot: IndexTerm,
  ): Promise<WalWriter> {
    const c = await createSegment(
      fs,
      walDir,
      owner,
      preallocBytes,
      1,
      snapshot.index + 1,
      hardState,
      snapshot,
    );
    return new WalWriter(fs, walDir, owner, preallocBytes, [c.info], c.handle, c.bytes, c.allocated);
  }

  /** Continues appending to the last of the recovered segments. */
  static async resume(
    fs: FileSystem,
    walDir: string,
    owner: Identity,
    preallocBytes: number,
    segments: readonly SegmentInfo[],
    lastSegmentBytes: number,
  ): Promise<WalWriter> {
    const last = segments[segments.length - 1]!;
    const handle = await fs.open(last.path, "write");
    const allocated = await handle.size();
    return new WalWriter(
      fs,
      walDir,
      owner,
      preallocBytes,
      [...segments],
      handle,
      lastSegmentBytes,
      allocated,
    );
  }

  get currentBytes(): number {
    return this.bytes;
  }

  get currentPath(): string {
    return this.handle.path;
  }

  get segmentCount(): number {
    return this.segments.length;
  }

  /** Appends bytes (whole records) with one write; with `sync`, one fdatasync covering everything so far. */
  async write(data: Uint8Array, sync: boolean): Promise<void> {
    const end = this.bytes + data.length;
    if (sync && !this.dirty && data.length > 0 && end <= this.allocated) {
      // The common group commit: nothing else pending, space preallocated: one durable write.
      await this.handle.writeDurable(this.bytes, data);
      this.bytes = end;
      return;
    }
    if (data.length > 0) {
      this.dirty = true;
      if (end > this.allocated) {
        const target = end + this.preallocBytes;
        await this.handle.writeAt(this.allocated, new Uint8Array(target - this.allocated));
        this.allocated = target;
      }
      await this.handle.writeAt(this.bytes, data);
      this.bytes = end;
    }
    if (sync) await this.sync();
  }

  async sync(): Promise<void> {
    if (!this.dirty) return;
    await this.handle.sync();
    this.dirty = false;
  }

  /** Makes the current segment durable and starts the next one at `nextIndex`. */
  async roll(nextIndex: number, hardState: HardState, snapshot: IndexTerm): Promise<void> {
    await this.sync();
    await this.handle.close();
    const seq = this.segments[this.segments.length - 1]!.seq + 1;
    const c = await createSegment(
      this.fs,
      this.walDir,
      this.owner,
      this.preallocBytes,
      seq,
      nextIndex,
      hardState,
      snapshot,
    );
    this.segments.push(c.info);
    this.handle = c.handle;
    this.bytes = c.bytes;
    this.allocated = c.allocated;
    // After the segment is durable, so the marker never names a segment that may not exist.
    const marker = joinPath(this.walDir, NEWEST_SEGMENT_FILE);
    const h = await this.fs.open(`${marker}.tmp`, "overwrite");
    try {
      await h.append(encodeNewestSegment(seq));
      await h.sync();
    } finally {
      await h.close();
    }
    await this.fs.rename(`${marker}.tmp`, marker);
    await this.fs.syncDir(this.walDir);
  }

  /** Removes the oldest segments whose successor starts at or before `snapshotIndex + 1`: every entry
   *  after the snapshot was written after that successor began. Returns how many were removed. */
  async removeCovered(snapshotIndex: number): Promise<number> {
    let drop = 0;
    for (let k = 1; k < this.segments.length; k++)
      if (this.segments[k]!.firstIndex <= snapshotIndex + 1) drop = k;
    for (const seg of this.segments.slice(0, drop)) await this.fs.unlink(seg.path);
    this.segments.splice(0, drop);
    if (drop > 0) await this.fs.syncDir(this.walDir);
    return drop;
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

/** A new segment: header, hard state and preallocated zeros written to a temp name, synced, renamed,
 *  folder synced. */
async function createSegment(
  fs: FileSystem,
  walDir: string,
  owner: Identity,
  preallocBytes: number,
  seq: number,
  firstIndex: number,
  hardState: HardState,
  snapshot: IndexTerm,
): Promise<{ info: SegmentInfo; handle: FileHandle; bytes: number; allocated: number }> {
  const path = joinPath(walDir, segmentName(seq, firstIndex));
  const tmp = `${path}.tmp`;
  const data = encodeRecords([
    {
      type: "segmentHeader",
      formatVersion: owner.formatVersion,
      clusterId: owner.clusterId,
      nodeId: owner.nodeId,
      seq,
      firstIndex,
      snapshotIndex: snapshot.index,
      snapshotTerm: snapshot.term,
    },
    { type: "hardState", hardState },
  ]);
  const initial = new Uint8Array(Math.max(data.length, preallocBytes));
  initial.set(data);
  const h = await fs.open(tmp, "overwrite");
  try {
    await h.append(initial);
    await h.sync();
  } finally {
    await h.close();
  }
  await fs.rename(tmp, path);
  await fs.syncDir(walDir);
  const handle = await fs.open(path, "write");
  return { info: { path, seq, firstIndex }, handle, bytes: data.length, allocated: initial.length };
}
