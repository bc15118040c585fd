// Connection and stream limits at the edge: maxConnections (the oldest idle connection makes room; when
// every connection is in use a new one is refused), maxConcurrentStreams and maxInflightPerStream, each
// with its exact outcome, log line and metric. (Keys, values, requests, ranges and pending proposals and
// reads: client-api.test.ts; entries and bytes per peer message: peer-refusals.test.ts.)

import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { ClientRequest, ClientResponse, ClientServiceClient } from "../../src/gen/raftkv/v1/client.ts";
import { startCluster, type TestCluster, waitFor } from "./cluster.ts";
import { ask, ErrorCode } from "./wire.ts";

function connectIdle(address: string): Promise<{ socket: net.Socket; closed: Promise<void> }> {
  const [host, port] = [
    address.slice(0, address.lastIndexOf(":")),
    Number(address.slice(address.lastIndexOf(":") + 1)),
  ];
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, host, () => resolve({ socket, closed }));
    const closed = new Promise<void>((r) => socket.once("close", () => r()));
    socket.resume(); // read, so that the node closing it is seen
    socket.on("error", () => {});
    socket.once("error", reject);
  });
}

/** A client on a connection of its own (gRPC shares connections between channels by default), after
 *  one call on it. */
async function ownConnection(address: string): Promise<ClientServiceClient> {
  const k = new ClientServiceClient(address, grpc.credentials.createInsecure(), {
    "grpc.use_local_subchannel_pool": 1,
  });
  const a = await ask(k.put.bind(k), {
    key: "c/1",
    value: Buffer.from("v"),
    clientId: "",
    seq: 0n,
    lease: 0n,
  });
  assert.equal(a.code, ErrorCode.ERROR_CODE_UNSPECIFIED);
  return k;
}

function refusals(log: string, reason: string): string[] {
  return log.split("\n").filter((l) => l.includes(`"reason":"${reason}"`));
}

async function metric(c: TestCluster, reason: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${c.nodes[0]!.metricsPort}/metrics`)).text();
  const line = text
    .split("\n")
    .find((l) => l.startsWith(`raftkv_connections_refused_total{reason="${reason}"}`));
  return line === undefined ? 0 : Number(line.split(" ").pop());
}

describe("maxConnections", () => {
  let c: TestCluster;
  before(async () => {
    c = await startCluster({ size: 1, settings: { maxConnections: 3, metricsPort: 0 } });
    await c.leader();
  });
  after(() => c.close());

  test("idle connections make room for new ones, oldest first; when all are in use a new one is refused", async () => {
    const address = c.addresses[0]!;
    const good1 = await ownConnection(address);
    const idle1 = await connectIdle(address);
    const idle2 = await connectIdle(address);
    // Full (3). A new client evicts the oldest connection that never made a call: idle1.
    const good2 = await ownConnection(address);
    await idle1.closed;
    assert.equal(idle2.socket.destroyed, false, "only the oldest idle one went");
    const good3 = await ownConnection(address);
    await idle2.closed;
    // Three connections, all in use: the next is closed at once, and the others keep working.
    const refusedBefore = await metric(c, "tooManyConnections");
    const extra = await connectIdle(address);
    await extra.closed;
    assert.equal(await metric(c, "tooManyConnections"), refusedBefore + 1);
    for (const k of [good1, good2, good3]) {
      assert.equal(
        (await ask(k.get.bind(k), { key: "c/1", consistency: 0 })).code,
        ErrorCode.ERROR_CODE_UNSPECIFIED,
      );
      k.close();
    }
    assert.ok((await metric(c, "evictedIdle")) >= 2);
    const line = await waitFor("the refusal's log line", () => refusals(c.log(0), "tooManyConnections")[0]);
    assert.match(
      line,
      /refused a connection from 127\.0\.0\.1:\d+: already 3 connections \(maxConnections\)/,
    );
    assert.match(refusals(c.log(0), "evictedIdle")[0] ?? "", /this one never made a call/);
  });
});

describe("Session streams", () => {
  let c: TestCluster;
  let leader: number;
  before(async () => {
    const timing = { heartbeatMs: 100, electionTimeoutMinMs: 4000, electionTimeoutMaxMs: 5000 };
    c = await startCluster({
      size: 3,
      settings: { maxConcurrentStreams: 2, maxInflightPerStream: 2, ...timing },
    });
    leader = await c.leader();
  });
  after(() => c.close());

  function open(address: string) {
    const client = new grpc.Client(address, grpc.credentials.createInsecure());
    const call = client.makeBidiStreamRequest(
      "/raftkv.v1.ClientService/Session",
      (r: ClientRequest) => Buffer.from(ClientRequest.encode(r).finish()),
      (b: Buffer) => ClientResponse.decode(b),
    );
    const answers: ClientResponse[] = [];
    call.on("data", (r: ClientResponse) => answers.push(r));
    const status = new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
    call.on("error", () => {});
    return { client, call, answers, status };
  }

  test("beyond maxConcurrentStreams a Session is refused RESOURCE_EXHAUSTED; a closed one frees its slot", async () => {
    const address = c.addresses[leader]!;
    const ping = { requestId: 1n, timeoutMs: 1000, op: { $case: "status" as const, value: {} } };
    const a = open(address);
    const b = open(address);
    a.call.write(ping);
    b.call.write(ping);
    await waitFor("both sessions to answer", () =>
      a.answers.length + b.answers.length === 2 ? true : undefined,
    );
    const third = open(address);
    third.call.write(ping);
    const s = await third.status;
    assert.equal(s.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.equal(
      s.details,
      `node ${leader} already serves 2 sessions (maxConcurrentStreams); use unary calls or retry later`,
    );
    a.call.end();
    assert.equal((await a.status).code, grpc.status.OK);
    const fourth = open(address);
    fourth.call.write(ping);
    await waitFor("the new session to answer", () => (fourth.answers.length === 1 ? true : undefined));
    for (const x of [a, b, third, fourth]) {
      x.call.end();
      x.client.close();
    }
    // The library falls back to unary calls when sessions are refused; nothing else to see here.
  });

  test("beyond maxInflightPerStream a request is answered OVERLOADED at once, the others still complete", async () => {
    const address = c.addresses[leader]!;
    await waitFor("no session left over", async () => {
      const probe = open(address);
      probe.call.write({ requestId: 1n, timeoutMs: 1000, op: { $case: "status", value: {} } });
      const ok = await Promise.race([
        waitFor("", () => (probe.answers.length > 0 ? true : undefined), 2000).then(() => true),
        probe.status.then(() => false),
      ]).catch(() => false);
      probe.call.end();
      probe.client.close();
      return ok ? true : undefined;
    });
    // Followers gone: writes cannot commit and stay in flight until their deadline.
    await Promise.all([0, 1, 2].filter((id) => id !== leader).map((id) => c.stopNode(id)));
    const s = open(address);
    const put = (id: bigint) => ({
      requestId: id,
      timeoutMs: 800,
      op: {
        $case: "put" as const,
        value: { key: `i/${id}`, value: Buffer.from("v"), clientId: "", seq: 0n, lease: 0n },
      },
    });
    s.call.write(put(1n));
    s.call.write(put(2n));
    s.call.write(put(3n));
    await waitFor(
      "the third answer",
      () => (s.answers.some((a) => a.requestId === 3n) ? true : undefined),
      500,
      10,
    );
    const third = s.answers.find((a) => a.requestId === 3n)?.result;
    assert.equal(third?.$case, "rejected");
    assert.equal(third?.$case === "rejected" ? third.value.errorCode : -1, ErrorCode.ERROR_CODE_OVERLOADED);
    assert.match(
      third?.$case === "rejected" ? third.value.errorMessage : "",
      /^more than 2 requests in flight on one session \(maxInflightPerStream\)/,
    );
    await waitFor(
      "the two in flight to time out",
      () => (s.answers.length === 3 ? true : undefined),
      5000,
      20,
    );
    for (const id of [1n, 2n]) {
      const r = s.answers.find((a) => a.requestId === id)?.result;
      assert.equal(r?.$case, "put");
      assert.equal(
        r?.$case === "put" ? r.value.header?.errorCode : -1,
        ErrorCode.ERROR_CODE_DEADLINE_EXCEEDED,
      );
    }
    s.call.end();
    s.client.close();
  });
});
