// etcd's Watch service: many watchers on one bidirectional stream (create, cancel, progress requests),
// fed by the node's MvccApi watch (events from the applied stream, in revision order, no gaps, no
// duplicates). Watch ids as etcd assigns them (0, 1, ... per stream, or the client's own), compaction
// cancels with compact_revision, large revisions split into fragments for watchers that asked, and a
// stream whose client does not read is cancelled rather than buffered without bound.

import * as grpc from "@grpc/grpc-js";
import {
  type WatchCreateRequest,
  WatchCreateRequest_FilterType,
  type WatchRequest,
  type WatchResponse,
} from "../gen/etcd/etcdserverpb/rpc.ts";
import { type Event, Event_EventType } from "../gen/etcd/mvccpb/kv.ts";
import type { WatchEvent } from "../kv/mvcc-types.ts";
import type { WatchDelivery, WatchHandle } from "../server/mvcc-api.ts";
import { type EtcdCalls, Refused, wireKv } from "./context.ts";
import { EtcdError } from "./errors.ts";

/** Responses queued in gRPC for a client that does not read, before its stream is cancelled. */
const MAX_BUFFERED_RESPONSES = 4096;

/** etcd's watch_id of a stream-wide progress response (clientv3.InvalidWatchID). */
const STREAM_WATCH_ID = -1n;

interface Watcher {
  readonly id: bigint;
  readonly fragment: boolean;
  handle: WatchHandle | null;
  /** Waiting to answer a stream-wide progress request. */
  progressPending: boolean;
  lastRevision: number;
}

export class EtcdWatch {
  private readonly c: EtcdCalls;

  constructor(calls: EtcdCalls) {
    this.c = calls;
  }

  handlers(): Record<"watch", grpc.UntypedHandleCall> {
    return {
      watch: (call: grpc.ServerDuplexStream<WatchRequest | Refused, WatchResponse>) => this.serve(call),
    };
  }

  private serve(call: grpc.ServerDuplexStream<WatchRequest | Refused, WatchResponse>): void {
    this.c.d.onCall?.(call.getPeer());
    const close = this.c.openStream();
    if (close instanceof EtcdError) {
      call.emit("error", close.toStatus());
      return;
    }
    new WatchStream(this.c, call, close).start();
  }
}

class WatchStream {
  private readonly watchers = new Map<bigint, Watcher>();
  private nextId = 0n;
  private open = true;
  /** A stream-wide progress request waits for these watchers' progress answers. */
  private progressWaiting = 0;
  private progressRevision = Number.POSITIVE_INFINITY;

  constructor(
    private readonly c: EtcdCalls,
    private readonly call: grpc.ServerDuplexStream<WatchRequest | Refused, WatchResponse>,
    private readonly closeSlot: () => void,
  ) {}

  start(): void {
    this.call.on("data", (req: WatchRequest | Refused) => this.onRequest(req));
    this.call.on("end", () => {
      // The client closed its side: etcd ends the stream then (its receive loop returns).
      const wasOpen = this.open;
      this.finish(null);
      if (wasOpen) this.call.end();
    });
    this.call.on("cancelled", () => this.finish(null));
    this.call.on("error", () => this.finish(null));
    this.call.on("close", () => this.finish(null));
  }

  private onRequest(req: WatchRequest | Refused): void {
    if (!this.open) return;
    if (req instanceof Refused) {
      this.finish(req.error);
      return;
    }
    const u = req.requestUnion;
    switch (u?.$case) {
      case "createRequest":
        this.create(u.value);
        return;
      case "cancelRequest": {
        const w = this.watchers.get(u.value.watchId);
        if (w === undefined) return; // etcd ignores a cancel of an unknown id
        this.drop(w);
        this.send({ watchId: w.id, canceled: true });
        return;
      }
      case "progressRequest":
        this.progress();
        return;
      case undefined:
        return; // etcd ignores an empty request
      default: {
        const never: never = u;
        return never;
      }
    }
  }

  private create(r: WatchCreateRequest): void {
    const limits = this.c.d.limits;
    const refuse = (watchId: bigint, reason: string): void =>
      this.send({ watchId, created: true, canceled: true, cancelReason: reason });
    if (r.key.length > limits.maxKeyBytes || r.rangeEnd.length > limits.maxKeyBytes) {
      refuse(
        r.watchId,
        `key or range_end over maxKeyBytes (${limits.maxKeyBytes}) on raftkv node ${this.c.d.nodeId}`,
      );
      return;
    }
    if (this.watchers.size >= limits.maxWatchersPerStream) {
      refuse(
        r.watchId,
        `this stream already has ${limits.maxWatchersPerStream} watchers (raftkv maxWatchersPerStream); open another stream`,
      );
      return;
    }
    let id = r.watchId;
    if (id === 0n) {
      while (this.watchers.has(this.nextId)) this.nextId++;
      id = this.nextId++;
    } else if (this.watchers.has(id) || id < 0n) {
      refuse(id, "mvcc: duplicate watch ID provided on the WatchStream");
      return;
    }
    const startRevision =
      r.startRevision <= 0n
        ? 0
        : Number(
            r.startRevision > BigInt(Number.MAX_SAFE_INTEGER)
              ? BigInt(Number.MAX_SAFE_INTEGER)
              : r.startRevision,
          );
    const w: Watcher = { id, fragment: r.fragment, handle: null, progressPending: false, lastRevision: 0 };
    this.watchers.set(id, w);
    // Created first: the watcher's deliveries start after its handler is installed, in a later turn.
    this.send({ watchId: id, created: true }, this.c.d.mvcc.revisions().current);
    w.handle = this.c.d.mvcc.watch(
      {
        key: r.key,
        rangeEnd: r.rangeEnd,
        startRevision,
        prevKv: r.prevKv,
        noPut: r.filters.includes(WatchCreateRequest_FilterType.NOPUT),
        noDelete: r.filters.includes(WatchCreateRequest_FilterType.NODELETE),
        progressNotify: r.progressNotify,
      },
      (d) => this.onDelivery(w, d),
    );
  }

  private onDelivery(w: Watcher, d: WatchDelivery): void {
    if (!this.open || this.watchers.get(w.id) !== w) return;
    switch (d.kind) {
      case "events":
        w.lastRevision = d.revision;
        this.sendEvents(w, d.revision, d.events);
        return;
      case "progress":
        if (w.progressPending) {
          w.progressPending = false;
          this.progressWaiting--;
          this.progressRevision = Math.min(this.progressRevision, d.revision);
          if (this.progressWaiting === 0) this.progressDone();
        } else this.send({ watchId: w.id }, d.revision);
        return;
      case "canceled":
        this.drop(w);
        this.send(
          d.compactRevision > 0
            ? { watchId: w.id, canceled: true, compactRevision: BigInt(d.compactRevision) }
            : { watchId: w.id, canceled: true, cancelReason: d.reason },
          d.compactRevision > 0 ? d.compactRevision : undefined,
        );
        return;
      default: {
        const never: never = d;
        return never;
      }
    }
  }

  /** One revision's events; split into fragments (all but the last marked) when the watcher asked. */
  private sendEvents(w: Watcher, revision: number, events: readonly WatchEvent[]): void {
    const wire = events.map(wireEvent);
    if (!w.fragment) {
      this.send({ watchId: w.id, events: wire }, revision);
      return;
    }
    const max = this.c.d.limits.maxWatchResponseBytes;
    let batch: Event[] = [];
    let bytes = 0;
    for (const e of wire) {
      const size = eventBytes(e);
      if (batch.length > 0 && bytes + size > max) {
        this.send({ watchId: w.id, events: batch, fragment: true }, revision);
        batch = [];
        bytes = 0;
      }
      batch.push(e);
      bytes += size;
    }
    this.send({ watchId: w.id, events: batch }, revision);
  }

  /** A stream-wide progress request: answered once every watcher has caught up (etcd sends it only
   *  then), with the lowest revision they all reached, under watch id -1. */
  private progress(): void {
    if (this.progressWaiting > 0) return; // one is in flight already; it answers both
    this.progressRevision = Number.POSITIVE_INFINITY;
    for (const w of this.watchers.values()) {
      if (w.handle === null) continue;
      w.progressPending = true;
      this.progressWaiting++;
      w.handle.requestProgress();
    }
    if (this.progressWaiting === 0) this.progressDone();
  }

  private progressDone(): void {
    const current = this.c.d.mvcc.revisions().current;
    const revision = Number.isFinite(this.progressRevision) ? this.progressRevision : current;
    this.send({ watchId: STREAM_WATCH_ID }, revision);
  }

  private drop(w: Watcher): void {
    this.watchers.delete(w.id);
    w.handle?.cancel();
    if (w.progressPending) {
      w.progressPending = false;
      this.progressWaiting--;
      if (this.progressWaiting === 0) this.progressDone();
    }
  }

  private send(r: Partial<WatchResponse>, revision?: number): void {
    if (!this.open || this.call.cancelled) return;
    if (this.call.writableLength > MAX_BUFFERED_RESPONSES) {
      this.finish(
        new EtcdError(
          grpc.status.RESOURCE_EXHAUSTED,
          `etcdserver: watch stream canceled: the client did not read ${MAX_BUFFERED_RESPONSES} responses queued on raftkv node ${this.c.d.nodeId}; read faster or watch less`,
        ),
      );
      return;
    }
    const header = this.c.header({
      revision: revision ?? this.c.d.mvcc.revisions().current,
      raftTerm: this.c.d.status().term,
    });
    this.call.write({
      header,
      watchId: 0n,
      created: false,
      canceled: false,
      compactRevision: 0n,
      cancelReason: "",
      fragment: false,
      events: [],
      ...r,
    });
  }

  /** Ends the stream: every watcher cancelled, the slot freed, an error status when there is one. */
  private finish(error: EtcdError | null): void {
    if (!this.open) return;
    this.open = false;
    for (const w of this.watchers.values()) w.handle?.cancel();
    this.watchers.clear();
    this.closeSlot();
    if (error !== null) this.call.emit("error", error.toStatus());
  }
}

function wireEvent(e: WatchEvent): Event {
  return {
    type: e.type === "put" ? Event_EventType.PUT : Event_EventType.DELETE,
    kv: wireKv(e.kv),
    prevKv: e.prevKv === null ? undefined : wireKv(e.prevKv),
  };
}

/** About what an event takes on the wire (keys and values dominate). */
function eventBytes(e: Event): number {
  return (
    64 +
    (e.kv?.key.length ?? 0) +
    (e.kv?.value.length ?? 0) +
    (e.prevKv?.key.length ?? 0) +
    (e.prevKv?.value.length ?? 0)
  );
}
