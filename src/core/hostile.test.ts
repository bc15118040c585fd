// Messages a correct peer never sends (a forged or broken one does): each is refused and reported in
// Ready.refused, changes nothing, and trips no assertion (assertions are for our own bugs). Issue 12.

import assert from "node:assert/strict";
import { test } from "node:test";
import { defaultCoreConfig } from "./config.ts";
import { MAX_TERM, MAX_TERM_JUMP } from "./raft.ts";
import { followerBehindSnapshot, TestCluster } from "./test-cluster.ts";
import type { AppendEntries, Entry, Message } from "./types.ts";

const enc = new TextEncoder();
const cmd = (s: string): Uint8Array => enc.encode(s);

function append(from: number, to: number, term: number, over: Partial<AppendEntries> = {}): AppendEntries {
  return {
    type: "append",
    from,
    to,
    term,
    prevLogIndex: 0,
    prevLogTerm: 0,
    entries: [],
    leaderCommit: 0,
    round: 0,
    ...over,
  };
}

/** A 3-node cluster with node 0 leading and a few entries committed everywhere. */
function settled(): TestCluster {
  const c = new TestCluster(3);
  c.elect(0);
  for (const s of ["a", "b", "c"]) c.raft(0).propose(cmd(s));
  c.deliverAll();
  c.run(10);
  return c;
}

test("§5.2 one leader per term: an AppendEntries in the leader's own term from another member is refused, not asserted", () => {
  const c = settled();
  const l = c.raft(0);
  const term = l.softState().term;
  const before = l.log.lastIndex();
  l.step(append(1, 0, term, { prevLogIndex: before, prevLogTerm: l.log.lastTerm(), leaderCommit: before }));
  c.flush();
  assert.equal(l.softState().role, "leader");
  assert.equal(l.log.lastIndex(), before);
  assert.deepEqual(
    c.node(0).refused.map((r) => [r.reason, r.from, r.type]),
    [["secondLeader", 1, "append"]],
  );
  // The cluster goes on committing.
  l.propose(cmd("after"));
  c.deliverAll();
  c.run(5);
  assert.equal(c.raft(1).log.committed, l.log.lastIndex());
});

test("§5.2 one leader per term: a follower refuses entries from a second node claiming its leader's term", () => {
  const c = settled();
  const f = c.raft(2);
  const term = f.softState().term;
  const last = f.log.lastIndex();
  const forged: Entry = { index: last + 1, term, kind: "command", data: cmd("forged") };
  f.step(append(1, 2, term, { prevLogIndex: last, prevLogTerm: f.log.lastTerm(), entries: [forged] }));
  c.flush();
  assert.equal(f.log.lastIndex(), last, "the forged entry was not appended");
  assert.equal(f.softState().leaderId, 0);
  assert.equal(c.node(2).refused[0]?.reason, "secondLeader");
});

test("terms stay far below 2^53: one message with a huge term is refused and the cluster keeps electing", () => {
  const c = settled();
  const f = c.raft(1);
  const term = f.softState().term;
  f.step(append(2, 1, MAX_TERM));
  f.step(append(2, 1, term + MAX_TERM_JUMP + 1));
  c.flush();
  assert.equal(f.softState().term, term);
  assert.deepEqual(
    c.node(1).refused.map((r) => r.reason),
    ["termJump", "termJump"],
  );
  // A jump within the bound is a term like any other: adopted, and elections go on above it.
  const high = term + MAX_TERM_JUMP;
  c.raft(0).step({
    type: "vote",
    from: 2,
    to: 0,
    term: high,
    preVote: false,
    lastLogIndex: 0,
    lastLogTerm: 0,
    transfer: true,
  });
  c.flush();
  assert.equal(c.raft(0).softState().term, high);
  c.inbox = [];
  c.run(300);
  assert.equal(c.leaders().length, 1);
  assert.ok(c.raft(c.leaders()[0]!).softState().term > high);
});

test("§5.4 Leader Completeness: entries that would replace committed ones are refused, not asserted", () => {
  const c = settled();
  const f = c.raft(2);
  const committed = f.log.committed;
  assert.ok(committed >= 3);
  const term = f.softState().term + 1;
  // A 'leader' of a later term whose log disagrees below our commit index.
  const bad: Entry[] = [{ index: 2, term, kind: "command", data: cmd("rewrite history") }];
  f.step(append(1, 2, term, { prevLogIndex: 1, prevLogTerm: f.log.term(1)!, entries: bad, leaderCommit: 2 }));
  c.flush();
  assert.equal(f.log.committed, committed);
  assert.notEqual(f.log.entry(2)?.term, term);
  assert.equal(c.node(2).refused.at(-1)?.reason, "conflictsWithCommitted");
});

test("a response acknowledging entries beyond the leader's log is refused (it used to send the leader looking for a snapshot it did not have)", () => {
  const c = settled();
  const l = c.raft(0);
  const term = l.softState().term;
  const ack: Message = {
    type: "appendResponse",
    from: 1,
    to: 0,
    term,
    success: true,
    matchIndex: l.log.lastIndex() + 1000,
    conflictTerm: 0,
    conflictIndex: 0,
    round: 0,
  };
  l.step(ack);
  l.step({ ...ack, success: false, matchIndex: 1, conflictIndex: l.log.lastIndex() + 1000 });
  l.step({
    type: "snapshotResponse",
    from: 1,
    to: 0,
    term,
    snapshotIndex: 1e9,
    nextOffset: 0,
    installed: true,
    round: 0,
  });
  c.flush();
  assert.deepEqual(
    c.node(0).refused.map((r) => r.reason),
    ["beyondOurLog", "beyondOurLog", "beyondOurLog"],
  );
  assert.equal(l.softState().role, "leader");
  l.propose(cmd("after"));
  c.deliverAll();
  c.run(5);
  assert.equal(c.raft(1).log.committed, l.log.lastIndex());
});

test("thesis §6.4.1: a vote reporting an impossible old lease is refused (it would stop the new leader committing)", () => {
  const c = new TestCluster(3);
  c.elect(0);
  const l = c.raft(0);
  l.step({
    type: "append",
    from: 1,
    to: 0,
    term: l.softState().term + 1,
    prevLogIndex: 0,
    prevLogTerm: 0,
    entries: [],
    leaderCommit: 0,
    round: 0,
  });
  c.flush();
  // Node 0 is a follower of term t+1 now; make it campaign and answer with a forged grant.
  c.inbox = [];
  const cand = c.raft(0);
  for (let i = 0; i < 200 && cand.softState().role !== "candidate"; i++) {
    cand.tick();
    c.flush();
    const pre = c.inbox.filter((m) => m.type === "vote" && m.preVote);
    c.inbox = [];
    for (const m of pre)
      cand.step({
        type: "voteResponse",
        from: m.to,
        to: 0,
        term: m.term,
        preVote: true,
        granted: true,
        leaseRemainingTicks: 0,
      });
    c.flush();
  }
  assert.equal(cand.softState().role, "candidate");
  const term = cand.softState().term;
  cand.step({
    type: "voteResponse",
    from: 1,
    to: 0,
    term,
    preVote: false,
    granted: true,
    leaseRemainingTicks: 2 ** 40,
  });
  c.flush();
  assert.equal(cand.softState().role, "candidate", "the forged grant was not counted");
  assert.equal(c.node(0).refused.at(-1)?.reason, "badLeaseReport");
});

test("thesis §5.3 InstallSnapshot: a snapshot the host finds bad replaces nothing and is asked for again", () => {
  const { c, l, idx } = followerBehindSnapshot(10);
  let rejections = 0;
  c.checkSnapshot = (id) => (id === 2 && rejections++ < 2 ? "bad image" : null);
  const before = c.raft(2).log.lastIndex();
  c.run(80);
  assert.equal(rejections, 3, "rejected twice, then installed on the third transfer");
  assert.ok(before < idx);
  assert.equal(c.node(2).snapshot?.index, idx);
  assert.equal(c.raft(2).log.committed, l.log.committed);
  assert.deepEqual(
    c.node(2).refused.map((r) => r.reason),
    ["snapshotRejected", "snapshotRejected"],
  );
});

test("memory bounded by bytes: proposals beyond maxUncommittedBytes are refused, one is always accepted", () => {
  const c = new TestCluster(3, (cfg) => ({ ...cfg, maxUncommittedBytes: 100 }));
  c.elect(0);
  c.run(5);
  c.isolate(0);
  const l = c.raft(0);
  assert.ok(l.propose(new Uint8Array(500)).ok, "one proposal larger than the bound is accepted");
  const r = l.propose(new Uint8Array(1));
  assert.equal(r.ok, false);
  assert.equal(!r.ok && r.reason, "overloadedBytes");
  c.heal();
  c.run(10);
  assert.ok(l.propose(new Uint8Array(60)).ok, "accepted again once the backlog committed");
});

test("memory bounded by bytes: a follower's inflight window stops at maxInflightBytes", () => {
  const base = defaultCoreConfig(0, [0, 1, 2], 1);
  const c = new TestCluster(3, (cfg) => ({
    ...cfg,
    maxInflightBytes: 250,
    maxEntriesPerMessage: 1,
    maxPendingProposals: 1000,
  }));
  c.elect(0);
  c.run(5);
  assert.ok(base.maxInflightMessages > 10);
  const l = c.raft(0);
  for (let i = 0; i < 10; i++) l.propose(new Uint8Array(100));
  c.flush();
  const sent = c.inbox.filter((m) => m.type === "append" && m.to === 1 && m.entries.length > 0);
  assert.equal(sent.length, 3, "100-byte entries: 3 messages reach 300 >= 250 bytes in flight");
  c.deliverAll();
  c.run(20);
  assert.equal(c.raft(1).log.committed, l.log.lastIndex());
});
