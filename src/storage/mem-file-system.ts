// MemFileSystem: an in-memory FileSystem that models durability exactly, for crash tests and the simulator.
//
// Per file it keeps the synced content and the unsynced operations since; a directory's entries
// (create, rename, unlink, mkdir) become durable only when that directory is synced. `crash(prng)`
// drops everything unsynced; half the time the file written last keeps a torn prefix of its last
// unsynced write (its earlier unsynced writes land too, in order, as page writeback would).
// Faults on demand: a full disk (ENOSPC), failures of chosen operations (EIO), and a crash after a
// given number of write/sync points, so a test can crash at every point of a scripted run.

import type { Prng } from "../lib/prng.ts";
import type { DirLock, FileHandle, FileSystem, OpenMode } from "./file-system.ts";
import { FsError, parentOf } from "./file-system.ts";

type PendingOp =
  | { readonly kind: "write"; readonly offset: number; readonly data: Uint8Array; readonly seq: number }
  | { readonly kind: "truncate"; readonly sizeBytes: number };

/** A byte buffer that grows by doubling. */
class GrowBuffer {
  bytes = new Uint8Array(64);
  length = 0;

  clone(): GrowBuffer {
    const c = new GrowBuffer();
    c.bytes = this.bytes.slice(0, Math.max(64, this.length));
    c.length = this.length;
    return c;
  }

  write(offset: number, data: Uint8Array): void {
    const end = offset + data.length;
    if (end > this.bytes.length) {
      let cap = this.bytes.length;
      while (cap < end) cap *= 2;
      const next = new Uint8Array(cap);
      next.set(this.bytes.subarray(0, this.length));
      this.bytes = next;
    }
    if (offset > this.length) this.bytes.fill(0, this.length, offset);
    this.bytes.set(data, offset);
    this.length = Math.max(this.length, end);
  }

  truncate(sizeBytes: number): void {
    if (sizeBytes > this.length) this.write(sizeBytes, new Uint8Array(0));
    else this.bytes.fill(0, sizeBytes, this.length);
    this.length = sizeBytes;
  }

  apply(op: PendingOp): void {
    if (op.kind === "write") this.write(op.offset, op.data);
    else this.truncate(op.sizeBytes);
  }
}

class Inode {
  current = new GrowBuffer();
  synced = new GrowBuffer();
  pending: PendingOp[] = [];
}

type Node = { readonly kind: "dir" } | { readonly kind: "file"; readonly inode: Inode };

/** The faults a test can ask for. */
export type FaultOp = "write" | "sync" | "open" | "rename" | "unlink";

/** Thrown by every operation once the crash point set by `crashAfter` is reached. */
export class SimulatedCrash extends FsError {
  constructor(path: string) {
    super("ECRASH", path, "simulated power loss at this point");
  }
}

export class MemFileSystem implements FileSystem {
  private current = new Map<string, Node>([["/", { kind: "dir" }]]);
  private durable = new Map<string, Node>([["/", { kind: "dir" }]]);
  private locks = new Set<string>();
  private epoch = 0;
  private writeSeq = 0;
  private points = 0;
  private crashAtPoint: number | null = null;
  private halted = false;
  private capacityBytes: number | null = null;
  private faults: { op: FaultOp; code: string; remaining: number }[] = [];

  // ---- fault injection and inspection ----

  /** Number of write/sync points (mutations) performed so far. */
  get pointCount(): number {
    return this.points;
  }

  /** After `points` more mutations, every further operation throws SimulatedCrash (call `crash` then). */
  crashAfter(points: number | null): void {
    this.crashAtPoint = points === null ? null : this.points + points;
  }

  /** A full disk: writes that grow a file fail with ENOSPC (true), or space returns (false). */
  setDiskFull(full: boolean): void {
    this.capacityBytes = full ? this.usedBytes() : null;
  }

  /** Limits the total size of all files (null: unlimited). */
  setCapacityBytes(bytes: number | null): void {
    this.capacityBytes = bytes;
  }

  /** The next `count` operations of kind `op` fail with `code` (e.g. "EIO" on "sync"). */
  injectFault(op: FaultOp, code: string, count = 1): void {
    this.faults.push({ op, code, remaining: count });
  }

  clearFaults(): void {
    this.faults = [];
    this.capacityBytes = null;
  }

  usedBytes(): number {
    let total = 0;
    for (const node of this.current.values()) if (node.kind === "file") total += node.inode.current.length;
    return total;
  }

  /** Power loss: unsynced data and directory entries are dropped; half the time the last unsynced
   *  write is torn instead (a random prefix of it survives). Locks and open handles die with the process. */
  crash(prng: Prng): void {
    const tear = prng.chance(0.5);
    let last: { inode: Inode; seq: number } | null = null;
    const inodes = new Set<Inode>();
    for (const node of [...this.current.values(), ...this.durable.values()]) {
      if (node.kind === "file") inodes.add(node.inode);
    }
    for (const inode of inodes) {
      for (const op of inode.pending) {
        if (op.kind === "write" && (last === null || op.seq > last.seq)) last = { inode, seq: op.seq };
      }
    }
    for (const inode of inodes) {
      const survivor = inode.synced.clone();
      if (tear && last !== null && last.inode === inode) {
        for (const op of inode.pending) {
          if (op.kind === "write" && op.seq === last.seq) {
            survivor.write(op.offset, op.data.subarray(0, prng.int(0, op.data.length - 1)));
            break;
          }
          survivor.apply(op);
        }
      }
      inode.current = survivor;
      inode.synced = survivor.clone();
      inode.pending = [];
    }
    this.current = new Map();
    for (const [path, node] of this.durable) {
      if (path === "/" || this.hasDurableAncestors(path)) this.current.set(path, node);
    }
    this.durable = new Map(this.current);
    this.locks.clear();
    this.epoch++;
    this.halted = false;
    this.crashAtPoint = null;
  }

  /** Test helper: the current bytes of a file (synced or not). */
  peek(path: string): Uint8Array {
    return this.file(path).current.bytes.slice(0, this.file(path).current.length);
  }

  /** Test helper: overwrite a file's content as if on disk (durable at once), to model corruption. */
  poke(path: string, content: Uint8Array): void {
    const inode = this.file(path);
    const buf = new GrowBuffer();
    buf.write(0, content);
    inode.current = buf;
    inode.synced = buf.clone();
    inode.pending = [];
  }

  // ---- FileSystem ----

  async open(path: string, mode: OpenMode): Promise<FileHandle> {
    const node = this.current.get(path);
    this.check("open", path, mode === "overwrite" || (mode === "create" && node === undefined));
    if (node?.kind === "dir") throw new FsError("EISDIR", path, "is a directory");
    if (node === undefined) {
      if (mode === "read" || mode === "write") throw new FsError("ENOENT", path, "no such file");
      this.requireDir(parentOf(path), path);
      const inode = new Inode();
      this.current.set(path, { kind: "file", inode });
      return new MemFileHandle(this, path, inode, this.epoch);
    }
    const handle = new MemFileHandle(this, path, node.inode, this.epoch);
    if (mode === "overwrite") this.mutate(node.inode, { kind: "truncate", sizeBytes: 0 });
    return handle;
  }

  async readFile(path: string): Promise<Uint8Array> {
    this.check(null, path, false);
    const inode = this.file(path);
    return inode.current.bytes.slice(0, inode.current.length);
  }

  async rename(from: string, to: string): Promise<void> {
    this.check("rename", from, true);
    const node = this.current.get(from);
    if (node === undefined) throw new FsError("ENOENT", from, "no such file");
    if (node.kind === "dir") throw new FsError("EISDIR", from, "renaming directories is not modelled");
    if (this.current.get(to)?.kind === "dir") throw new FsError("EISDIR", to, "is a directory");
    this.requireDir(parentOf(to), to);
    this.current.delete(from);
    this.current.set(to, node);
  }

  async unlink(path: string): Promise<void> {
    this.check("unlink", path, true);
    const node = this.current.get(path);
    if (node === undefined) throw new FsError("ENOENT", path, "no such file");
    if (node.kind === "dir") throw new FsError("EISDIR", path, "is a directory");
    this.current.delete(path);
  }

  async readdir(dir: string): Promise<string[]> {
    this.check(null, dir, false);
    this.requireDir(dir, dir);
    const names: string[] = [];
    for (const path of this.current.keys()) {
      if (path !== "/" && parentOf(path) === dir) names.push(path.slice(path.lastIndexOf("/") + 1));
    }
    return names.sort();
  }

  async mkdir(dir: string): Promise<void> {
    if (this.current.get(dir)?.kind === "dir") {
      this.check(null, dir, false);
      return;
    }
    this.check("open", dir, true);
    const chain: string[] = [];
    let p = dir;
    for (; !this.current.has(p); p = parentOf(p)) chain.unshift(p);
    if (this.current.get(p)?.kind !== "dir") throw new FsError("ENOTDIR", dir, `${p} is not a directory`);
    for (const q of chain) this.current.set(q, { kind: "dir" });
  }

  async syncDir(dir: string): Promise<void> {
    this.check("sync", dir, true);
    this.requireDir(dir, dir);
    for (const path of [...this.durable.keys()]) {
      if (path !== "/" && parentOf(path) === dir && !this.current.has(path)) this.durable.delete(path);
    }
    for (const [path, node] of this.current) {
      if (path !== "/" && parentOf(path) === dir) this.durable.set(path, node);
    }
  }

  async exists(path: string): Promise<boolean> {
    this.check(null, path, false);
    return this.current.has(path);
  }

  async lock(dir: string): Promise<DirLock> {
    this.check(null, dir, false);
    this.requireDir(dir, dir);
    if (this.locks.has(dir)) throw new FsError("ELOCKED", dir, "data folder is locked by a running process");
    this.locks.add(dir);
    const epoch = this.epoch;
    return {
      release: async () => {
        if (this.epoch === epoch) this.locks.delete(dir);
      },
    };
  }

  // ---- used by handles ----

  /** Counts a mutation point, applies faults and the crash point. `op` null: a read (never fails). */
  check(op: FaultOp | null, path: string, mutation: boolean): void {
    if (this.halted) throw new SimulatedCrash(path);
    if (!mutation) return;
    if (this.crashAtPoint !== null && this.points >= this.crashAtPoint) {
      this.halted = true;
      throw new SimulatedCrash(path);
    }
    this.points++;
    const fault = this.faults.find((f) => f.op === op && f.remaining > 0);
    if (fault !== undefined) {
      fault.remaining--;
      this.faults = this.faults.filter((f) => f.remaining > 0);
      throw new FsError(fault.code, path, `injected ${fault.code} on ${op}`);
    }
  }

  checkEpoch(epoch: number, path: string): void {
    if (epoch !== this.epoch) throw new FsError("EBADF", path, "handle opened before a crash");
  }

  checkSpace(path: string, growthBytes: number): void {
    if (growthBytes > 0 && this.capacityBytes !== null && this.usedBytes() + growthBytes > this.capacityBytes)
      throw new FsError("ENOSPC", path, "no space left on device");
  }

  mutate(inode: Inode, op: PendingOp): void {
    inode.current.apply(op);
    inode.pending.push(op);
  }

  nextWriteSeq(): number {
    return ++this.writeSeq;
  }

  syncInode(inode: Inode): void {
    for (const op of inode.pending) inode.synced.apply(op);
    inode.pending = [];
  }

  private file(path: string): Inode {
    const node = this.current.get(path);
    if (node === undefined) throw new FsError("ENOENT", path, "no such file");
    if (node.kind === "dir") throw new FsError("EISDIR", path, "is a directory");
    return node.inode;
  }

  private requireDir(dir: string, forPath: string): void {
    const node = this.current.get(dir);
    if (node === undefined) throw new FsError("ENOENT", forPath, `no such directory ${dir}`);
    if (node.kind !== "dir") throw new FsError("ENOTDIR", forPath, `${dir} is not a directory`);
  }

  private hasDurableAncestors(path: string): boolean {
    for (let p = parentOf(path); p !== "/" && p !== "."; p = parentOf(p)) {
      if (this.durable.get(p)?.kind !== "dir") return false;
    }
    return true;
  }
}

class MemFileHandle implements FileHandle {
  private closed = false;

  constructor(
    private readonly fs: MemFileSystem,
    readonly path: string,
    private readonly inode: Inode,
    private readonly epoch: number,
  ) {}

  async append(data: Uint8Array): Promise<void> {
    this.live();
    await this.writeAt(this.inode.current.length, data);
  }

  async writeAt(offset: number, data: Uint8Array): Promise<void> {
    this.live();
    this.fs.check("write", this.path, true);
    this.fs.checkSpace(this.path, Math.max(0, offset + data.length - this.inode.current.length));
    this.fs.mutate(this.inode, { kind: "write", offset, data: data.slice(), seq: this.fs.nextWriteSeq() });
  }

  /** A write then a sync: two points, so a test can also crash between them. */
  async writeDurable(offset: number, data: Uint8Array): Promise<void> {
    await this.writeAt(offset, data);
    await this.sync();
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    this.live();
    this.fs.check(null, this.path, false);
    const end = Math.min(this.inode.current.length, offset + length);
    return this.inode.current.bytes.slice(Math.min(offset, end), end);
  }

  async size(): Promise<number> {
    this.live();
    return this.inode.current.length;
  }

  async truncate(sizeBytes: number): Promise<void> {
    this.live();
    this.fs.check("write", this.path, true);
    this.fs.checkSpace(this.path, sizeBytes - this.inode.current.length);
    this.fs.mutate(this.inode, { kind: "truncate", sizeBytes });
  }

  async sync(): Promise<void> {
    this.live();
    this.fs.check("sync", this.path, true);
    this.fs.syncInode(this.inode);
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private live(): void {
    if (this.closed) throw new FsError("EBADF", this.path, "handle is closed");
    this.fs.checkEpoch(this.epoch, this.path);
  }
}
