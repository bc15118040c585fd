// Tests of the in-memory transport twin: conformance, hand delivery, holds, drops, cuts, refusals.

import assert from "node:assert/strict";
import { test } from "node:test";
import type { Message } from "../core/types.ts";
import { MemNetwork } from "./mem-transport.ts";
import { type Harness, Inbox, sampleMessages, transportConformance } from "./transport-conformance.ts";

transportConformance("MemTransport (auto delivery)", async (): Promise<Harness> => {
  const net = new MemNetwork({ clusterId: "c" });
  const nodes = [0, 1, 2].map((id) => net.transport(id));
  return { nodes, pump: () => {}, close: async () => void (await Promise.all(nodes.map((n) => n.close()))) };
});

transportConformance("MemTransport (manual delivery)", async (): Promise<Harness> => {
  const net = new MemNetwork({ clusterId: "c", autoDeliver: false });
  const nodes = [0, 1, 2].map((id) => net.transport(id));
  return {
    nodes,
    pump: () => void net.deliverAll(),
    close: async () => void (await Promise.all(nodes.map((n) => n.close()))),
  };
});

const hb = (from: number, to: number, term: number): Message => ({
  type: "append",
  from,
  to,
  term,
  prevLogIndex: 0,
  prevLogTerm: 0,
  entries: [],
  leaderCommit: 0,
  round: term,
});

test("MemNetwork holds messages until delivered, and delivers or drops them selectively", () => {
  const net = new MemNetwork({ autoDeliver: false });
  const [a, b, c] = [0, 1, 2].map((id) => net.transport(id)) as [
    ReturnType<MemNetwork["transport"]>,
    ReturnType<MemNetwork["transport"]>,
    ReturnType<MemNetwork["transport"]>,
  ];
  const inB = new Inbox(b);
  const inC = new Inbox(c);
  a.send([hb(0, 1, 1), hb(0, 2, 1), hb(0, 1, 2)]);
  assert.equal(net.pending().length, 3);
  assert.equal(inB.messages.length, 0, "nothing moves by itself");
  assert.equal(
    net.deliverWhere((f) => f.to === 2),
    1,
  );
  assert.equal(inC.messages.length, 1);
  assert.equal(
    net.dropWhere((f) => f.message.term === 1),
    1,
  );
  assert.equal(net.deliverAll(), 1);
  assert.deepStrictEqual(
    inB.messages.map((m) => m.term),
    [2],
  );
});

test("MemNetwork cuts links, bounds queues dropping non-election messages first", () => {
  const net = new MemNetwork({ autoDeliver: false, maxQueuedMessagesPerPeer: 3 });
  const a = net.transport(0);
  const b = net.transport(1);
  const inB = new Inbox(b);
  net.cut(0, 1);
  a.send([hb(0, 1, 1)]);
  assert.equal(a.stats().dropped.linkCut, 1);
  net.heal();
  const vote: Message = {
    type: "vote",
    from: 0,
    to: 1,
    term: 5,
    preVote: false,
    lastLogIndex: 0,
    lastLogTerm: 0,
    transfer: false,
  };
  a.send([vote, hb(0, 1, 1), hb(0, 1, 2), hb(0, 1, 3), hb(0, 1, 4)]);
  assert.equal(a.stats().dropped.queueFull, 2);
  net.deliverAll();
  assert.deepStrictEqual(
    inB.messages.map((m) => `${m.type}:${m.term}`),
    ["vote:5", "append:3", "append:4"],
  );
});

test("MemNetwork runs the codec: another cluster id is refused and counted at the receiver", async () => {
  const net = new MemNetwork({ clusterId: "good" });
  const a = net.transport(0, { clusterId: "evil" });
  const b = net.transport(1);
  const inB = new Inbox(b);
  a.send(sampleMessages(0, 1, 1));
  await Promise.resolve();
  assert.equal(inB.messages.length, 0);
  assert.equal(b.stats().refused.clusterMismatch, 7);
});

test("a closed node can be replaced by a new transport with the same id", async () => {
  const net = new MemNetwork();
  const a = net.transport(0);
  assert.throws(() => net.transport(0));
  await a.close();
  const again = net.transport(0);
  assert.equal(again.nodeId, 0);
});
