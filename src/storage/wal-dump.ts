// `raftkv wal dump` and `wal verify` without changing anything: the log one entry a line (logs.txt
// style), hard state and snapshot metadata first; or the problems that would stop a node from starting.

import type { Entry, SnapshotMeta } from "../core/types.ts";
import { RaftKvError } from "../lib/errors.ts";
import { layoutOf } from "./data-dir.ts";
import type { FileSystem } from "./file-system.ts";
import { joinPath } from "./file-system.ts";
import type { Identity } from "./identity.ts";
import { decodeIdentity } from "./identity.ts";
import { planRecovery } from "./recovery.ts";
import { listSnapshotFiles, readSnapshotFile } from "./snapshot-file.ts";
import { EMPTY_HARD_STATE } from "./storage.ts";
import { StorageError } from "./storage-error.ts";

export interface DumpOptions {
  /** One JSON object a line instead of text. */
  readonly json?: boolean;
  /** Renders a command's bytes (the KV layer decodes its commands); default: printable text or hex. */
  readonly describe?: (data: Uint8Array) => string;
}

function hex(data: Uint8Array): string {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("hex");
}

/** Printable ASCII as is, anything else as 0x-prefixed hex. */
export function defaultDescribe(data: Uint8Array): string {
  if (data.length > 0 && data.every((b) => b >= 0x20 && b < 0x7f))
    return Buffer.from(data).toString("latin1");
  return `0x${hex(data)}`;
}

async function readOwner(fs: FileSystem, dir: string): Promise<Identity> {
  const file = layoutOf(dir).identityFile;
  if (!(await fs.exists(file)))
    throw new StorageError({
      code: "CORRUPT",
      message: "not a raftkv data folder (no identity.json)",
      file,
      hint: "pass the node's --data-dir",
    });
  return decodeIdentity(await fs.readFile(file), file, -1);
}

function entryLine(e: Entry, describe: (data: Uint8Array) => string, json: boolean): string {
  if (json) {
    return JSON.stringify({
      type: "entry",
      index: e.index,
      term: e.term,
      kind: e.kind,
      data: hex(e.data),
      ...(e.kind === "command" ? { text: describe(e.data) } : {}),
    });
  }
  return e.kind === "noop" ? `NO-OP ${e.term}` : `${e.index} ${e.term} ${e.kind} ${describe(e.data)}`;
}

/** The recovered log of a data folder as lines. Throws the error a node would refuse to start with. */
export async function dumpWal(fs: FileSystem, dir: string, options: DumpOptions = {}): Promise<string[]> {
  const json = options.json ?? false;
  const describe = options.describe ?? defaultDescribe;
  const owner = await readOwner(fs, dir);
  const plan = await planRecovery(fs, layoutOf(dir), owner);
  const lines: string[] = [];
  const hardState = plan.kind === "fresh" ? EMPTY_HARD_STATE : plan.hardState;
  const snapshot = plan.kind === "fresh" ? null : plan.snapshot;
  if (json) {
    lines.push(JSON.stringify({ type: "identity", ...owner }));
    lines.push(JSON.stringify({ type: "hardState", ...hardState }));
    lines.push(
      JSON.stringify({ type: "snapshot", meta: snapshot?.meta ?? null, file: snapshot?.path ?? null }),
    );
  } else {
    lines.push(`identity cluster=${owner.clusterId} node=${owner.nodeId} format=${owner.formatVersion}`);
    lines.push(
      `hardstate term=${hardState.term} vote=${hardState.votedFor ?? "none"} commit=${hardState.commitIndex}`,
    );
    lines.push(
      snapshot === null
        ? "snapshot none"
        : `snapshot index=${snapshot.meta.index} term=${snapshot.meta.term} size=${snapshot.meta.sizeBytes} crc32c=0x${snapshot.meta.crc32c.toString(16).padStart(8, "0")} file=${snapshot.path}`,
    );
  }
  if (plan.kind === "fresh") return lines;
  for (const w of plan.warnings)
    lines.push(json ? JSON.stringify({ type: "warning", ...w }) : `warning ${w.message}`);
  for (const e of plan.entries) lines.push(entryLine(e, describe, json));
  return lines;
}

export interface VerifyReport {
  /** True when a node would start on this folder (possibly after the repairs in `warnings`). */
  readonly ok: boolean;
  /** What would refuse the start (file, offset, what to do). */
  readonly problems: readonly string[];
  /** What a start would repair or work around (torn tail, damaged older snapshot...). */
  readonly warnings: readonly string[];
}

/** Reads `length` bytes of a snapshot image at `offset` (fewer at its end). */
export type ImageReader = (offset: number, length: number) => Promise<Uint8Array>;

/** Checks a data folder as a start would, without modifying anything. `checkImage`, when given,
 *  decodes the snapshot image a start would restore (storage knows only its checksum; the state
 *  machine knows its format) and throws a CORRUPT RaftKvError if the state machine would refuse it. */
export async function verifyWal(
  fs: FileSystem,
  dir: string,
  checkImage?: (meta: SnapshotMeta, read: ImageReader) => Promise<void>,
): Promise<VerifyReport> {
  const problems: string[] = [];
  const warnings: string[] = [];
  try {
    const owner = await readOwner(fs, dir);
    const layout = layoutOf(dir);
    const plan = await planRecovery(fs, layout, owner);
    if (plan.kind === "recovered") {
      for (const w of plan.warnings) warnings.push(w.message);
      const snap = plan.snapshot;
      if (snap !== null && checkImage !== undefined) {
        const h = await fs.open(snap.path, "read");
        try {
          await checkImage(snap.meta, (offset, length) =>
            h.read(snap.headerBytes + offset, Math.max(0, Math.min(length, snap.meta.sizeBytes - offset))),
          );
        } catch (e) {
          if (!(e instanceof RaftKvError)) throw e;
          problems.push(
            `${snap.path}: ${e.message}: a start would refuse it; move the file aside to fall back on an older snapshot and the log`,
          );
        } finally {
          await h.close();
        }
      }
      // Older snapshots are a fallback: report damage to them too.
      const used = plan.snapshot?.path;
      for (const name of (await fs.exists(layout.snapDir))
        ? await listSnapshotFiles(fs, layout.snapDir)
        : []) {
        const path = joinPath(layout.snapDir, name);
        if (path === used || plan.warnings.some((w) => w.file === path)) continue;
        try {
          await readSnapshotFile(fs, path, owner);
        } catch (e) {
          warnings.push(e instanceof Error ? e.message : String(e));
        }
      }
    }
  } catch (e) {
    if (!(e instanceof RaftKvError)) throw e;
    problems.push(e.message);
  }
  return { ok: problems.length === 0, problems, warnings };
}
