// raftkv.v1's streams over the MVCC service: Watch (one watch per server stream, fed by the node's watch
// hub from the applied stream) and LeaseKeepAlive (a bidi stream of renewals, answered in order by the
// leader's lease keeper). Both count against maxConcurrentStreams; a watcher that does not read is
// canceled with a reason, never slowing the node.

import * as grpc from "@grpc/grpc-js";
import type { NodeId } from "../core/types.ts";
import {
  type LeaseKeepAliveRequest,
  type LeaseKeepAliveResponse,
  LeaseKeepAliveResponse as LeaseKeepAliveResponseMsg,
  type ResponseHeader,
  type WatchRequest,
  WatchResponse,
} from "../gen/raftkv/v1/client.ts";
import type { KvLimits } from "../kv/limits.ts";
import { RaftKvError } from "../lib/errors.ts";
import { undecodableReason } from "./client-edge.ts";
import { watchOf, wireEvent } from "./client-mvcc.ts";
import type { MvccApi, WatchDelivery, WatchHandle } from "./mvcc-api.ts";

/** What the streams need of the client service (ClientApi). */
export interface StreamHost {
  refusal(err: unknown): ResponseHeader;
  keepAliveOnce(req: LeaseKeepAliveRequest, budgetMs: number): Promise<LeaseKeepAliveResponse>;
  readonly isDraining: boolean;
}

export interface ClientStreamsDeps {
  readonly nodeId: NodeId;
  readonly limits: KvLimits;
  /** Watch and keepalive streams at once (maxConcurrentStreams; Session streams count apart). */
  readonly maxStreams: number;
  /** Budget of one keepalive. */
  readonly budgetMs: number;
  readonly mvcc: () => MvccApi;
  readonly term: () => number;
}

/** Responses queued for a watcher that does not read, beyond which its watch is canceled. */
export const MAX_QUEUED_WATCH_RESPONSES = 1024;
/** Keepalives waiting on one stream, beyond which more are answered OVERLOADED. */
const MAX_QUEUED_KEEPALIVES = 64;

export class ClientStreams {
  private open = 0;

  constructor(
    private readonly host: StreamHost,
    private readonly d: ClientStreamsDeps,
  ) {}

  /** Streams open now. */
  get size(): number {
    return this.open;
  }

  private admit(call: grpc.ServerWritableStream<unknown, unknown>): (() => void) | null {
    if (this.host.isDraining || this.open >= this.d.maxStreams) {
      call.emit("error", {
        code: this.host.isDraining ? grpc.status.UNAVAILABLE : grpc.status.RESOURCE_EXHAUSTED,
        details: this.host.isDraining
          ? `node ${this.d.nodeId} is shutting down`
          : `node ${this.d.nodeId} already serves ${this.d.maxStreams} watch and keepalive streams (maxConcurrentStreams); retry later`,
      });
      return null;
    }
    this.open++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.open--;
    };
  }

  watch(call: grpc.ServerWritableStream<WatchRequest, WatchResponse>): void {
    const release = this.admit(call as grpc.ServerWritableStream<unknown, unknown>);
    if (release === null) return;
    let handle: WatchHandle | null = null;
    let ended = false;
    const end = (last: Partial<WatchResponse> | null): void => {
      if (ended) return;
      ended = true;
      handle?.cancel();
      release();
      if (last !== null && !call.cancelled) {
        call.write(WatchResponse.create({ canceled: true, ...last }));
        call.end();
      }
    };
    call.on("cancelled", () => end(null));
    call.on("close", () => end(null));
    call.on("error", () => end(null));
    const send = (r: Partial<WatchResponse>, revision: number): void => {
      if (ended || call.cancelled) return;
      if (call.writableLength > MAX_QUEUED_WATCH_RESPONSES) {
        end({
          header: this.header(revision),
          cancelReason: `the watcher did not read ${MAX_QUEUED_WATCH_RESPONSES} responses queued on node ${this.d.nodeId} (slow watcher); watch again from the next revision`,
        });
        return;
      }
      call.write(WatchResponse.create({ header: this.header(revision), ...r }));
    };
    let mvcc: MvccApi;
    let request: ReturnType<typeof watchOf>;
    try {
      const bad = undecodableReason(call.request);
      if (bad !== undefined) throw bad;
      mvcc = this.d.mvcc();
      request = watchOf(call.request, this.d.limits);
    } catch (err) {
      const header = this.host.refusal(err);
      end({ header, cancelReason: header.errorMessage });
      return;
    }
    // Created first: deliveries start after the handler is installed, in a later turn.
    send({ created: true }, mvcc.revisions().current);
    handle = mvcc.watch(request, (d: WatchDelivery) => {
      switch (d.kind) {
        case "events":
          send({ events: d.events.map(wireEvent) }, d.revision);
          return;
        case "progress":
          send({}, d.revision);
          return;
        case "canceled":
          end({
            header: this.header(d.compactRevision > 0 ? d.compactRevision : mvcc.revisions().current),
            cancelReason: d.reason,
            compactRevision: BigInt(d.compactRevision),
          });
          return;
        default: {
          const never: never = d;
          return never;
        }
      }
    });
  }

  keepAlive(call: grpc.ServerDuplexStream<LeaseKeepAliveRequest, LeaseKeepAliveResponse>): void {
    const release = this.admit(call as unknown as grpc.ServerWritableStream<unknown, unknown>);
    if (release === null) return;
    let queued = 0;
    let tail: Promise<void> = Promise.resolve();
    let halfClosed = false;
    let closed = false;
    const finish = (): void => {
      closed = true;
      release();
    };
    const maybeEnd = (): void => {
      if (halfClosed && queued === 0 && !closed) {
        finish();
        call.end();
      }
    };
    call.on("data", (req: LeaseKeepAliveRequest) => {
      const bad = undecodableReason(req);
      if (bad !== undefined || queued >= MAX_QUEUED_KEEPALIVES) {
        const err =
          bad ??
          new RaftKvError({
            code: "OVERLOADED",
            message: `more than ${MAX_QUEUED_KEEPALIVES} keepalives wait on one stream`,
            nodeId: this.d.nodeId,
            hint: "wait for answers before sending more",
          });
        if (!closed)
          call.write(LeaseKeepAliveResponseMsg.create({ header: this.host.refusal(err), id: req.id }));
        return;
      }
      queued++;
      tail = tail.then(async () => {
        const res = await this.host.keepAliveOnce(req, this.d.budgetMs);
        queued--;
        if (!closed && !call.cancelled) call.write(res);
        maybeEnd();
      });
    });
    call.on("end", () => {
      halfClosed = true;
      maybeEnd();
    });
    call.on("cancelled", finish);
    call.on("error", finish);
    call.on("close", finish);
  }

  private header(revision: number): ResponseHeader {
    return { ...this.host.refusal(null), revision: BigInt(revision), term: BigInt(this.d.term()) };
  }
}
