// Deadlines of the requests a node is working on, all served by one timer rather than one each.
//
// A lease read is answered within the same turn of the event loop, so the setTimeout, clearTimeout and
// Promise.race that a per-request timer costs were about 5 % of a leader's CPU under lease reads
// (npm run bench -- --profile 15 --workloads get-lease). Here a request is one Set insert and delete;
// the one timer is armed for the earliest deadline known when it was set, and on firing fails what
// has expired and re-arms for the earliest that remains. Requests finish long before their deadlines,
// so the timer mostly fires to find nothing due.

/** One request's deadline, as handed out by add(). */
export interface Deadline {
  readonly atMs: number;
  readonly expire: () => void;
}

export class RequestDeadlines {
  private readonly pending = new Set<Deadline>();
  private timer: NodeJS.Timeout | null = null;
  private timerAtMs = Number.POSITIVE_INFINITY;

  /** `nowMs`: a monotonic clock in ms that runs at the rate of setTimeout's. */
  constructor(private readonly nowMs: () => number) {}

  /** Requests waiting for their outcome. */
  get size(): number {
    return this.pending.size;
  }

  /** Settles like `work`, or rejects with `onTimeout()` if `work` has not settled within `ms`. A late
   *  outcome of `work` is then ignored (a late rejection is still handled). */
  race<T>(work: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
    if (!Number.isFinite(ms)) return work;
    return new Promise<T>((resolve, reject) => {
      const d: Deadline = { atMs: this.nowMs() + Math.max(0, ms), expire: () => reject(onTimeout()) };
      this.pending.add(d);
      if (d.atMs < this.timerAtMs) this.arm(d.atMs);
      work.then(
        (v) => {
          this.pending.delete(d);
          resolve(v);
        },
        (e: unknown) => {
          this.pending.delete(d);
          reject(e);
        },
      );
    });
  }

  /** Stops the timer (pending requests then never expire: call it once nothing waits any more). */
  close(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.timerAtMs = Number.POSITIVE_INFINITY;
  }

  private arm(atMs: number): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timerAtMs = atMs;
    this.timer = setTimeout(() => this.fire(), Math.max(0, atMs - this.nowMs()));
    this.timer.unref(); // the server's sockets keep the process alive, not a request's deadline
  }

  private fire(): void {
    this.timer = null;
    this.timerAtMs = Number.POSITIVE_INFINITY;
    const now = this.nowMs();
    let next = Number.POSITIVE_INFINITY;
    for (const d of this.pending) {
      if (d.atMs <= now) {
        this.pending.delete(d);
        d.expire();
      } else if (d.atMs < next) next = d.atMs;
    }
    if (next !== Number.POSITIVE_INFINITY) this.arm(next);
  }
}
