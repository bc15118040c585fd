// The data folder's layout: where the identity file, WAL segments and snapshot files live, and their names.
//
//   <dir>/LOCK                         pid lock of the running node
//   <dir>/identity.json                cluster id, node id, format version
//   <dir>/wal/<seq>-<firstIndex>.wal   WAL segments; seq orders them (a follower's truncation can make a
//                                      later segment start at a lower index), firstIndex names where
//   <dir>/snap/<index>-<term>.snap     snapshot files (header + image); *.tmp while being written
//   <dir>/values.scratch               the KV values of the running node (value-file.ts): scratch,
//                                      rebuilt from the snapshot and WAL at every start, and unlinked
//                                      as soon as it is opened (it never shows in a listing)
//   <dir>/state/<n>/                   the KV state store (LMDB's data.mdb, lock.mdb; kv-state.ts)

import { joinPath } from "./file-system.ts";

export interface DataDirLayout {
  readonly root: string;
  readonly identityFile: string;
  readonly walDir: string;
  readonly snapDir: string;
  readonly valuesFile: string;
  readonly stateDir: string;
}

export function layoutOf(dir: string): DataDirLayout {
  return {
    root: dir,
    identityFile: joinPath(dir, "identity.json"),
    walDir: joinPath(dir, "wal"),
    snapDir: joinPath(dir, "snap"),
    valuesFile: joinPath(dir, "values.scratch"),
    stateDir: joinPath(dir, "state"),
  };
}

/** In the WAL folder: the newest segment sequence number known written, updated after each roll, so
 *  that losing the newest segment(s) is noticed (their successor never exists to show a gap). */
export const NEWEST_SEGMENT_FILE = "newest-segment";

const SEGMENT_RE = /^(\d{16})-(\d{20})\.wal$/;
const SNAPSHOT_RE = /^(\d{20})-(\d{20})\.snap$/;

export function segmentName(seq: number, firstIndex: number): string {
  return `${String(seq).padStart(16, "0")}-${String(firstIndex).padStart(20, "0")}.wal`;
}

export function parseSegmentName(name: string): { seq: number; firstIndex: number } | null {
  const m = SEGMENT_RE.exec(name);
  if (m === null) return null;
  const seq = Number(m[1]);
  const firstIndex = Number(m[2]);
  return Number.isSafeInteger(seq) && Number.isSafeInteger(firstIndex) ? { seq, firstIndex } : null;
}

export function snapshotName(index: number, term: number): string {
  return `${String(index).padStart(20, "0")}-${String(term).padStart(20, "0")}.snap`;
}

export function parseSnapshotName(name: string): { index: number; term: number } | null {
  const m = SNAPSHOT_RE.exec(name);
  if (m === null) return null;
  const index = Number(m[1]);
  const term = Number(m[2]);
  return Number.isSafeInteger(index) && Number.isSafeInteger(term) ? { index, term } : null;
}
