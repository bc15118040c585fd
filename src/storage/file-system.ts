// The FileSystem seam: the few async file operations storage needs, so it runs on real disks and on a twin.

/** How to open a file: read-only, read-write (must exist), read-write creating it, or created empty. */
export type OpenMode = "read" | "write" | "create" | "overwrite";

/** An open file. Appends go to the end as this handle knows it (one writer per file). */
export interface FileHandle {
  readonly path: string;
  /** Write all of `data` at the current end of the file. */
  append(data: Uint8Array): Promise<void>;
  /** Write all of `data` at `offset` (extending the file with zeros if needed). */
  writeAt(offset: number, data: Uint8Array): Promise<void>;
  /** Read up to `length` bytes at `offset` (fewer only at the end of the file). */
  read(offset: number, length: number): Promise<Uint8Array>;
  size(): Promise<number>;
  truncate(sizeBytes: number): Promise<void>;
  /** fdatasync: the file's data and size are durable when this resolves. */
  sync(): Promise<void>;
  /** writeAt, durable when it resolves (O_DSYNC: one system call instead of write + fdatasync). Only
   *  this write is made durable: callers sync earlier unsynced writes first. */
  writeDurable(offset: number, data: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

/** An exclusive lock on a data folder, held until released (or the process dies). */
export interface DirLock {
  release(): Promise<void>;
}

export interface FileSystem {
  open(path: string, mode: OpenMode): Promise<FileHandle>;
  /** The whole file (a convenience over open + read + close). */
  readFile(path: string): Promise<Uint8Array>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  /** Names in a directory, sorted. */
  readdir(dir: string): Promise<string[]>;
  /** Creates the directory and any missing parents; no error if it exists. */
  mkdir(dir: string): Promise<void>;
  /** fsync of a directory: entries created, renamed or removed in it are durable when this resolves. */
  syncDir(dir: string): Promise<void>;
  exists(path: string): Promise<boolean>;
  /** Takes the folder's exclusive lock, or fails with code ELOCKED when a live process holds it. */
  lock(dir: string): Promise<DirLock>;
}

/** An error from a FileSystem, shaped like Node's (code such as ENOENT, ENOSPC, EIO, ELOCKED). */
export class FsError extends Error {
  override name = "FsError";
  constructor(
    readonly code: string,
    readonly path: string,
    message: string,
  ) {
    super(`${code}: ${message} (${path})`);
  }
}

/** The errno-style code of an error thrown by a FileSystem (ours or Node's), if it has one. */
export function errnoOf(e: unknown): string | undefined {
  if (typeof e === "object" && e !== null && "code" in e) {
    const code = (e as { code: unknown }).code;
    if (typeof code === "string") return code;
  }
  return undefined;
}

/** Joins path parts with "/" (both file systems use POSIX-style paths). */
export function joinPath(...parts: string[]): string {
  const joined = parts.filter((p) => p.length > 0).join("/");
  return joined.replace(/\/+/g, "/");
}

/** The parent directory of a path ("/" for top-level entries, "." for bare names). */
export function parentOf(path: string): string {
  const trimmed = path.length > 1 ? path.replace(/\/+$/, "") : path;
  const i = trimmed.lastIndexOf("/");
  if (i < 0) return ".";
  if (i === 0) return "/";
  return trimmed.slice(0, i);
}

/** The last component of a path. */
export function baseName(path: string): string {
  const trimmed = path.replace(/\/+$/, "");
  return trimmed.slice(trimmed.lastIndexOf("/") + 1);
}
