// Reads WAL segments without changing them: frames to records, each segment's header checked, and the
// last segment's torn tail told apart from damage (which refuses with file and offset).

import { crc32c } from "../lib/crc32c.ts";
import { ByteReader, ByteWriter, DecodeError } from "./bytes.ts";
import { parseSegmentName } from "./data-dir.ts";
import type { FileSystem } from "./file-system.ts";
import { joinPath } from "./file-system.ts";
import type { Identity } from "./identity.ts";
import { corruptError, StorageError } from "./storage-error.ts";
import { readFrame } from "./wal-frame.ts";
import type { SegmentHeaderRecord, WalRecord } from "./wal-record.ts";
import { decodeRecord } from "./wal-record.ts";

export interface ScannedRecord {
  readonly record: WalRecord;
  /** Byte offset of the record's frame in its segment. */
  readonly offset: number;
}

export interface ScannedSegment {
  readonly path: string;
  readonly seq: number;
  readonly firstIndex: number;
  /** Null only for an empty last segment (created, then the crash came before its header was durable). */
  readonly header: SegmentHeaderRecord | null;
  readonly records: readonly ScannedRecord[];
  /** Physical size, including zero-preallocated space after the records. */
  readonly sizeBytes: number;
  /** Where the last good record ends. */
  readonly validBytes: number;
  /** A torn tail in the last segment: where it starts and why it is one. */
  readonly torn: { readonly offset: number; readonly reason: string } | null;
}

/** Segment file names in a WAL folder, in sequence order. Refuses two files with one sequence number. */
export async function listSegments(
  fs: FileSystem,
  walDir: string,
  nodeId: number,
): Promise<{ path: string; seq: number; firstIndex: number }[]> {
  const found: { path: string; seq: number; firstIndex: number }[] = [];
  for (const name of await fs.readdir(walDir)) {
    const parsed = parseSegmentName(name);
    if (parsed !== null) found.push({ path: joinPath(walDir, name), ...parsed });
  }
  found.sort((a, b) => a.seq - b.seq);
  for (let i = 1; i < found.length; i++) {
    if (found[i]!.seq === found[i - 1]!.seq)
      throw corruptError(
        nodeId,
        found[i]!.path,
        undefined,
        `two WAL segments have sequence number ${found[i]!.seq}`,
      );
  }
  return found;
}

/** End of the written extent: one past the last non-zero byte. Every complete frame ends in a non-zero
 *  trailer, so zeros after it are preallocated (or never written) space. */
export function writtenExtent(bytes: Uint8Array): number {
  let end = bytes.length;
  while (end > 0 && bytes[end - 1] === 0) end--;
  return end;
}

/** Scans one segment. `isLast`: a torn tail is allowed (and reported) only in the last segment. */
export async function scanSegment(
  fs: FileSystem,
  file: { path: string; seq: number; firstIndex: number },
  owner: Identity,
  isLast: boolean,
): Promise<ScannedSegment> {
  const { path, seq, firstIndex } = file;
  const raw = await fs.readFile(path);
  const bytes = raw.subarray(0, writtenExtent(raw));
  const records: ScannedRecord[] = [];
  let offset = 0;
  let torn: ScannedSegment["torn"] = null;
  while (offset < bytes.length) {
    const frame = readFrame(bytes, offset);
    if (frame.kind === "ok") {
      let record: WalRecord;
      try {
        record = decodeRecord(frame.type, frame.payload);
      } catch (e) {
        if (!(e instanceof DecodeError)) throw e;
        throw corruptError(
          owner.nodeId,
          path,
          offset,
          `WAL record checksums match but it is malformed: ${e.message}`,
        );
      }
      records.push({ record, offset });
      offset = frame.end;
      continue;
    }
    if (isLast && frame.kind === "partial") {
      torn = { offset, reason: `an interrupted write at the end of the log: ${frame.reason}` };
      break;
    }
    const what = isLast
      ? `WAL record damaged before the end of the log (${frame.reason})`
      : `WAL segment damaged (${frame.reason}); it is not the last segment, so this is not an interrupted write`;
    throw corruptError(owner.nodeId, path, offset, what);
  }
  const header = checkHeader(records, file, owner, isLast);
  return { path, seq, firstIndex, header, records, sizeBytes: raw.length, validBytes: offset, torn };
}

function checkHeader(
  records: readonly ScannedRecord[],
  file: { path: string; seq: number; firstIndex: number },
  owner: Identity,
  isLast: boolean,
): SegmentHeaderRecord | null {
  const first = records[0];
  if (first === undefined) {
    if (isLast) return null;
    throw corruptError(owner.nodeId, file.path, 0, "WAL segment is empty but later segments exist");
  }
  const h = first.record;
  if (h.type !== "segmentHeader")
    throw corruptError(
      owner.nodeId,
      file.path,
      0,
      `WAL segment starts with a ${h.type} record, not a header`,
    );
  for (const r of records.slice(1)) {
    if (r.record.type === "segmentHeader")
      throw corruptError(owner.nodeId, file.path, r.offset, "second segment header inside one segment");
  }
  if (h.clusterId !== owner.clusterId || h.nodeId !== owner.nodeId) {
    throw new StorageError({
      code: "CLUSTER_MISMATCH",
      message: `WAL segment belongs to node ${h.nodeId} of cluster "${h.clusterId}", but this is node ${owner.nodeId} of cluster "${owner.clusterId}"`,
      nodeId: owner.nodeId,
      file: file.path,
      offset: 0,
      hint: "remove files that were copied in from another node's data folder",
    });
  }
  if (h.formatVersion !== owner.formatVersion)
    throw corruptError(owner.nodeId, file.path, 0, `WAL segment has format version ${h.formatVersion}`);
  // The header's snapshot (index, term) is the entry before firstIndex when it is firstIndex - 1, and
  // replay takes it as such: a term for index 0, a snapshot without a term, or a snapshot past the
  // segment's start cannot have been written, and taking them would make the next append unreadable.
  if ((h.snapshotIndex === 0) !== (h.snapshotTerm === 0) || h.snapshotIndex >= h.firstIndex)
    throw corruptError(
      owner.nodeId,
      file.path,
      0,
      `WAL segment header gives snapshot index ${h.snapshotIndex} term ${h.snapshotTerm} for a segment starting at index ${h.firstIndex}: no writer produces that`,
    );
  if (h.seq !== file.seq || h.firstIndex !== file.firstIndex)
    throw corruptError(
      owner.nodeId,
      file.path,
      0,
      `WAL segment header says seq ${h.seq} first index ${h.firstIndex}, its file name differs (renamed?)`,
    );
  return h;
}

/** The newest-segment marker: u64 sequence number, u32 CRC32C of those 8 bytes, little-endian. */
export function encodeNewestSegment(seq: number): Uint8Array {
  const w = new ByteWriter(12);
  w.u64(seq);
  w.u32(crc32c(w.written(0, 8)));
  return w.finish().slice();
}

/** The sequence number the marker records (null without a marker: folders from before it, or no roll
 *  yet). Refuses a damaged marker. */
export async function readNewestSegment(
  fs: FileSystem,
  path: string,
  nodeId: number,
): Promise<number | null> {
  if (!(await fs.exists(path))) return null;
  const bytes = await fs.readFile(path);
  try {
    const r = new ByteReader(bytes);
    const seq = r.u64();
    const stored = r.u32();
    r.end("newest-segment marker");
    if (crc32c(bytes.subarray(0, 8)) !== stored) throw new DecodeError("checksum mismatch");
    return seq;
  } catch (e) {
    if (!(e instanceof DecodeError)) throw e;
    throw corruptError(
      nodeId,
      path,
      0,
      `the newest-segment marker is damaged (${e.message})`,
      "if the WAL segments are known to be complete, delete this file and restart; otherwise restore the folder from a backup, or move it aside and restart this node empty so the leader sends it a snapshot",
    );
  }
}
