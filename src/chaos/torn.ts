// Leaves a torn write at the end of a stopped node's newest WAL segment: a record cut short after the
// last complete one, as if the node died halfway through writing it (before any fsync, so nothing it
// held was acknowledged). Acknowledged records are never touched.
//
// Why not cut bytes off the last record instead: after SIGKILL every byte the node wrote is still in the
// page cache, and the last complete record may well have been fsynced and acknowledged (a follower's
// append answered, a vote granted). Cutting it would model a disk that loses synced data, a fault raftkv
// does not promise to survive, and a "violation" found that way would be the harness's. A write that
// never completed is exactly what a crash can leave: a valid frame header whose frame runs past the
// written bytes, or fewer bytes than a header, followed by the segment's preallocated zeros.
//
// Segment layout (src/storage/wal-frame.ts): frames of a 16-byte header (u32 LE payload length first),
// the payload and a 0xA5 trailer byte, in a zero-preallocated file; the written extent ends at the last
// non-zero byte, which is the last complete frame's trailer.

import { open, readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import type { Prng } from "../lib/prng.ts";

const SEGMENT_RE = /^(\d{16})-(\d{20})\.wal$/;
const FRAME_HEADER_BYTES = 16;
const FRAME_OVERHEAD_BYTES = 17;
const FRAME_TRAILER = 0xa5;
/** Scanning stops after this many frames (a segment is bounded; this bounds the loop). */
const MAX_FRAMES = 10_000_000;

export interface TornWrite {
  readonly segment: string;
  /** Where the torn record starts: the end of the last complete record. */
  readonly offset: number;
  /** Bytes of the torn record that reached the file. */
  readonly bytes: number;
  /** Length of the whole record that was being written. */
  readonly recordBytes: number;
}

/** The newest segment (highest sequence number) of `dataDir`/wal, or null when there is none. */
export async function newestSegment(dataDir: string): Promise<string | null> {
  let names: string[];
  try {
    names = await readdir(join(dataDir, "wal"));
  } catch {
    return null;
  }
  let best: { name: string; seq: number } | null = null;
  for (const name of names) {
    const m = SEGMENT_RE.exec(name);
    if (m === null) continue;
    const seq = Number(m[1]);
    if (best === null || seq > best.seq) best = { name, seq };
  }
  return best === null ? null : join(dataDir, "wal", best.name);
}

/**
 * Writes a prefix (1 byte to all but the last byte) of a copy of the segment's last complete record right
 * after it, and zeros up to the old written extent. The node must not be running. Returns what it wrote, or null when the segment has no
 * complete record or its frames do not parse (then nothing is written).
 */
export async function tearWalTail(dataDir: string, prng: Prng): Promise<TornWrite | null> {
  const segment = await newestSegment(dataDir);
  if (segment === null) return null;
  const bytes = await readFile(segment);
  const last = lastCompleteFrame(bytes);
  if (last === null) return null;
  const recordBytes = last.end - last.start;
  const cut = prng.int(1, recordBytes - 1);
  // The prefix, then zeros over whatever a still unrepaired older tear left, so exactly one record is torn.
  const torn = new Uint8Array(Math.max(cut, writtenExtent(bytes) - last.end));
  torn.set(bytes.subarray(last.start, last.start + cut));
  const fh = await open(segment, "r+");
  try {
    await fh.write(torn, 0, torn.length, last.end);
  } finally {
    await fh.close();
  }
  return { segment, offset: last.end, bytes: cut, recordBytes };
}

/** The last complete frame before the written extent, found by walking the frame lengths. */
export function lastCompleteFrame(bytes: Uint8Array): { start: number; end: number } | null {
  const extent = writtenExtent(bytes);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let offset = 0;
  let last: { start: number; end: number } | null = null;
  for (let n = 0; n < MAX_FRAMES && offset + FRAME_HEADER_BYTES <= extent; n++) {
    const end = offset + FRAME_OVERHEAD_BYTES + view.getUint32(offset, true);
    if (end > extent || bytes[end - 1] !== FRAME_TRAILER) break;
    last = { start: offset, end };
    offset = end;
  }
  return last;
}

/** One past the last non-zero byte. */
function writtenExtent(bytes: Uint8Array): number {
  let extent = bytes.length;
  while (extent > 0 && bytes[extent - 1] === 0) extent--;
  return extent;
}
