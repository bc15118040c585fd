// Backup files (raftkv snapshot save / restore). A backup is a snapshot file of the node it was taken
// from (snapshot-file.ts's checksummed header, then the state machine's image): the header names the
// source cluster and node, the log index and term of the image, its size and CRC32C. Restore turns it
// into the data folder of one member of a NEW cluster: a new cluster id, the members given, the image
// installed as that folder's snapshot (at the backup's index, term 1), an empty log after it. Every
// member of the new cluster is restored from the same file with the same members, so they all start
// from the same snapshot; the node then restores its state machine from it at its first start.

import { bootstrapMembership } from "../core/membership.ts";
import type { NodeId, SnapshotMeta } from "../core/types.ts";
import { crc32c } from "../lib/crc32c.ts";
import { RaftKvError } from "../lib/errors.ts";
import { DecodeError } from "./bytes.ts";
import { FileStorage } from "./file-storage.ts";
import type { FileHandle, FileSystem } from "./file-system.ts";
import { errnoOf, parentOf } from "./file-system.ts";
import type { Identity } from "./identity.ts";
import { decodeSnapshotHeader, encodeSnapshotHeader } from "./snapshot-file.ts";
import { FORMAT_VERSION } from "./wal-record.ts";

/** Enough for any header (snapshot-file.ts bounds it to 64 KiB). */
const HEADER_READ_BYTES = 64 * 1024;
/** Bytes read at once when checking or copying an image. */
const COPY_CHUNK_BYTES = 4 * 1024 * 1024;
/** Most image bytes a backup stream that did not announce its size may send (1 TiB). */
export const MAX_BACKUP_IMAGE_BYTES = 2 ** 40;

export interface BackupInfo {
  /** The cluster and node the backup was taken from. */
  readonly source: Identity;
  /** Log index and term of the image, its size and CRC32C. */
  readonly meta: SnapshotMeta;
  readonly headerBytes: number;
  readonly fileBytes: number;
}

function backupError(message: string, file: string, hint: string): RaftKvError {
  return new RaftKvError({ code: "INVALID_ARGUMENT", message: `${file}: ${message}`, hint });
}

/**
 * Writes a backup as it streams in: `begin` with what the first message said, `write` each chunk in
 * order, `finish` with the sender's CRC32C (checked against the bytes received: a mismatch or a short
 * image fails and removes the partial file). Written to FILE.part, synced, renamed, folder synced.
 */
export class BackupWriter {
  private handle: FileHandle | null = null;
  private headerBytes = 0;
  private written = 0;
  private crc = 0;
  private meta: { index: number; term: number; sizeBytes: number | null } | null = null;
  private source: Identity | null = null;

  constructor(
    private readonly fs: FileSystem,
    readonly file: string,
  ) {}

  private get partFile(): string {
    return `${this.file}.part`;
  }

  async begin(
    source: { clusterId: string; nodeId: NodeId },
    meta: { index: number; term: number; sizeBytes: number | null },
  ): Promise<void> {
    this.source = { formatVersion: FORMAT_VERSION, clusterId: source.clusterId, nodeId: source.nodeId };
    this.meta = { index: meta.index, term: meta.term, sizeBytes: meta.sizeBytes };
    this.handle = await this.fs.open(this.partFile, "overwrite");
    // Written again in finish(); its length does not depend on the size and checksum it holds.
    const header = encodeSnapshotHeader(this.source, { ...this.meta, sizeBytes: 0, crc32c: 0 });
    this.headerBytes = header.length;
    await this.handle.writeAt(0, header);
  }

  async write(data: Uint8Array): Promise<void> {
    if (this.handle === null || this.meta === null) throw new Error("BackupWriter.write before begin");
    const most = this.meta.sizeBytes ?? MAX_BACKUP_IMAGE_BYTES;
    if (this.written + data.length > most)
      throw new RaftKvError({
        code: "CORRUPT",
        message:
          this.meta.sizeBytes === null
            ? `the backup stream sent more than ${MAX_BACKUP_IMAGE_BYTES} bytes, the most a backup may hold`
            : `the backup stream sent more than the ${most} bytes it announced`,
      });
    await this.handle.writeAt(this.headerBytes + this.written, data);
    this.written += data.length;
    this.crc = crc32c(data, this.crc);
  }

  /** `sentSizeBytes`: the size the last message gave, when the first did not (null: it said none). */
  async finish(sentCrc32c: number, sentSizeBytes: number | null = null): Promise<BackupInfo> {
    const { handle, meta, source } = this;
    if (handle === null || meta === null || source === null)
      throw new Error("BackupWriter.finish before begin");
    const sizeBytes = meta.sizeBytes ?? sentSizeBytes;
    if (sizeBytes === null || this.written !== sizeBytes || this.crc !== sentCrc32c)
      throw new RaftKvError({
        code: "CORRUPT",
        message:
          sizeBytes === null
            ? "the backup stream ended without saying the image's size"
            : this.written !== sizeBytes
              ? `the backup stream ended after ${this.written} of ${sizeBytes} bytes`
              : "the backup's bytes do not match the checksum the node sent",
        hint: "take the backup again",
      });
    const full: SnapshotMeta = { index: meta.index, term: meta.term, sizeBytes, crc32c: this.crc };
    await handle.writeAt(0, encodeSnapshotHeader(source, full));
    await handle.sync();
    await handle.close();
    this.handle = null;
    await this.fs.rename(this.partFile, this.file);
    await this.fs.syncDir(parentOf(this.file));
    return {
      source,
      meta: full,
      headerBytes: this.headerBytes,
      fileBytes: this.headerBytes + sizeBytes,
    };
  }

  /** Gives up: closes and removes the partial file. */
  async abort(): Promise<void> {
    const h = this.handle;
    this.handle = null;
    if (h !== null) await h.close().catch(() => undefined);
    await this.fs.unlink(this.partFile).catch(() => undefined);
  }
}

/** Reads a backup's header and checks its image whole (size and CRC32C); throws with what is wrong. */
export async function checkBackup(fs: FileSystem, file: string): Promise<BackupInfo> {
  let h: FileHandle;
  try {
    h = await fs.open(file, "read");
  } catch (err) {
    throw backupError(
      errnoOf(err) === "ENOENT" ? "no such file" : `cannot open: ${(err as Error).message}`,
      file,
      "give the file written by raftkv snapshot save",
    );
  }
  try {
    const fileBytes = await h.size();
    let header: ReturnType<typeof decodeSnapshotHeader>;
    try {
      header = decodeSnapshotHeader(await h.read(0, Math.min(fileBytes, HEADER_READ_BYTES)));
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
      throw backupError(
        `not a raftkv backup (${err.message})`,
        file,
        "give the file written by raftkv snapshot save (etcd's bbolt snapshots are not raftkv backups)",
      );
    }
    const { meta, headerBytes, owner } = header;
    if (fileBytes !== headerBytes + meta.sizeBytes)
      throw backupError(
        `the file has ${fileBytes - headerBytes} image bytes, its header says ${meta.sizeBytes} (cut short or appended to)`,
        file,
        "take the backup again",
      );
    let crc = 0;
    for (let at = headerBytes; at < fileBytes; at += COPY_CHUNK_BYTES)
      crc = crc32c(await h.read(at, Math.min(COPY_CHUNK_BYTES, fileBytes - at)), crc);
    if (crc !== meta.crc32c)
      throw backupError("the image fails its checksum (the file is damaged)", file, "take the backup again");
    return { source: owner, meta, headerBytes, fileBytes };
  } finally {
    await h.close();
  }
}

export interface RestoreOptions {
  readonly fs: FileSystem;
  readonly file: string;
  readonly dataDir: string;
  /** The new cluster's id: must differ from the backup's (the restored cluster is a new one). */
  readonly clusterId: string;
  readonly nodeId: NodeId;
  /** Every member of the new cluster, by id (all voters). */
  readonly members: ReadonlyMap<NodeId, string>;
}

/** Builds `dataDir` (absent or empty) for member `nodeId` of a new cluster from a backup. */
export async function restoreBackup(o: RestoreOptions): Promise<BackupInfo> {
  const info = await checkBackup(o.fs, o.file);
  if (o.clusterId === info.source.clusterId)
    throw backupError(
      `the backup is of cluster "${info.source.clusterId}"; a restore starts a new cluster and needs another --cluster-id`,
      o.file,
      `give --cluster-id a new name (e.g. ${info.source.clusterId}-restored), the same for every member`,
    );
  if (!o.members.has(o.nodeId))
    throw new RaftKvError({
      code: "INVALID_ARGUMENT",
      message: `--id ${o.nodeId} is not one of the members in --peers (${[...o.members.keys()].join(", ")})`,
      hint: "give every member of the new cluster in --peers, this one included",
    });
  if ((await o.fs.exists(o.dataDir)) && (await o.fs.readdir(o.dataDir)).length > 0)
    throw new RaftKvError({
      code: "INVALID_ARGUMENT",
      message: `data folder ${o.dataDir} is not empty`,
      hint: "restore into a new folder (a restore never overwrites a node's data)",
    });
  const membership = bootstrapMembership([...o.members].map(([id, address]) => ({ id, address })));
  const meta: SnapshotMeta = {
    index: info.meta.index,
    term: 1,
    sizeBytes: info.meta.sizeBytes,
    crc32c: info.meta.crc32c,
    membership,
  };
  const quiet = { info: () => undefined, warn: () => undefined };
  const storage = new FileStorage({
    fs: o.fs,
    dir: o.dataDir,
    clusterId: o.clusterId,
    nodeId: o.nodeId,
    logger: quiet,
  });
  await storage.open();
  const h = await o.fs.open(o.file, "read");
  try {
    for (let at = 0; at < meta.sizeBytes; at += COPY_CHUNK_BYTES) {
      const data = await h.read(info.headerBytes + at, Math.min(COPY_CHUNK_BYTES, meta.sizeBytes - at));
      await storage.writeSnapshotChunk(meta, at, data);
    }
    await storage.installIncomingSnapshot(meta);
    await storage.save({ term: 1, votedFor: null, commitIndex: meta.index }, [], true);
  } finally {
    await h.close();
    await storage.close();
  }
  return info;
}
