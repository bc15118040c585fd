// Peer transport over gRPC: one long-lived batching stream per peer, reconnecting with backoff, and the
// PeerService server side (stream and unary RPCs) that checks who is calling (with TLS, the member the
// certificate names) and validates everything through the codec (peer-inbox.ts).

import * as grpc from "@grpc/grpc-js";
import type { Message, NodeId } from "../core/types.ts";
import { PeerAck, PeerServiceService } from "../gen/raftkv/v1/peer.ts";
import { assert } from "../lib/assert.ts";
import { Prng } from "../lib/prng.ts";
import {
  batchFrameBytes,
  type CodecContext,
  encodeBatch,
  encodeMessage,
  encodeUnaryResponse,
  MAX_CLUSTER_ID_BYTES,
  maxWireBytes,
  type Refusal,
  type RefusalReason,
  type UnaryKind,
} from "./codec.ts";
import { type InboundStream, type PeerAuthentication, PeerInbox } from "./peer-inbox.ts";
import { PeerQueue } from "./peer-queue.ts";
import {
  silentLogger,
  type Transport,
  TransportCounters,
  type TransportLogger,
  type TransportStats,
} from "./transport.ts";

export interface GrpcPeerTransportOptions {
  readonly nodeId: NodeId;
  readonly clusterId: string;
  /** Every member's peer address "host:port" by node id; this node's own entry is ignored. */
  readonly peers: ReadonlyMap<NodeId, string>;
  /** Outbound messages queued per peer while it is down or slow; beyond it the oldest non-election
   *  message is dropped and counted. */
  readonly maxQueuedMessagesPerPeer: number;
  /** Max payload bytes of one message (entries' data summed, or one snapshot chunk); at least the
   *  core's maxBytesPerMessage, maxEntryBytes and snapshotChunkBytes. gRPC message limits are set
   *  from it plus headroom (see peerGrpcOptions). */
  readonly maxBytesPerMessage: number;
  /** Max entries in one inbound AppendEntries (default 512, the core's default). */
  readonly maxEntriesPerMessage?: number;
  /** TLS for peer traffic; insecure when absent. `server` is used by startPeerServer only. */
  readonly credentials?: {
    readonly channel?: grpc.ChannelCredentials;
    readonly server?: grpc.ServerCredentials;
  };
  readonly logger?: TransportLogger;
  /** Reconnect backoff to a down peer: doubles from min to max, with jitter (default 50, 2000 ms). */
  readonly reconnectBackoffMinMs?: number;
  readonly reconnectBackoffMaxMs?: number;
  /** How long a unary RPC waits for the core's answer before DEADLINE_EXCEEDED (default 2000 ms). */
  readonly unaryAnswerTimeoutMs?: number;
  /** Seed of the backoff jitter (default derived from nodeId). */
  readonly seed?: number;
  /** Called for every refused inbound message, e.g. to count it in metrics by reason. */
  readonly onRefusal?: (r: Refusal) => void;
  /** This node's data folder's incarnation, sent in every header and checked in every message
   *  addressed here (default "": none, nothing checked). */
  readonly incarnation?: string;
  /** Called when a peer ends our stream refusing it (FAILED_PRECONDITION, PERMISSION_DENIED,
   *  UNAUTHENTICATED), with its details ("reason: detail"): e.g. a wiped folder learns it is refused. */
  readonly onRefusedByPeer?: (peer: NodeId, code: grpc.status, details: string) => void;
  /** With TLS: the member a PeerService call's connection is (its certificate). Every stream and unary
   *  call is checked, and each message's sender must be that member. Absent (plaintext): claimed
   *  senders are trusted, as nothing proves them. */
  readonly authenticatePeer?: (call: PeerCall) => PeerAuthentication;
  /** Called when the message handler throws (our own invariant failed). Default: rethrown outside
   *  gRPC, so the process stops as on any uncaught exception; never swallowed into a status. */
  readonly onHandlerError?: (err: unknown) => void;
  /** Called with the remote address of every PeerService call (the listener marks the connection used). */
  readonly onServerCall?: (peerAddress: string) => void;
}

export type { PeerAuthentication };

/** What authenticatePeer may ask of a PeerService call. */
export type PeerCall = Pick<grpc.ServerUnaryCall<Buffer, Buffer>, "getPeer" | "getAuthContext">;

/** Per-peer view, for status pages. */
export interface PeerLinkStatus {
  readonly address: string;
  readonly connected: boolean;
  readonly queuedMessages: number;
  /** Bytes written to the peer's stream since start (batch frames, before gRPC's own framing). */
  readonly sentBytes: number;
  /** Bytes received on streams from the peer (as it names itself when it dials) since start. */
  readonly receivedBytes: number;
}

/** Request metadata a dialer sends so a stream from the wrong cluster is refused before any message. */
const CLUSTER_ID_METADATA = "raftkv-cluster-id";
const FROM_METADATA = "raftkv-from";
const GRPC_HEADROOM_BYTES = 64 * 1024;

const identity = (b: Buffer): Buffer => b;
const toBuffer = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

function rawMethod(
  path: string,
  requestStream: boolean,
  responseStream: boolean,
): grpc.MethodDefinition<Buffer, Buffer> {
  return {
    path,
    requestStream,
    responseStream,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  };
}

/** PeerService with bytes in and out: the codec, not grpc-js, decodes untrusted input. */
const RAW_PEER_SERVICE: grpc.ServiceDefinition = {
  appendEntries: rawMethod(PeerServiceService.appendEntries.path, false, false),
  requestVote: rawMethod(PeerServiceService.requestVote.path, false, false),
  installSnapshot: rawMethod(PeerServiceService.installSnapshot.path, false, false),
  timeoutNow: rawMethod(PeerServiceService.timeoutNow.path, false, false),
  stream: rawMethod(PeerServiceService.stream.path, true, true),
};

/** gRPC options that fit peer traffic within `maxBytesPerMessage` (payload) and `maxEntries`:
 *  pass them to `new grpc.Server(...)` (merge with the client service's needs; the larger limit
 *  wins). Channels to peers use the same. */
export function peerGrpcOptions(maxBytesPerMessage: number, maxEntriesPerMessage = 512): grpc.ChannelOptions {
  const limit = maxWireBytes({ maxBytesPerMessage, maxEntriesPerMessage }) + GRPC_HEADROOM_BYTES;
  return {
    "grpc.max_receive_message_length": limit,
    "grpc.max_send_message_length": limit,
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 5_000,
    "grpc.keepalive_permit_without_calls": 1,
    // A connection with no call for a minute is closed (a peer that connects and never sends).
    "grpc.max_connection_idle_ms": 60_000,
    // Off: channelz's per-call and per-message bookkeeping (nobody here queries channelz), and grpc-js's
    // retry layer, which copies every message of a stream into a replay buffer until the call commits;
    // the transport reconnects and the core resends by itself. Both cost every heartbeat of an idle node.
    "grpc.enable_channelz": 0,
    "grpc.enable_retries": 0,
  };
}

/** Adds PeerService, served by `transport`, to a server the caller owns (and binds, and shuts down). */
export function addPeerService(server: grpc.Server, transport: GrpcPeerTransport): void {
  transport.addTo(server);
}

/** Convenience for tests and single-purpose processes: a new server with PeerService on `address`
 *  ("127.0.0.1:0" picks a free port). */
export async function startPeerServer(
  transport: GrpcPeerTransport,
  address: string,
): Promise<{ readonly server: grpc.Server; readonly port: number }> {
  const server = new grpc.Server(
    peerGrpcOptions(transport.maxBytesPerMessage, transport.maxEntriesPerMessage),
  );
  addPeerService(server, transport);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(address, transport.serverCredentials, (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { server, port };
}

type UnaryReply = (err: Partial<grpc.StatusObject> | null, value?: Buffer) => void;

interface UnaryWaiter {
  readonly reply: UnaryReply;
  readonly timer: NodeJS.Timeout;
}

/** The core response type that answers each unary request kind. */
const UNARY_ANSWER: Record<UnaryKind, "appendResponse" | "voteResponse" | "snapshotResponse" | null> = {
  appendEntries: "appendResponse",
  requestVote: "voteResponse",
  installSnapshot: "snapshotResponse",
  timeoutNow: null,
};

export class GrpcPeerTransport implements Transport {
  readonly nodeId: NodeId;
  readonly clusterId: string;
  readonly maxBytesPerMessage: number;
  readonly maxEntriesPerMessage: number;
  readonly serverCredentials: grpc.ServerCredentials;
  /** @internal */
  readonly counters: TransportCounters;
  /** @internal */
  readonly logger: TransportLogger;
  private readonly ctx: CodecContext;
  /** Ids messages are accepted from (the codec's context reads it); setPeers changes it. */
  private readonly memberIds = new Set<NodeId>();
  /** This node's incarnation ("" when it has none). */
  readonly incarnation: string;
  /** The incarnation the latest configuration binds each member to (the codec's context reads it);
   *  setBindings changes it. */
  private readonly bindings = new Map<NodeId, string>();
  /** @internal */
  readonly onRefusedByPeer: ((peer: NodeId, code: grpc.status, details: string) => void) | null;
  private readonly newLink: (id: NodeId, address: string) => PeerLink;
  private readonly inbox: PeerInbox;
  private readonly authenticatePeer: ((call: PeerCall) => PeerAuthentication) | null;
  private readonly onServerCall: ((peerAddress: string) => void) | null;
  private readonly links = new Map<NodeId, PeerLink>();
  private readonly serverCalls = new Set<grpc.ServerDuplexStream<Buffer, Buffer>>();
  /** Unary calls waiting for the core's answer, by "peer>answerType", oldest first. */
  private readonly unaryWaiters = new Map<string, UnaryWaiter[]>();
  private readonly unaryAnswerTimeoutMs: number;
  private readonly receivedBytes = new Map<NodeId, number>();
  private flushScheduled = false;
  private closed = false;

  constructor(o: GrpcPeerTransportOptions) {
    const posInt = (name: string, v: number): void =>
      assert(
        Number.isSafeInteger(v) && v > 0,
        () => `GrpcPeerTransport: ${name} must be a positive integer, got ${v}`,
      );
    posInt("maxQueuedMessagesPerPeer", o.maxQueuedMessagesPerPeer);
    posInt("maxBytesPerMessage", o.maxBytesPerMessage);
    const clusterIdBytes = Buffer.byteLength(o.clusterId);
    assert(
      clusterIdBytes > 0 && clusterIdBytes <= MAX_CLUSTER_ID_BYTES,
      () => `GrpcPeerTransport: clusterId must be 1..${MAX_CLUSTER_ID_BYTES} bytes`,
    );
    this.nodeId = o.nodeId;
    this.clusterId = o.clusterId;
    this.maxBytesPerMessage = o.maxBytesPerMessage;
    this.maxEntriesPerMessage = o.maxEntriesPerMessage ?? 512;
    posInt("maxEntriesPerMessage", this.maxEntriesPerMessage);
    this.serverCredentials = o.credentials?.server ?? grpc.ServerCredentials.createInsecure();
    this.logger = o.logger ?? silentLogger;
    this.counters = new TransportCounters(this.logger, o.onRefusal);
    this.unaryAnswerTimeoutMs = o.unaryAnswerTimeoutMs ?? 2000;
    const limits = {
      maxBytesPerMessage: o.maxBytesPerMessage,
      maxEntriesPerMessage: this.maxEntriesPerMessage,
    };
    this.incarnation = o.incarnation ?? "";
    this.onRefusedByPeer = o.onRefusedByPeer ?? null;
    this.ctx = {
      clusterId: o.clusterId,
      self: o.nodeId,
      peers: this.memberIds,
      limits,
      incarnation: this.incarnation,
      bindings: this.bindings,
    };
    for (const id of o.peers.keys()) this.memberIds.add(id);
    const rethrow = (err: unknown): void => {
      process.nextTick(() => {
        throw err;
      });
    };
    this.inbox = new PeerInbox(this.ctx, this.counters, o.onHandlerError ?? rethrow);
    this.authenticatePeer = o.authenticatePeer ?? null;
    this.onServerCall = o.onServerCall ?? null;
    const backoff = {
      minMs: o.reconnectBackoffMinMs ?? 50,
      maxMs: o.reconnectBackoffMaxMs ?? 2000,
      prng: new Prng(o.seed ?? Math.imul(o.nodeId + 1, 0x9e3779b1)),
    };
    assert(
      backoff.minMs > 0 && backoff.maxMs >= backoff.minMs,
      () => "GrpcPeerTransport: bad reconnect backoff",
    );
    const channelOptions: grpc.ChannelOptions = {
      ...peerGrpcOptions(o.maxBytesPerMessage, this.maxEntriesPerMessage),
      "grpc.initial_reconnect_backoff_ms": backoff.minMs,
      "grpc.max_reconnect_backoff_ms": backoff.maxMs,
      "grpc.enable_retries": 0,
    };
    const credentials = o.credentials?.channel ?? grpc.credentials.createInsecure();
    this.newLink = (id, address) =>
      new PeerLink(
        this,
        id,
        address,
        new grpc.Client(address, credentials, channelOptions),
        o.maxQueuedMessagesPerPeer,
        backoff,
      );
    for (const [id, address] of o.peers) if (id !== o.nodeId) this.links.set(id, this.newLink(id, address));
    for (const link of this.links.values()) link.connect();
  }

  /** The members changed (a configuration took effect, thesis §4.3): links to new members open, links
   *  to members gone close (their queued messages dropped and counted), a member's new address
   *  replaces its link; messages from ids no longer listed are refused. */
  setPeers(peers: ReadonlyMap<NodeId, string>): void {
    if (this.closed) return;
    this.memberIds.clear();
    for (const id of peers.keys()) this.memberIds.add(id);
    for (const [id, link] of this.links) {
      if (peers.get(id) === link.address) continue;
      link.close();
      this.links.delete(id);
    }
    for (const [id, address] of peers) {
      if (id === this.nodeId || this.links.has(id)) continue;
      const link = this.newLink(id, address);
      this.links.set(id, link);
      link.connect();
    }
  }

  /** The incarnations the latest configuration binds members to (unbound members absent): headers to
   *  them carry it, and messages from a bound member's other incarnation are refused. */
  setBindings(bindings: ReadonlyMap<NodeId, string>): void {
    this.bindings.clear();
    for (const [id, inc] of bindings) this.bindings.set(id, inc);
  }

  /** The incarnation each member's accepted messages last gave (members only: bounded). */
  seenIncarnations(): ReadonlyMap<NodeId, string> {
    return this.inbox.seenIncarnations();
  }

  send(messages: readonly Message[]): void {
    for (const m of messages) {
      assert(m.from === this.nodeId, () => `node ${this.nodeId} sending a message from ${m.from}`);
      assert(m.to !== this.nodeId, () => `node ${this.nodeId} sending a message to itself`);
      if (this.closed) {
        this.counters.drop("closed", m);
        continue;
      }
      if (this.answerUnary(m)) continue;
      const link = this.links.get(m.to);
      if (link === undefined) this.counters.drop("unknownPeer", m);
      else if (link.enqueue(m)) this.scheduleFlush();
    }
  }

  onMessage(handler: (m: Message) => void): void {
    this.inbox.onMessage(handler);
  }

  stats(): TransportStats {
    return this.counters.snapshot();
  }

  peerStatus(): ReadonlyMap<NodeId, PeerLinkStatus> {
    return new Map(
      [...this.links].map(([id, l]) => [
        id,
        { ...l.status(), receivedBytes: this.receivedBytes.get(id) ?? 0 },
      ]),
    );
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.inbox.close();
    for (const link of this.links.values()) link.close();
    for (const call of this.serverCalls) call.end();
    this.serverCalls.clear();
    for (const waiters of this.unaryWaiters.values())
      for (const w of waiters) {
        clearTimeout(w.timer);
        w.reply({ code: grpc.status.UNAVAILABLE, details: "node shutting down" });
      }
    this.unaryWaiters.clear();
  }

  /** @internal Use addPeerService. */
  addTo(server: grpc.Server): void {
    const unary =
      (kind: UnaryKind) =>
      (call: grpc.ServerUnaryCall<Buffer, Buffer>, reply: grpc.sendUnaryData<Buffer>): void =>
        this.serveUnary(kind, call, reply);
    server.addService(RAW_PEER_SERVICE, {
      appendEntries: unary("appendEntries"),
      requestVote: unary("requestVote"),
      installSnapshot: unary("installSnapshot"),
      timeoutNow: unary("timeoutNow"),
      stream: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => this.serveStream(call),
    });
  }

  /** @internal */
  scheduleFlush(): void {
    if (this.flushScheduled || this.closed) return;
    this.flushScheduled = true;
    // Everything queued within this event-loop turn goes out as one write per peer.
    setImmediate(() => {
      this.flushScheduled = false;
      for (const link of this.links.values()) link.flush();
    });
  }

  /** @internal */
  encode(m: Message): Uint8Array | null {
    const frame = encodeMessage(m, this.clusterId, this.incarnationsTo(m.to));
    if (frame.length <= maxWireBytes(this.ctx.limits)) return frame;
    this.counters.drop("tooLarge", m);
    return null;
  }

  private incarnationsTo(to: NodeId): { from: string; to: string } {
    return { from: this.incarnation, to: this.bindings.get(to) ?? "" };
  }

  /** @internal */
  wireLimit(): number {
    return maxWireBytes(this.ctx.limits);
  }

  private authenticate(call: PeerCall): PeerAuthentication | null {
    this.onServerCall?.(call.getPeer());
    return this.authenticatePeer === null ? null : this.authenticatePeer(call);
  }

  private serveStream(call: grpc.ServerDuplexStream<Buffer, Buffer>): void {
    const auth = this.authenticate(call);
    if (this.closed) {
      call.emit("error", { code: grpc.status.UNAVAILABLE, details: "node shutting down" });
      return;
    }
    const metadata = (key: string): string | undefined => {
      const v = call.metadata.get(key)[0];
      return typeof v === "string" ? v : undefined;
    };
    const claims = { clusterId: metadata(CLUSTER_ID_METADATA), from: metadata(FROM_METADATA) };
    const opened = this.inbox.openStream(call.getPeer(), auth, claims);
    if (!opened.ok) {
      refuseStream(call, opened);
      return;
    }
    const stream: InboundStream = opened;
    this.serverCalls.add(call);
    call.sendMetadata(new grpc.Metadata());
    let accepted = 0;
    let refused = 0;
    let acked = false;
    let ended = false;
    const from = Number(claims.from);
    const counted = this.links.has(from) ? from : null;
    call.on("data", (bytes: Buffer) => {
      if (ended) return;
      if (counted !== null)
        this.receivedBytes.set(counted, (this.receivedBytes.get(counted) ?? 0) + bytes.length);
      const r = this.inbox.receiveBatch(stream, bytes);
      accepted += r.accepted;
      refused += r.refused;
      if (r.end !== null || r.failed) {
        ended = true;
        this.serverCalls.delete(call);
        if (r.end !== null) refuseStream(call, r.end);
        else
          call.emit("error", {
            code: grpc.status.INTERNAL,
            details: `node ${this.nodeId} failed and is stopping`,
          });
        return;
      }
      if (!acked && accepted > 0 && !this.closed) {
        acked = true;
        const ack = PeerAck.encode({ acceptedMessages: BigInt(accepted), refusedMessages: BigInt(refused) });
        call.write(toBuffer(ack.finish()));
      }
    });
    call.on("error", (err) =>
      this.logger.debug({ peerAddress: stream.peerAddress, err: String(err) }, "peer stream error"),
    );
    call.on("end", () => {
      this.serverCalls.delete(call);
      call.end();
    });
    call.on("cancelled", () => this.serverCalls.delete(call));
  }

  private serveUnary(
    kind: UnaryKind,
    call: grpc.ServerUnaryCall<Buffer, Buffer>,
    reply: grpc.sendUnaryData<Buffer>,
  ): void {
    const auth = this.authenticate(call);
    const d = this.inbox.admitUnary(kind, call.request, call.getPeer(), auth);
    if (!d.ok) {
      reply({ code: statusForRefusal(d.reason), details: `${d.reason}: ${d.detail}` });
      return;
    }
    if (this.closed) {
      reply({ code: grpc.status.UNAVAILABLE, details: "node shutting down" });
      return;
    }
    const answerType = UNARY_ANSWER[kind];
    if (answerType === null) {
      const r = this.inbox.deliver(d.message, call.getPeer(), d.fromIncarnation);
      reply(r === "delivered" ? null : this.notDelivered(r), Buffer.alloc(0));
      return;
    }
    const key = `${d.message.from}>${answerType}`;
    const waiters = this.unaryWaiters.get(key) ?? [];
    this.unaryWaiters.set(key, waiters);
    const waiter: UnaryWaiter = {
      reply,
      timer: setTimeout(() => {
        removeFrom(waiters, waiter);
        reply({
          code: grpc.status.DEADLINE_EXCEEDED,
          details: `no ${answerType} within ${this.unaryAnswerTimeoutMs} ms`,
        });
      }, this.unaryAnswerTimeoutMs),
    };
    waiters.push(waiter);
    call.on("cancelled", () => {
      clearTimeout(waiter.timer);
      removeFrom(waiters, waiter);
    });
    const r = this.inbox.deliver(d.message, call.getPeer(), d.fromIncarnation);
    // Not delivered, and not answered by then (a handler may answer and then throw): answer now.
    if (r === "delivered" || !waiters.includes(waiter)) return;
    clearTimeout(waiter.timer);
    removeFrom(waiters, waiter);
    reply(this.notDelivered(r));
  }

  private notDelivered(r: "notReady" | "failed"): Partial<grpc.StatusObject> {
    return r === "notReady"
      ? { code: grpc.status.UNAVAILABLE, details: "node not ready" }
      : { code: grpc.status.INTERNAL, details: `node ${this.nodeId} failed and is stopping` };
  }

  /**
   * The core refused `r` (a message a correct peer never sends) and will answer nothing: the unary call
   * waiting for its reply, if any, gets the refusal now (FAILED_PRECONDITION "reason: detail") rather
   * than DEADLINE_EXCEEDED. A rejected snapshot is answered by the core itself (start again).
   */
  answerRefused(r: {
    readonly from: NodeId;
    readonly type: Message["type"];
    readonly reason: string;
    readonly detail: string;
  }): void {
    const answerType =
      r.type === "append"
        ? "appendResponse"
        : r.type === "vote"
          ? "voteResponse"
          : r.type === "snapshot"
            ? "snapshotResponse"
            : null;
    if (answerType === null || r.reason === "snapshotRejected") return;
    const waiter = this.unaryWaiters.get(`${r.from}>${answerType}`)?.shift();
    if (waiter === undefined) return;
    clearTimeout(waiter.timer);
    waiter.reply({ code: grpc.status.FAILED_PRECONDITION, details: `${r.reason}: ${r.detail}` });
  }

  /** The remote address that last delivered a message claiming to come from `from`, or null. */
  lastAddressOf(from: NodeId): string | null {
    return this.inbox.lastAddressOf(from);
  }

  /** Answers the oldest unary call waiting for `m`'s kind from its recipient; false if none waits. */
  private answerUnary(m: Message): boolean {
    if (m.type !== "appendResponse" && m.type !== "voteResponse" && m.type !== "snapshotResponse")
      return false;
    const waiter = this.unaryWaiters.get(`${m.to}>${m.type}`)?.shift();
    if (waiter === undefined) return false;
    clearTimeout(waiter.timer);
    waiter.reply(null, toBuffer(encodeUnaryResponse(m, this.clusterId, this.incarnationsTo(m.to))));
    this.counters.sentMessages++;
    return true;
  }
}

interface Backoff {
  readonly minMs: number;
  readonly maxMs: number;
  readonly prng: Prng;
}

/** Statuses of a peer that refused our stream (a misconfiguration: cluster id, certificate). */
const REFUSED_BY_PEER: ReadonlySet<grpc.status> = new Set([
  grpc.status.FAILED_PRECONDITION,
  grpc.status.PERMISSION_DENIED,
  grpc.status.UNAUTHENTICATED,
]);

type LinkState = "connecting" | "ready" | "backoff" | "closed";

/** One peer: its queue, its channel and the current stream to it. */
class PeerLink {
  private readonly queue: PeerQueue;
  private state: LinkState = "connecting";
  private call: grpc.ClientDuplexStream<Buffer, PeerAck> | null = null;
  private blocked = false;
  private sentBytes = 0;
  private attempt = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly t: GrpcPeerTransport,
    private readonly peerId: NodeId,
    readonly address: string,
    private readonly client: grpc.Client,
    capacity: number,
    private readonly backoff: Backoff,
  ) {
    this.queue = new PeerQueue(capacity);
  }

  /** Queues `m`; true when a flush would send it now. */
  enqueue(m: Message): boolean {
    const dropped = this.queue.push(m);
    if (dropped !== null) this.t.counters.drop("queueFull", dropped);
    return this.state === "ready" && !this.blocked;
  }

  status(): PeerLinkStatus {
    return {
      address: this.address,
      connected: this.state === "ready",
      queuedMessages: this.queue.length,
      sentBytes: this.sentBytes,
      receivedBytes: 0,
    };
  }

  connect(): void {
    if (this.state === "closed") return;
    this.state = "connecting";
    const md = new grpc.Metadata();
    md.set(CLUSTER_ID_METADATA, this.t.clusterId);
    md.set(FROM_METADATA, String(this.t.nodeId));
    const call = this.client.makeBidiStreamRequest(
      PeerServiceService.stream.path,
      identity,
      (b: Buffer) => PeerAck.decode(b),
      md,
    );
    this.call = call;
    this.blocked = false;
    call.on("metadata", () => {
      if (this.call !== call || this.state !== "connecting") return;
      this.state = "ready";
      this.t.counters.connects++;
      this.t.logger.debug({ peer: this.peerId, address: this.address }, "peer stream up");
      this.flush();
    });
    call.on("data", (ack: PeerAck) => {
      // The peer accepted what we sent: the link is healthy, start backoff from the bottom again.
      this.attempt = 0;
      this.t.logger.debug({ peer: this.peerId, accepted: Number(ack.acceptedMessages) }, "peer ack");
    });
    call.on("drain", () => {
      if (this.call !== call) return;
      this.blocked = false;
      this.flush();
    });
    call.on("error", () => {}); // Reported through "status" below; a listener keeps it from throwing.
    call.on("status", (s: grpc.StatusObject) => {
      if (this.call === call) this.down(s);
    });
  }

  /** Sends what is queued, in batches of up to wireLimit bytes, until the stream pushes back: what is
   *  left stays in the queue (bounded, oldest dropped first) until "drain", rather than in grpc-js's
   *  write buffer, which has no bound. A leader streaming to a lagging follower held 15 MB there. */
  flush(): void {
    if (this.state !== "ready" || this.blocked || this.call === null || this.queue.length === 0) return;
    const call = this.call;
    const limit = this.t.wireLimit();
    const pending = this.queue.takeAll();
    let next = 0;
    let frames: Uint8Array[] = [];
    let bytes = 0;
    while (next < pending.length && !this.blocked) {
      const frame = this.t.encode(pending[next++]!);
      if (frame === null) continue;
      const size = batchFrameBytes(frame);
      if (bytes + size > limit && frames.length > 0) {
        this.write(call, frames);
        frames = [];
        bytes = 0;
      }
      frames.push(frame);
      bytes += size;
    }
    if (frames.length > 0) this.write(call, frames);
    if (next < pending.length) this.queue.putBack(pending.slice(next));
  }

  close(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.state = "closed";
    const queued = this.queue.takeAll();
    const first = queued[0];
    if (first !== undefined) this.t.counters.drop("closed", first, queued.length);
    const call = this.call;
    this.call = null;
    call?.cancel();
    this.client.close();
  }

  private write(call: grpc.ClientDuplexStream<Buffer, PeerAck>, frames: readonly Uint8Array[]): void {
    const batch = encodeBatch(frames);
    this.sentBytes += batch.length;
    if (!call.write(toBuffer(batch))) this.blocked = true;
    this.t.counters.sentBatches++;
    this.t.counters.sentMessages += frames.length;
  }

  private down(s: grpc.StatusObject): void {
    if (this.state === "closed") return;
    const wasReady = this.state === "ready";
    this.call = null;
    this.state = "backoff";
    this.t.counters.disconnects++;
    const ceiling = Math.min(this.backoff.maxMs, this.backoff.minMs * 2 ** Math.min(this.attempt, 30));
    const delayMs = Math.round(ceiling / 2 + this.backoff.prng.next() * (ceiling / 2));
    this.attempt++;
    const info = { peer: this.peerId, address: this.address, code: s.code, details: s.details, delayMs };
    // A refusal is a misconfiguration: warn on the 1st, 2nd, 4th, 8th... in a row, not every retry.
    if (REFUSED_BY_PEER.has(s.code)) {
      if (Number.isInteger(Math.log2(this.attempt))) this.t.logger.warn(info, "peer refused our stream");
      this.t.onRefusedByPeer?.(this.peerId, s.code, s.details);
    } else this.t.logger.debug(info, wasReady ? "peer stream down" : "peer unreachable");
    this.timer = setTimeout(() => {
      this.timer = null;
      this.connect();
    }, delayMs);
    this.timer.unref();
  }
}

function refuseStream(call: grpc.ServerDuplexStream<Buffer, Buffer>, r: Refusal): void {
  call.emit("error", { code: statusForRefusal(r.reason), details: `${r.reason}: ${r.detail}` });
}

function statusForRefusal(reason: RefusalReason): grpc.status {
  switch (reason) {
    case "clusterMismatch":
    case "wrongRecipient":
    case "recipientIncarnation":
    case "senderIncarnation":
      return grpc.status.FAILED_PRECONDITION;
    case "unknownSender":
    case "fromSelf":
    case "noPeerIdentity":
    case "senderMismatch":
      return grpc.status.PERMISSION_DENIED;
    case "tooLarge":
    case "tooManyEntries":
      return grpc.status.RESOURCE_EXHAUSTED;
    default:
      return grpc.status.INVALID_ARGUMENT;
  }
}

function removeFrom<T>(xs: T[], x: T): void {
  const i = xs.indexOf(x);
  if (i >= 0) xs.splice(i, 1);
}
