// The Transport seam's conformance suite, run against the in-memory twin and the gRPC transport.

import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import type { Message, NodeId } from "../core/types.ts";
import { arbMessageOfType, MESSAGE_TYPES } from "./codec-arbitraries.ts";
import type { Transport, TransportLogger, TransportStats } from "./transport.ts";

export type StatsTransport = Transport & { stats(): TransportStats };

export interface Harness {
  /** Transports of nodes 0, 1 and 2 of one cluster, handlers not yet registered. */
  readonly nodes: readonly StatsTransport[];
  /** Moves messages along (the twin delivers by hand; gRPC needs nothing). */
  pump(): void;
  close(): Promise<void>;
}

/** Collects what one node receives; waits for a count with a deadline. */
export class Inbox {
  readonly messages: Message[] = [];
  private wake: (() => void) | null = null;

  constructor(t: Transport) {
    t.onMessage((m) => {
      this.messages.push(m);
      this.wake?.();
    });
  }

  async waitFor(count: number, pump: () => void, timeoutMs = 5000): Promise<Message[]> {
    const started = performance.now();
    for (;;) {
      pump();
      if (this.messages.length >= count) return this.messages;
      if (performance.now() - started >= timeoutMs)
        assert.fail(`timed out after ${timeoutMs} ms with ${this.messages.length}/${count} messages`);
      // Woken by an arrival, or after 20 ms to pump the twin again.
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, 20);
      });
      this.wake = null;
    }
  }
}

/** A few valid messages of every type from `from` to `to`, the same ones on every run. */
export function sampleMessages(from: NodeId, to: NodeId, perType = 3, seed = 42): Message[] {
  return MESSAGE_TYPES.flatMap((type) =>
    fc.sample(arbMessageOfType(type, { from: [from], to, maxEntries: 6, maxChunkBytes: 300 }), {
      numRuns: perType,
      seed,
    }),
  );
}

/** A logger that keeps what it was told, for asserting on log lines. */
export class RecordingLogger implements TransportLogger {
  readonly lines: { level: string; obj: object; msg: string }[] = [];
  debug(obj: object, msg: string): void {
    this.lines.push({ level: "debug", obj, msg });
  }
  info(obj: object, msg: string): void {
    this.lines.push({ level: "info", obj, msg });
  }
  warn(obj: object, msg: string): void {
    this.lines.push({ level: "warn", obj, msg });
  }
  error(obj: object, msg: string): void {
    this.lines.push({ level: "error", obj, msg });
  }
}

export function transportConformance(name: string, makeHarness: () => Promise<Harness>): void {
  test(`${name}: every message type arrives validated, equal and in order per link`, async () => {
    const h = await makeHarness();
    try {
      const [n0, n1, n2] = h.nodes as [StatsTransport, StatsTransport, StatsTransport];
      const inbox1 = new Inbox(n1);
      const inbox0 = new Inbox(n0);
      const from0 = sampleMessages(0, 1);
      const from2 = sampleMessages(2, 1, 2, 7);
      const to0 = sampleMessages(1, 0, 1, 9);
      n0.send(from0);
      n2.send(from2);
      n1.send(to0);
      const got = await inbox1.waitFor(from0.length + from2.length, h.pump);
      assert.deepStrictEqual(
        got.filter((m) => m.from === 0),
        from0,
      );
      assert.deepStrictEqual(
        got.filter((m) => m.from === 2),
        from2,
      );
      assert.deepStrictEqual(await inbox0.waitFor(to0.length, h.pump), to0);
      assert.equal(n1.stats().receivedMessages, from0.length + from2.length);
      assert.equal(n0.stats().sentMessages, from0.length);
    } finally {
      await h.close();
    }
  });

  test(`${name}: unknown peers and sends after close are dropped and counted, never thrown`, async () => {
    const h = await makeHarness();
    try {
      const [n0] = h.nodes as [StatsTransport];
      const m: Message = { type: "timeoutNow", from: 0, to: 9, term: 1 };
      n0.send([m]);
      assert.equal(n0.stats().dropped.unknownPeer, 1);
      await n0.close();
      n0.send([{ ...m, to: 1 }]);
      assert.equal(n0.stats().dropped.closed, 1);
    } finally {
      await h.close();
    }
  });
}
