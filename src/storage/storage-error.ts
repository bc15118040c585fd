// StorageError: a RaftKvError that also names the file and byte offset at fault, and its constructors.

import type { SnapshotMeta } from "../core/types.ts";
import type { ErrorCode } from "../lib/errors.ts";
import { RaftKvError } from "../lib/errors.ts";
import { errnoOf } from "./file-system.ts";

export interface StorageErrorInit {
  code: ErrorCode;
  message: string;
  nodeId?: number;
  hint?: string;
  file?: string;
  offset?: number;
  cause?: unknown;
}

export class StorageError extends RaftKvError {
  override name = "StorageError";
  /** The file at fault, when one is. */
  readonly file: string | undefined;
  /** The byte offset in `file` at fault, when known. */
  readonly offset: number | undefined;

  constructor(init: StorageErrorInit) {
    const where =
      init.file === undefined
        ? ""
        : ` [${init.file}${init.offset === undefined ? "" : ` at byte ${init.offset}`}]`;
    super({
      code: init.code,
      message: `${init.message}${where}`,
      ...(init.nodeId === undefined ? {} : { nodeId: init.nodeId }),
      ...(init.hint === undefined ? {} : { hint: init.hint }),
      ...(init.cause === undefined ? {} : { cause: init.cause }),
    });
    this.file = init.file;
    this.offset = init.offset;
  }
}

export const CORRUPT_HINT =
  "the data folder is damaged and this node will not guess: restore the folder from a backup, or move it " +
  "aside and restart this node empty so the leader sends it a snapshot (only while a majority of the " +
  "cluster is healthy)";

/** Damaged or inconsistent data on disk: refuse to start. */
export function corruptError(
  nodeId: number | undefined,
  file: string,
  offset: number | undefined,
  what: string,
  hint = CORRUPT_HINT,
): StorageError {
  return new StorageError({
    code: "CORRUPT",
    message: what,
    ...(nodeId === undefined ? {} : { nodeId }),
    file,
    ...(offset === undefined ? {} : { offset }),
    hint,
  });
}

/** A failed write, sync or other file operation (ENOSPC, EIO, EACCES...). */
export function ioError(
  nodeId: number | undefined,
  what: string,
  file: string,
  cause: unknown,
): StorageError {
  const code = errnoOf(cause);
  const causePath = typeof cause === "object" && cause !== null && "path" in cause ? cause.path : undefined;
  const hint =
    code === "ENOSPC"
      ? "the disk is full: free space, then restart this node (it stops acknowledging writes until then)"
      : code === "EACCES" || code === "EPERM" || code === "EROFS"
        ? "the data folder is not writable: fix its permissions or mount, then restart this node"
        : "the disk reported an error: check the device, then restart this node (what was synced is kept)";
  return new StorageError({
    code: "STORAGE",
    message: `${what} failed${code === undefined ? "" : ` with ${code}`}: ${cause instanceof Error ? cause.message : String(cause)}`,
    ...(nodeId === undefined ? {} : { nodeId }),
    file: typeof causePath === "string" ? causePath : file,
    hint,
    cause,
  });
}

/** Asked about a received snapshot that is not the one being received. */
export function notReceiving(nodeId: number, meta: SnapshotMeta): StorageError {
  return new StorageError({
    code: "INVALID_ARGUMENT",
    message: `no snapshot ${meta.index}/${meta.term} is being received`,
    nodeId,
    hint: "the sender should restart the snapshot from offset 0",
  });
}
