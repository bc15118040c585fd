// Forwarding to the leader, as etcd does for its members: a write, a lease call or a keepalive that
// reaches a follower is sent on to the leader's client port (the same etcd method and request), and
// its answer, or its etcd error, goes back to the client unchanged. A forwarded call carries a
// metadata mark and is never forwarded again (a follower that thinks it is led by another follower
// answers "not leader", which etcd clients retry).

import * as grpc from "@grpc/grpc-js";
import { deadlineIn } from "../clock/deadline.ts";
import type { NodeId } from "../core/types.ts";
import { NotLeaderError } from "../server/embed.ts";
import { EtcdError } from "./errors.ts";

export const FORWARDED_METADATA = "raftkv-forwarded-by";

export class Forwarder {
  private readonly clients = new Map<NodeId, { address: string; client: grpc.Client }>();

  constructor(
    private readonly nodeId: NodeId,
    /** A member's client address ("host:port"), or null when unknown. */
    private readonly addressOf: (id: NodeId) => string | null,
  ) {}

  /** The leader to forward `err` to, or null when the call is to be answered here. */
  target(err: unknown, metadata: grpc.Metadata): NodeId | null {
    if (!(err instanceof NotLeaderError) || err.leaderId === null || err.leaderId === this.nodeId)
      return null;
    if (metadata.get(FORWARDED_METADATA).length > 0) return null;
    return this.addressOf(err.leaderId) === null ? null : err.leaderId;
  }

  unary<Req, Res>(
    leader: NodeId,
    method: grpc.MethodDefinition<Req, Res>,
    req: Req,
    budgetMs: number,
  ): Promise<Res> {
    const client = this.client(leader);
    return new Promise<Res>((resolve, reject) => {
      client.makeUnaryRequest(
        method.path,
        method.requestSerialize,
        method.responseDeserialize,
        req,
        this.metadata(),
        { deadline: deadlineIn(budgetMs) },
        (err, res) => {
          if (err !== null) reject(new EtcdError(err.code, err.details));
          else if (res === undefined)
            reject(new EtcdError(grpc.status.INTERNAL, "etcdserver: no answer from the leader"));
          else resolve(res);
        },
      );
    });
  }

  /** A stream to the leader for the requests of one client stream that must be served there, answered
   *  in order (one answer per request, as LeaseKeepAlive is). */
  stream<Req, Res>(leader: NodeId, method: grpc.MethodDefinition<Req, Res>): ForwardedStream<Req, Res> {
    return new ForwardedStream(
      leader,
      this.client(leader).makeBidiStreamRequest(
        method.path,
        method.requestSerialize,
        method.responseDeserialize,
        this.metadata(),
      ),
    );
  }

  close(): void {
    for (const { client } of this.clients.values()) client.close();
    this.clients.clear();
  }

  private metadata(): grpc.Metadata {
    const m = new grpc.Metadata();
    m.set(FORWARDED_METADATA, String(this.nodeId));
    return m;
  }

  private client(id: NodeId): grpc.Client {
    const address = this.addressOf(id)!;
    const known = this.clients.get(id);
    if (known !== undefined && known.address === address) return known.client;
    known?.client.close();
    const client = new grpc.Client(address, grpc.credentials.createInsecure(), { "grpc.enable_retries": 0 });
    this.clients.set(id, { address, client });
    return client;
  }
}

export class ForwardedStream<Req, Res> {
  private readonly waiting: { resolve: (r: Res) => void; reject: (e: EtcdError) => void }[] = [];
  private failed: EtcdError | null = null;

  constructor(
    readonly leader: NodeId,
    private readonly call: grpc.ClientDuplexStream<Req, Res>,
  ) {
    call.on("data", (r: Res) => this.waiting.shift()?.resolve(r));
    call.on("error", (e: grpc.ServiceError) => this.fail(new EtcdError(e.code, e.details)));
    call.on("end", () =>
      this.fail(new EtcdError(grpc.status.UNAVAILABLE, "etcdserver: the leader closed the stream")),
    );
  }

  get open(): boolean {
    return this.failed === null;
  }

  send(req: Req): Promise<Res> {
    if (this.failed !== null) return Promise.reject(this.failed);
    return new Promise<Res>((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.call.write(req);
    });
  }

  close(): void {
    this.fail(new EtcdError(grpc.status.CANCELLED, "etcdserver: forwarded stream closed"));
    this.call.cancel();
  }

  private fail(e: EtcdError): void {
    if (this.failed === null) this.failed = e;
    for (const w of this.waiting.splice(0)) w.reject(e);
  }
}
