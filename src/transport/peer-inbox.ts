// The inbound side of peer traffic without gRPC: who may open a stream or make a unary call (the member
// the connection's certificate names, with TLS), what a batch or a request decodes to, delivery to the
// handler, and which refusals end a stream. grpc-transport.ts serves it; the fuzzer drives it directly.

import type { Message, NodeId } from "../core/types.ts";
import {
  type CodecContext,
  type Decoded,
  decodeBatch,
  decodeUnaryRequest,
  type Refusal,
  type RefusalReason,
  type UnaryKind,
} from "./codec.ts";
import type { TransportCounters } from "./transport.ts";

/** Who a connection is, as its TLS certificate proves (see src/server/tls.ts peerIdentity). */
export type PeerAuthentication =
  | { readonly ok: true; readonly member: NodeId }
  | { readonly ok: false; readonly detail: string };

/** What a call claims in its metadata before any message. */
export interface StreamClaims {
  readonly clusterId: string | undefined;
  readonly from: string | undefined;
}

/** One open inbound stream: the codec context its messages are checked against. */
export interface InboundStream {
  readonly ok: true;
  readonly ctx: CodecContext;
  readonly peerAddress: string;
}

export interface BatchOutcome {
  readonly accepted: number;
  readonly refused: number;
  /** The stream must end, refused with this (another cluster, a forged sender). */
  readonly end: Refusal | null;
  /** The handler threw (our own bug): reported to onHandlerError; the stream must end. */
  readonly failed: boolean;
}

export type Delivery = "delivered" | "notReady" | "failed";

/** Refusals that end the stream they arrive on: the peer is misconfigured or lying, not just wrong once. */
const ENDS_STREAM: ReadonlySet<RefusalReason> = new Set([
  "clusterMismatch",
  "senderMismatch",
  // A wiped or restored folder under a known id: every message would be refused alike.
  "recipientIncarnation",
  "senderIncarnation",
]);

export class PeerInbox {
  private handler: ((m: Message) => void) | null = null;
  private closed = false;
  /** The remote address that last delivered a message claiming each sender (members only: bounded). */
  private readonly lastAddress = new Map<NodeId, string>();
  /** The incarnation each sender's delivered messages last gave (members only: bounded). */
  private readonly seen = new Map<NodeId, string>();

  constructor(
    private readonly ctx: CodecContext,
    private readonly counters: TransportCounters,
    /** Called when the handler throws: our own invariant failed, never the peer's input. */
    private readonly onHandlerError: (err: unknown) => void,
  ) {}

  onMessage(handler: (m: Message) => void): void {
    this.handler = handler;
  }

  close(): void {
    this.closed = true;
  }

  /**
   * Admits a stream, or refuses it (counted and logged): another cluster in its metadata; with TLS
   * (`auth` not null) a certificate naming no member of ours, this node, a non-member, or a member other
   * than the one the metadata claims. Messages on an admitted stream must come from its member.
   */
  openStream(
    peerAddress: string,
    auth: PeerAuthentication | null,
    claims: StreamClaims,
  ): InboundStream | Refusal {
    const claimed = safeId(Number(claims.from));
    if (claims.clusterId !== undefined && claims.clusterId !== this.ctx.clusterId) {
      const detail = `stream for cluster ${JSON.stringify(claims.clusterId.slice(0, 64))}, ours is ${JSON.stringify(this.ctx.clusterId)}`;
      return this.refuse(refusal("clusterMismatch", detail, peerAddress, claimed));
    }
    const who = this.identify(peerAddress, auth, claimed);
    if (who !== null && !who.ok) return who;
    if (who !== null && claims.from !== undefined && claimed !== who.sender)
      return this.refuse(
        refusal(
          "senderMismatch",
          `stream claims to come from node ${JSON.stringify(claims.from.slice(0, 20))}, the connection is member ${who.sender}'s`,
          peerAddress,
          claimed,
        ),
      );
    const ctx = who === null ? this.ctx : { ...this.ctx, sender: who.sender };
    return { ok: true, ctx, peerAddress };
  }

  /** Decodes one PeerBatch of an admitted stream and delivers what is valid, in order. */
  receiveBatch(stream: InboundStream, bytes: Uint8Array): BatchOutcome {
    const batch = decodeBatch(bytes, stream.ctx, stream.peerAddress);
    if (!batch.ok) {
      this.refuse(batch);
      return { accepted: 0, refused: 1, end: null, failed: false };
    }
    let accepted = 0;
    let refused = 0;
    for (const d of batch.results) {
      if (!d.ok) {
        refused++;
        this.refuse(d);
        if (ENDS_STREAM.has(d.reason)) return { accepted, refused, end: d, failed: false };
        continue;
      }
      const r = this.deliver(d.message, stream.peerAddress, d.fromIncarnation);
      if (r === "failed") return { accepted, refused, end: null, failed: true };
      if (r === "delivered") accepted++;
      else refused++;
    }
    return { accepted, refused, end: null, failed: false };
  }

  /** Checks the caller and decodes a unary request; refusals are counted and logged. Not delivered yet. */
  admitUnary(
    kind: UnaryKind,
    bytes: Uint8Array,
    peerAddress: string,
    auth: PeerAuthentication | null,
  ): Decoded {
    const who = this.identify(peerAddress, auth, null);
    if (who !== null && !who.ok) return who;
    const ctx = who === null ? this.ctx : { ...this.ctx, sender: who.sender };
    const d = decodeUnaryRequest(kind, bytes, ctx, peerAddress);
    if (!d.ok) this.refuse(d);
    return d;
  }

  /** Hands a validated message (from `peerAddress`) to the handler. A throw is ours: onHandlerError,
   *  never swallowed. */
  deliver(m: Message, peerAddress: string, fromIncarnation = ""): Delivery {
    if (this.closed) return "notReady";
    if (this.handler === null) {
      this.counters.drop("noHandler", m);
      return "notReady";
    }
    this.counters.receivedMessages++;
    this.lastAddress.set(m.from, peerAddress);
    if (fromIncarnation !== "") this.seen.set(m.from, fromIncarnation);
    // Senders are members (the codec refuses others); drop those the configuration no longer lists.
    if (this.seen.size > this.ctx.peers.size)
      for (const id of this.seen.keys()) if (!this.ctx.peers.has(id)) this.seen.delete(id);
    try {
      this.handler(m);
    } catch (err) {
      this.onHandlerError(err);
      return "failed";
    }
    return "delivered";
  }

  /** The incarnation each member's delivered messages last gave. */
  seenIncarnations(): ReadonlyMap<NodeId, string> {
    return this.seen;
  }

  /** The remote address that last delivered a message claiming to come from `from` (for a log line
   *  about a message refused later, by the core). */
  lastAddressOf(from: NodeId): string | null {
    return this.lastAddress.get(from) ?? null;
  }

  /** The member a TLS connection may speak for, a refusal, or null in plaintext (nothing to check). */
  private identify(
    peerAddress: string,
    auth: PeerAuthentication | null,
    claimed: NodeId | null,
  ): { readonly ok: true; readonly sender: NodeId } | Refusal | null {
    if (auth === null) return null;
    if (!auth.ok) return this.refuse(refusal("noPeerIdentity", auth.detail, peerAddress, claimed));
    const member = auth.member;
    if (member === this.ctx.self)
      return this.refuse(
        refusal(
          "fromSelf",
          `the connection's certificate names this node (member ${member})`,
          peerAddress,
          claimed,
        ),
      );
    if (!this.ctx.peers.has(member))
      return this.refuse(
        refusal(
          "unknownSender",
          `the connection's certificate names node ${member}, not a member`,
          peerAddress,
          claimed,
        ),
      );
    return { ok: true, sender: member };
  }

  private refuse(r: Refusal): Refusal {
    this.counters.refuse(r);
    return r;
  }
}

function refusal(reason: RefusalReason, detail: string, peerAddress: string, from: NodeId | null): Refusal {
  return { ok: false, reason, detail, peerAddress, from };
}

function safeId(n: number): NodeId | null {
  return Number.isSafeInteger(n) && n >= 0 ? n : null;
}
