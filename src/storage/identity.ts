// The identity file: which cluster and node a data folder belongs to, so a node never opens another's, and
// the folder's incarnation: a random id made with the folder, so that the cluster can tell a member's
// folder from an empty or restored one under the same id (its vote and log gone).

import { randomBytes } from "node:crypto";
import { INCARNATION_HEX_DIGITS, isIncarnation } from "../core/membership.ts";
import { assert } from "../lib/assert.ts";
import type { FileSystem } from "./file-system.ts";
import { parentOf } from "./file-system.ts";
import { corruptError, StorageError } from "./storage-error.ts";
import { FORMAT_VERSION } from "./wal-record.ts";

export interface Identity {
  readonly formatVersion: number;
  readonly clusterId: string;
  readonly nodeId: number;
}

/** What the identity file holds: the owner, and the folder's incarnation (null in a folder written by a
 *  version before incarnations: the first open gives it one). */
export interface IdentityFile extends Identity {
  readonly incarnation: string | null;
}

/** A new incarnation: 64 bits from the operating system's random source, as lowercase hex. */
export function newIncarnation(): string {
  const s = randomBytes(INCARNATION_HEX_DIGITS / 2).toString("hex");
  assert(isIncarnation(s), () => `newIncarnation made ${s}`);
  return s;
}

export function encodeIdentity(id: Identity, incarnation: string): Uint8Array {
  assert(isIncarnation(incarnation), () => `encodeIdentity: bad incarnation ${incarnation}`);
  const text = JSON.stringify({
    formatVersion: id.formatVersion,
    clusterId: id.clusterId,
    nodeId: id.nodeId,
    incarnation,
  });
  return new TextEncoder().encode(`${text}\n`);
}

/** Parses an identity file; throws CORRUPT naming the file when it is not one. */
export function decodeIdentity(bytes: Uint8Array, file: string, nodeId: number): IdentityFile {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    throw corruptError(nodeId, file, undefined, "identity file is not valid JSON");
  }
  if (typeof value !== "object" || value === null)
    throw corruptError(nodeId, file, undefined, "identity file is not an object");
  const o = value as Record<string, unknown>;
  const { formatVersion, clusterId, nodeId: owner } = o;
  if (
    typeof formatVersion !== "number" ||
    !Number.isSafeInteger(formatVersion) ||
    typeof clusterId !== "string" ||
    typeof owner !== "number" ||
    !Number.isSafeInteger(owner)
  ) {
    throw corruptError(nodeId, file, undefined, "identity file lacks formatVersion, clusterId or nodeId");
  }
  const incarnation = o["incarnation"];
  if (incarnation !== undefined && !isIncarnation(incarnation))
    throw corruptError(
      nodeId,
      file,
      undefined,
      `identity file's incarnation is not ${INCARNATION_HEX_DIGITS} lowercase hex digits`,
    );
  return { formatVersion, clusterId, nodeId: owner, incarnation: incarnation ?? null };
}

/** Refuses a folder that belongs to another node or cluster, or has a format we cannot read. */
export function checkIdentity(found: Identity, expected: Identity, file: string): void {
  if (found.clusterId !== expected.clusterId || found.nodeId !== expected.nodeId) {
    throw new StorageError({
      code: "CLUSTER_MISMATCH",
      message:
        `data folder belongs to node ${found.nodeId} of cluster "${found.clusterId}", ` +
        `but this is node ${expected.nodeId} of cluster "${expected.clusterId}"`,
      nodeId: expected.nodeId,
      file,
      hint: "point this node at its own data folder, or give it an empty folder to join as a new member",
    });
  }
  if (found.formatVersion !== FORMAT_VERSION) {
    throw new StorageError({
      code: "CONFIG",
      message: `data folder has format version ${found.formatVersion}; this build reads version ${FORMAT_VERSION}`,
      nodeId: expected.nodeId,
      file,
      hint: "run the raftkv version that wrote this folder",
    });
  }
}

/** Writes the identity file atomically: temp file, fsync, rename, fsync of the folder. */
export async function writeIdentity(
  fs: FileSystem,
  file: string,
  id: Identity,
  incarnation: string,
): Promise<void> {
  const tmp = `${file}.tmp`;
  const h = await fs.open(tmp, "overwrite");
  try {
    await h.append(encodeIdentity(id, incarnation));
    await h.sync();
  } finally {
    await h.close();
  }
  await fs.rename(tmp, file);
  await fs.syncDir(parentOf(file));
}
