// WAL record types and their payload codecs: segment header, entries, hard state, truncate and snapshot markers.

import { decodeMembership } from "../core/membership.ts";
import type { Entry, EntryKind, HardState } from "../core/types.ts";
import { ByteReader, ByteWriter, DecodeError } from "./bytes.ts";
import { writeFrame } from "./wal-frame.ts";

/** On-disk format version of WAL segments, snapshot files and the identity file. */
export const FORMAT_VERSION = 1;
export const MAX_CLUSTER_ID_BYTES = 256;

/** First record of every segment: whose it is and where it starts. The hard state follows it, so
 *  removing older segments never loses the latest hard state. */
export interface SegmentHeaderRecord {
  readonly type: "segmentHeader";
  readonly formatVersion: number;
  readonly clusterId: string;
  readonly nodeId: number;
  /** Segment sequence number (1, 2, ...), also in the file name. */
  readonly seq: number;
  /** The index the next entry appended to the log had when this segment was started. */
  readonly firstIndex: number;
  /** The newest snapshot when the segment was started (0, 0 if none); informational. */
  readonly snapshotIndex: number;
  readonly snapshotTerm: number;
}

export interface EntriesRecord {
  readonly type: "entries";
  /** Contiguous, ascending indexes. */
  readonly entries: readonly Entry[];
}

export interface HardStateRecord {
  readonly type: "hardState";
  readonly hardState: HardState;
}

/** A follower discarded its log suffix from `fromIndex` on; entries after this record replace it. */
export interface TruncateRecord {
  readonly type: "truncate";
  readonly fromIndex: number;
}

/** A snapshot now covers the log up to `index`. `reset`: the whole log was discarded (an installed
 *  snapshot from the leader) and restarts at index + 1. */
export interface SnapshotRecord {
  readonly type: "snapshot";
  readonly index: number;
  readonly term: number;
  readonly reset: boolean;
}

export type WalRecord =
  | SegmentHeaderRecord
  | EntriesRecord
  | HardStateRecord
  | TruncateRecord
  | SnapshotRecord;

const TYPE_CODES: Record<WalRecord["type"], number> = {
  segmentHeader: 1,
  entries: 2,
  hardState: 3,
  truncate: 4,
  snapshot: 5,
};

const KIND_CODES: Record<EntryKind, number> = { noop: 0, command: 1, config: 2 };

/** Encodes records as consecutive frames into one buffer (one write for a whole group commit). */
export function encodeRecords(records: readonly WalRecord[], sizeHintBytes = 256): Uint8Array {
  const w = new ByteWriter(sizeHintBytes);
  for (const r of records) writeFrame(w, TYPE_CODES[r.type], (p) => writePayload(p, r));
  return w.finish();
}

/** Bytes an entry takes inside an entries record. */
export function encodedEntryBytes(e: Entry): number {
  return 8 + 8 + 1 + 4 + e.data.length;
}

function writePayload(w: ByteWriter, r: WalRecord): void {
  switch (r.type) {
    case "segmentHeader":
      w.u32(r.formatVersion);
      w.u64(r.seq);
      w.u64(r.firstIndex);
      w.u64(r.nodeId);
      w.string(r.clusterId);
      w.u64(r.snapshotIndex);
      w.u64(r.snapshotTerm);
      return;
    case "entries":
      w.u32(r.entries.length);
      for (const e of r.entries) {
        w.u64(e.index);
        w.u64(e.term);
        w.u8(KIND_CODES[e.kind]);
        w.u32(e.data.length);
        w.bytes(e.data);
      }
      return;
    case "hardState":
      w.u64(r.hardState.term);
      w.u8(r.hardState.votedFor === null ? 0 : 1);
      w.u64(r.hardState.votedFor ?? 0);
      w.u64(r.hardState.commitIndex);
      return;
    case "truncate":
      w.u64(r.fromIndex);
      return;
    case "snapshot":
      w.u64(r.index);
      w.u64(r.term);
      w.u8(r.reset ? 1 : 0);
      return;
  }
}

/** Decodes a payload whose frame checked out. Throws DecodeError with the reason when malformed. */
export function decodeRecord(typeCode: number, payload: Uint8Array): WalRecord {
  const r = new ByteReader(payload);
  let record: WalRecord;
  switch (typeCode) {
    case 1:
      record = decodeSegmentHeader(r);
      break;
    case 2:
      record = { type: "entries", entries: decodeEntries(r) };
      break;
    case 3:
      record = { type: "hardState", hardState: decodeHardState(r) };
      break;
    case 4: {
      const fromIndex = r.u64();
      if (fromIndex < 1) throw new DecodeError("truncate marker from index 0");
      record = { type: "truncate", fromIndex };
      break;
    }
    case 5: {
      const index = r.u64();
      const term = r.u64();
      const flags = r.u8();
      if (flags > 1) throw new DecodeError(`unknown snapshot marker flags ${flags}`);
      record = { type: "snapshot", index, term, reset: flags === 1 };
      break;
    }
    default:
      throw new DecodeError(`unknown record type ${typeCode}`);
  }
  r.end(record.type);
  return record;
}

function decodeSegmentHeader(r: ByteReader): SegmentHeaderRecord {
  const formatVersion = r.u32();
  const seq = r.u64();
  const firstIndex = r.u64();
  const nodeId = r.u64();
  const clusterId = r.string(MAX_CLUSTER_ID_BYTES);
  const snapshotIndex = r.u64();
  const snapshotTerm = r.u64();
  if (seq < 1 || firstIndex < 1) throw new DecodeError(`segment header seq ${seq} firstIndex ${firstIndex}`);
  return {
    type: "segmentHeader",
    formatVersion,
    clusterId,
    nodeId,
    seq,
    firstIndex,
    snapshotIndex,
    snapshotTerm,
  };
}

function decodeEntries(r: ByteReader): Entry[] {
  const count = r.u32();
  if (count === 0) throw new DecodeError("empty entries record");
  const entries: Entry[] = [];
  for (let i = 0; i < count; i++) {
    const index = r.u64();
    const term = r.u64();
    const kindCode = r.u8();
    const length = r.u32();
    const data = r.bytes(length);
    if (index < 1 || term < 1) throw new DecodeError(`entry index ${index} term ${term}`);
    const prev = entries[entries.length - 1];
    if (prev !== undefined && index !== prev.index + 1)
      throw new DecodeError(`entry ${index} follows ${prev.index} inside one record`);
    let kind: EntryKind;
    if (kindCode === 0) kind = "noop";
    else if (kindCode === 1) kind = "command";
    else if (kindCode === 2) {
      kind = "config";
      const m = decodeMembership(data);
      if (typeof m === "string") throw new DecodeError(`config entry ${index}: ${m}`);
    } else throw new DecodeError(`unknown entry kind ${kindCode}`);
    entries.push({ index, term, kind, data });
  }
  return entries;
}

function decodeHardState(r: ByteReader): HardState {
  const term = r.u64();
  const hasVote = r.u8();
  const votedFor = r.u64();
  const commitIndex = r.u64();
  if (hasVote > 1) throw new DecodeError(`hard state vote flag ${hasVote}`);
  if (hasVote === 0 && votedFor !== 0) throw new DecodeError("hard state without a vote names a candidate");
  return { term, votedFor: hasVote === 1 ? votedFor : null, commitIndex };
}
