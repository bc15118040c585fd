// Snapshot files: a checksummed header (owner, meta, image CRC32C) followed by the state-machine image.
//
// Layout, little-endian: "RKVSNAP\0", u32 format version, u32 header length, u64 node id,
// string cluster id, u64 index, u64 term, u64 image size, u32 image CRC32C, [u32 length and the
// configuration at index, encoded as a config entry's data: absent in files written before membership
// changes], u32 CRC32C of all the header bytes before it; then the image. Written to a temp name, synced, renamed, folder synced.

import { decodeMembership, encodeMembership, type Membership } from "../core/membership.ts";
import type { SnapshotMeta } from "../core/types.ts";
import { assert } from "../lib/assert.ts";
import { crc32c } from "../lib/crc32c.ts";
import { ByteReader, ByteWriter, DecodeError } from "./bytes.ts";
import { parseSnapshotName, snapshotName } from "./data-dir.ts";
import type { FileHandle, FileSystem } from "./file-system.ts";
import { joinPath } from "./file-system.ts";
import type { Identity } from "./identity.ts";
import type { SnapshotStreamMeta } from "./storage.ts";
import { corruptError, StorageError } from "./storage-error.ts";
import { MAX_CLUSTER_ID_BYTES } from "./wal-record.ts";

const MAGIC = new TextEncoder().encode("RKVSNAP\0");
/** Enough to hold any header (the cluster id and the configuration are bounded). */
const MAX_HEADER_BYTES = 64 * 1024;

export interface SnapshotHeader {
  readonly owner: Identity;
  readonly meta: SnapshotMeta;
  readonly headerBytes: number;
}

export function encodeSnapshotHeader(owner: Identity, meta: SnapshotMeta): Uint8Array {
  const w = new ByteWriter(MAX_HEADER_BYTES);
  w.bytes(MAGIC);
  w.u32(owner.formatVersion);
  const lengthAt = w.reserve(4);
  w.u64(owner.nodeId);
  w.string(owner.clusterId);
  w.u64(meta.index);
  w.u64(meta.term);
  w.u64(meta.sizeBytes);
  w.u32(meta.crc32c);
  if (meta.membership !== undefined) {
    const m = encodeMembership(meta.membership);
    w.u32(m.length);
    w.bytes(m);
  }
  w.patchU32(lengthAt, w.length + 4);
  w.u32(crc32c(w.written(0, w.length)));
  return w.finish().slice();
}

/** Parses a header from the first bytes of a snapshot file; throws DecodeError when it is not one. */
export function decodeSnapshotHeader(bytes: Uint8Array): SnapshotHeader {
  const r = new ByteReader(bytes);
  const magic = r.bytes(MAGIC.length);
  if (!magic.every((b, i) => b === MAGIC[i])) throw new DecodeError("not a raftkv snapshot file (bad magic)");
  const formatVersion = r.u32();
  const headerBytes = r.u32();
  if (headerBytes > bytes.length || headerBytes > MAX_HEADER_BYTES || headerBytes < MAGIC.length + 8)
    throw new DecodeError(`snapshot header length ${headerBytes} is impossible`);
  const stored = new DataView(bytes.buffer, bytes.byteOffset).getUint32(headerBytes - 4, true);
  if (crc32c(bytes.subarray(0, headerBytes - 4)) !== stored)
    throw new DecodeError("snapshot header checksum mismatch");
  const nodeId = r.u64();
  const clusterId = r.string(MAX_CLUSTER_ID_BYTES);
  const index = r.u64();
  const term = r.u64();
  const sizeBytes = r.u64();
  const imageCrc = r.u32();
  let membership: Membership | undefined;
  if (r.offset < headerBytes - 4) {
    const decoded = decodeMembership(r.bytes(r.u32()));
    if (typeof decoded === "string") throw new DecodeError(`snapshot header: ${decoded}`);
    membership = decoded;
  }
  if (r.offset !== headerBytes - 4) throw new DecodeError("snapshot header length does not match its fields");
  const meta = { index, term, sizeBytes, crc32c: imageCrc };
  return {
    owner: { formatVersion, clusterId, nodeId },
    meta: membership === undefined ? meta : { ...meta, membership },
    headerBytes,
  };
}

/** Names of the snapshot files in a folder, newest (highest index, then term) first. */
export async function listSnapshotFiles(fs: FileSystem, snapDir: string): Promise<string[]> {
  const found: { name: string; index: number; term: number }[] = [];
  for (const name of await fs.readdir(snapDir)) {
    const parsed = parseSnapshotName(name);
    if (parsed !== null) found.push({ name, ...parsed });
  }
  found.sort((a, b) => b.index - a.index || b.term - a.term);
  return found.map((f) => f.name);
}

export interface LoadedSnapshot {
  readonly path: string;
  readonly meta: SnapshotMeta;
  readonly headerBytes: number;
  /** The image, when asked for (withImage); else null. */
  readonly image: Uint8Array | null;
}

/** Image bytes read at a time while verifying a snapshot file without keeping its image. */
const VERIFY_CHUNK_BYTES = 4 * 1024 * 1024;

/** Reads and fully verifies a snapshot file: header, owner, name, size and image checksum. The image
 *  is read in chunks and let go unless `withImage` (at a million keys it is hundreds of MB). */
export async function readSnapshotFile(
  fs: FileSystem,
  path: string,
  expected: Identity,
  withImage = false,
): Promise<LoadedSnapshot> {
  const h = await fs.open(path, "read");
  try {
    return await verifySnapshotFile(h, path, expected, withImage);
  } finally {
    await h.close();
  }
}

async function verifySnapshotFile(
  h: FileHandle,
  path: string,
  expected: Identity,
  withImage: boolean,
): Promise<LoadedSnapshot> {
  const fileBytes = await h.size();
  let header: SnapshotHeader;
  try {
    header = decodeSnapshotHeader(await h.read(0, MAX_HEADER_BYTES));
  } catch (e) {
    throw corruptError(expected.nodeId, path, 0, `snapshot header unreadable: ${(e as Error).message}`);
  }
  const { owner, meta, headerBytes } = header;
  if (meta.index < 1 || meta.term < 1)
    // Header layout ends u64 index, u64 term, u64 size, u32 image CRC, u32 header CRC.
    throw corruptError(
      expected.nodeId,
      path,
      headerBytes - (meta.index < 1 ? 32 : 24),
      `snapshot header says index ${meta.index} term ${meta.term}: a snapshot covers at least one entry, of term 1 or later`,
    );
  if (owner.clusterId !== expected.clusterId || owner.nodeId !== expected.nodeId) {
    throw new StorageError({
      code: "CLUSTER_MISMATCH",
      message: `snapshot file belongs to node ${owner.nodeId} of cluster "${owner.clusterId}", but this is node ${expected.nodeId} of cluster "${expected.clusterId}"`,
      nodeId: expected.nodeId,
      file: path,
      hint: "remove files that were copied in from another node's data folder",
    });
  }
  const named = parseSnapshotName(path.slice(path.lastIndexOf("/") + 1));
  if (named !== null && (named.index !== meta.index || named.term !== meta.term))
    throw corruptError(
      expected.nodeId,
      path,
      0,
      `snapshot header says ${meta.index}-${meta.term}, its name differs`,
    );
  if (fileBytes - headerBytes !== meta.sizeBytes)
    throw corruptError(
      expected.nodeId,
      path,
      fileBytes,
      `snapshot image is ${fileBytes - headerBytes} bytes, its header says ${meta.sizeBytes}`,
    );
  const step = withImage ? Math.max(1, meta.sizeBytes) : VERIFY_CHUNK_BYTES;
  let crc = 0;
  let image: Uint8Array | null = null;
  for (let at = headerBytes; at < fileBytes; at += step) {
    const chunk = await h.read(at, Math.min(step, fileBytes - at));
    crc = crc32c(chunk, crc);
    if (withImage) image = chunk;
  }
  if (crc !== meta.crc32c)
    throw corruptError(expected.nodeId, path, headerBytes, "snapshot image checksum mismatch");
  return { path, meta, headerBytes, image: withImage ? (image ?? new Uint8Array(0)) : null };
}

/** Writes a snapshot file durably (temp name, fsync, rename, fsync folder) from the image in chunks
 *  (null after the last), its CRC32C computed on the way. Returns the path and the full meta. */
export async function writeSnapshotFile(
  fs: FileSystem,
  snapDir: string,
  owner: Identity,
  streamMeta: SnapshotStreamMeta,
  nextChunk: () => Uint8Array | null,
): Promise<{ path: string; meta: SnapshotMeta }> {
  const path = joinPath(snapDir, snapshotName(streamMeta.index, streamMeta.term));
  const meta = await writeSnapshotTemp(fs, `${path}.tmp`, owner, streamMeta, nextChunk);
  await publishSnapshotTemp(fs, `${path}.tmp`, path, snapDir);
  return { path, meta };
}

/** The first half of writeSnapshotFile: the image, then its complete header (written with a
 *  placeholder first), in the file `tmp`, synced; returns the full meta. Recovery removes a `.tmp`. */
export async function writeSnapshotTemp(
  fs: FileSystem,
  tmp: string,
  owner: Identity,
  streamMeta: SnapshotStreamMeta,
  nextChunk: () => Uint8Array | null,
): Promise<SnapshotMeta> {
  const h = await fs.open(tmp, "overwrite");
  try {
    // The header's length does not depend on the size or checksum it holds: it is written again at the end.
    const placeholder = encodeSnapshotHeader(owner, { ...streamMeta, sizeBytes: 0, crc32c: 0 });
    await h.append(placeholder);
    let crc = 0;
    let size = 0;
    for (let chunk = nextChunk(); chunk !== null; chunk = nextChunk()) {
      crc = crc32c(chunk, crc);
      size += chunk.length;
      await h.append(chunk);
    }
    const announced = streamMeta.sizeBytes;
    assert(
      announced === null || size === announced,
      () => `snapshot image is ${size} bytes, not ${announced}`,
    );
    const meta = { ...streamMeta, sizeBytes: size, crc32c: crc };
    const header = encodeSnapshotHeader(owner, meta);
    assert(header.length === placeholder.length, () => "snapshot header changed length");
    await h.writeAt(0, header);
    await h.sync();
    return meta;
  } finally {
    await h.close();
  }
}

/** The second half: the synced `tmp` becomes `path`, durably. */
export async function publishSnapshotTemp(
  fs: FileSystem,
  tmp: string,
  path: string,
  snapDir: string,
): Promise<void> {
  await fs.rename(tmp, path);
  await fs.syncDir(snapDir);
}
