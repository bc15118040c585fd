// client.watch(): raftkv.v1's Watch stream as an async iterator of events that outlives its stream. It
// remembers the revision after the last response it took in (events or progress) and, when the stream
// breaks (node killed, node stopping, slow-watcher cancel, leader change: any node serves watches),
// opens a new one on the next endpoint from that revision, so the events it yields have no gaps and no
// duplicates. A start below the compacted revision cannot be served without a gap: the iterator then
// throws a COMPACTED error naming the compacted revision.

import type * as grpc from "@grpc/grpc-js";
import {
  type ClientServiceClient,
  EventType,
  type WatchResponse,
  ErrorCode as WireErrorCode,
} from "../gen/raftkv/v1/client.ts";
import { codeFromWire, fromGrpcError, RaftKvClientError } from "./errors.ts";
import { type KeyValueRecord, recordOf } from "./txn.ts";

export interface WatchOptions {
  /** Watch every key starting with the key (an empty key with prefix: every key). */
  readonly prefix?: boolean;
  /** First revision to report (default: changes after the current revision). */
  readonly startRevision?: number;
  /** Events carry the key as it was before the change. */
  readonly prevKv?: boolean;
  readonly noPut?: boolean;
  readonly noDelete?: boolean;
  /** Ask the node for progress now and then (its progress interval): an idle watch then resumes from
   *  a later revision after a reconnect. */
  readonly progressNotify?: boolean;
  /** Events taken in but not yet read, beyond which the stream is paused (default 1000). */
  readonly maxBufferedEvents?: number;
}

export interface WatchEvent {
  readonly type: "put" | "delete";
  /** The revision of the change (kv.modRevision). */
  readonly revision: number;
  readonly kv: KeyValueRecord;
  /** The key before the change (with prevKv, when there was one). */
  readonly prevKv: KeyValueRecord | null;
}

/** What a Watcher needs of its client. */
export interface WatchCore {
  readonly closed: boolean;
  /** The endpoint to (re)connect to: `avoid` is the one that just failed. */
  endpoint(avoid?: string): string;
  channel(address: string): ClientServiceClient;
  /** A pause before reconnect attempt `n` (0, 1, ...). */
  backoff(n: number): Promise<void>;
}

type Item = { readonly event: WatchEvent } | { readonly error: RaftKvClientError } | { readonly end: true };

/** An async iterator of events with no gaps and no duplicates across reconnects; close() ends it. */
export class Watcher implements AsyncIterable<WatchEvent> {
  private readonly queue: Item[] = [];
  private waiting: ((item: Item) => void) | null = null;
  private call: grpc.ClientReadableStream<WatchResponse> | null = null;
  private current: string | null = null;
  /** The revision to (re)start at; 0 until the first response says where the watch starts. */
  private next: number;
  private done = false;
  private failures = 0;
  private reconnects = 0;
  private readonly maxBuffered: number;
  private readonly started: Promise<void>;
  private markStarted: () => void = () => undefined;
  private failStart: (err: RaftKvClientError) => void = () => undefined;

  constructor(
    private readonly core: WatchCore,
    private readonly key: string,
    private readonly o: WatchOptions = {},
  ) {
    const start = o.startRevision ?? 0;
    if (!Number.isSafeInteger(start) || start < 0)
      throw new RaftKvClientError({
        code: "INVALID_ARGUMENT",
        message: `watch startRevision ${start} is not a non-negative integer`,
      });
    this.next = start;
    this.maxBuffered = o.maxBufferedEvents ?? 1000;
    this.started = new Promise((resolve, reject) => {
      this.markStarted = resolve;
      this.failStart = reject;
    });
    this.started.catch(() => undefined); // the iterator reports the same error
    this.open();
  }

  /** The node the watch is on now (null between streams). */
  get endpoint(): string | null {
    return this.call === null ? null : this.current;
  }

  /** The revision the watch resumes from after a reconnect (the last one taken in + 1). */
  get nextRevision(): number {
    return this.next;
  }

  /** Streams opened after the first (reconnects). */
  get reconnectCount(): number {
    return this.reconnects;
  }

  /** Resolves once the first stream is registered on a node (changes committed after this are seen);
   *  rejects when the watch fails before that (a bad key, a compacted start, a closed client). */
  ready(): Promise<void> {
    return this.started;
  }

  /** Ends the watch; the iterator finishes after the events already taken in. */
  close(): void {
    if (this.done) return;
    this.done = true;
    this.failStart(new RaftKvClientError({ code: "UNAVAILABLE", message: "the watch was closed" }));
    this.call?.cancel();
    this.call = null;
    this.push({ end: true });
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<WatchEvent, void, undefined> {
    try {
      for (;;) {
        const item = await this.take();
        if ("end" in item) return;
        if ("error" in item) throw item.error;
        yield item.event;
      }
    } finally {
      this.close();
    }
  }

  private take(): Promise<Item> {
    const item = this.queue.shift();
    if (this.queue.length < this.maxBuffered / 2) this.call?.resume();
    if (item !== undefined) return Promise.resolve(item);
    return new Promise((resolve) => {
      this.waiting = resolve;
    });
  }

  private push(item: Item): void {
    const w = this.waiting;
    if (w !== null) {
      this.waiting = null;
      w(item);
      return;
    }
    this.queue.push(item);
    if (this.queue.length >= this.maxBuffered) this.call?.pause();
  }

  private fail(err: RaftKvClientError): void {
    if (this.done) return;
    this.done = true;
    this.failStart(err);
    this.call?.cancel();
    this.call = null;
    this.push({ error: err });
  }

  private open(): void {
    if (this.done) return;
    if (this.core.closed) {
      this.fail(new RaftKvClientError({ code: "UNAVAILABLE", message: "the client is closed" }));
      return;
    }
    const target = this.core.endpoint(this.current ?? undefined);
    this.current = target;
    const call = this.core.channel(target).watch({
      key: this.key,
      prefix: this.o.prefix ?? false,
      startRevision: BigInt(this.next),
      prevKv: this.o.prevKv ?? false,
      noPut: this.o.noPut ?? false,
      noDelete: this.o.noDelete ?? false,
      progressNotify: this.o.progressNotify ?? false,
    });
    this.call = call;
    let ended = false;
    const broken = (why: RaftKvClientError): void => {
      if (ended) return;
      ended = true;
      if (this.call === call) this.call = null;
      if (this.done) return;
      call.cancel();
      this.reconnect(why);
    };
    call.on("data", (r: WatchResponse) => {
      if (ended || this.done) return;
      const h = r.header;
      const code = h?.errorCode ?? WireErrorCode.ERROR_CODE_UNSPECIFIED;
      if (code !== WireErrorCode.ERROR_CODE_UNSPECIFIED) {
        const err = new RaftKvClientError({
          code: codeFromWire(code),
          message: h?.errorMessage || `watch refused by ${target}`,
          endpoint: target,
        });
        if (code === WireErrorCode.ERROR_CODE_INVALID_ARGUMENT || code === WireErrorCode.ERROR_CODE_TOO_LARGE)
          this.fail(err);
        else broken(err);
        return;
      }
      const revision = Number(h?.revision ?? 0n);
      if (r.created) {
        this.failures = 0;
        if (this.next === 0) this.next = revision + 1;
        this.markStarted();
      }
      if (r.canceled) {
        if (r.compactRevision > 0n) {
          this.fail(
            new RaftKvClientError({
              code: "INVALID_ARGUMENT",
              message: `watch from revision ${this.next} cannot be served: history is compacted up to ${r.compactRevision}`,
              hint: `watch again from revision ${r.compactRevision} or later (changes in between are lost)`,
              endpoint: target,
            }),
          );
          return;
        }
        broken(
          new RaftKvClientError({
            code: "UNAVAILABLE",
            message: `watch canceled by ${target}: ${r.cancelReason}`,
          }),
        );
        return;
      }
      if (r.events.length > 0) {
        if (revision < this.next) return; // already yielded (never expected: the server starts at `next`)
        for (const e of r.events) {
          if (e.kv === undefined) continue;
          this.push({
            event: {
              type: e.type === EventType.EVENT_TYPE_DELETE ? "delete" : "put",
              revision,
              kv: recordOf(e.kv),
              prevKv: e.prevKv === undefined ? null : recordOf(e.prevKv),
            },
          });
        }
        this.next = revision + 1;
      } else if (!r.created && revision >= this.next) this.next = revision + 1; // progress
    });
    call.on("error", (err: grpc.ServiceError) => broken(fromGrpcError(err, target)));
    call.on("end", () =>
      broken(new RaftKvClientError({ code: "UNAVAILABLE", message: `watch stream on ${target} ended` })),
    );
  }

  private reconnect(why: RaftKvClientError): void {
    this.reconnects++;
    const n = this.failures++;
    void this.core.backoff(n).then(() => {
      if (this.done) return;
      if (this.core.closed) this.fail(why);
      else this.open();
    });
  }
}
