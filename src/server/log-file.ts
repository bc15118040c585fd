// The node's log file (raftkv.log in the data folder): pino writes lines into it; they go to disk in
// the background, bounded in memory, and a failing disk never blocks the node.
//
// Why not pino.destination: its sonic-boom stream retries a failed synchronous flush forever, sleeping
// between tries (an Atomics.wait), for any error but EAGAIN, and pino flushes it that way at exit. With
// the data folder's disk full, a node that had to stop for ENOSPC then hung in that loop at exit, its
// ports still open, deaf to SIGTERM (issue 12, finding 4). Here a write error ends logging to the file
// (said once on stderr) and nothing ever waits on the file.

import { closeSync, openSync, write, writeSync } from "node:fs";

export interface LogFileOptions {
  /** Lines waiting to be written beyond this are dropped (and counted); default 8 MiB. */
  readonly maxQueuedBytes?: number;
  /** Called once when the file cannot be written any more (the first write error). */
  readonly onFailure?: (err: Error) => void;
}

export class LogFile {
  readonly path: string;
  private fd: number | null;
  private readonly maxQueuedBytes: number;
  private readonly onFailure: (err: Error) => void;
  private queue: string[] = [];
  private queuedBytes = 0;
  private writing = false;
  private failed: Error | null = null;
  /** Lines dropped because the queue was full or the file failed. */
  dropped = 0;

  /** Opens (creating, appending to) the file; throws if it cannot be opened. */
  constructor(path: string, o: LogFileOptions = {}) {
    this.path = path;
    this.fd = openSync(path, "a");
    this.maxQueuedBytes = o.maxQueuedBytes ?? 8 * 1024 * 1024;
    this.onFailure = o.onFailure ?? (() => {});
  }

  /** pino's stream interface: queue a line. Never blocks; drops when the queue is full. */
  write(line: string): boolean {
    if (this.failed !== null || this.fd === null) {
      this.dropped++;
      return true;
    }
    if (this.queuedBytes + line.length > this.maxQueuedBytes) {
      this.dropped++;
      return true;
    }
    this.queue.push(line);
    this.queuedBytes += line.length;
    if (!this.writing) this.pump();
    return true;
  }

  /** Writes what is queued now, once, synchronously; an error ends logging to the file (no retry).
   *  (A background write still in flight may then land after these lines: the file is opened for
   *  appending, so nothing is overwritten.) */
  flushSync(): void {
    if (this.fd === null || this.failed !== null || this.queue.length === 0) return;
    const text = this.take();
    try {
      writeSync(this.fd, text);
    } catch (err) {
      this.fail(err);
    }
  }

  close(): void {
    this.flushSync();
    const fd = this.fd;
    this.fd = null;
    if (fd !== null && !this.writing) closeSync(fd);
  }

  private take(): string {
    const text = this.queue.join("");
    this.queue = [];
    this.queuedBytes = 0;
    return text;
  }

  private pump(): void {
    if (this.fd === null || this.failed !== null || this.queue.length === 0) {
      this.writing = false;
      return;
    }
    this.writing = true;
    const buf = Buffer.from(this.take(), "utf8");
    const fd = this.fd;
    const writeFrom = (offset: number): void => {
      write(fd, buf, offset, buf.length - offset, null, (err, n) => {
        if (err !== null) {
          this.writing = false;
          this.fail(err);
          if (this.fd === null) closeSync(fd);
          return;
        }
        if (offset + n < buf.length) return writeFrom(offset + n);
        if (this.fd === null) {
          // Closed while writing: what was queued after close() is dropped.
          this.writing = false;
          closeSync(fd);
          return;
        }
        this.pump();
      });
    };
    writeFrom(0);
  }

  private fail(err: unknown): void {
    if (this.failed !== null) return;
    this.failed = err instanceof Error ? err : new Error(String(err));
    this.dropped += this.queue.length;
    this.queue = [];
    this.queuedBytes = 0;
    this.onFailure(this.failed);
  }
}
