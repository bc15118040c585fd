// The watch hub (issue 18): feeds watchers from the applied stream of the MVCC state machine, in
// revision order, with no gaps and no duplicates. A watcher that starts in the past catches up from the
// history in slices (never blocking the loop for long), then follows the live changes. The apply loop
// only appends to bounded per-watcher buffers; deliveries run later, from the event loop. A watcher
// whose buffer overflows (it stopped taking deliveries) is canceled with a reason, as etcd cancels.
//
// Backpressure: a delivery callback may return false (like stream.write); the hub then holds the
// watcher's deliveries in its buffer until WatchHandle.resume().

import type { RevisionChanges, WatchEvent } from "../kv/mvcc-types.ts";
import { compareBytes } from "../store/store.ts";
import type { WatchDelivery, WatchHandle, WatchRequest } from "./mvcc-api.ts";

/** What the hub reads the history and revisions from (the current MVCC state machine). */
export interface WatchSource {
  readonly revision: number;
  readonly compacted: number;
  changesFrom(fromRevision: number, maxEvents: number): RevisionChanges[];
}

export interface WatchHubOptions {
  /** Events buffered for one watcher before it is canceled as too slow. */
  readonly maxBufferedEvents: number;
  /** Events read from the history per slice while a watcher catches up. */
  readonly catchUpSliceEvents: number;
  /** Watchers at most; more are refused (canceled at once with a reason). */
  readonly maxWatchers: number;
}

export const DEFAULT_WATCH_HUB_OPTIONS: WatchHubOptions = {
  maxBufferedEvents: 10_000,
  catchUpSliceEvents: 1000,
  maxWatchers: 10_000,
};

/** Handle of a watcher, with backpressure. */
export interface HubWatchHandle extends WatchHandle {
  /** Deliveries were held (the callback returned false): deliver again. */
  resume(): void;
}

type Deliver = (d: WatchDelivery) => unknown;

interface Watcher {
  readonly id: number;
  readonly request: WatchRequest;
  readonly deliver: Deliver;
  /** The next revision this watcher has not been given. */
  next: number;
  /** Catching up from the history (live changes are ignored until it reaches the current revision). */
  syncing: boolean;
  readonly buffer: WatchDelivery[];
  bufferedEvents: number;
  paused: boolean;
  done: boolean;
}

function matches(r: WatchRequest, key: Uint8Array): boolean {
  if (r.rangeEnd.length === 0) return compareBytes(key, r.key) === 0;
  if (compareBytes(key, r.key) < 0) return false;
  return (r.rangeEnd.length === 1 && r.rangeEnd[0] === 0) || compareBytes(key, r.rangeEnd) < 0;
}

function filterEvents(r: WatchRequest, events: readonly WatchEvent[]): WatchEvent[] {
  const out: WatchEvent[] = [];
  for (const e of events) {
    if ((e.type === "put" && r.noPut) || (e.type === "delete" && r.noDelete) || !matches(r, e.kv.key))
      continue;
    out.push(r.prevKv || e.prevKv === null ? e : { ...e, prevKv: null });
  }
  return out;
}

export class WatchHub {
  private readonly watchers = new Map<number, Watcher>();
  private nextId = 1;
  /** The last revision published (or found in the source): the next publish must follow it. */
  private seen: number;
  private flushScheduled = false;
  private catchUpScheduled = false;
  private closed: string | null = null;

  constructor(
    private source: () => WatchSource,
    private readonly o: WatchHubOptions = DEFAULT_WATCH_HUB_OPTIONS,
  ) {
    this.seen = source().revision;
  }

  get size(): number {
    return this.watchers.size;
  }

  watch(request: WatchRequest, deliver: Deliver): HubWatchHandle {
    const id = this.nextId++;
    const src = this.source();
    const w: Watcher = {
      id,
      request,
      deliver,
      next: request.startRevision > 0 ? request.startRevision : src.revision + 1,
      syncing: false,
      buffer: [],
      bufferedEvents: 0,
      paused: false,
      done: false,
    };
    const handle: HubWatchHandle = {
      cancel: () => this.remove(w),
      requestProgress: () => this.progress(w),
      resume: () => {
        w.paused = false;
        this.scheduleFlush();
      },
    };
    if (this.closed !== null) {
      this.finish(w, { kind: "canceled", reason: this.closed, compactRevision: 0 });
      return handle;
    }
    if (this.watchers.size >= this.o.maxWatchers) {
      this.finish(w, {
        kind: "canceled",
        reason: `too many watchers on this node (${this.o.maxWatchers}); cancel some or watch on another node`,
        compactRevision: 0,
      });
      return handle;
    }
    this.watchers.set(id, w);
    if (w.next < src.compacted) {
      this.cancel(w, "mvcc: required revision has been compacted", src.compacted);
      return handle;
    }
    if (w.next <= src.revision) {
      w.syncing = true;
      this.scheduleCatchUp();
    }
    return handle;
  }

  /** The changes of the revisions of one applied batch (the state machine's onChanges). Never blocks:
   *  appends to buffers and schedules the deliveries. */
  publish(changes: readonly RevisionChanges[]): void {
    for (const c of changes) {
      if (c.revision !== this.seen + 1) {
        // A gap: the state was replaced (a snapshot from the leader). Watchers catch up from its history.
        this.resync();
      }
      this.seen = c.revision;
      for (const w of this.watchers.values()) {
        if (w.syncing || w.done || c.revision < w.next) continue;
        w.next = c.revision + 1;
        const events = filterEvents(w.request, c.events);
        if (events.length > 0) this.enqueue(w, { kind: "events", revision: c.revision, events });
      }
    }
    this.scheduleFlush();
  }

  /** The source may have been replaced (a restore): watchers not caught up read its history. */
  sourceChanged(): void {
    if (this.source().revision !== this.seen) this.resync();
  }

  /** A progress delivery to every caught-up watcher that asked for progress_notify and has nothing
   *  waiting (etcd sends them every 10 minutes by default). */
  progressTick(): void {
    for (const w of this.watchers.values())
      if (w.request.progressNotify && w.buffer.length === 0) this.progress(w);
  }

  /** Cancels every watcher with `reason` (the node is stopping); later watches are refused. */
  close(reason: string): void {
    this.closed = reason;
    for (const w of [...this.watchers.values()]) this.cancel(w, reason, 0);
  }

  private resync(): void {
    const src = this.source();
    this.seen = src.revision;
    for (const w of this.watchers.values()) if (!w.done && w.next <= src.revision) w.syncing = true;
    this.scheduleCatchUp();
  }

  private progress(w: Watcher): void {
    if (w.done || w.syncing) return; // etcd answers progress requests only for synced watchers
    this.enqueue(w, { kind: "progress", revision: this.source().revision });
    this.scheduleFlush();
  }

  private enqueue(w: Watcher, d: WatchDelivery): void {
    const n = d.kind === "events" ? d.events.length : 0;
    const first = w.buffer[0];
    if (w.bufferedEvents + n > this.o.maxBufferedEvents && first !== undefined && first.kind !== "canceled") {
      this.cancel(
        w,
        `watcher too slow: more than ${this.o.maxBufferedEvents} events waiting; watch again from revision ${first.revision}`,
        0,
      );
      return;
    }
    w.buffer.push(d);
    w.bufferedEvents += n;
  }

  private cancel(w: Watcher, reason: string, compactRevision: number): void {
    if (w.done) return;
    w.buffer.length = 0;
    w.bufferedEvents = 0;
    this.watchers.delete(w.id);
    this.finish(w, { kind: "canceled", reason, compactRevision });
  }

  private finish(w: Watcher, d: WatchDelivery): void {
    w.done = true;
    queueMicrotask(() => w.deliver(d));
  }

  private remove(w: Watcher): void {
    w.done = true;
    w.buffer.length = 0;
    this.watchers.delete(w.id);
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      for (const w of this.watchers.values()) this.flush(w);
    });
  }

  private flush(w: Watcher): void {
    while (!w.done && !w.paused && w.buffer.length > 0) {
      const d = w.buffer.shift()!;
      if (d.kind === "events") w.bufferedEvents -= d.events.length;
      if (w.deliver(d) === false) w.paused = true;
    }
  }

  private scheduleCatchUp(): void {
    if (this.catchUpScheduled) return;
    this.catchUpScheduled = true;
    setImmediate(() => {
      this.catchUpScheduled = false;
      if (this.catchUpSlice()) this.scheduleCatchUp();
      this.scheduleFlush();
    });
  }

  /** One slice of history for each syncing watcher (whose buffer has room); whether any still syncs. */
  private catchUpSlice(): boolean {
    const src = this.source();
    let more = false;
    for (const w of [...this.watchers.values()]) {
      if (!w.syncing || w.done) continue;
      if (w.next < src.compacted) {
        this.cancel(w, "mvcc: required revision has been compacted", src.compacted);
        continue;
      }
      if (w.bufferedEvents >= this.o.maxBufferedEvents / 2) {
        more = true; // let it drain first
        continue;
      }
      for (const c of src.changesFrom(w.next, this.o.catchUpSliceEvents)) {
        if (c.revision > src.revision) break;
        const events = filterEvents(w.request, c.events);
        w.next = c.revision + 1;
        if (events.length > 0) this.enqueue(w, { kind: "events", revision: c.revision, events });
        if (w.done) break;
      }
      if (w.done) continue;
      if (w.next > src.revision || src.changesFrom(w.next, 1).length === 0) {
        w.next = Math.max(w.next, src.revision + 1);
        w.syncing = false;
      } else more = true;
    }
    return more;
  }
}
