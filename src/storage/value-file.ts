// The KV values of a running node in a local file, with only each value's offset and length in memory
// (as in Bitcask): the process keeps the key index, the page cache keeps the bytes.
//
// The file is scratch, not truth: the WAL and the snapshots are durable, and the node fills a new value
// file from them at every start. So nothing here is fsynced, and a crash loses nothing. The file is
// removed from its folder as soon as it is opened (its space is the process's until it closes or dies:
// no leftovers after a crash, and a second store may open at the same path, e.g. to restore a snapshot
// while the first still serves; `ls -l /proc/PID/fd` shows it). Writes are buffered (writeBufferBytes) and appended; reads are pread(2) from the page
// cache, or from the buffer when not yet written. Released values leave dead bytes behind; when those
// exceed both the live bytes and compactMinBytes, the live values are copied into a new file, which then
// replaces the old one (synchronously: about 1 s per million live values on this machine's disk cache).
// Reads keep a bounded cache of the values read last (readCacheBytes, first in first out, scans not
// kept): a pread costs a system call and a copy, about 16 % of a leader's CPU under lease reads.
// Implements src/kv's ValueStore (structurally: storage does not import kv).

import { closeSync, ftruncateSync, openSync, readSync, unlinkSync, writeSync } from "node:fs";
import { assert } from "../lib/assert.ts";

export interface ValueFileOptions {
  /** Appends are gathered in a buffer of this size (default 1 MiB); larger values are written alone. */
  readonly writeBufferBytes?: number;
  /** Dead bytes tolerated before compaction, however few live bytes there are (default 64 MiB). */
  readonly compactMinBytes?: number;
  /** Values read are kept in memory up to about this many bytes (default 8 MiB; 0: no cache). */
  readonly readCacheBytes?: number;
}

/** What one cached value is charged beyond its bytes: the Uint8Array, its ArrayBuffer, the Map entry. */
const CACHE_ENTRY_OVERHEAD_BYTES = 160;

const FREE = -1;

export class FileValueStore {
  private fd: number;
  private readonly buffer: Uint8Array;
  /** Bytes of the buffer in use; they belong at file offset `fileBytes`. */
  private buffered = 0;
  /** Bytes written to the file. */
  private fileBytes = 0;
  /** Per handle: file offset of its value (FREE when not live) and byte length. */
  private offsets = new Float64Array(1024).fill(FREE);
  private lengths = new Uint32Array(1024);
  private handles = 0;
  private free: number[] = [];
  private liveBytes = 0;
  private deadBytes = 0;
  private readonly compactMinBytes: number;
  /** Handle to its value as last read, in the order they were cached (the first is evicted first). */
  private readonly cache = new Map<number, Uint8Array>();
  private cachedBytes = 0;
  private readonly readCacheBytes: number;

  constructor(
    readonly path: string,
    options: ValueFileOptions = {},
  ) {
    this.buffer = new Uint8Array(options.writeBufferBytes ?? 1024 * 1024);
    this.compactMinBytes = options.compactMinBytes ?? 64 * 1024 * 1024;
    this.readCacheBytes = options.readCacheBytes ?? 8 * 1024 * 1024;
    this.fd = openAnonymous(path);
  }

  /** Bytes of live values; and of the file (written and buffered), which includes dead ones. */
  stats(): {
    liveValues: number;
    liveBytes: number;
    fileBytes: number;
    cachedValues: number;
    cachedBytes: number;
  } {
    return {
      liveValues: this.handles - this.free.length,
      liveBytes: this.liveBytes,
      fileBytes: this.fileBytes + this.buffered,
      cachedValues: this.cache.size,
      cachedBytes: this.cachedBytes,
    };
  }

  add(bytes: Uint8Array): number {
    const handle = this.free.pop() ?? this.newHandle();
    this.offsets[handle] = this.append(bytes);
    this.lengths[handle] = bytes.length;
    this.liveBytes += bytes.length;
    return handle;
  }

  read(handle: number, scan = false): Uint8Array {
    const hit = this.cache.get(handle); // only live handles are cached: release() forgets them
    if (hit !== undefined) return hit;
    const offset = this.offsetOf(handle);
    const out = new Uint8Array(this.lengths[handle]!);
    if (offset >= this.fileBytes) {
      const at = offset - this.fileBytes;
      out.set(this.buffer.subarray(at, at + out.length));
    } else readFully(this.fd, out, offset);
    if (!scan) this.remember(handle, out);
    return out;
  }

  size(handle: number): number {
    this.offsetOf(handle);
    return this.lengths[handle]!;
  }

  release(handle: number): void {
    this.offsetOf(handle);
    const length = this.lengths[handle]!;
    this.offsets[handle] = FREE;
    this.forget(handle);
    this.free.push(handle);
    this.liveBytes -= length;
    this.deadBytes += length;
    if (this.deadBytes > this.compactMinBytes && this.deadBytes > this.liveBytes) this.compact();
  }

  clear(): void {
    ftruncateSync(this.fd, 0);
    this.buffered = 0;
    this.fileBytes = 0;
    this.offsets.fill(FREE);
    this.handles = 0;
    this.free = [];
    this.liveBytes = 0;
    this.deadBytes = 0;
    this.cache.clear();
    this.cachedBytes = 0;
  }

  /** Closes the file (its space goes back to the file system). */
  close(): void {
    closeSync(this.fd);
  }

  private remember(handle: number, value: Uint8Array): void {
    const cost = value.length + CACHE_ENTRY_OVERHEAD_BYTES;
    if (cost > this.readCacheBytes / 8) return; // a few big values must not flush everything else
    this.cache.set(handle, value);
    this.cachedBytes += cost;
    for (const [h, v] of this.cache) {
      if (this.cachedBytes <= this.readCacheBytes) break;
      this.cache.delete(h);
      this.cachedBytes -= v.length + CACHE_ENTRY_OVERHEAD_BYTES;
    }
  }

  private forget(handle: number): void {
    const v = this.cache.get(handle);
    if (v === undefined) return;
    this.cache.delete(handle);
    this.cachedBytes -= v.length + CACHE_ENTRY_OVERHEAD_BYTES;
  }

  private offsetOf(handle: number): number {
    const offset = this.offsets[handle];
    assert(
      offset !== undefined && offset !== FREE && handle < this.handles,
      () => `value handle ${handle} is not live`,
    );
    return offset;
  }

  private newHandle(): number {
    if (this.handles === this.offsets.length) {
      const offsets = new Float64Array(2 * this.handles).fill(FREE);
      offsets.set(this.offsets);
      const lengths = new Uint32Array(2 * this.handles);
      lengths.set(this.lengths);
      this.offsets = offsets;
      this.lengths = lengths;
    }
    return this.handles++;
  }

  /** Appends to the buffer (flushing it first when it has no room) and returns the value's offset. */
  private append(bytes: Uint8Array): number {
    if (this.buffered + bytes.length > this.buffer.length) this.flush();
    const offset = this.fileBytes + this.buffered;
    if (bytes.length > this.buffer.length) {
      writeFully(this.fd, bytes, offset);
      this.fileBytes += bytes.length;
    } else {
      this.buffer.set(bytes, this.buffered);
      this.buffered += bytes.length;
    }
    return offset;
  }

  private flush(): void {
    if (this.buffered === 0) return;
    writeFully(this.fd, this.buffer.subarray(0, this.buffered), this.fileBytes);
    this.fileBytes += this.buffered;
    this.buffered = 0;
  }

  /** Copies the live values into a new file in handle order and makes it the value file. */
  private compact(): void {
    this.flush();
    const oldFd = this.fd;
    this.fd = openAnonymous(`${this.path}.compacting`);
    this.fileBytes = 0;
    for (let h = 0; h < this.handles; h++) {
      const offset = this.offsets[h]!;
      if (offset === FREE) continue;
      const value = new Uint8Array(this.lengths[h]!);
      readFully(oldFd, value, offset);
      this.offsets[h] = this.append(value);
    }
    this.flush();
    closeSync(oldFd);
    this.deadBytes = 0;
  }
}

/** A new empty file at `path`, unlinked at once: only the returned descriptor reaches it. */
function openAnonymous(path: string): number {
  const fd = openSync(path, "w+");
  unlinkSync(path);
  return fd;
}

function writeFully(fd: number, bytes: Uint8Array, position: number): void {
  for (let done = 0; done < bytes.length; ) {
    done += writeSync(fd, bytes, done, bytes.length - done, position + done);
  }
}

function readFully(fd: number, into: Uint8Array, position: number): void {
  for (let done = 0; done < into.length; ) {
    const n = readSync(fd, into, done, into.length - done, position + done);
    assert(n > 0, () => `value file ends before offset ${position + into.length}`);
    done += n;
  }
}
