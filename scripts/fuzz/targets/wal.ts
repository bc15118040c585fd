// Fuzz target "wal": FileStorage.open on a damaged data folder either recovers a consistent log that
// it can keep writing, or refuses with a typed error naming the file (and offset), never anything else.

import { isDeepStrictEqual } from "node:util";
import type { Entry, HardState } from "../../../src/core/types.ts";
import { crc32c } from "../../../src/lib/crc32c.ts";
import { RaftKvError } from "../../../src/lib/errors.ts";
import type { Prng } from "../../../src/lib/prng.ts";
import type { FileStorage } from "../../../src/storage/file-storage.ts";
import { FsError } from "../../../src/storage/file-system.ts";
import type { RecoveredState, StorageLogger } from "../../../src/storage/storage.ts";
import { StorageError } from "../../../src/storage/storage-error.ts";
import { errorText, type FuzzTarget, finding, type Outcome } from "../target.ts";
import { entryKey, generateFolder, hardStateKey, openStorage, snapshotKey } from "../wal-corpus.ts";
import { decodeFolder, encodeFolder, type Folder, materialize } from "../wal-folder.ts";
import { mutateFolder } from "../wal-mutate.ts";

async function seeds(prng: Prng): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for (let i = 0; i < 40; i++) out.push(encodeFolder(await generateFolder(prng.fork())));
  return out;
}

function mutate(input: Uint8Array, other: Uint8Array, prng: Prng): Uint8Array {
  return encodeFolder(mutateFolder(decodeFolder(input), decodeFolder(other), prng));
}

const recorder = (): StorageLogger & { warnings: string[] } => {
  const warnings: string[] = [];
  return { warnings, info: () => undefined, warn: (_fields, message) => warnings.push(message) };
};

async function run(input: Uint8Array): Promise<Outcome> {
  let folder: Folder;
  try {
    folder = decodeFolder(input);
  } catch {
    return { kind: "refused", label: "not a folder container" };
  }
  const fs = await materialize(folder);
  let storage = openStorage(fs, folder.owner, recorder());
  let state: RecoveredState;
  try {
    state = await storage.open();
  } catch (e) {
    return refusal(e, folder);
  }
  if (folder.expect !== null)
    return finding(
      "wal-flip-accepted",
      `a bit flip at byte ${folder.expect.offset} of ${folder.expect.file} (inside a live record) was not refused`,
    );
  const wrong = inconsistency(state) ?? (folder.mode === "forged" ? null : notWritten(state, folder));
  if (wrong !== null) {
    await storage.close();
    return finding(`${wrong.invariant}[${folder.mode}]`, wrong.detail);
  }
  try {
    const reopen = async (): Promise<RecoveredState> => {
      await storage.close();
      storage = openStorage(fs, folder.owner, recorder());
      return storage.open();
    };
    await checkSnapshotImage(storage, state);
    const again = await reopen();
    if (!isDeepStrictEqual(plainState(again), plainState(state)))
      return finding(
        `wal-recovery-unstable[${folder.mode}]`,
        "a second open recovers a different state than the first",
      );
    const next = nextSave(state);
    if (next !== null) {
      await storage.save(next.hardState, [next.entry], true);
      const after = await reopen();
      const expected = { ...state, hardState: next.hardState, entries: [...state.entries, next.entry] };
      if (!isDeepStrictEqual(plainState(after), plainState(expected)))
        return finding(
          `wal-append-after-recovery[${folder.mode}]`,
          "an entry saved after recovery is not recovered as saved",
        );
    }
    await storage.close();
  } catch (e) {
    await storage.close().catch(() => undefined);
    return finding(
      `wal-recovered-unusable[${folder.mode}]`,
      `the recovered storage fails: ${errorText(e)}`,
      e,
    );
  }
  return { kind: "accepted", label: acceptedLabel(folder, state) };
}

function acceptedLabel(folder: Folder, s: RecoveredState): string {
  const lastTerm = s.entries[s.entries.length - 1]?.term ?? s.snapshot?.term ?? 0;
  // Possible after a torn save (its entries land, its hard state does not): noted, not a finding.
  const ahead = lastTerm > s.hardState.term ? ", log term above hard-state term" : "";
  return `${folder.mode}/${s.snapshot === null ? "no snapshot" : "snapshot"}${ahead}`;
}

function refusal(e: unknown, folder: Folder): Outcome {
  if (!(e instanceof RaftKvError)) return finding("wal-untyped-error", `open threw ${errorText(e)}`, e);
  const cause: unknown = e.cause;
  if (e.code === "STORAGE" && cause !== undefined && !(cause instanceof FsError))
    return finding(
      "wal-bug-reported-as-io-error",
      `open refused with ${e.message}; the cause is ${errorText(cause)}`,
      cause,
    );
  if (!(e instanceof StorageError) || e.file === undefined)
    return finding("wal-refusal-without-file", `open refused without naming a file: ${e.message}`, e);
  const expect = folder.expect;
  if (expect !== null && (e.file !== expect.file || e.code !== "CORRUPT" || (e.offset ?? 0) > expect.offset))
    return finding(
      "wal-flip-misreported",
      `a bit flip at byte ${expect.offset} of ${expect.file} was refused as: ${e.message}`,
    );
  const where = e.offset === undefined ? "no offset" : "offset";
  const what = e.message
    .replace(/\[[^\]]*\]/g, "")
    .replace(/"[^"]*"/g, '"…"')
    .replace(/\d+/g, "N");
  return { kind: "refused", label: `${e.code} (${where}): ${what.slice(0, 100)}` };
}

/** Structural invariants of any recovered state; null when they hold. */
function inconsistency(s: RecoveredState): { invariant: string; detail: string } | null {
  const bad = (detail: string) => ({ invariant: "wal-inconsistent-recovery", detail });
  const hs = s.hardState;
  const isUint = (n: number) => Number.isSafeInteger(n) && n >= 0;
  if (!isUint(hs.term) || !isUint(hs.commitIndex) || (hs.votedFor !== null && !isUint(hs.votedFor)))
    return bad(`hard state ${JSON.stringify(hs)}`);
  const base = s.snapshot?.index ?? 0;
  let prevTerm = s.snapshot?.term ?? 0;
  if (s.snapshot !== null && (!isUint(s.snapshot.sizeBytes) || s.snapshot.index < 1 || s.snapshot.term < 1))
    return bad(`snapshot ${JSON.stringify(s.snapshot)}`);
  for (const [i, e] of s.entries.entries()) {
    if (e.index !== base + 1 + i)
      return bad(`gap: entry ${i} has index ${e.index}, expected ${base + 1 + i}`);
    if (!isUint(e.term) || e.term < 1) return bad(`entry ${e.index} has term ${e.term}`);
    if (e.term < prevTerm)
      return bad(`term goes backwards: entry ${e.index} term ${e.term} after ${prevTerm}`);
    if (e.kind !== "noop" && e.kind !== "command") return bad(`entry ${e.index} kind ${String(e.kind)}`);
    prevTerm = e.term;
  }
  const lastIndex = base + s.entries.length;
  if (hs.commitIndex > lastIndex) return bad(`commit index ${hs.commitIndex} beyond last index ${lastIndex}`);
  return null;
}

/** Data with good checksums must be data that was written. */
function notWritten(s: RecoveredState, f: Folder): { invariant: string; detail: string } | null {
  const bad = (detail: string) => ({ invariant: "wal-recovered-unwritten-data", detail });
  const entries = new Set(f.written.entries);
  for (const e of s.entries)
    if (!entries.has(entryKey(e))) return bad(`entry ${e.index} term ${e.term} was never written`);
  if (!f.written.hardStates.includes(hardStateKey(s.hardState)))
    return bad(`hard state ${JSON.stringify(s.hardState)} was never written`);
  if (s.snapshot !== null && !f.written.snapshots.includes(snapshotKey(s.snapshot)))
    return bad(`snapshot ${JSON.stringify(s.snapshot)} was never written`);
  return null;
}

async function checkSnapshotImage(storage: FileStorage, s: RecoveredState): Promise<void> {
  const loaded = await storage.loadSnapshotImage();
  if (s.snapshot === null) {
    if (loaded !== null) throw new Error("a snapshot image loads but none was recovered");
    return;
  }
  if (loaded === null || !isDeepStrictEqual(loaded.meta, s.snapshot))
    throw new Error(`the recovered snapshot ${JSON.stringify(s.snapshot)} does not load`);
  if (loaded.image.length !== s.snapshot.sizeBytes || crc32c(loaded.image) !== s.snapshot.crc32c)
    throw new Error("the loaded snapshot image does not match its meta");
}

/** What a node would save next: one entry in its current term (null past the safe-integer range,
 *  which only a forged folder reaches). */
function nextSave(s: RecoveredState): { hardState: HardState; entry: Entry } | null {
  const last = s.entries[s.entries.length - 1];
  const index = (last?.index ?? s.snapshot?.index ?? 0) + 1;
  const term = Math.max(1, s.hardState.term, last?.term ?? s.snapshot?.term ?? 0);
  const votedFor = term === s.hardState.term ? s.hardState.votedFor : null;
  if (index >= Number.MAX_SAFE_INTEGER || term >= Number.MAX_SAFE_INTEGER) return null;
  return {
    hardState: { term, votedFor, commitIndex: s.hardState.commitIndex },
    entry: { index, term, kind: "command", data: Uint8Array.of(0xf0, 0x0d) },
  };
}

function plainState(s: RecoveredState): unknown {
  return { ...s, entries: s.entries.map((e) => ({ ...e, data: Array.from(e.data) })) };
}

function describe(input: Uint8Array): string {
  const f = decodeFolder(input);
  const files = [...f.files].map(([p, b]) => `  ${p} (${b.length} bytes)`).join("\n");
  const expect = f.expect === null ? "" : `, expect refusal at byte ${f.expect.offset} of ${f.expect.file}`;
  return `data folder (${f.mode}${expect}) of node ${f.owner.nodeId} of "${f.owner.clusterId}":\n${files}`;
}

export const walTarget: FuzzTarget = { name: "wal", seeds, mutate, run, describe };
