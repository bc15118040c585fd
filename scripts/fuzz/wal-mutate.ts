// Mutations of a data folder: raw damage to any file, single bit flips in live WAL records, records
// dropped, duplicated, reordered or moved between segments, records and snapshot headers forged with
// valid checksums, and whole-file changes (deleted, renamed, copied, foreign, stray, identity).

import { crc32c } from "../../src/lib/crc32c.ts";
import type { Prng } from "../../src/lib/prng.ts";
import { ByteWriter } from "../../src/storage/bytes.ts";
import { parseSegmentName, segmentName, snapshotName } from "../../src/storage/data-dir.ts";
import { decodeSnapshotHeader, encodeSnapshotHeader } from "../../src/storage/snapshot-file.ts";
import { readFrame, writeFrame } from "../../src/storage/wal-frame.ts";
import { decodeRecord, encodeRecords, FORMAT_VERSION, type WalRecord } from "../../src/storage/wal-record.ts";
import { writtenExtent } from "../../src/storage/wal-scan.ts";
import { concat, mutateBytes } from "./mutate.ts";
import { DATA_DIR, type Folder } from "./wal-folder.ts";

const WAL_DIR = `${DATA_DIR}/wal`;
const SNAP_DIR = `${DATA_DIR}/snap`;
const IDENTITY = `${DATA_DIR}/identity.json`;

interface Frame {
  readonly type: number;
  readonly payload: Uint8Array;
}

/** The frames of a segment up to the first that does not check out, and the physical size. */
function framesOf(bytes: Uint8Array): { frames: Frame[]; size: number } {
  const frames: Frame[] = [];
  const end = writtenExtent(bytes);
  for (let off = 0; off < end; ) {
    const f = readFrame(bytes.subarray(0, end), off);
    if (f.kind !== "ok") break;
    frames.push({ type: f.type, payload: f.payload.slice() });
    off = f.end;
  }
  return { frames, size: bytes.length };
}

/** Where the last complete frame ends (a torn frame after it is not a live record). */
function completeFramesEnd(bytes: Uint8Array): number {
  const end = writtenExtent(bytes);
  let off = 0;
  while (off < end) {
    const f = readFrame(bytes.subarray(0, end), off);
    if (f.kind !== "ok") break;
    off = f.end;
  }
  return off;
}

/** Frames back to a segment, zero-padded to its old physical size (the preallocated space). */
function segmentOf(frames: readonly Frame[], size: number): Uint8Array {
  const w = new ByteWriter(256);
  for (const f of frames) writeFrame(w, f.type, (p) => p.bytes(f.payload));
  const written = w.finish();
  return written.length >= size ? written.slice() : concat(written, new Uint8Array(size - written.length));
}

function segments(folder: Folder): string[] {
  return [...folder.files.keys()].filter((p) => p.startsWith(`${WAL_DIR}/`) && p.endsWith(".wal")).sort();
}

function snapshots(folder: Folder): string[] {
  return [...folder.files.keys()].filter((p) => p.startsWith(`${SNAP_DIR}/`) && p.endsWith(".snap"));
}

/** Segments recovery reads: those after the last gap in sequence numbers. */
function liveSegments(folder: Folder): string[] {
  const segs = segments(folder)
    .map((path) => ({ path, seq: parseSegmentName(path.slice(WAL_DIR.length + 1))?.seq ?? -1 }))
    .filter((s) => s.seq >= 0);
  let from = 0;
  for (let i = 1; i < segs.length; i++) if (segs[i]!.seq !== segs[i - 1]!.seq + 1) from = i;
  return segs.slice(from).map((s) => s.path);
}

function fieldValue(prng: Prng, old: number): number {
  const choice = prng.int(0, 5);
  if (choice === 0) return prng.pick([0, 1, 2, 2 ** 31, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER]);
  if (choice === 1) return prng.int(0, 50);
  return Math.max(0, Math.min(Number.MAX_SAFE_INTEGER, old + prng.pick([-3, -2, -1, 1, 2, 5])));
}

/** A record with one field changed, still well-formed enough to encode. */
function forgeRecord(r: WalRecord, prng: Prng): WalRecord {
  switch (r.type) {
    case "segmentHeader": {
      const which = prng.int(0, 6);
      if (which === 0) return { ...r, seq: Math.max(1, fieldValue(prng, r.seq)) };
      if (which === 1) return { ...r, firstIndex: Math.max(1, fieldValue(prng, r.firstIndex)) };
      if (which === 2) return { ...r, nodeId: fieldValue(prng, r.nodeId) };
      if (which === 3) return { ...r, clusterId: prng.pick(["other", "", "x".repeat(256)]) };
      if (which === 4) return { ...r, formatVersion: prng.pick([0, FORMAT_VERSION + 1, 2 ** 32 - 1]) };
      if (which === 5) return { ...r, snapshotIndex: fieldValue(prng, r.snapshotIndex) };
      return { ...r, snapshotTerm: fieldValue(prng, r.snapshotTerm) };
    }
    case "entries": {
      const entries = r.entries.slice();
      const i = prng.int(0, entries.length - 1);
      const e = entries[i]!;
      const which = prng.int(0, 3);
      if (which === 0) entries[i] = { ...e, term: fieldValue(prng, e.term) };
      else if (which === 1) {
        const shift = prng.pick([-2, -1, 1, 2, 1000]);
        return {
          type: "entries",
          entries: entries.map((x) => ({ ...x, index: Math.max(1, x.index + shift) })),
        };
      } else if (which === 2) entries[i] = { ...e, kind: e.kind === "noop" ? "command" : "noop" };
      else entries.splice(i, 1);
      return entries.length === 0 ? r : { type: "entries", entries };
    }
    case "hardState": {
      const h = r.hardState;
      const which = prng.int(0, 2);
      if (which === 0) return { type: "hardState", hardState: { ...h, term: fieldValue(prng, h.term) } };
      if (which === 1)
        return {
          type: "hardState",
          hardState: { ...h, votedFor: prng.chance(0.3) ? null : fieldValue(prng, h.votedFor ?? 1) },
        };
      return { type: "hardState", hardState: { ...h, commitIndex: fieldValue(prng, h.commitIndex) } };
    }
    case "truncate":
      return { type: "truncate", fromIndex: Math.max(1, fieldValue(prng, r.fromIndex)) };
    case "snapshot": {
      const which = prng.int(0, 2);
      if (which === 0) return { ...r, index: fieldValue(prng, r.index) };
      if (which === 1) return { ...r, term: fieldValue(prng, r.term) };
      return { ...r, reset: !r.reset };
    }
  }
}

/** Records copied in from `source` were written there: they count as written here too (and forged
 *  records make this folder forged). */
function absorbWritten(f: Folder, source: Folder): void {
  if (source.mode === "forged") f.mode = "forged";
  const union = (a: readonly string[], b: readonly string[]) => [...new Set([...a, ...b])];
  f.written = {
    entries: union(f.written.entries, source.written.entries),
    hardStates: union(f.written.hardStates, source.written.hardStates),
    snapshots: union(f.written.snapshots, source.written.snapshots),
  };
}

type FolderMutation = (f: Folder, prng: Prng, other: Folder) => void;

function pickFile(f: Folder, prng: Prng): string | null {
  const files = [...f.files.keys()].filter((p) => !p.endsWith("/"));
  if (files.length === 0) return null;
  const segs = segments(f);
  return segs.length > 0 && prng.chance(0.6) ? prng.pick(segs) : prng.pick(files);
}

/** Damage as a disk does it: checksums catch it where it lands. */
const rawDamage: FolderMutation = (f, prng) => {
  const path = pickFile(f, prng);
  if (path === null) return;
  const bytes = f.files.get(path)!;
  const end = writtenExtent(bytes);
  // Mostly inside the written extent, where the records are.
  const region = prng.chance(0.8) && end > 0 ? bytes.subarray(0, end) : bytes;
  const mutated = mutateBytes(region, region, prng, 2);
  f.files.set(path, concat(mutated, bytes.subarray(region.length)));
};

/** One bit flipped inside a live record: recovery must refuse, naming the file. */
const singleFlip: FolderMutation = (f, prng) => {
  const live = liveSegments(f);
  if (live.length === 0) return;
  const path = prng.pick(live);
  const bytes = f.files.get(path)!.slice();
  const end = completeFramesEnd(bytes);
  if (end === 0) return;
  const offset = prng.int(0, end - 1);
  bytes[offset] = bytes[offset]! ^ (1 << prng.int(0, 7));
  f.files.set(path, bytes);
  f.expect = { file: path, offset };
};

/** Whole frames dropped, duplicated, swapped, or moved from another segment: checksums all pass,
 *  and every record was once written, so what recovery returns must still be written data. */
const reorderFrames: FolderMutation = (f, prng, other) => {
  const segs = segments(f);
  if (segs.length === 0) return;
  const path = prng.pick(segs);
  const { frames, size } = framesOf(f.files.get(path)!);
  if (frames.length === 0) return;
  const i = prng.int(0, frames.length - 1);
  const choice = prng.int(0, 4);
  if (choice === 0) frames.splice(i, 1);
  else if (choice === 1) frames.splice(prng.int(0, frames.length), 0, frames[i]!);
  else if (choice === 2) {
    const j = prng.int(0, frames.length - 1);
    [frames[i], frames[j]] = [frames[j]!, frames[i]!];
  } else if (choice === 3)
    frames.length = i + 1; // lose the tail at a record boundary
  else {
    // From another segment of this folder, or of another folder (perhaps another node's).
    const source = prng.chance(0.7) ? f : other;
    const sourceSegs = segments(source);
    if (sourceSegs.length === 0) return;
    if (source !== f) absorbWritten(f, source);
    const from = framesOf(source.files.get(prng.pick(sourceSegs))!).frames;
    if (from.length > 0) frames.splice(prng.int(0, frames.length), 0, prng.pick(from));
  }
  f.files.set(path, segmentOf(frames, size));
};

/** A record's payload damaged or rewritten and its checksums recomputed: a bug, not a disk fault. */
const forgeFrame: FolderMutation = (f, prng) => {
  const segs = segments(f);
  if (segs.length === 0) return;
  const path = prng.pick(segs);
  const { frames, size } = framesOf(f.files.get(path)!);
  if (frames.length === 0) return;
  const i = prng.int(0, frames.length - 1);
  const frame = frames[i]!;
  if (prng.chance(0.6)) {
    try {
      const forged = encodeRecords([forgeRecord(decodeRecord(frame.type, frame.payload), prng)]);
      const ok = readFrame(forged, 0);
      if (ok.kind === "ok") frames[i] = { type: ok.type, payload: ok.payload.slice() };
    } catch {
      return;
    }
  } else if (prng.chance(0.2)) {
    frames[i] = { type: prng.pick([0, 1, 2, 3, 4, 5, 6, 255]), payload: frame.payload };
  } else {
    frames[i] = { type: frame.type, payload: mutateBytes(frame.payload, frame.payload, prng, 2) };
  }
  f.files.set(path, segmentOf(frames, size));
  f.mode = "forged";
};

/** A snapshot file with its header's meta or its image changed and every checksum recomputed. */
const forgeSnapshot: FolderMutation = (f, prng) => {
  const snaps = snapshots(f);
  if (snaps.length === 0) return;
  const path = prng.pick(snaps);
  const bytes = f.files.get(path)!;
  let header: ReturnType<typeof decodeSnapshotHeader>;
  try {
    header = decodeSnapshotHeader(bytes.subarray(0, Math.min(bytes.length, 512)));
  } catch {
    return;
  }
  let image = bytes.subarray(header.headerBytes);
  let { meta } = header;
  const which = prng.int(0, 3);
  if (which === 0) meta = { ...meta, index: Math.max(0, fieldValue(prng, meta.index)) };
  else if (which === 1) meta = { ...meta, term: fieldValue(prng, meta.term) };
  else if (which === 2) {
    image = mutateBytes(image, image, prng, 2);
    if (prng.chance(0.7)) meta = { ...meta, sizeBytes: image.length, crc32c: crc32c(image) };
  } else meta = { ...meta, sizeBytes: fieldValue(prng, meta.sizeBytes) };
  f.files.delete(path);
  const renamed = prng.chance(0.7) ? `${SNAP_DIR}/${snapshotName(meta.index, meta.term)}` : path;
  f.files.set(renamed, concat(encodeSnapshotHeader(header.owner, meta), image));
  f.mode = "forged";
};

/** Whole files: deleted, renamed, copied under another name, stray temp files, the identity file. */
const fileOps: FolderMutation = (f, prng) => {
  const segs = segments(f);
  const choice = prng.int(0, 9);
  if (choice === 9) {
    // The newest segments lost (a bad copy or restore): every remaining record is intact.
    for (const path of segs.slice(-prng.int(1, 2))) f.files.delete(path);
  } else if (choice === 0) {
    const path = pickFile(f, prng);
    if (path !== null) f.files.delete(path);
  } else if (choice === 1 || choice === 2) {
    if (segs.length === 0) return;
    const path = prng.pick(segs);
    const parsed = parseSegmentName(path.slice(WAL_DIR.length + 1));
    if (parsed === null) return;
    const seq = choice === 1 ? Math.max(1, parsed.seq + prng.pick([-1, 1, 2, 10])) : parsed.seq;
    const firstIndex =
      choice === 2 ? Math.max(1, parsed.firstIndex + prng.pick([-1, 1, 5])) : parsed.firstIndex;
    const bytes = f.files.get(path)!;
    if (prng.chance(0.5)) f.files.delete(path); // renamed, else copied
    f.files.set(`${WAL_DIR}/${segmentName(seq, firstIndex)}`, bytes);
  } else if (choice === 3) {
    f.files.set(
      `${prng.pick([WAL_DIR, SNAP_DIR])}/${prng.pick(["x.tmp", "incoming.snap.tmp", "junk", "0000000000000001-00000000000000000001.wal.tmp"])}`,
      Uint8Array.of(1, 2, 3),
    );
  } else if (choice === 4) {
    f.files.delete(IDENTITY);
  } else if (choice === 5) {
    const text = prng.pick([
      "",
      "{",
      "null",
      "[]",
      '{"formatVersion":1,"clusterId":"other","nodeId":1}',
      '{"formatVersion":2,"clusterId":"fz","nodeId":1}',
      `{"formatVersion":1,"clusterId":${JSON.stringify(f.owner.clusterId)},"nodeId":${f.owner.nodeId + 1}}`,
      '{"formatVersion":1,"clusterId":"fz","nodeId":1e400}',
    ]);
    f.files.set(IDENTITY, new TextEncoder().encode(text));
  } else if (choice === 6) {
    const path = pickFile(f, prng);
    if (path !== null) f.files.set(path, f.files.get(path)!.slice(0, prng.int(0, f.files.get(path)!.length)));
  } else if (choice === 7) {
    const snaps = snapshots(f);
    if (snaps.length > 0) f.files.delete(prng.pick(snaps));
  } else {
    const path = pickFile(f, prng);
    if (path !== null) f.files.set(path, new Uint8Array(f.files.get(path)!.length)); // zeroed
  }
};

const MUTATIONS: readonly (readonly [FolderMutation, number])[] = [
  [rawDamage, 4],
  [singleFlip, 2],
  [reorderFrames, 3],
  [forgeFrame, 4],
  [forgeSnapshot, 1],
  [fileOps, 2],
];
const TOTAL = MUTATIONS.reduce((s, [, w]) => s + w, 0);

/** One or two mutations of a copy of `folder`. A single bit flip as the only change to a folder
 *  straight from the generator carries the expectation that recovery refuses. */
export function mutateFolder(folder: Folder, other: Folder, prng: Prng): Folder {
  const pristine = folder.mode === "pristine";
  const f: Folder = {
    ...folder,
    files: new Map(folder.files),
    mode: pristine ? "checksummed" : folder.mode,
    expect: null,
  };
  const count = prng.chance(0.7) ? 1 : 2;
  for (let k = 0; k < count; k++) {
    let r = prng.int(0, TOTAL - 1);
    for (const [m, w] of MUTATIONS) {
      if (r < w) {
        m(f, prng, other);
        if (m !== singleFlip || k > 0 || count > 1 || !pristine) f.expect = null;
        break;
      }
      r -= w;
    }
  }
  return f;
}
