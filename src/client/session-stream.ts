// SessionStream: the client's fast path, many requests multiplexed on one ClientService.Session bidi stream
// to one node, matched to answers by request_id, with per-request deadlines; a broken stream fails what
// it carried (the retry loop resends) and the next request opens a new one.

import * as grpc from "@grpc/grpc-js";
import type { ClientRequest, ClientResponse, ClientServiceClient } from "../gen/raftkv/v1/client.ts";

export type StreamOp = NonNullable<ClientRequest["op"]>;
export type StreamResult = NonNullable<ClientResponse["result"]>;

interface Pending {
  readonly resolve: (r: StreamResult) => void;
  readonly reject: (e: grpc.ServiceError) => void;
  /** performance.now() after which the request fails with DEADLINE_EXCEEDED. */
  readonly deadlineMs: number;
}

/** How often pending requests are checked against their deadlines (one timer per stream, not per request). */
const SWEEP_EVERY_MS = 20;
/** After the node refuses sessions (too many streams, or an older server), use unary calls this long. */
const REFUSED_BACKOFF_MS = 1000;

export class SessionStream {
  private call: grpc.ClientDuplexStream<ClientRequest, ClientResponse> | null = null;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private sweeper: NodeJS.Timeout | null = null;
  private refusedUntilMs = 0;
  private closed = false;

  constructor(
    private readonly client: ClientServiceClient,
    private readonly now: () => number,
  ) {}

  /** False while the node refuses Session streams: the caller should use a unary call instead. */
  get usable(): boolean {
    return !this.closed && this.now() >= this.refusedUntilMs;
  }

  /** Sends one request; resolves with its answer, rejects with a grpc.ServiceError like a unary call. */
  request(op: StreamOp, timeoutMs: number): Promise<StreamResult> {
    if (this.closed) return Promise.reject(serviceError(grpc.status.CANCELLED, "the client is closed"));
    const call = this.open();
    const id = this.nextId++;
    return new Promise<StreamResult>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, deadlineMs: this.now() + timeoutMs });
      // The server is told the budget so it answers DEADLINE_EXCEEDED itself, a little before ours.
      call.write({ requestId: BigInt(id), timeoutMs: Math.max(1, Math.ceil(timeoutMs)), op });
      if (this.sweeper === null) this.startSweeper();
    });
  }

  /** Ends the stream; whatever is pending fails with CANCELLED (mapped to UNAVAILABLE, retryable). */
  close(): void {
    this.closed = true;
    const call = this.call;
    this.call = null;
    this.failAll(serviceError(grpc.status.CANCELLED, "the client is closed"));
    call?.cancel();
  }

  private open(): grpc.ClientDuplexStream<ClientRequest, ClientResponse> {
    if (this.call !== null) return this.call;
    const call = this.client.session();
    this.call = call;
    let answered = false;
    call.on("data", (res: ClientResponse) => {
      answered = true;
      const id = Number(res.requestId);
      const p = this.pending.get(id);
      if (p === undefined) return; // timed out already
      this.pending.delete(id);
      if (res.result === undefined)
        p.reject(serviceError(grpc.status.INTERNAL, "the node answered a session request without a result"));
      else p.resolve(res.result);
    });
    call.on("error", () => {}); // reported through "status" below; a listener keeps it from throwing
    call.on("status", (s: grpc.StatusObject) => {
      if (this.call === call) this.call = null;
      const refused =
        s.code === grpc.status.UNIMPLEMENTED || (!answered && s.code === grpc.status.RESOURCE_EXHAUSTED);
      if (refused) this.refusedUntilMs = this.now() + REFUSED_BACKOFF_MS;
      // A refusal is not the requests' fault: report it as unavailable so they are retried (by unary).
      const code = refused || s.code === grpc.status.OK ? grpc.status.UNAVAILABLE : s.code;
      this.failAll(serviceError(code, s.details || "the session stream ended"));
    });
    return call;
  }

  private failAll(err: grpc.ServiceError): void {
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const p of all) p.reject(err);
  }

  private startSweeper(): void {
    this.sweeper = setInterval(() => {
      const now = this.now();
      for (const [id, p] of this.pending) {
        if (p.deadlineMs > now) continue;
        this.pending.delete(id);
        p.reject(serviceError(grpc.status.DEADLINE_EXCEEDED, "deadline exceeded on the session stream"));
      }
      if (this.pending.size === 0 && this.sweeper !== null) {
        clearInterval(this.sweeper);
        this.sweeper = null;
      }
    }, SWEEP_EVERY_MS);
    this.sweeper.unref();
  }
}

function serviceError(code: grpc.status, details: string): grpc.ServiceError {
  return Object.assign(new Error(`${code} ${grpc.status[code]}: ${details}`), {
    code,
    details,
    metadata: new grpc.Metadata(),
  });
}
