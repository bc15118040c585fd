// Tests of the gRPC peer transport on loopback: conformance, batching, reconnects, refusals, garbage.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import net from "node:net";
import { test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import type { AppendEntries, NodeId } from "../core/types.ts";
import { type AppendEntriesResponse, PeerServiceClient, PeerServiceService } from "../gen/raftkv/v1/peer.ts";
import { toWire } from "./codec.ts";
import {
  addPeerService,
  GrpcPeerTransport,
  type GrpcPeerTransportOptions,
  peerGrpcOptions,
  startPeerServer,
} from "./grpc-transport.ts";
import {
  type Harness,
  Inbox,
  RecordingLogger,
  sampleMessages,
  transportConformance,
} from "./transport-conformance.ts";

const MAX_BYTES = 64 * 1024;

async function bind(server: grpc.Server, address = "127.0.0.1:0"): Promise<number> {
  return new Promise((resolve, reject) =>
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, port) =>
      err ? reject(err) : resolve(port),
    ),
  );
}

interface Cluster {
  readonly transports: GrpcPeerTransport[];
  readonly servers: grpc.Server[];
  readonly ports: number[];
  readonly loggers: RecordingLogger[];
  close(): Promise<void>;
}

type Overrides = Partial<Omit<GrpcPeerTransportOptions, "nodeId" | "peers">>;

/** `n` nodes on ephemeral loopback ports, each with its own server; `over` per node id. */
async function makeCluster(n: number, over: (id: NodeId) => Overrides = () => ({})): Promise<Cluster> {
  const servers = Array.from({ length: n }, () => new grpc.Server(peerGrpcOptions(MAX_BYTES)));
  const ports = await Promise.all(servers.map((s) => bind(s)));
  const peers = new Map(ports.map((p, id) => [id, `127.0.0.1:${p}`]));
  const loggers = servers.map(() => new RecordingLogger());
  const transports = servers.map((server, id) => {
    const t = new GrpcPeerTransport({
      nodeId: id,
      clusterId: "c1",
      peers,
      maxQueuedMessagesPerPeer: 1024,
      maxBytesPerMessage: MAX_BYTES,
      logger: loggers[id]!,
      reconnectBackoffMinMs: 10,
      reconnectBackoffMaxMs: 100,
      ...over(id),
    });
    addPeerService(server, t);
    return t;
  });
  return {
    transports,
    servers,
    ports,
    loggers,
    close: async () => {
      await Promise.all(transports.map((t) => t.close()));
      for (const s of servers) s.forceShutdown();
    },
  };
}

async function until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const started = performance.now();
  while (!cond()) {
    if (performance.now() - started > timeoutMs) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const heartbeat = (from: NodeId, to: NodeId, term: number): AppendEntries => ({
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

transportConformance("GrpcPeerTransport", async (): Promise<Harness> => {
  const c = await makeCluster(3);
  return { nodes: c.transports, pump: () => {}, close: c.close };
});

/** Two nodes whose 0 -> 1 stream is up: one heartbeat (term 1) has already arrived in node 1's inbox. */
async function connectedPair(): Promise<{ c: Cluster; t0: GrpcPeerTransport; inbox: Inbox }> {
  const c = await makeCluster(2);
  const [t0, t1] = c.transports as [GrpcPeerTransport, GrpcPeerTransport];
  const inbox = new Inbox(t1);
  t0.send([heartbeat(0, 1, 1)]);
  await inbox
    .waitFor(1, () => {})
    .catch(async (err: unknown) => {
      await c.close();
      throw err;
    });
  return { c, t0, inbox };
}

test("messages queued in one event-loop turn go out as one stream write", async () => {
  const { c, t0, inbox } = await connectedPair();
  try {
    const before = t0.stats().sentBatches;
    for (let i = 0; i < 200; i++) t0.send([heartbeat(0, 1, 2 + i)]);
    await inbox.waitFor(201, () => {});
    assert.equal(t0.stats().sentBatches - before, 1);
    assert.deepStrictEqual(
      inbox.messages.map((m) => m.term),
      Array.from({ length: 201 }, (_, i) => i + 1),
    );
  } finally {
    await c.close();
  }
});

test("past the stream's buffer, messages wait in the bounded queue and all arrive in order after drain", async () => {
  const { c, t0, inbox } = await connectedPair();
  try {
    const data = randomBytes(40 * 1024); // one message per batch: 500 batches, 20 MB
    const big = (term: number): AppendEntries => ({
      ...heartbeat(0, 1, term),
      entries: [{ index: 1, term, kind: "command", data }],
    });
    for (let i = 0; i < 500; i++) t0.send([big(2 + i)]);
    await new Promise((r) => setImmediate(r)); // the flush runs in the next turn
    const waiting = t0.peerStatus().get(1)!.queuedMessages;
    assert.ok(
      waiting > 400,
      `only ${waiting} of 500 messages wait in the queue: the rest went to grpc-js's buffer`,
    );
    await inbox.waitFor(501, () => {}, 20_000);
    assert.deepStrictEqual(
      inbox.messages.map((m) => m.term),
      Array.from({ length: 501 }, (_, i) => i + 1),
    );
    assert.equal(t0.peerStatus().get(1)!.queuedMessages, 0);
  } finally {
    await c.close();
  }
});

test("a peer that is down is retried with backoff, and messages flow once it comes up", async () => {
  const c = await makeCluster(2);
  const [t0, t1] = c.transports as [GrpcPeerTransport, GrpcPeerTransport];
  // Take node 1 down: its port refuses connections.
  c.servers[1]!.forceShutdown();
  let revived: grpc.Server | null = null;
  try {
    const inbox = new Inbox(t1);
    await until(() => t0.stats().disconnects >= 3, "several failed connection attempts");
    t0.send([heartbeat(0, 1, 1), heartbeat(0, 1, 2)]);
    assert.equal(t0.peerStatus().get(1)?.connected, false);
    assert.equal(t0.peerStatus().get(1)?.queuedMessages, 2);
    assert.ok(c.loggers[0]!.lines.some((l) => l.level === "debug" && l.msg === "peer unreachable"));
    // Node 1 comes back on the same port.
    revived = new grpc.Server(peerGrpcOptions(MAX_BYTES));
    addPeerService(revived, t1);
    await bind(revived, `127.0.0.1:${c.ports[1]}`);
    const got = await inbox.waitFor(2, () => {});
    assert.deepStrictEqual(
      got.map((m) => m.term),
      [1, 2],
    );
    assert.equal(t0.peerStatus().get(1)?.connected, true);
  } finally {
    await c.close();
    revived?.forceShutdown();
  }
});

test("a node of another cluster is refused, logged with its address, and gets nothing through", async () => {
  const c = await makeCluster(3, (id) => (id === 2 ? { clusterId: "other" } : {}));
  try {
    const [, t1, t2] = c.transports as [GrpcPeerTransport, GrpcPeerTransport, GrpcPeerTransport];
    const inbox = new Inbox(t1);
    t2.send(sampleMessages(2, 1, 1));
    await until(() => t1.stats().refused.clusterMismatch >= 1, "the refusal");
    await until(
      () => c.loggers[2]!.lines.some((l) => l.level === "warn" && l.msg === "peer refused our stream"),
      "the sender's warning",
    );
    const refusal = c.loggers[1]!.lines.find((l) => l.msg === "refused a peer message");
    assert.ok(refusal);
    assert.match(String((refusal.obj as { peerAddress: string }).peerAddress), /127\.0\.0\.1:\d+/);
    assert.equal(inbox.messages.length, 0);
  } finally {
    await c.close();
  }
});

test("raw garbage on the port and garbage stream messages do not crash the server", async () => {
  const c = await makeCluster(2);
  try {
    const [t0, t1] = c.transports as [GrpcPeerTransport, GrpcPeerTransport];
    const inbox = new Inbox(t1);
    // 1. Bytes that are not HTTP/2 at all, then an HTTP/2 preface followed by garbage frames.
    const preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    for (const payload of [randomBytes(64 * 1024), Buffer.concat([preface, randomBytes(4096)])]) {
      await new Promise<void>((resolve) => {
        const sock = net.connect(c.ports[1]!, "127.0.0.1", () => sock.end(payload));
        sock.on("error", () => resolve());
        sock.on("close", () => resolve());
        sock.resume();
      });
    }
    // 2. A well-formed gRPC stream whose messages are garbage, and one with a truncated batch.
    const client = new grpc.Client(`127.0.0.1:${c.ports[1]}`, grpc.credentials.createInsecure());
    const call = client.makeBidiStreamRequest(
      PeerServiceService.stream.path,
      (b: Buffer) => b,
      (b: Buffer) => b,
      new grpc.Metadata(),
    );
    call.on("error", () => {});
    for (let i = 0; i < 20; i++) call.write(randomBytes(1 + ((i * 37) % 500)));
    call.write(Buffer.from([0x0a, 0x7f, 0x01]));
    await until(() => t1.stats().refused.malformed >= 1, "malformed refusals");
    call.end();
    client.close();
    // The server still serves its real peer.
    t0.send([heartbeat(0, 1, 7)]);
    assert.equal((await inbox.waitFor(1, () => {}))[0]?.term, 7);
  } finally {
    await c.close();
  }
});

test("unary RPCs: answered by the core's next response, refused with a status, or timed out", async () => {
  const c = await makeCluster(2, () => ({ unaryAnswerTimeoutMs: 200 }));
  const [, t1] = c.transports as [GrpcPeerTransport, GrpcPeerTransport];
  const client = new PeerServiceClient(`127.0.0.1:${c.ports[1]}`, grpc.credentials.createInsecure());
  try {
    // Node 1's "core" answers appends, and ignores votes.
    t1.onMessage((m) => {
      if (m.type !== "append") return;
      const last = m.entries.at(-1)?.index ?? m.prevLogIndex;
      t1.send([
        {
          type: "appendResponse",
          from: 1,
          to: 0,
          term: m.term,
          success: true,
          matchIndex: last,
          conflictTerm: 0,
          conflictIndex: 0,
          round: m.round,
        },
      ]);
    });
    const append = heartbeat(0, 1, 3);
    const body = toWire(append, "c1").body;
    assert.ok(body?.$case === "appendEntries");
    const resp = await new Promise<AppendEntriesResponse>((resolve, reject) =>
      client.appendEntries(body.value, (err, r) => (err ? reject(err) : resolve(r))),
    );
    assert.equal(resp.success, true);
    assert.equal(resp.header?.term, 3n);
    assert.equal(resp.round, 3n);

    const vote = toWire(
      {
        type: "vote",
        from: 0,
        to: 1,
        term: 4,
        preVote: true,
        lastLogIndex: 0,
        lastLogTerm: 0,
        transfer: false,
      },
      "c1",
    ).body;
    assert.ok(vote?.$case === "requestVote");
    const voteErr = await new Promise<grpc.ServiceError | null>((resolve) =>
      client.requestVote(vote.value, (err) => resolve(err)),
    );
    assert.equal(voteErr?.code, grpc.status.DEADLINE_EXCEEDED);

    const tn = toWire({ type: "timeoutNow", from: 0, to: 1, term: 4 }, "c1").body;
    assert.ok(tn?.$case === "timeoutNow");
    assert.equal(await new Promise((resolve) => client.timeoutNow(tn.value, (err) => resolve(err))), null);

    const foreign = toWire(append, "c2").body;
    assert.ok(foreign?.$case === "appendEntries");
    const err = await new Promise<grpc.ServiceError | null>((resolve) =>
      client.appendEntries(foreign.value, (e) => resolve(e)),
    );
    assert.equal(err?.code, grpc.status.FAILED_PRECONDITION);
    assert.match(err?.details ?? "", /clusterMismatch/);
  } finally {
    client.close();
    await c.close();
  }
});

test("a handler that throws (our own invariant) is reported to onHandlerError on both paths, never swallowed", async () => {
  const errors: unknown[] = [];
  const c = await makeCluster(2, () => ({ onHandlerError: (err) => errors.push(err) }));
  const [t0, t1] = c.transports as [GrpcPeerTransport, GrpcPeerTransport];
  const client = new PeerServiceClient(`127.0.0.1:${c.ports[1]}`, grpc.credentials.createInsecure());
  try {
    t1.onMessage((m) => {
      throw new Error(`invariant failed on ${m.type} in term ${m.term}`);
    });
    const body = toWire(heartbeat(0, 1, 3), "c1").body;
    assert.ok(body?.$case === "appendEntries");
    const err = await new Promise<grpc.ServiceError | null>((resolve) =>
      client.appendEntries(body.value, (e) => resolve(e)),
    );
    assert.equal(err?.code, grpc.status.INTERNAL, "not UNKNOWN");
    assert.equal(err?.details, "node 1 failed and is stopping");
    assert.deepEqual(
      errors.map((e) => (e as Error).message),
      ["invariant failed on append in term 3"],
    );
    t0.send([heartbeat(0, 1, 4)]);
    await until(() => errors.length === 2, "the stream path's error");
    assert.equal((errors[1] as Error).message, "invariant failed on append in term 4");
  } finally {
    client.close();
    await c.close();
  }
});

test("an outbound message over the size limit is dropped and logged as an error, not sent", async () => {
  const c = await makeCluster(2);
  try {
    const [t0, t1] = c.transports as [GrpcPeerTransport, GrpcPeerTransport];
    const inbox = new Inbox(t1);
    const big = new Uint8Array(MAX_BYTES * 2);
    t0.send([
      { ...heartbeat(0, 1, 1), entries: [{ index: 1, term: 1, kind: "command", data: big }] },
      heartbeat(0, 1, 2),
    ]);
    await inbox.waitFor(1, () => {});
    assert.equal(inbox.messages[0]?.term, 2);
    assert.equal(t0.stats().dropped.tooLarge, 1);
    assert.ok(
      c.loggers[0]!.lines.some((l) => l.level === "error" && l.msg === "transport dropped a message"),
    );
  } finally {
    await c.close();
  }
});

test("startPeerServer hosts a transport on an ephemeral port", async () => {
  const t = new GrpcPeerTransport({
    nodeId: 0,
    clusterId: "solo",
    peers: new Map([[0, "127.0.0.1:1"]]),
    maxQueuedMessagesPerPeer: 8,
    maxBytesPerMessage: MAX_BYTES,
  });
  const { server, port } = await startPeerServer(t, "127.0.0.1:0");
  try {
    assert.ok(port > 0);
  } finally {
    await t.close();
    server.forceShutdown();
  }
});

test("peer links follow the configuration: setPeers opens links to new members and closes those to removed ones", async () => {
  const c = await makeCluster(3);
  const [t0, , t2] = c.transports as [GrpcPeerTransport, GrpcPeerTransport, GrpcPeerTransport];
  const inbox2 = new Inbox(t2);
  const inbox0 = new Inbox(t0);
  try {
    const all = new Map(c.ports.map((p, id) => [id, `127.0.0.1:${p}`] as const));
    const without2 = new Map([...all].filter(([id]) => id !== 2));
    t0.setPeers(without2);
    assert.deepEqual([...t0.peerStatus().keys()], [1]);
    t0.send([heartbeat(0, 2, 1)]);
    assert.equal(t0.stats().dropped.unknownPeer, 1, "nothing is sent to a removed member");
    // A removed member's messages are refused.
    t2.send([heartbeat(2, 0, 1)]);
    await until(() => t0.stats().refused.unknownSender >= 1, "the removed member refused");
    assert.equal(inbox0.messages.length, 0);
    // Added again (under the same address here): the link opens and messages flow.
    t0.setPeers(all);
    assert.deepEqual([...t0.peerStatus().keys()].sort(), [1, 2]);
    t0.send([heartbeat(0, 2, 2)]);
    await inbox2.waitFor(1, () => {});
    assert.equal(inbox2.messages[0]?.term, 2);
  } finally {
    await c.close();
  }
});

test("incarnations (issue 13): a wiped folder under a known id is refused both ways with FAILED_PRECONDITION, an unbound one is accepted and its incarnation seen", async () => {
  const INC = ["0000000000000a00", "0000000000000a01", "0000000000000b02"];
  const OLD2 = "0000000000000a02"; // node 2's folder before it was wiped; it is INC[2] now
  const byPeer: { at: NodeId; peer: NodeId; code: grpc.status; details: string }[] = [];
  const c = await makeCluster(3, (id) => ({
    incarnation: INC[id]!,
    onRefusedByPeer: (peer, code, details) => byPeer.push({ at: id, peer, code, details }),
  }));
  try {
    const [t0, t1, t2] = c.transports as [GrpcPeerTransport, GrpcPeerTransport, GrpcPeerTransport];
    const [in0, in1, in2] = [new Inbox(t0), new Inbox(t1), new Inbox(t2)];
    // Node 0's configuration binds every member, node 2 to its old folder; node 1's binds none yet.
    t0.setBindings(
      new Map([
        [0, INC[0]!],
        [1, INC[1]!],
        [2, OLD2],
      ]),
    );
    // Unbound: node 1 accepts node 2 (and node 0), and sees their incarnations.
    t2.send([heartbeat(2, 1, 1)]);
    t0.send([heartbeat(0, 1, 1)]);
    await in1.waitFor(2, () => {});
    assert.equal(t1.seenIncarnations().get(2), INC[2]);
    assert.equal(t1.seenIncarnations().get(0), INC[0]);
    // Node 0 addresses node 2 as its old folder: node 2 refuses it (recipientIncarnation).
    t0.send([heartbeat(0, 2, 1)]);
    await until(() => t2.stats().refused.recipientIncarnation >= 1, "node 2 refusing node 0's message");
    await until(() => byPeer.some((b) => b.at === 0 && b.peer === 2), "node 0 told its stream was refused");
    const to2 = byPeer.find((b) => b.at === 0 && b.peer === 2)!;
    assert.equal(to2.code, grpc.status.FAILED_PRECONDITION);
    assert.match(
      to2.details,
      /^recipientIncarnation: node 0 knows node 2 as incarnation 0000000000000a02, this data folder is incarnation 0000000000000b02/,
    );
    // Node 2 sends to node 0 from its new folder: node 0 refuses it (senderIncarnation), and node 2 learns why.
    t2.send([heartbeat(2, 0, 1)]);
    await until(() => t0.stats().refused.senderIncarnation >= 1, "node 0 refusing node 2's message");
    await until(() => byPeer.some((b) => b.at === 2 && b.peer === 0), "node 2 told its stream was refused");
    const from2 = byPeer.find((b) => b.at === 2 && b.peer === 0)!;
    assert.equal(from2.code, grpc.status.FAILED_PRECONDITION);
    assert.match(
      from2.details,
      /^senderIncarnation: the configuration binds node 2 to incarnation 0000000000000a02, the message comes from incarnation 0000000000000b02/,
    );
    // Nothing of either reached the other's handler; node 0 and node 1 still talk.
    assert.ok(!in0.messages.some((m) => m.from === 2), "node 2's message never reached node 0's core");
    assert.ok(!in2.messages.some((m) => m.from === 0), "node 0's message never reached node 2's core");
    t1.send([heartbeat(1, 0, 1)]);
    await in0.waitFor(1, () => {});
    assert.equal(t0.seenIncarnations().get(1), INC[1]);
  } finally {
    await c.close();
  }
});
