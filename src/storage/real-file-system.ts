// RealFileSystem: the FileSystem seam over node:fs/promises, with handles kept open and a pid lock file.

import { constants } from "node:fs";
import * as fsp from "node:fs/promises";
import { performance } from "node:perf_hooks";
import type { DirLock, FileHandle, FileSystem, OpenMode } from "./file-system.ts";
import { errnoOf, FsError, joinPath } from "./file-system.ts";

const LOCK_FILE = "LOCK";

const FLAGS: Record<OpenMode, string | number> = {
  read: "r",
  write: "r+",
  create: constants.O_RDWR | constants.O_CREAT,
  overwrite: "w+",
};

class RealFileHandle implements FileHandle {
  private closed = false;
  /** A second descriptor opened with O_DSYNC, for writeDurable. */
  private dsync: fsp.FileHandle | null = null;

  constructor(
    readonly path: string,
    private readonly handle: fsp.FileHandle,
    private sizeBytes: number,
  ) {}

  async append(data: Uint8Array): Promise<void> {
    await this.writeAt(this.sizeBytes, data);
  }

  async writeAt(offset: number, data: Uint8Array): Promise<void> {
    await this.writeVia(this.handle, offset, data);
  }

  async writeDurable(offset: number, data: Uint8Array): Promise<void> {
    this.dsync ??= await fsp.open(this.path, constants.O_RDWR | constants.O_DSYNC);
    await this.writeVia(this.dsync, offset, data);
  }

  private async writeVia(handle: fsp.FileHandle, offset: number, data: Uint8Array): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await handle.write(data, done, data.length - done, offset + done);
      if (bytesWritten <= 0) throw new FsError("EIO", this.path, "write made no progress");
      done += bytesWritten;
    }
    this.sizeBytes = Math.max(this.sizeBytes, offset + data.length);
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    const out = new Uint8Array(Math.max(0, Math.min(length, this.sizeBytes - offset)));
    let done = 0;
    while (done < out.length) {
      const { bytesRead } = await this.handle.read(out, done, out.length - done, offset + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return done === out.length ? out : out.subarray(0, done);
  }

  async size(): Promise<number> {
    return this.sizeBytes;
  }

  async truncate(sizeBytes: number): Promise<void> {
    await this.handle.truncate(sizeBytes);
    this.sizeBytes = sizeBytes;
  }

  async sync(): Promise<void> {
    await this.handle.datasync();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.dsync?.close();
    await this.handle.close();
  }
}

/** This process's identity in lock files: pid plus its start time, so a reused pid is not mistaken
 *  for a live holder after a restart (a container restarts as pid 1 again). */
function lockToken(): string {
  return `${process.pid} ${performance.timeOrigin}`;
}

function holderIsAlive(content: string): { alive: boolean; pid: number | null } {
  const [pidText, origin] = content.trim().split(/\s+/);
  const pid = Number(pidText);
  if (!Number.isSafeInteger(pid) || pid <= 0) return { alive: false, pid: null };
  if (pid === process.pid) return { alive: origin === String(performance.timeOrigin), pid };
  try {
    process.kill(pid, 0);
    return { alive: true, pid };
  } catch (e) {
    return { alive: errnoOf(e) === "EPERM", pid };
  }
}

export class RealFileSystem implements FileSystem {
  async open(path: string, mode: OpenMode): Promise<FileHandle> {
    const handle = await fsp.open(path, FLAGS[mode], 0o644);
    try {
      const { size } = await handle.stat();
      return new RealFileHandle(path, handle, size);
    } catch (e) {
      await handle.close();
      throw e;
    }
  }

  async readFile(path: string): Promise<Uint8Array> {
    const buf = await fsp.readFile(path);
    return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  async rename(from: string, to: string): Promise<void> {
    await fsp.rename(from, to);
  }

  async unlink(path: string): Promise<void> {
    await fsp.unlink(path);
  }

  async readdir(dir: string): Promise<string[]> {
    return (await fsp.readdir(dir)).sort();
  }

  async mkdir(dir: string): Promise<void> {
    await fsp.mkdir(dir, { recursive: true });
  }

  async syncDir(dir: string): Promise<void> {
    const handle = await fsp.open(dir, "r");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  async exists(path: string): Promise<boolean> {
    try {
      await fsp.stat(path);
      return true;
    } catch (e) {
      if (errnoOf(e) === "ENOENT") return false;
      throw e;
    }
  }

  async lock(dir: string): Promise<DirLock> {
    const path = joinPath(dir, LOCK_FILE);
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const handle = await fsp.open(path, "wx", 0o644);
        try {
          await handle.writeFile(`${lockToken()}\n`);
          await handle.sync();
        } finally {
          await handle.close();
        }
        return { release: () => this.releaseLock(path) };
      } catch (e) {
        if (errnoOf(e) !== "EEXIST") throw e;
      }
      const content = await fsp.readFile(path, "utf8").catch(() => "");
      const holder = holderIsAlive(content);
      if (holder.alive) {
        throw new FsError(
          "ELOCKED",
          path,
          `data folder is locked by running process ${holder.pid}${holder.pid === process.pid ? " (this process)" : ""}`,
        );
      }
      await fsp.unlink(path).catch((e: unknown) => {
        if (errnoOf(e) !== "ENOENT") throw e;
      });
    }
    throw new FsError("ELOCKED", path, "could not take the lock (another opener raced us)");
  }

  private async releaseLock(path: string): Promise<void> {
    const content = await fsp.readFile(path, "utf8").catch(() => "");
    if (content.trim() === lockToken()) await fsp.unlink(path);
  }
}
