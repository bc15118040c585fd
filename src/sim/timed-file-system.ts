// A simulated disk with time: the in-memory file system (which models durability exactly) behind a
// device whose every operation takes simulated time drawn from a per-seed profile, so that the real
// FileStorage runs with I/Os in flight. An operation takes effect when it completes, not when it is
// submitted; operations on one file complete in submission order, operations on different files
// complete in any order. A power loss can land at any instant: what is in flight never happens (a write
// in flight may have reached the page cache, where MemFileSystem's tear rule applies to it), and what
// was not durable is lost exactly as MemFileSystem defines it. Stalls hold every completion, as a dying
// disk does.

import type { Prng } from "../lib/prng.ts";
import type { DirLock, FileHandle, FileSystem, OpenMode } from "../storage/file-system.ts";
import { parentOf } from "../storage/file-system.ts";
import type { MemFileSystem } from "../storage/mem-file-system.ts";
import type { EventQueue } from "./event-queue.ts";

/** What an operation does to the device, for its latency and for aimed crashes. */
export type IoKind = "write" | "sync" | "writeDurable" | "rename" | "dirSync" | "meta" | "read";

/** Latency ranges per kind (µs, uniform), slow outliers, and whether this disk stalls sometimes. */
export interface DiskProfile {
  readonly name: string;
  readonly latencyUs: Readonly<Record<IoKind, readonly [number, number]>>;
  /** Probability that one operation is an outlier, and how many times slower it is then. */
  readonly outlierRate: number;
  readonly outlierFactor: readonly [number, number];
  /** Stall episodes (every completion held) of this length range, µs; null: this disk never stalls. */
  readonly stallUs: readonly [number, number] | null;
}

/** A disk per seed: from NVMe-fast to a slow spinning disk, outliers in some, stalls of several
 *  election timeouts in some (electionUs: the largest election timeout). */
export function drawDiskProfile(prng: Prng, electionUs: number): DiskProfile {
  const kind = prng.pick(["nvme", "ssd", "slow"] as const);
  const sync: [number, number] = kind === "nvme" ? [20, 400] : kind === "ssd" ? [300, 4000] : [3000, 30_000];
  const write: [number, number] = kind === "slow" ? [20, 2000] : [5, 200];
  const outliers = prng.chance(0.5);
  const stalls = prng.chance(0.2);
  return {
    name: `${kind}${outliers ? "+outliers" : ""}${stalls ? "+stalls" : ""}`,
    latencyUs: {
      write,
      sync,
      writeDurable: [sync[0] + write[0], sync[1] + write[1]],
      rename: [write[0], write[1] * 2],
      dirSync: sync,
      meta: write,
      read: [2, kind === "slow" ? 5000 : 100],
    },
    outlierRate: outliers ? prng.next() * 0.02 : 0,
    outlierFactor: [5, 50],
    stallUs: stalls ? [electionUs, 5 * electionUs] : null,
  };
}

/** An operation submitted and not completed yet. */
interface InFlight {
  readonly kind: IoKind;
  readonly path: string;
  readonly submittedUs: number;
  readonly completesUs: number;
  /** For writes: the write as it would reach the page cache (applied at a crash half the time). */
  readonly landInCache?: () => void;
}

/** Told of each operation submitted, with its completion time (aimed crashes listen). */
export type IoObserver = (io: {
  kind: IoKind;
  path: string;
  submittedUs: number;
  completesUs: number;
}) => void;

export interface TimedDiskStats {
  ios: number;
  /** Crashes that found at least one operation in flight. */
  crashesInIo: number;
  stalls: number;
}

export class TimedFileSystem implements FileSystem {
  private epoch = 0;
  private readonly inflight = new Set<InFlight>();
  /** Per file (or directory, for renames and directory syncs): when its last operation completes. */
  private readonly lastDoneUs = new Map<string, number>();
  private stalledUntilUs = 0;
  readonly stats: TimedDiskStats = { ios: 0, crashesInIo: 0, stalls: 0 };
  onSubmit: IoObserver | null = null;

  constructor(
    readonly inner: MemFileSystem,
    private readonly q: EventQueue,
    private readonly prng: Prng,
    readonly profile: DiskProfile,
  ) {}

  private corruptReads = 0;
  private deliveredCorruption = false;

  /** Whether a corrupted read was delivered since the last call (a CORRUPT refusal is then expected). */
  takeDeliveredCorruption(): boolean {
    const d = this.deliveredCorruption;
    this.deliveredCorruption = false;
    return d;
  }

  /** The next `count` reads of snapshot file bodies return one flipped bit (the file stays intact):
   *  the checksums must catch it. */
  corruptSnapshotReads(count: number): void {
    this.corruptReads += count;
  }

  /** The corrupted reads not delivered yet are dropped (the liveness phase heals the disks). */
  clearCorruptReads(): void {
    this.corruptReads = 0;
  }

  /** A read's bytes as the device returns them (sometimes corrupted, see corruptSnapshotReads). */
  deliverRead(path: string, offset: number, data: Uint8Array): Uint8Array {
    if (this.corruptReads === 0 || offset === 0 || data.length === 0 || !path.includes(".snap")) return data;
    this.corruptReads--;
    this.deliveredCorruption = true;
    const bad = data.slice();
    const at = this.prng.int(0, bad.length - 1);
    bad[at] = bad[at]! ^ (1 << this.prng.int(0, 7));
    return bad;
  }

  /** Operations in flight now (submitted, not completed). */
  get inFlight(): number {
    return this.inflight.size;
  }

  /** Holds every completion until `durationUs` from now. */
  stall(durationUs: number): void {
    this.stats.stalls++;
    this.stalledUntilUs = Math.max(this.stalledUntilUs, this.q.nowUs + durationUs);
  }

  /** A stall drawn from the profile (no-op on a disk that never stalls); returns its length, µs. */
  drawStall(prng: Prng): number {
    const r = this.profile.stallUs;
    if (r === null) return 0;
    const us = prng.int(r[0], r[1]);
    this.stall(us);
    return us;
  }

  /** Power loss: what is in flight never completes (a write in flight reached the page cache half the
   *  time, where the tear rule may keep a prefix of it), and everything not durable is lost. */
  crash(prng: Prng): void {
    if (this.inflight.size > 0) this.stats.crashesInIo++;
    for (const io of this.inflight) if (io.landInCache !== undefined && prng.chance(0.5)) io.landInCache();
    this.inflight.clear();
    this.lastDoneUs.clear();
    this.epoch++;
    this.stalledUntilUs = Math.min(this.stalledUntilUs, this.q.nowUs);
    this.inner.crash(prng);
  }

  /** Runs `effect` on the inner file system when the operation completes; never, after a crash. */
  io<T>(
    kind: IoKind,
    path: string,
    key: string,
    effect: () => Promise<T>,
    landInCache?: () => void,
  ): Promise<T> {
    const now = this.q.nowUs;
    const [lo, hi] = this.profile.latencyUs[kind];
    let lat = this.prng.int(lo, hi);
    if (this.profile.outlierRate > 0 && this.prng.chance(this.profile.outlierRate))
      lat *= this.prng.int(this.profile.outlierFactor[0], this.profile.outlierFactor[1]);
    const completesUs = Math.max(now + lat, this.lastDoneUs.get(key) ?? 0);
    this.lastDoneUs.set(key, completesUs);
    this.stats.ios++;
    const op: InFlight =
      landInCache === undefined
        ? { kind, path, submittedUs: now, completesUs }
        : { kind, path, submittedUs: now, completesUs, landInCache };
    this.inflight.add(op);
    const epoch = this.epoch;
    this.onSubmit?.({ kind, path, submittedUs: now, completesUs });
    return new Promise<T>((resolve, reject) => {
      const complete = (): void => {
        if (epoch !== this.epoch) return; // the power went: this operation never happened
        if (this.q.nowUs < this.stalledUntilUs) {
          this.q.at(this.stalledUntilUs, complete);
          return;
        }
        this.inflight.delete(op);
        effect().then(resolve, reject);
      };
      this.q.at(completesUs, complete);
    });
  }

  async open(path: string, mode: OpenMode): Promise<FileHandle> {
    const kind: IoKind = mode === "read" || mode === "write" ? "read" : "meta";
    const h = await this.io(kind, path, path, () => this.inner.open(path, mode));
    return new TimedFileHandle(this, h);
  }
  readFile(path: string): Promise<Uint8Array> {
    return this.io("read", path, path, () => this.inner.readFile(path));
  }
  rename(from: string, to: string): Promise<void> {
    return this.io("rename", from, parentOf(to), () => this.inner.rename(from, to));
  }
  unlink(path: string): Promise<void> {
    return this.io("meta", path, parentOf(path), () => this.inner.unlink(path));
  }
  readdir(dir: string): Promise<string[]> {
    return this.io("read", dir, dir, () => this.inner.readdir(dir));
  }
  mkdir(dir: string): Promise<void> {
    return this.io("meta", dir, parentOf(dir), () => this.inner.mkdir(dir));
  }
  syncDir(dir: string): Promise<void> {
    return this.io("dirSync", dir, dir, () => this.inner.syncDir(dir));
  }
  exists(path: string): Promise<boolean> {
    return this.io("read", path, path, () => this.inner.exists(path));
  }
  lock(dir: string): Promise<DirLock> {
    return this.inner.lock(dir);
  }
}

class TimedFileHandle implements FileHandle {
  constructor(
    private readonly fs: TimedFileSystem,
    private readonly h: FileHandle,
  ) {}

  get path(): string {
    return this.h.path;
  }
  append(data: Uint8Array): Promise<void> {
    const land = (): void => void this.h.append(data).catch(() => undefined);
    return this.fs.io("write", this.path, this.path, () => this.h.append(data), land);
  }
  writeAt(offset: number, data: Uint8Array): Promise<void> {
    const land = (): void => void this.h.writeAt(offset, data).catch(() => undefined);
    return this.fs.io("write", this.path, this.path, () => this.h.writeAt(offset, data), land);
  }
  writeDurable(offset: number, data: Uint8Array): Promise<void> {
    const land = (): void => void this.h.writeAt(offset, data).catch(() => undefined);
    return this.fs.io("writeDurable", this.path, this.path, () => this.h.writeDurable(offset, data), land);
  }
  read(offset: number, length: number): Promise<Uint8Array> {
    return this.fs.io("read", this.path, this.path, async () =>
      this.fs.deliverRead(this.path, offset, await this.h.read(offset, length)),
    );
  }
  size(): Promise<number> {
    return this.h.size();
  }
  truncate(sizeBytes: number): Promise<void> {
    return this.fs.io("write", this.path, this.path, () => this.h.truncate(sizeBytes));
  }
  sync(): Promise<void> {
    return this.fs.io("sync", this.path, this.path, () => this.h.sync());
  }
  close(): Promise<void> {
    return this.h.close();
  }
}
