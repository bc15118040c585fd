// The transport seam (how a replica exchanges Raft messages with its peers), its logger and counters.

import type { Message } from "../core/types.ts";
import { REFUSAL_REASONS, type Refusal, type RefusalReason } from "./codec.ts";

export interface Transport {
  /** Queue messages for delivery (non-blocking; bounded per-peer queue: when full, drop the oldest
   *  non-vote messages and count the drop — Raft tolerates loss). */
  send(messages: readonly Message[]): void;
  /** Register the single handler for validated inbound messages. */
  onMessage(handler: (m: Message) => void): void;
  close(): Promise<void>;
}

/** The part of a pino logger the transport uses; pass a child logger carrying the node id. */
export interface TransportLogger {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export const silentLogger: TransportLogger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
};

/** Why an outbound message was not sent. */
export const DROP_REASONS = [
  /** The peer's queue was full (the peer is down or slow); the oldest droppable message went. */
  "queueFull",
  /** Encoded, it exceeded the message size limit (a configuration mistake: the core's limits
   *  must fit within the transport's). */
  "tooLarge",
  /** Addressed to a node that is not a configured peer. */
  "unknownPeer",
  /** Sent after close(), or still queued at close(). */
  "closed",
  /** Arrived before onMessage() registered a handler. */
  "noHandler",
  /** The in-memory twin's link was cut by the test. */
  "linkCut",
] as const;

export type DropReason = (typeof DROP_REASONS)[number];

export interface TransportStats {
  /** Messages written to a peer stream (twin: delivered to the peer). */
  readonly sentMessages: number;
  /** Stream writes, each carrying one batch of messages. */
  readonly sentBatches: number;
  /** Validated inbound messages handed to the handler. */
  readonly receivedMessages: number;
  readonly dropped: Readonly<Record<DropReason, number>>;
  /** Inbound messages refused by the codec, by reason. */
  readonly refused: Readonly<Record<RefusalReason, number>>;
  /** Streams to peers established, and attempts that failed before or after establishing. */
  readonly connects: number;
  readonly disconnects: number;
}

/** Election messages survive a full queue longer than replication traffic: losing a vote delays an
 *  election by a whole timeout, while a lost append is resent on the next heartbeat. */
export function isElectionMessage(m: Message): boolean {
  return m.type === "vote" || m.type === "voteResponse" || m.type === "timeoutNow";
}

/** The counters behind a transport's stats(), and rate-limited logging of drops and refusals. */
export class TransportCounters {
  sentMessages = 0;
  sentBatches = 0;
  receivedMessages = 0;
  connects = 0;
  disconnects = 0;
  private readonly dropped = zeroes(DROP_REASONS);
  private readonly refused = zeroes(REFUSAL_REASONS);

  constructor(
    private readonly logger: TransportLogger,
    private readonly onRefusal: ((r: Refusal) => void) | undefined,
  ) {}

  drop(reason: DropReason, m: Message, count = 1): void {
    const n = (this.dropped[reason] += count);
    // Log the 1st, 2nd, 4th, 8th... drop of each kind: a flood cannot flood the log.
    if (isPowerOfTwo(n)) {
      const level = reason === "tooLarge" ? "error" : "debug";
      this.logger[level]({ reason, to: m.to, type: m.type, dropped: n }, "transport dropped a message");
    }
  }

  refuse(r: Refusal): void {
    const n = ++this.refused[r.reason];
    this.onRefusal?.(r);
    if (isPowerOfTwo(n)) {
      const { reason, detail, peerAddress, from } = r;
      this.logger.warn({ reason, detail, peerAddress, from, refused: n }, "refused a peer message");
    }
  }

  snapshot(): TransportStats {
    return {
      sentMessages: this.sentMessages,
      sentBatches: this.sentBatches,
      receivedMessages: this.receivedMessages,
      dropped: { ...this.dropped },
      refused: { ...this.refused },
      connects: this.connects,
      disconnects: this.disconnects,
    };
  }
}

function zeroes<K extends string>(keys: readonly K[]): Record<K, number> {
  return Object.fromEntries(keys.map((k) => [k, 0])) as Record<K, number>;
}

function isPowerOfTwo(n: number): boolean {
  return n > 0 && Number.isInteger(Math.log2(n));
}
