// Valid data folders for the WAL target: a seeded script drives FileStorage on a MemFileSystem the way a
// node does (terms, votes, appends, follower overwrites, commits, snapshots taken and installed,
// restarts and power losses), recording everything it ever wrote.

import type { Entry, HardState, SnapshotMeta } from "../../src/core/types.ts";
import { crc32c } from "../../src/lib/crc32c.ts";
import type { Prng } from "../../src/lib/prng.ts";
import { FileStorage } from "../../src/storage/file-storage.ts";
import type { MemFileSystem } from "../../src/storage/mem-file-system.ts";
import { MemFileSystem as Fs } from "../../src/storage/mem-file-system.ts";
import type { RecoveredState, StorageLogger } from "../../src/storage/storage.ts";
import { collect, DATA_DIR, type Folder, type Owner, type Written } from "./wal-folder.ts";

export const quietLogger: StorageLogger = { info: () => undefined, warn: () => undefined };

export function openStorage(
  fs: MemFileSystem,
  owner: Owner,
  logger: StorageLogger = quietLogger,
): FileStorage {
  return new FileStorage({
    fs,
    dir: DATA_DIR,
    clusterId: owner.clusterId,
    nodeId: owner.nodeId,
    maxSegmentBytes: owner.maxSegmentBytes,
    retainSnapshots: 2,
    logger,
  });
}

export const entryKey = (e: Entry): string =>
  `${e.index}:${e.term}:${e.kind}:${Buffer.from(e.data).toString("hex")}`;
export const hardStateKey = (h: HardState): string => JSON.stringify([h.term, h.votedFor, h.commitIndex]);
export const snapshotKey = (m: SnapshotMeta): string => `${m.index}:${m.term}:${m.sizeBytes}:${m.crc32c}`;

/** What the script believes the storage holds. */
class Model {
  hs: HardState = { term: 0, votedFor: null, commitIndex: 0 };
  snap = { index: 0, term: 0 };
  terms: number[] = []; // terms[i] is the term of index snap.index + 1 + i

  get lastIndex(): number {
    return this.snap.index + this.terms.length;
  }

  termAt(index: number): number {
    return index === this.snap.index ? this.snap.term : (this.terms[index - this.snap.index - 1] ?? -1);
  }

  reset(s: RecoveredState): void {
    this.hs = s.hardState;
    this.snap =
      s.snapshot === null ? { index: 0, term: 0 } : { index: s.snapshot.index, term: s.snapshot.term };
    this.terms = s.entries.map((e) => e.term);
  }
}

function data(prng: Prng): Uint8Array {
  return Uint8Array.from({ length: prng.int(0, 24) }, () => prng.int(0, 255));
}

/** One folder. If a restart refuses to recover, the folder is returned as it was then (its seed run
 *  then reports the refusal). */
export async function generateFolder(prng: Prng): Promise<Folder> {
  const fs = new Fs();
  const owner: Owner = {
    clusterId: prng.pick(["fz", "cluster-é"]),
    nodeId: prng.int(1, 3),
    maxSegmentBytes: prng.pick([300, 600, 2000, 8000]),
  };
  const written: Written = {
    entries: [],
    hardStates: [hardStateKey({ term: 0, votedFor: null, commitIndex: 0 })],
    snapshots: [],
  };
  const m = new Model();
  let storage = openStorage(fs, owner);
  m.reset(await storage.open());

  const save = async (hs: HardState | null, entries: Entry[]): Promise<void> => {
    for (const e of entries) written.entries.push(entryKey(e));
    if (hs !== null) written.hardStates.push(hardStateKey(hs));
    await storage.save(hs, entries, prng.chance(0.85));
    if (hs !== null) m.hs = hs;
    const first = entries[0];
    if (first !== undefined)
      m.terms = [...m.terms.slice(0, first.index - m.snap.index - 1), ...entries.map((e) => e.term)];
  };
  const entriesFrom = (from: number, count: number, term: number): Entry[] =>
    Array.from({ length: count }, (_, i) => {
      const noop = i === 0 && prng.chance(0.2);
      return {
        index: from + i,
        term,
        kind: noop ? ("noop" as const) : ("command" as const),
        data: noop ? new Uint8Array(0) : data(prng),
      };
    });
  const restart = async (crash: boolean): Promise<boolean> => {
    if (crash) fs.crash(prng);
    else await storage.close();
    storage = openStorage(fs, owner);
    try {
      m.reset(await storage.open());
      return true;
    } catch {
      return false;
    }
  };

  for (let step = prng.int(5, 60); step > 0; step--) {
    const r = prng.int(0, 99);
    if (m.hs.term === 0 || r < 10) {
      const term = m.hs.term + prng.int(1, 2);
      await save(
        { term, votedFor: prng.chance(0.5) ? null : prng.int(1, 3), commitIndex: m.hs.commitIndex },
        [],
      );
    } else if (r < 45) {
      const es = entriesFrom(m.lastIndex + 1, prng.int(1, 6), m.hs.term);
      const commit = prng.chance(0.5)
        ? prng.int(m.hs.commitIndex, m.lastIndex + es.length)
        : m.hs.commitIndex;
      await save(prng.chance(0.7) ? { ...m.hs, commitIndex: commit } : null, es);
    } else if (r < 55 && m.lastIndex > Math.max(m.hs.commitIndex, m.snap.index)) {
      // A follower overwrites its uncommitted suffix with a newer leader's entries.
      const from = prng.int(Math.max(m.hs.commitIndex, m.snap.index) + 1, m.lastIndex);
      await save(
        { ...m.hs, term: m.hs.term + 1, votedFor: null },
        entriesFrom(from, prng.int(1, 4), m.hs.term + 1),
      );
    } else if (r < 65 && m.lastIndex > m.snap.index) {
      const index = prng.int(m.snap.index + 1, m.lastIndex);
      const image = data(prng);
      const meta = { index, term: m.termAt(index), sizeBytes: image.length, crc32c: crc32c(image) };
      written.snapshots.push(snapshotKey(meta));
      await storage.saveSnapshot(meta, image);
      m.terms = m.terms.slice(index - m.snap.index);
      m.snap = { index, term: meta.term };
    } else if (r < 72) {
      // A snapshot installed from the leader, at or past the commit index.
      const index = prng.int(Math.max(m.hs.commitIndex, m.snap.index) + 1, m.lastIndex + 5);
      const term = m.hs.term;
      const image = data(prng);
      const meta = { index, term, sizeBytes: image.length, crc32c: crc32c(image) };
      written.snapshots.push(snapshotKey(meta));
      const cut = prng.int(0, image.length);
      await storage.writeSnapshotChunk(meta, 0, image.subarray(0, cut));
      await storage.writeSnapshotChunk(meta, cut, image.subarray(cut));
      await storage.installIncomingSnapshot(meta);
      m.snap = { index, term };
      m.terms = [];
      await save({ ...m.hs, commitIndex: index }, []);
    } else if (r < 85) {
      await save(
        { ...m.hs, commitIndex: prng.int(m.hs.commitIndex, Math.max(m.hs.commitIndex, m.lastIndex)) },
        [],
      );
    } else if (r < 93) {
      if (!(await restart(false))) break;
    } else if (!(await restart(true))) break;
  }
  // Usually a clean stop; sometimes a power loss, which can leave a torn tail to recover from.
  if (prng.chance(0.7)) await storage.close();
  else fs.crash(prng);
  return { files: await collect(fs), owner, written, mode: "pristine", expect: null };
}
