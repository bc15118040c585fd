// A FileSystem that times how long the WAL waits for the disk to make its writes durable (fdatasync,
// and writes with O_DSYNC) for the WAL fsync histogram, and passes everything else through untouched.

import type { FileHandle, FileSystem, OpenMode } from "../storage/file-system.ts";
import type { FsyncOp } from "./metrics.ts";

export type FsyncObserver = (op: FsyncOp, seconds: number) => void;

/** `fs` with the durability waits of files under `walDir` reported to `observe`. */
export function timedWal(
  fs: FileSystem,
  walDir: string,
  nowMs: () => number,
  observe: FsyncObserver,
): FileSystem {
  const prefix = walDir.endsWith("/") ? walDir : `${walDir}/`;
  const timed = async (op: FsyncOp, work: Promise<void>): Promise<void> => {
    const started = nowMs();
    try {
      await work;
    } finally {
      observe(op, (nowMs() - started) / 1000);
    }
  };
  const wrap = (h: FileHandle): FileHandle => ({
    get path() {
      return h.path;
    },
    append: (data) => h.append(data),
    writeAt: (offset, data) => h.writeAt(offset, data),
    read: (offset, length) => h.read(offset, length),
    size: () => h.size(),
    truncate: (sizeBytes) => h.truncate(sizeBytes),
    sync: () => timed("fdatasync", h.sync()),
    writeDurable: (offset, data) => timed("dsyncWrite", h.writeDurable(offset, data)),
    close: () => h.close(),
  });
  return {
    open: async (path: string, mode: OpenMode) => {
      const h = await fs.open(path, mode);
      return path.startsWith(prefix) ? wrap(h) : h;
    },
    readFile: (path) => fs.readFile(path),
    rename: (from, to) => fs.rename(from, to),
    unlink: (path) => fs.unlink(path),
    readdir: (dir) => fs.readdir(dir),
    mkdir: (dir) => fs.mkdir(dir),
    syncDir: (dir) => fs.syncDir(dir),
    exists: (path) => fs.exists(path),
    lock: (dir) => fs.lock(dir),
  };
}
