// In-memory twin of the peer transport: a MemNetwork hub whose links tests deliver, hold or drop by hand.

import type { Message, NodeId } from "../core/types.ts";
import { assert } from "../lib/assert.ts";
import { type CodecContext, type CodecLimits, decodeMessage, encodeMessage } from "./codec.ts";
import { PeerQueue } from "./peer-queue.ts";
import {
  silentLogger,
  type Transport,
  TransportCounters,
  type TransportLogger,
  type TransportStats,
} from "./transport.ts";

export interface MemNetworkOptions {
  /** Cluster id of transports that do not name their own (default "mem"). */
  readonly clusterId?: string;
  /** Deliver everything pending in a microtask after each send (default true). When false, nothing
   *  moves until the test calls deliverAll() or deliverWhere(). */
  readonly autoDeliver?: boolean;
  readonly maxQueuedMessagesPerPeer?: number;
  /** Limits the receiving codec enforces (default 1 MiB, 512 entries). */
  readonly limits?: CodecLimits;
  /** Pass every message through the codec, sender's encoding to receiver's validation, so refusals
   *  match the real transport (default true). */
  readonly codec?: boolean;
  readonly logger?: TransportLogger;
}

/** One message in flight on a link. */
export interface InFlight {
  readonly from: NodeId;
  readonly to: NodeId;
  readonly message: Message;
}

export class MemNetwork {
  readonly clusterId: string;
  private readonly autoDeliver: boolean;
  private readonly capacity: number;
  private readonly limits: CodecLimits;
  private readonly useCodec: boolean;
  private readonly logger: TransportLogger;
  private readonly endpoints = new Map<NodeId, MemTransport>();
  private readonly members = new Set<NodeId>();
  /** Per directed link "from>to", in the order links were first used. */
  private readonly links = new Map<string, PeerQueue>();
  private readonly cutLinks = new Set<string>();
  private scheduled = false;

  constructor(options: MemNetworkOptions = {}) {
    this.clusterId = options.clusterId ?? "mem";
    this.autoDeliver = options.autoDeliver ?? true;
    this.capacity = options.maxQueuedMessagesPerPeer ?? 1024;
    this.limits = options.limits ?? { maxBytesPerMessage: 1 << 20, maxEntriesPerMessage: 512 };
    this.useCodec = options.codec ?? true;
    this.logger = options.logger ?? silentLogger;
  }

  /** A transport for `nodeId`, optionally claiming another cluster id (to test refusals). */
  transport(nodeId: NodeId, options: { readonly clusterId?: string } = {}): MemTransport {
    const existing = this.endpoints.get(nodeId);
    assert(existing?.isClosed() ?? true, () => `MemNetwork: node ${nodeId} already has an open transport`);
    const t = new MemTransport(this, nodeId, options.clusterId ?? this.clusterId, this.logger);
    this.endpoints.set(nodeId, t);
    this.members.add(nodeId);
    return t;
  }

  /** Drop every message sent from `a` to `b` (both directions unless `oneWay`) until heal(). */
  cut(a: NodeId, b: NodeId, oneWay = false): void {
    this.cutLinks.add(linkKey(a, b));
    if (!oneWay) this.cutLinks.add(linkKey(b, a));
  }

  heal(): void {
    this.cutLinks.clear();
  }

  /** Messages in flight, per link in send order. */
  pending(): InFlight[] {
    const out: InFlight[] = [];
    for (const q of this.links.values())
      for (const m of q.peek()) out.push({ from: m.from, to: m.to, message: m });
    return out;
  }

  /** Delivers everything in flight (not what those deliveries send in turn); returns the count. */
  deliverAll(): number {
    return this.deliverWhere(() => true);
  }

  /** Delivers the in-flight messages matching `pred`, in order per link; returns the count. */
  deliverWhere(pred: (f: InFlight) => boolean): number {
    const batch: Message[] = [];
    for (const q of this.links.values()) batch.push(...q.takeWhere((m) => pred(inFlight(m))));
    for (const m of batch) this.deliverOne(m);
    return batch.length;
  }

  /** Discards the in-flight messages matching `pred`; returns the count. */
  dropWhere(pred: (f: InFlight) => boolean): number {
    let n = 0;
    for (const q of this.links.values()) n += q.takeWhere((m) => pred(inFlight(m))).length;
    return n;
  }

  /** @internal Called by MemTransport.send. */
  enqueue(sender: MemTransport, m: Message): void {
    const key = linkKey(m.from, m.to);
    if (!this.members.has(m.to)) {
      sender.counters.drop("unknownPeer", m);
      return;
    }
    if (this.cutLinks.has(key)) {
      sender.counters.drop("linkCut", m);
      return;
    }
    let q = this.links.get(key);
    if (q === undefined) this.links.set(key, (q = new PeerQueue(this.capacity)));
    const dropped = q.push(m);
    if (dropped !== null) sender.counters.drop("queueFull", dropped);
    if (this.autoDeliver && !this.scheduled) {
      this.scheduled = true;
      queueMicrotask(() => {
        this.scheduled = false;
        this.deliverAll();
      });
    }
  }

  private deliverOne(m: Message): void {
    const sender = this.endpoints.get(m.from);
    const receiver = this.endpoints.get(m.to);
    assert(
      sender !== undefined && receiver !== undefined,
      () => `MemNetwork: unknown link ${m.from}>${m.to}`,
    );
    if (receiver.isClosed()) {
      sender.counters.drop("closed", m);
      return;
    }
    sender.counters.sentMessages++;
    sender.counters.sentBatches++;
    if (!this.useCodec) {
      receiver.receive(m);
      return;
    }
    const bytes = encodeMessage(m, sender.clusterId);
    const ctx: CodecContext = {
      clusterId: receiver.clusterId,
      self: receiver.nodeId,
      peers: this.members,
      limits: this.limits,
    };
    const d = decodeMessage(bytes, ctx, `mem:${m.from}`);
    if (d.ok) receiver.receive(d.message);
    else receiver.counters.refuse(d);
  }
}

export class MemTransport implements Transport {
  /** @internal */
  readonly counters: TransportCounters;
  private handler: ((m: Message) => void) | null = null;
  private closed = false;

  constructor(
    private readonly network: MemNetwork,
    readonly nodeId: NodeId,
    readonly clusterId: string,
    logger: TransportLogger,
  ) {
    this.counters = new TransportCounters(logger, undefined);
  }

  send(messages: readonly Message[]): void {
    for (const m of messages) {
      assert(m.from === this.nodeId, () => `node ${this.nodeId} sending a message from ${m.from}`);
      assert(m.to !== this.nodeId, () => `node ${this.nodeId} sending a message to itself`);
      if (this.closed) this.counters.drop("closed", m);
      else this.network.enqueue(this, m);
    }
  }

  onMessage(handler: (m: Message) => void): void {
    this.handler = handler;
  }

  stats(): TransportStats {
    return this.counters.snapshot();
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  isClosed(): boolean {
    return this.closed;
  }

  /** @internal */
  receive(m: Message): void {
    if (this.closed) return;
    if (this.handler === null) {
      this.counters.drop("noHandler", m);
      return;
    }
    this.counters.receivedMessages++;
    this.handler(m);
  }
}

function linkKey(from: NodeId, to: NodeId): string {
  return `${from}>${to}`;
}

function inFlight(m: Message): InFlight {
  return { from: m.from, to: m.to, message: m };
}
