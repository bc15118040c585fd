// Peer messages a node must refuse, on a real node: another cluster id, an unknown sender, itself as
// sender, too many entries, too many bytes, garbage, and a stream claiming another cluster; each with its
// exact gRPC status, a log line with the peer's address, and raftkv_peer_messages_refused_total{reason}.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import type { AppendEntries, Entry } from "../../src/core/types.ts";
import { AppendEntriesRequest } from "../../src/gen/raftkv/v1/peer.ts";
import { toWire } from "../../src/transport/codec.ts";
import { rawUnary, startCluster, type TestCluster, waitFor } from "./cluster.ts";

const APPEND = "/raftkv.v1.PeerService/AppendEntries";
let c: TestCluster;
let address: string;

before(async () => {
  // Node 0 of three, alone: its peers 1 and 2 are known members that never answer.
  c = await startCluster({
    size: 3,
    startNow: [0],
    settings: {
      metricsPort: 0,
      maxEntriesPerMessage: 8,
      maxBytesPerMessage: 64 * 1024,
      snapshotChunkBytes: 16 * 1024,
      maxKeyBytes: 256,
      maxValueBytes: 4096,
    },
  });
  address = c.addresses[0]!;
});
after(() => c.close());

function append(over: Partial<AppendEntries>, clusterId = "sec"): Buffer {
  const m: AppendEntries = {
    type: "append",
    from: 1,
    to: 0,
    term: 1,
    prevLogIndex: 0,
    prevLogTerm: 0,
    entries: [],
    leaderCommit: 0,
    round: 1,
    ...over,
  };
  const body = toWire(m, clusterId).body;
  assert.ok(body?.$case === "appendEntries");
  return Buffer.from(AppendEntriesRequest.encode(body.value).finish());
}

function entries(n: number, bytes: number): Entry[] {
  return Array.from({ length: n }, (_, i) => ({
    index: i + 1,
    term: 1,
    kind: "command",
    data: new Uint8Array(bytes),
  }));
}

async function refusedCount(reason: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${c.nodes[0]!.metricsPort}/metrics`)).text();
  const line = text
    .split("\n")
    .find((l) => l.startsWith(`raftkv_peer_messages_refused_total{reason="${reason}"}`));
  return line === undefined ? 0 : Number(line.split(" ").pop());
}

const cases: readonly [string, () => Buffer, grpc.status, RegExp, string][] = [
  [
    "another cluster id",
    () => append({}, "other-cluster"),
    grpc.status.FAILED_PRECONDITION,
    /^clusterMismatch: /,
    "clusterMismatch",
  ],
  [
    "an unknown sender",
    () => append({ from: 7 }),
    grpc.status.PERMISSION_DENIED,
    /^unknownSender: /,
    "unknownSender",
  ],
  ["itself as sender", () => append({ from: 0 }), grpc.status.PERMISSION_DENIED, /^fromSelf: /, "fromSelf"],
  [
    "more entries than maxEntriesPerMessage",
    () => append({ entries: entries(9, 1) }),
    grpc.status.RESOURCE_EXHAUSTED,
    /^tooManyEntries: /,
    "tooManyEntries",
  ],
  [
    "more bytes than maxBytesPerMessage",
    () => append({ entries: entries(2, 40 * 1024) }),
    grpc.status.RESOURCE_EXHAUSTED,
    /^tooLarge: /,
    "tooLarge",
  ],
  [
    "random bytes",
    () => Buffer.from("ffffffffffffffffff01", "hex"),
    grpc.status.INVALID_ARGUMENT,
    /^malformed: undecodable appendEntries request/,
    "malformed",
  ],
];

for (const [what, bytes, status, details, reason] of cases) {
  test(`an AppendEntries with ${what} is refused (${grpc.status[status]}), logged and counted`, async () => {
    const before = await refusedCount(reason);
    const r = await rawUnary(address, APPEND, bytes());
    assert.equal(r.status, status, r.details);
    assert.match(r.details, details);
    assert.equal(await refusedCount(reason), before + 1);
    const line = await waitFor("the log line", () =>
      c
        .log(0)
        .split("\n")
        .find((l) => l.includes("refused a peer message") && l.includes(`"reason":"${reason}"`)),
    );
    assert.match(line, /"peerAddress":"127\.0\.0\.1:\d+"/);
  });
}

test("a unary call whose message the core refuses (a term jump) is answered with the refusal at once, and the log names the caller's address", async () => {
  const r = await rawUnary(address, APPEND, append({ term: 2 ** 40 }), { deadlineMs: 10_000 });
  assert.equal(r.status, grpc.status.FAILED_PRECONDITION, r.details);
  assert.match(r.details, /^termJump: /);
  const line = await waitFor("the core's refusal in the log", () =>
    c
      .log(0)
      .split("\n")
      .find((l) => l.includes('"reason":"termJump"')),
  );
  assert.match(
    line,
    /"peerAddress":"127\.0\.0\.1:\d+"/,
    "the connection's address, not the member's configured one",
  );
  assert.equal(c.nodes[0]!.view().term < 2 ** 40, true, "the term did not move");
});

test("a peer stream that claims another cluster is refused before any message", async () => {
  const before = await refusedCount("clusterMismatch");
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  md.set("raftkv-cluster-id", "other-cluster");
  md.set("raftkv-from", "1");
  const call = client.makeBidiStreamRequest(
    "/raftkv.v1.PeerService/Stream",
    (b: Buffer) => b,
    (b: Buffer) => b,
    md,
  );
  const status = await new Promise<grpc.StatusObject>((resolve) => {
    call.on("status", resolve);
    call.on("error", () => {});
    call.on("data", () => {});
  });
  client.close();
  assert.equal(status.code, grpc.status.FAILED_PRECONDITION);
  assert.match(status.details, /^clusterMismatch: stream for cluster "other-cluster", ours is "sec"/);
  assert.equal(await refusedCount("clusterMismatch"), before + 1);
});

test("after all of it the node still runs its loop", () => {
  const v = c.nodes[0]!.view();
  assert.equal(v.role === "follower" || v.role === "preCandidate" || v.role === "candidate", true);
  assert.equal(v.lastLogIndex, 0, "nothing refused reached the log");
});
