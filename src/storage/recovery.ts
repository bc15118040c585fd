// Recovery planning: read a data folder (identity, snapshots, WAL) without changing it and decide what
// the node recovers to, which repairs to make (torn tail, leftovers) and what refuses to start.

import type { Entry, HardState } from "../core/types.ts";
import type { DataDirLayout } from "./data-dir.ts";
import { NEWEST_SEGMENT_FILE } from "./data-dir.ts";
import type { FileSystem } from "./file-system.ts";
import { joinPath } from "./file-system.ts";
import type { Identity } from "./identity.ts";
import { checkIdentity, decodeIdentity } from "./identity.ts";
import type { IndexTerm } from "./log-replay.ts";
import { LogReplay } from "./log-replay.ts";
import type { LoadedSnapshot } from "./snapshot-file.ts";
import { listSnapshotFiles, readSnapshotFile } from "./snapshot-file.ts";
import { corruptError, StorageError } from "./storage-error.ts";
import type { ScannedSegment } from "./wal-scan.ts";
import { listSegments, readNewestSegment, scanSegment } from "./wal-scan.ts";

/** A change recovery makes before the node runs (FileStorage applies them; verifyWal only reports). */
export type Repair =
  | { readonly kind: "truncate"; readonly path: string; readonly offset: number; readonly reason: string }
  | { readonly kind: "unlink"; readonly path: string; readonly reason: string }
  | { readonly kind: "rename"; readonly path: string; readonly to: string; readonly reason: string };

/** A live WAL segment the writer continues from. */
export interface SegmentInfo {
  readonly path: string;
  readonly seq: number;
  readonly firstIndex: number;
}

export interface RecoveryPlan {
  readonly kind: "recovered";
  /** The folder's incarnation from its identity file; null when the file predates incarnations (the
   *  open gives the folder one) or is missing from a pristine folder. */
  readonly incarnation: string | null;
  readonly hardState: HardState;
  readonly snapshot: LoadedSnapshot | null;
  readonly entries: Entry[];
  /** Snapshot index and term the log continues from ((0, 0) without a snapshot). */
  readonly base: IndexTerm;
  /** Live segments in order; the writer appends to the last, whose valid size is `lastSegmentBytes`. */
  readonly segments: readonly SegmentInfo[];
  readonly lastSegmentBytes: number;
  /** The WAL's own view of the log differs from the recovered one (it ends before the snapshot, or
   *  conflicts with it): a reset marker must be written before new entries. */
  readonly needsResetMarker: boolean;
  readonly repairs: readonly Repair[];
  readonly warnings: readonly { message: string; file: string; offset?: number }[];
}

/** A folder with no data yet (or only the leftovers of an initialization that did not finish). */
export interface FreshPlan {
  readonly kind: "fresh";
  readonly leftovers: readonly string[];
}

export async function planRecovery(
  fs: FileSystem,
  layout: DataDirLayout,
  owner: Identity,
): Promise<RecoveryPlan | FreshPlan> {
  const nodeId = owner.nodeId;
  const hasIdentity = await fs.exists(layout.identityFile);
  let incarnation: string | null = null;
  if (hasIdentity) {
    const found = decodeIdentity(await fs.readFile(layout.identityFile), layout.identityFile, nodeId);
    checkIdentity(found, owner, layout.identityFile);
    incarnation = found.incarnation;
  }
  const walFiles = (await fs.exists(layout.walDir)) ? await listSegments(fs, layout.walDir, nodeId) : [];
  const walNames = (await fs.exists(layout.walDir)) ? await fs.readdir(layout.walDir) : [];
  const snapNames = (await fs.exists(layout.snapDir)) ? await fs.readdir(layout.snapDir) : [];
  const leftovers = [
    ...walNames.map((n) => joinPath(layout.walDir, n)),
    ...snapNames.map((n) => joinPath(layout.snapDir, n)),
  ];
  if (!hasIdentity && walFiles.length === 0 && !snapNames.some((n) => n.endsWith(".snap")))
    return { kind: "fresh", leftovers };

  const plan = { ...(await planFromFiles(fs, layout, owner, walFiles)), incarnation };
  if (hasIdentity) return plan;
  // No identity file but data: a first start that stopped before its last step is harmless to redo;
  // anything else is a folder we must not adopt.
  const pristine =
    plan.snapshot === null &&
    plan.entries.length === 0 &&
    plan.hardState.term === 0 &&
    plan.hardState.commitIndex === 0;
  if (!pristine)
    throw corruptError(
      nodeId,
      layout.identityFile,
      undefined,
      "identity file is missing but the folder holds a WAL with data",
      "restore identity.json from a backup (it names the cluster and node), or move the folder aside",
    );
  return { kind: "fresh", leftovers };
}

async function planFromFiles(
  fs: FileSystem,
  layout: DataDirLayout,
  owner: Identity,
  walFiles: { path: string; seq: number; firstIndex: number }[],
): Promise<Omit<RecoveryPlan, "incarnation">> {
  const nodeId = owner.nodeId;
  const repairs: Repair[] = [];
  const warnings: { message: string; file: string; offset?: number }[] = [];

  // Snapshots: the newest that verifies; damaged newer ones are remembered (and set aside if unused).
  const damaged: { path: string; reason: string }[] = [];
  let snapshot: LoadedSnapshot | null = null;
  const snapFiles = (await fs.exists(layout.snapDir)) ? await listSnapshotFiles(fs, layout.snapDir) : [];
  for (const name of snapFiles) {
    const path = joinPath(layout.snapDir, name);
    try {
      snapshot = await readSnapshotFile(fs, path, owner);
      break;
    } catch (e) {
      if (!(e instanceof StorageError) || e.code !== "CORRUPT") throw e;
      damaged.push({ path, reason: e.message });
    }
  }
  for (const dir of [layout.snapDir, layout.walDir]) {
    for (const name of (await fs.exists(dir)) ? await fs.readdir(dir) : []) {
      if (name.endsWith(".tmp"))
        repairs.push({ kind: "unlink", path: joinPath(dir, name), reason: "unfinished file" });
    }
  }
  const base: IndexTerm = snapshot === null ? { index: 0, term: 0 } : snapshot.meta;

  if (walFiles.length === 0)
    throw corruptError(
      nodeId,
      layout.walDir,
      undefined,
      "the WAL is missing: the hard state (term and vote) cannot be recovered",
    );

  // A gap in sequence numbers is fine only before segments that the snapshot fully covers.
  let live = walFiles;
  for (let i = walFiles.length - 1; i > 0; i--) {
    if (walFiles[i]!.seq !== walFiles[i - 1]!.seq + 1) {
      const after = walFiles[i]!;
      if (after.firstIndex > base.index + 1)
        throw corruptError(
          nodeId,
          walFiles[i - 1]!.path,
          undefined,
          `WAL segment(s) ${walFiles[i - 1]!.seq + 1}..${after.seq - 1} are missing between this file and ${after.path}`,
        );
      for (const old of walFiles.slice(0, i))
        repairs.push({
          kind: "unlink",
          path: old.path,
          reason: "segment left from a compaction, covered by the snapshot",
        });
      live = walFiles.slice(i);
      break;
    }
  }

  const scanned: ScannedSegment[] = [];
  for (let i = 0; i < live.length; i++)
    scanned.push(await scanSegment(fs, live[i]!, owner, i === live.length - 1));
  const last = scanned[scanned.length - 1]!;
  if (last.torn !== null) {
    const message = `WAL tail torn at byte ${last.torn.offset} of ${last.path} (${last.torn.reason}): truncating ${last.sizeBytes - last.torn.offset} bytes that were never acknowledged`;
    warnings.push({ message, file: last.path, offset: last.torn.offset });
    repairs.push({ kind: "truncate", path: last.path, offset: last.torn.offset, reason: last.torn.reason });
  }
  if (last.header === null && scanned.length > 1) {
    scanned.pop();
    warnings.push({
      message: `WAL segment ${last.path} is empty (interrupted roll): removing it`,
      file: last.path,
    });
    repairs.push({ kind: "unlink", path: last.path, reason: "empty last segment" });
  }
  const markerPath = joinPath(layout.walDir, NEWEST_SEGMENT_FILE);
  const newestSeq = await readNewestSegment(fs, markerPath, nodeId);
  const lastLive = scanned[scanned.length - 1]!;
  if (newestSeq !== null && newestSeq > lastLive.seq)
    throw corruptError(
      nodeId,
      markerPath,
      0,
      `WAL segment ${newestSeq} was written but the newest segment present is ${lastLive.seq} (${lastLive.path}): the newest segment(s), with acknowledged entries and votes, are missing`,
    );
  const firstHeader = scanned[0]!.header;
  if (firstHeader === null)
    throw corruptError(
      nodeId,
      scanned[0]!.path,
      0,
      "the only WAL segment is empty: the hard state is missing",
    );

  const replay = new LogReplay(firstHeader, nodeId);
  scanned.forEach((seg, i) => {
    if (i > 0 && seg.header !== null) replay.beginSegment(seg.header, seg.path);
    for (const { record, offset } of seg.records) replay.apply(record, seg.path, offset);
  });
  const hardState = replay.hardState;
  if (hardState === null)
    throw corruptError(
      nodeId,
      scanned[0]!.path,
      0,
      "the WAL holds no hard state record: term and vote are unknown",
    );

  // Join the WAL's log to the snapshot.
  const lastSeg = scanned[scanned.length - 1]!;
  if (replay.start - 1 > base.index) {
    const newest = damaged[0];
    if (newest !== undefined)
      throw corruptError(
        nodeId,
        newest.path,
        undefined,
        `the newest snapshot is damaged (${newest.reason}) and the WAL no longer holds entries ${base.index + 1}..${replay.start - 1} to fall back on an older snapshot`,
      );
    throw corruptError(
      nodeId,
      scanned[0]!.path,
      0,
      `the WAL starts at index ${replay.start} but no snapshot covers the entries before it (snapshot missing?)`,
    );
  }
  for (const d of damaged) {
    warnings.push({
      message: `snapshot ${d.path} is damaged (${d.reason}); using an older one, the WAL covers the gap`,
      file: d.path,
    });
    repairs.push({
      kind: "rename",
      path: d.path,
      to: `${d.path}.corrupt`,
      reason: "damaged snapshot set aside",
    });
  }
  let entries: Entry[];
  let needsResetMarker = false;
  const termAtBase = base.index === 0 ? 0 : replay.termAt(base.index);
  if (base.index >= replay.nextIndex) {
    entries = [];
    needsResetMarker = base.index > replay.nextIndex - 1;
  } else if (termAtBase !== null && termAtBase !== base.term) {
    warnings.push({
      message: `the log has term ${termAtBase} at the snapshot's index ${base.index} (snapshot term ${base.term}): discarding the ${replay.nextIndex - 1 - base.index} uncommitted entries after it`,
      file: lastSeg.path,
    });
    entries = [];
    needsResetMarker = true;
  } else {
    entries = replay.entries.slice(base.index + 1 - replay.start);
    // The replay checked terms only from where the WAL starts; the snapshot's term comes before them.
    const first = entries[0];
    if (first !== undefined && first.term < base.term) {
      const at = locateEntry(scanned, first.index);
      throw corruptError(
        nodeId,
        at.path,
        at.offset,
        `term goes backwards after the snapshot: entry ${first.index} has term ${first.term} but snapshot ${base.index} has term ${base.term}; newer WAL segments are missing (deleted, or restored from an older backup)`,
      );
    }
  }
  const lastIndex = entries[entries.length - 1]?.index ?? base.index;
  if (hardState.commitIndex > lastIndex)
    throw corruptError(
      nodeId,
      lastSeg.path,
      lastSeg.validBytes,
      `the hard state's commit index ${hardState.commitIndex} is beyond the recovered log's last index ${lastIndex}: committed entries are missing`,
    );
  return {
    kind: "recovered",
    hardState,
    snapshot,
    entries,
    base: { index: base.index, term: base.term },
    segments: scanned.map((s) => ({ path: s.path, seq: s.seq, firstIndex: s.firstIndex })),
    lastSegmentBytes: lastSeg.validBytes,
    needsResetMarker,
    repairs,
    warnings,
  };
}

/** Where the last record holding entry `index` is (the one replay kept), or the first segment's start. */
function locateEntry(scanned: readonly ScannedSegment[], index: number): { path: string; offset: number } {
  let found = { path: scanned[0]!.path, offset: 0 };
  for (const seg of scanned)
    for (const { record, offset } of seg.records)
      if (record.type === "entries" && record.entries.some((e) => e.index === index))
        found = { path: seg.path, offset };
  return found;
}
