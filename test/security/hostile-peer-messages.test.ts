// One hostile peer message against a real 3-node cluster (issue 12, findings 1-3 and 5): a second
// "leader" in the leader's own term, a term near 2^52, a snapshot whose checksum is right but whose
// image is garbage (and one whose checksum is wrong). Each is refused, logged and counted; no node
// stops, the cluster keeps serving, and a node that received the snapshot restarts fine.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { AppendEntries, InstallSnapshot, Message } from "../../src/core/types.ts";
import { AppendEntriesRequest, InstallSnapshotRequest } from "../../src/gen/raftkv/v1/peer.ts";
import { crc32c } from "../../src/lib/crc32c.ts";
import { checkKvImage } from "../../src/server/check-image.ts";
import { RealFileSystem } from "../../src/storage/real-file-system.ts";
import { verifyWal } from "../../src/storage/wal-dump.ts";
import { toWire } from "../../src/transport/codec.ts";
import { rawUnary, startCluster, type TestCluster, waitFor } from "./cluster.ts";

const APPEND = "/raftkv.v1.PeerService/AppendEntries";
const SNAPSHOT = "/raftkv.v1.PeerService/InstallSnapshot";
let c: TestCluster;

before(async () => {
  c = await startCluster({ size: 3, settings: { metricsPort: 0, snapshotChunkBytes: 64 * 1024 } });
});
after(() => c.close());

/** The incarnation of node `id`'s data folder (identity.json). */
function incarnationOf(id: number): string {
  const identity = JSON.parse(readFileSync(join(c.configs[id]!.dataDir, "identity.json"), "utf8")) as {
    incarnation?: string;
  };
  return identity.incarnation ?? "";
}

/** A forged message as the member it claims to come from would send it, incarnations included: once the
 *  leader has bound the members to their folders, a message without them is refused before any of the
 *  checks these tests are about (senderIncarnation). */
function wire(m: Message): Buffer {
  const body = toWire(m, "sec", { from: incarnationOf(m.from), to: incarnationOf(m.to) }).body;
  if (body?.$case === "appendEntries") return Buffer.from(AppendEntriesRequest.encode(body.value).finish());
  if (body?.$case === "installSnapshot")
    return Buffer.from(InstallSnapshotRequest.encode(body.value).finish());
  throw new Error(`no unary request for ${m.type}`);
}

async function refusedCount(node: number, reason: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${c.nodes[node]!.metricsPort}/metrics`)).text();
  const line = text
    .split("\n")
    .find((l) => l.startsWith(`raftkv_peer_messages_refused_total{reason="${reason}"}`));
  return line === undefined ? 0 : Number(line.split(" ").pop());
}

async function writesWork(tag: string): Promise<void> {
  const kv = c.client({ timeoutMs: 20_000 });
  await kv.put(`after-${tag}`, "ok");
  assert.equal(await kv.getString(`after-${tag}`), "ok");
}

test("finding 1: an AppendEntries claiming a second leader in the leader's own term is refused, the leader stays up", async () => {
  const leader = await c.leader();
  const v = c.nodes[leader]!.view();
  const other = [0, 1, 2].find((i) => i !== leader)!;
  const forged: AppendEntries = {
    type: "append",
    from: other,
    to: leader,
    term: v.term,
    prevLogIndex: v.lastLogIndex,
    prevLogTerm: v.term,
    entries: [],
    leaderCommit: v.commitIndex,
    round: 1,
  };
  const before = await refusedCount(leader, "secondLeader");
  await rawUnary(c.addresses[leader]!, APPEND, wire(forged));
  await waitFor("the refusal to be counted", async () =>
    (await refusedCount(leader, "secondLeader")) === before + 1 ? true : undefined,
  );
  // The log is written asynchronously: the line may reach the file a moment after the count.
  await waitFor("one log line to say so", async () =>
    c
      .log(leader)
      .split("\n")
      .some((l) => l.includes("refused a peer message") && l.includes('"reason":"secondLeader"'))
      ? true
      : undefined,
  );
  assert.equal(c.nodes[leader]!.view().role, "leader");
  assert.equal(c.nodes[leader]!.view().term, v.term);
  await writesWork("second-leader");
});

test("finding 2: a term of 2^52 is refused; the cluster keeps its term and keeps electing", async () => {
  const leader = await c.leader();
  const follower = [0, 1, 2].find((i) => i !== leader)!;
  const other = [0, 1, 2].find((i) => i !== leader && i !== follower)!;
  const term = c.nodes[follower]!.view().term;
  const before = await refusedCount(follower, "termJump");
  const forged: AppendEntries = {
    type: "append",
    from: other,
    to: follower,
    term: 2 ** 52,
    prevLogIndex: 0,
    prevLogTerm: 0,
    entries: [],
    leaderCommit: 0,
    round: 1,
  };
  await rawUnary(c.addresses[follower]!, APPEND, wire(forged));
  await waitFor("the refusal to be counted", async () =>
    (await refusedCount(follower, "termJump")) === before + 1 ? true : undefined,
  );
  for (const n of c.nodes) assert.ok(n!.view().term < 2 ** 40, `node ${n!.view().id} kept a sane term`);
  assert.equal(c.nodes[follower]!.view().term, term);
  await writesWork("term");
  // Elections still work: stop the leader, another takes over.
  await c.stopNode(leader);
  await writesWork("term-new-leader");
  await c.start(leader);
  await c.leader();
});

/** A whole snapshot in one chunk, from a member that is not the leader, in a term above the cluster's. */
function forgedSnapshot(to: number, from: number, image: Uint8Array, crc: number): InstallSnapshot {
  const v = c.nodes[to]!.view();
  return {
    type: "snapshot",
    from,
    to,
    term: v.term + 1,
    meta: { index: v.commitIndex + 1000, term: v.term + 1, sizeBytes: image.length, crc32c: crc },
    offset: 0,
    data: image,
    length: image.length,
    done: true,
    round: 1,
  };
}

test("finding 3: a snapshot whose checksum is right but whose image is garbage is refused; the node runs and restarts", async () => {
  const leader = await c.leader();
  const target = [0, 1, 2].find((i) => i !== leader)!;
  const from = [0, 1, 2].find((i) => i !== leader && i !== target)!;
  const garbage = new Uint8Array(4096).map((_, i) => (i * 7919) & 0xff);
  const before = await refusedCount(target, "snapshotRejected");
  await rawUnary(
    c.addresses[target]!,
    SNAPSHOT,
    wire(forgedSnapshot(target, from, garbage, crc32c(garbage))),
  );
  await waitFor("the bad snapshot to be refused", async () =>
    (await refusedCount(target, "snapshotRejected")) === before + 1 ? true : undefined,
  );
  assert.ok(c.nodes[target] !== null, "the node is still running");
  assert.notEqual(c.nodes[target]!.view().snapshotIndex, c.nodes[target]!.view().commitIndex + 1000);
  await writesWork("garbage-snapshot");
  // A wrong checksum: refused the same way (it used to stop the node).
  await rawUnary(c.addresses[target]!, SNAPSHOT, wire(forgedSnapshot(target, from, garbage, 12345)));
  await waitFor("the second bad snapshot to be refused", async () =>
    (await refusedCount(target, "snapshotRejected")) === before + 2 ? true : undefined,
  );
  // The folder is one a node starts on, and wal verify (which now decodes the image too) agrees.
  await c.stopNode(target);
  const verdict = await verifyWal(new RealFileSystem(), c.configs[target]!.dataDir, checkKvImage);
  assert.deepEqual(verdict.problems, []);
  assert.equal(verdict.ok, true);
  await c.start(target);
  await waitFor("the restarted node to catch up", () => {
    const l = c.nodes.find((n) => n?.view().role === "leader");
    const t = c.nodes[target]?.view();
    return l !== undefined && t !== undefined && t.appliedIndex >= l!.view().commitIndex - 5
      ? true
      : undefined;
  });
  await writesWork("after-restart");
});
