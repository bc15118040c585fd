// PowerLossFileSystem (TEST ONLY): a FileSystem wrapper under which a SIGKILL loses exactly what a power
// loss would: file data not covered by an fdatasync (or an O_DSYNC write), and directory entries (creates,
// renames, removes, mkdirs) not covered by a sync of their directory. A real SIGKILL loses nothing, since
// the kernel's page cache keeps every write; the chaos harness needs this to catch a node that
// acknowledges before syncing. Enabled only by RAFTKV_TEST_POWER_LOSS=1 (src/server/node.ts).
//
// How: every operation goes through to the real files at once (so the process reads what it wrote), and
// the wrapper keeps a "shadow" of the durable state beside the data folder (<dataDir>.power-loss/):
// state.json maps each durable path to a directory or to an inode, and inodes/<ino> holds the synced
// content of each file. Writes since the last sync of a file wait in memory and are copied into its
// shadow inode when a sync covers them; a directory sync records its entries as they are now in
// state.json (written to a temp name and renamed). A SIGKILL throws the memory away: the shadow is then
// the state a power loss would have left. The next start (when the data folder's lock is taken, or on
// the first operation in it) rebuilds the folder from the shadow, then goes on as before. Without a
// shadow, the folder as found is taken as durable (a clean stop, or a plain process crash: the chaos
// harness removes the shadow after a kill that is not a power loss).
// Not modelled: torn or reordered writes inside a sync interval (the torn fault does that separately).
// The data folder itself, and files the storage does not own (LOCK, raftkv.log), are always kept.

import {
  closeSync,
  constants,
  copyFileSync,
  existsSync,
  ftruncateSync,
  linkSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { join, resolve, sep } from "node:path";
import type { DirLock, FileHandle, FileSystem, OpenMode } from "./file-system.ts";

/** The environment variable that turns the emulation on for a node ("1"). Test only. */
export const POWER_LOSS_ENV = "RAFTKV_TEST_POWER_LOSS";

/** Where the shadow of a data folder lives: beside it, never inside (the storage would see it). */
export function powerLossShadowDir(dataDir: string): string {
  return `${resolve(dataDir)}.power-loss`;
}

/** Names at the top of the data folder the wrapper leaves alone: the pid lock and the node's log. */
export function defaultUnmanaged(name: string): boolean {
  return name === "LOCK" || name.startsWith("raftkv.log") || name.startsWith("values.scratch");
}

/** What the start found and did, for the node's log. */
export interface PowerLossRecovery {
  /** "adopted": no shadow, the folder as found is durable; "rebuilt": the folder was reset to the shadow. */
  readonly kind: "adopted" | "rebuilt";
  /** Durable files and directories the folder holds now. */
  readonly files: number;
  readonly dirs: number;
  /** Rebuilt only: paths that existed before and were not durable (dropped). */
  readonly dropped: readonly string[];
  /** Rebuilt only: durable files whose content differed from the synced one (unsynced data lost). */
  readonly rolledBack: readonly string[];
  /** Rebuilt only: durable paths that were missing (an unsynced remove or rename undone). */
  readonly restored: readonly string[];
}

export interface PowerLossOptions {
  /** Default powerLossShadowDir(root). */
  readonly shadowDir?: string;
  /** Default defaultUnmanaged. */
  readonly unmanaged?: (topLevelName: string) => boolean;
  /** Told once, when the folder has been adopted or rebuilt. */
  readonly onRecovery?: (r: PowerLossRecovery) => void;
}

type Node = { readonly kind: "dir" } | { readonly kind: "file"; readonly ino: string };

type PendingOp =
  | { readonly kind: "write"; readonly offset: number; readonly data: Uint8Array }
  | { readonly kind: "truncate"; readonly sizeBytes: number };

interface ShadowState {
  readonly version: 1;
  readonly entries: Record<string, Node>;
}

const STATE_FILE = "state.json";
const INODES = "inodes";

export class PowerLossFileSystem implements FileSystem {
  private readonly root: string;
  private readonly shadow: string;
  private readonly unmanaged: (name: string) => boolean;
  /** The namespace as the process sees it (relative paths; "" is the root, always durable). */
  private current = new Map<string, Node>();
  /** The namespace a power loss would leave. */
  private durable = new Map<string, Node>();
  /** Per inode, its writes and truncations since its last sync, in order. */
  private readonly pending = new Map<string, PendingOp[]>();
  private readonly inoPrefix = `${process.pid}-${Date.now().toString(36)}`;
  private nextIno = 0;
  private ready = false;

  constructor(
    private readonly inner: FileSystem,
    root: string,
    private readonly o: PowerLossOptions = {},
  ) {
    this.root = resolve(root);
    this.shadow = o.shadowDir ?? powerLossShadowDir(root);
    this.unmanaged = o.unmanaged ?? defaultUnmanaged;
  }

  // ---- FileSystem ----

  async open(path: string, mode: OpenMode): Promise<FileHandle> {
    const r = this.rel(path);
    if (r === null || r === "") return this.inner.open(path, mode);
    this.ensureReady();
    const handle = await this.inner.open(path, mode);
    const existing = this.current.get(r);
    let ino: string;
    if (existing?.kind === "file") {
      ino = existing.ino;
      if (mode === "overwrite") this.push(ino, { kind: "truncate", sizeBytes: 0 });
    } else {
      // Created by this open (or, outside the model, by someone else: its content is not durable).
      ino = this.newIno();
      this.current.set(r, { kind: "file", ino });
    }
    return new PowerLossFileHandle(this, handle, ino, await handle.size());
  }

  readFile(path: string): Promise<Uint8Array> {
    this.readyIfManaged(path);
    return this.inner.readFile(path);
  }

  async rename(from: string, to: string): Promise<void> {
    const rf = this.rel(from);
    const rt = this.rel(to);
    if (rf === null && rt === null) return this.inner.rename(from, to);
    if (rf === null || rt === null || rf === "" || rt === "")
      throw new Error(`PowerLossFileSystem: rename ${from} -> ${to} crosses the emulated folder's edge`);
    this.ensureReady();
    await this.inner.rename(from, to);
    const node = this.current.get(rf);
    this.current.delete(rf);
    if (node !== undefined) this.current.set(rt, node);
  }

  async unlink(path: string): Promise<void> {
    const r = this.rel(path);
    if (r === null || r === "") return this.inner.unlink(path);
    this.ensureReady();
    await this.inner.unlink(path);
    this.current.delete(r);
  }

  readdir(dir: string): Promise<string[]> {
    this.readyIfManaged(dir);
    return this.inner.readdir(dir);
  }

  async mkdir(dir: string): Promise<void> {
    const r = this.rel(dir);
    if (r === null || r === "") return this.inner.mkdir(dir);
    this.ensureReady();
    const made: string[] = [];
    for (let p = r; p !== "" && !this.current.has(p); p = parentRel(p)) made.push(p);
    await this.inner.mkdir(dir);
    for (const p of made) this.current.set(p, { kind: "dir" });
  }

  async syncDir(dir: string): Promise<void> {
    await this.inner.syncDir(dir);
    const r = this.rel(dir);
    if (r === null) return;
    this.ensureReady();
    for (const p of [...this.durable.keys()])
      if (parentRel(p) === r && !this.current.has(p)) this.durable.delete(p);
    for (const [p, node] of this.current) if (p !== "" && parentRel(p) === r) this.durable.set(p, node);
    this.writeState();
    this.collectInodes();
  }

  exists(path: string): Promise<boolean> {
    this.readyIfManaged(path);
    return this.inner.exists(path);
  }

  async lock(dir: string): Promise<DirLock> {
    const lock = await this.inner.lock(dir);
    if (this.rel(dir) === "") {
      try {
        this.ensureReady();
      } catch (e) {
        await lock.release().catch(() => undefined);
        throw e;
      }
    }
    return lock;
  }

  // ---- used by handles ----

  push(ino: string, op: PendingOp): void {
    let ops = this.pending.get(ino);
    if (ops === undefined) {
      ops = [];
      this.pending.set(ino, ops);
    }
    ops.push(op);
  }

  /** The inode's unsynced operations, handed over (a sync is about to cover them). */
  take(ino: string): PendingOp[] {
    const ops = this.pending.get(ino) ?? [];
    this.pending.delete(ino);
    return ops;
  }

  /** Puts operations back in front (their sync failed). */
  giveBack(ino: string, ops: PendingOp[]): void {
    if (ops.length === 0) return;
    this.pending.set(ino, [...ops, ...(this.pending.get(ino) ?? [])]);
  }

  /** Makes `ops` durable: applies them, in order, to the inode's shadow content. */
  persist(ino: string, ops: readonly PendingOp[]): void {
    if (ops.length === 0 || !this.referenced(ino)) return;
    const w = openSync(this.inodePath(ino), constants.O_RDWR | constants.O_CREAT, 0o644);
    try {
      for (const op of ops) {
        if (op.kind === "truncate") {
          ftruncateSync(w, op.sizeBytes);
          continue;
        }
        let done = 0;
        while (done < op.data.length)
          done += writeSync(w, op.data, done, op.data.length - done, op.offset + done);
      }
    } finally {
      closeSync(w);
    }
  }

  // ---- start: adopt or rebuild ----

  private readyIfManaged(path: string): void {
    if (this.rel(path) !== null) this.ensureReady();
  }

  private ensureReady(): void {
    if (this.ready) return;
    this.ready = true;
    const report = existsSync(join(this.shadow, STATE_FILE)) ? this.rebuild() : this.adopt();
    this.o.onRecovery?.(report);
  }

  /** No shadow: whatever the folder holds now is durable (copied into a new shadow). */
  private adopt(): PowerLossRecovery {
    rmSync(this.shadow, { recursive: true, force: true });
    mkdirSync(join(this.shadow, INODES), { recursive: true });
    const found = new Map<string, Node>();
    const walk = (rel: string): void => {
      const abs = this.abs(rel);
      for (const name of readdirSync(abs).sort()) {
        if (rel === "" && this.unmanaged(name)) continue;
        const child = rel === "" ? name : `${rel}/${name}`;
        if (statSync(this.abs(child)).isDirectory()) {
          found.set(child, { kind: "dir" });
          walk(child);
        } else {
          const ino = this.newIno();
          copyFileSync(this.abs(child), this.inodePath(ino));
          found.set(child, { kind: "file", ino });
        }
      }
    };
    if (existsSync(this.root)) walk("");
    this.durable = found;
    this.current = new Map(found);
    this.writeState();
    return { kind: "adopted", ...counts(found), dropped: [], rolledBack: [], restored: [] };
  }

  /** A shadow: the last run ended without it being removed, so reset the folder to what was durable. */
  private rebuild(): PowerLossRecovery {
    const state = JSON.parse(readFileSync(join(this.shadow, STATE_FILE), "utf8")) as ShadowState;
    const durable = new Map<string, Node>();
    for (const p of Object.keys(state.entries).sort()) {
      if (ancestors(p).every((a) => state.entries[a]?.kind === "dir")) durable.set(p, state.entries[p]!);
    }
    // What is there now, to report what the power loss took.
    const before = new Map<string, { dir: boolean }>();
    const walk = (rel: string): void => {
      for (const name of readdirSync(this.abs(rel)).sort()) {
        if (rel === "" && this.unmanaged(name)) continue;
        const child = rel === "" ? name : `${rel}/${name}`;
        const st = statSync(this.abs(child));
        before.set(child, { dir: st.isDirectory() });
        if (st.isDirectory()) walk(child);
      }
    };
    mkdirSync(this.root, { recursive: true });
    walk("");
    const rolledBack: string[] = [];
    for (const [p, node] of durable) {
      const was = before.get(p);
      if (node.kind !== "file" || was === undefined || was.dir) continue;
      const synced = existsSync(this.inodePath(node.ino))
        ? readFileSync(this.inodePath(node.ino))
        : Buffer.alloc(0);
      if (!synced.equals(readFileSync(this.abs(p)))) rolledBack.push(p);
    }
    for (const name of readdirSync(this.root))
      if (!this.unmanaged(name)) rmSync(join(this.root, name), { recursive: true, force: true });
    const linked = new Map<string, string>();
    for (const [p, node] of durable) {
      const abs = this.abs(p);
      if (node.kind === "dir") {
        mkdirSync(abs);
        continue;
      }
      const first = linked.get(node.ino);
      if (first !== undefined) linkSync(first, abs);
      else if (existsSync(this.inodePath(node.ino))) copyFileSync(this.inodePath(node.ino), abs);
      else writeFileSync(abs, new Uint8Array(0));
      linked.set(node.ino, abs);
    }
    this.durable = durable;
    this.current = new Map(durable);
    this.writeState();
    this.collectInodes();
    return {
      kind: "rebuilt",
      ...counts(durable),
      dropped: [...before.keys()].filter((p) => !durable.has(p)),
      rolledBack,
      restored: [...durable.keys()].filter((p) => !before.has(p)),
    };
  }

  // ---- shadow bookkeeping ----

  private writeState(): void {
    const state: ShadowState = { version: 1, entries: Object.fromEntries(this.durable) };
    const tmp = join(this.shadow, `${STATE_FILE}.tmp`);
    writeFileSync(tmp, JSON.stringify(state));
    renameSync(tmp, join(this.shadow, STATE_FILE));
  }

  /** Removes shadow inodes no name refers to any more (in the process's view or the durable one). */
  private collectInodes(): void {
    for (const name of readdirSync(join(this.shadow, INODES))) {
      if (!this.referenced(name)) {
        unlinkSync(this.inodePath(name));
        this.pending.delete(name);
      }
    }
  }

  private referenced(ino: string): boolean {
    for (const m of [this.current, this.durable])
      for (const node of m.values()) if (node.kind === "file" && node.ino === ino) return true;
    return false;
  }

  private newIno(): string {
    return `${this.inoPrefix}-${++this.nextIno}`;
  }

  private inodePath(ino: string): string {
    return join(this.shadow, INODES, ino);
  }

  /** The path relative to the root ("" for the root), or null when outside it. */
  private rel(path: string): string | null {
    const abs = resolve(path);
    if (abs === this.root) return "";
    if (!abs.startsWith(this.root + sep)) return null;
    return abs
      .slice(this.root.length + 1)
      .split(sep)
      .join("/");
  }

  private abs(rel: string): string {
    return rel === "" ? this.root : join(this.root, ...rel.split("/"));
  }
}

class PowerLossFileHandle implements FileHandle {
  constructor(
    private readonly fs: PowerLossFileSystem,
    private readonly inner: FileHandle,
    private readonly ino: string,
    private sizeBytes: number,
  ) {}

  get path(): string {
    return this.inner.path;
  }

  async append(data: Uint8Array): Promise<void> {
    await this.writeAt(this.sizeBytes, data);
  }

  async writeAt(offset: number, data: Uint8Array): Promise<void> {
    await this.inner.writeAt(offset, data);
    this.fs.push(this.ino, { kind: "write", offset, data: data.slice() });
    this.sizeBytes = Math.max(this.sizeBytes, offset + data.length);
  }

  /** Durable at once, but only this write (earlier unsynced ones still wait for a sync). */
  async writeDurable(offset: number, data: Uint8Array): Promise<void> {
    await this.inner.writeDurable(offset, data);
    const op: PendingOp = { kind: "write", offset, data: data.slice() };
    this.fs.persist(this.ino, [op]);
    this.fs.push(this.ino, op);
    this.sizeBytes = Math.max(this.sizeBytes, offset + data.length);
  }

  read(offset: number, length: number): Promise<Uint8Array> {
    return this.inner.read(offset, length);
  }

  size(): Promise<number> {
    return this.inner.size();
  }

  async truncate(sizeBytes: number): Promise<void> {
    await this.inner.truncate(sizeBytes);
    this.fs.push(this.ino, { kind: "truncate", sizeBytes });
    this.sizeBytes = sizeBytes;
  }

  async sync(): Promise<void> {
    const ops = this.fs.take(this.ino);
    try {
      await this.inner.sync();
    } catch (e) {
      this.fs.giveBack(this.ino, ops);
      throw e;
    }
    this.fs.persist(this.ino, ops);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

function parentRel(p: string): string {
  const i = p.lastIndexOf("/");
  return i < 0 ? "" : p.slice(0, i);
}

function ancestors(p: string): string[] {
  const out: string[] = [];
  for (let a = parentRel(p); a !== ""; a = parentRel(a)) out.push(a);
  return out;
}

function counts(m: ReadonlyMap<string, Node>): { files: number; dirs: number } {
  let files = 0;
  let dirs = 0;
  for (const n of m.values()) {
    if (n.kind === "dir") dirs++;
    else files++;
  }
  return { files, dirs };
}
