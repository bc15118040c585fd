// Scenario tests for the core, named after the Raft paper (§) and thesis sections they check.

import assert from "node:assert/strict";
import { test } from "node:test";
import { defaultCoreConfig, maxSafeLeaseTicks, validateCoreConfig } from "./config.ts";
import { Raft } from "./raft.ts";
import { followerBehindSnapshot, TestCluster } from "./test-cluster.ts";
import type { Entry, Message } from "./types.ts";

const enc = new TextEncoder();
const cmd = (s: string): Uint8Array => enc.encode(s);
const commands = (entries: readonly Entry[]): string[] =>
  entries.filter((e) => e.kind === "command").map((e) => new TextDecoder().decode(e.data));

test("§5.2 leader election: one leader, which appends a NO-OP in its term (§8)", () => {
  const c = new TestCluster(3);
  c.run(200);
  const leaders = c.leaders();
  assert.equal(leaders.length, 1);
  const l = c.raft(leaders[0]!);
  const term = l.softState().term;
  const noop = l.log.entry(1);
  assert.equal(noop?.kind, "noop");
  assert.equal(noop?.term, term);
  for (const id of c.ids) assert.equal(c.raft(id).softState().leaderId, leaders[0]);
});

test("§5.2 randomized election timeouts come from the seeded PRNG: same seed, same election", () => {
  const a = new TestCluster(5);
  const b = new TestCluster(5);
  a.run(150);
  b.run(150);
  assert.deepEqual(a.leaders(), b.leaders());
  assert.equal(a.raft(a.leaders()[0]!).softState().term, b.raft(b.leaders()[0]!).softState().term);
});

test("§5.3 log replication: a proposal commits on a majority and is applied everywhere in order", () => {
  const c = new TestCluster(3);
  c.elect(0);
  for (const s of ["a", "b", "c"]) assert.ok(c.raft(0).propose(cmd(s)).ok);
  c.deliverAll();
  c.run(10);
  for (const id of c.ids) assert.deepEqual(commands(c.node(id).applied), ["a", "b", "c"]);
});

test("§5.3 commit needs a majority: with both followers cut off nothing commits", () => {
  const c = new TestCluster(3);
  c.elect(0);
  c.run(5);
  c.cut.add("*->1").add("*->2");
  const before = c.raft(0).log.committed;
  c.raft(0).propose(cmd("x"));
  c.deliverAll();
  assert.equal(c.raft(0).log.committed, before);
  c.heal();
  c.run(10);
  assert.ok(c.raft(0).log.committed > before);
});

test("§5.3 a follower's conflicting suffix is replaced by the leader's entries", () => {
  const c = new TestCluster(3);
  c.elect(0);
  c.run(5);
  // Node 0 appends entries no one else sees, then loses leadership.
  c.isolate(0);
  c.raft(0).propose(cmd("lost1"));
  c.raft(0).propose(cmd("lost2"));
  c.flush();
  c.inbox = [];
  c.heal();
  c.isolate(0);
  c.elect(1);
  c.raft(1).propose(cmd("kept"));
  c.deliverAll();
  c.heal();
  c.run(80);
  for (const id of c.ids) {
    assert.ok(commands(c.node(id).applied).includes("kept"));
    assert.ok(!commands(c.node(id).applied).includes("lost1"));
  }
  assert.equal(c.raft(0).log.lastIndex(), c.raft(1).log.lastIndex());
});

test("§5.4.1 election restriction: a node with a stale log cannot win", () => {
  const c = new TestCluster(3);
  c.elect(0);
  c.cut.add("0->2");
  c.raft(0).propose(cmd("a"));
  c.deliverAll();
  c.run(3);
  c.heal();
  // Node 2 lacks "a": it may campaign, but 0 and 1 refuse it (§5.4.1).
  const vote: Message = {
    type: "vote",
    from: 2,
    to: 1,
    term: 99,
    preVote: false,
    lastLogIndex: c.raft(2).log.lastIndex(),
    lastLogTerm: c.raft(2).log.lastTerm(),
    transfer: true,
  };
  c.raft(1).step(vote);
  c.flush();
  const reply = c.inbox.find((m) => m.type === "voteResponse" && m.from === 1 && m.to === 2);
  assert.ok(reply !== undefined && reply.type === "voteResponse");
  assert.equal(reply.granted, false);
});

test("§5.4.2 (Figure 8): a leader does not commit an old-term entry by counting replicas", () => {
  const c = new TestCluster(3);
  c.elect(0);
  c.run(3);
  // Term t: node 0 appends x and replicates it to node 1 only, but does not learn that it did.
  c.cut.add("0->2").add("1->0");
  c.raft(0).propose(cmd("x"));
  c.deliverAll();
  const xIndex = c.raft(0).log.lastIndex();
  assert.equal(c.raft(1).log.lastIndex(), xIndex);
  // Node 1 becomes leader of a new term without node 0; its NO-OP is not replicated yet.
  c.heal();
  c.isolate(0);
  c.elect(1, (m) => m.type === "vote" || m.type === "voteResponse");
  const t1 = c.raft(1).softState().term;
  // Replicate only the old-term entry x (not the new NO-OP) to node 2 by hand: even on a
  // majority, x must not commit until an entry of the current term does.
  const l1 = c.raft(1);
  const x = l1.log.entry(xIndex)!;
  assert.ok(x.term < t1);
  c.raft(2).step({
    type: "append",
    from: 1,
    to: 2,
    term: t1,
    prevLogIndex: xIndex - 1,
    prevLogTerm: l1.log.term(xIndex - 1)!,
    entries: [x],
    leaderCommit: 0,
    round: 0,
  });
  c.flush();
  const ack = c.inbox.find((m) => m.type === "appendResponse" && m.from === 2 && m.to === 1)!;
  c.inbox = [];
  l1.step(ack);
  c.flush();
  assert.ok(l1.log.committed < xIndex, "old-term entry committed by counting replicas");
  // Once the current-term NO-OP reaches a majority, both commit.
  c.heal();
  c.isolate(0);
  c.run(10);
  assert.ok(l1.log.committed > xIndex);
});

test("thesis §9.6 pre-vote: a node rejoining from a partition does not disturb the leader's term", () => {
  const c = new TestCluster(3);
  c.elect(0);
  c.run(5);
  const term = c.raft(0).softState().term;
  c.isolate(2);
  for (let i = 0; i < 300; i++) {
    for (const id of c.ids) c.raft(id).tick();
    c.deliverAll();
  }
  assert.equal(c.raft(2).softState().term, term, "isolated node raised its term without pre-vote success");
  c.heal();
  c.run(30);
  assert.equal(c.raft(0).softState().role, "leader");
  assert.equal(c.raft(0).softState().term, term);
});

test("thesis §6.4.1 leases: followers that hear from a live leader ignore vote requests", () => {
  const c = new TestCluster(3);
  c.elect(0);
  c.run(5);
  const term = c.raft(1).softState().term;
  c.raft(1).step({
    type: "vote",
    from: 2,
    to: 1,
    term: term + 5,
    preVote: false,
    lastLogIndex: 100,
    lastLogTerm: term + 4,
    transfer: false,
  });
  c.flush();
  assert.equal(c.raft(1).softState().term, term);
  assert.equal(c.inbox.filter((m) => m.type === "voteResponse").length, 0);
});

test("thesis §6.4.1 leases: the lease holds after a majority acknowledges a round, and lapses without one", () => {
  const c = new TestCluster(3);
  c.elect(0);
  c.run(10);
  const st = c.raft(0).leaseStatus();
  assert.ok(st.ok);
  const cfg = defaultCoreConfig(0, [0, 1, 2], 1);
  c.isolate(0);
  for (let i = 0; i < cfg.leaseTicks + 1; i++) c.tick(0);
  assert.deepEqual(c.raft(0).leaseStatus(), { ok: false, reason: "noLease" });
  // Check quorum (thesis §6.2): without acknowledgements for an election timeout it steps down.
  for (let i = 0; i < cfg.electionTimeoutMinTicks; i++) c.tick(0);
  assert.equal(c.raft(0).softState().role, "follower");
});

test("thesis §6.4.1 leases: a new leader waits out the old lease its voters report (leadership transfer)", () => {
  const c = new TestCluster(3);
  c.elect(0);
  c.run(10);
  assert.ok(c.raft(0).leaseStatus().ok);
  assert.ok(c.raft(0).transferLeadership(1));
  c.deliverAll();
  assert.equal(c.raft(1).softState().role, "leader");
  const noop = c.raft(1).log.lastIndex();
  c.run(3);
  assert.deepEqual(c.raft(1).leaseStatus(), { ok: false, reason: "waitingOldLease" });
  // Until the old lease has run out the new leader commits nothing, not even its NO-OP.
  assert.ok(c.raft(1).log.committed < noop);
  assert.ok(c.raft(2).log.lastIndex() < noop, "new leader replicated entries while the old lease held");
  c.run(40);
  assert.ok(c.raft(1).log.committed >= noop);
  assert.ok(c.raft(1).leaseStatus().ok);
});

test("thesis §6.4.1 leases: a just-elected leader serves no lease read before its NO-OP commits", () => {
  const c = new TestCluster(3);
  c.elect(0, (m) => m.type === "vote" || m.type === "voteResponse");
  assert.equal(c.raft(0).softState().role, "leader");
  assert.deepEqual(c.raft(0).leaseStatus(), { ok: false, reason: "noopNotApplied" });
  c.run(12); // the first append was lost with the dropped messages: the next heartbeat round retries
  assert.ok(c.raft(0).leaseStatus().ok);
});

test("thesis §6.4 ReadIndex: a read becomes safe after a majority confirms a later round", () => {
  const c = new TestCluster(3);
  c.elect(0);
  c.run(5);
  assert.equal(c.raft(0).readIndex(7), null);
  c.flush();
  assert.equal(c.node(0).readStates.length, 0, "released before the round was acknowledged");
  c.deliverAll();
  assert.deepEqual(
    c.node(0).readStates.map((r) => r.requestId),
    [7],
  );
  assert.equal(c.node(0).readStates[0]!.index, c.raft(0).log.committed);
  // A follower refuses with the leader's id.
  assert.deepEqual(c.raft(1).readIndex(8), { requestId: 8, reason: "notLeader", leaderId: 0 });
});

test("thesis §6.4 ReadIndex: a leader cut off from the majority never releases the read", () => {
  const c = new TestCluster(3);
  c.elect(0);
  c.run(5);
  c.isolate(0);
  c.raft(0).readIndex(1);
  for (let i = 0; i < 20; i++) c.tick(0);
  c.deliverAll();
  assert.equal(c.node(0).readStates.length, 0);
});

/** Node 2 isolated while node 0 commits 10 entries, takes a snapshot of `imageBytes` (sent in 4-byte
 *  chunks) and compacts its log; then the links heal, so node 2 can only catch up by snapshot. */
test("thesis §5 InstallSnapshot: a follower behind the leader's compacted log catches up by snapshot", () => {
  const { c, l, idx } = followerBehindSnapshot(10);
  c.run(40);
  assert.equal(c.node(2).snapshot?.index, idx);
  assert.equal(c.raft(2).log.committed, l.log.committed);
  l.propose(cmd("after"));
  c.run(10);
  assert.ok(commands(c.node(2).applied).includes("after"));
});

test("InstallSnapshot: a follower slow to answer gets one chunk at a time, not a new chain of chunks per heartbeat", () => {
  const { c, idx } = followerBehindSnapshot(40); // 10 chunks of 4 bytes
  const follower = c.raft(2);
  const step = follower.step.bind(follower);
  let chunksDelivered = 0;
  follower.step = (m: Message) => {
    if (m.type === "snapshot") chunksDelivered++;
    return step(m);
  };
  // Node 2 is slow: for 10 heartbeat intervals its chunks wait undelivered (it is not ticked, so it
  // does not time out); the leader and node 1 run on.
  const toSlow = (m: Message): boolean => m.type === "snapshot" && m.to === 2;
  const hb = defaultCoreConfig(0, [0, 1, 2], 1).heartbeatTicks;
  for (let t = 0; t < 10 * hb; t++) {
    c.tick(0);
    c.tick(1);
    c.deliverAll((m) => !toSlow(m));
  }
  const waiting = c.inbox.filter(toSlow).length;
  assert.ok(
    waiting >= 1 && waiting <= 6,
    `${waiting} chunks wait for the slow follower (one per 2 heartbeats at most)`,
  );
  c.run(60);
  assert.equal(c.node(2).snapshot?.index, idx);
  // 10 chunks, plus the resends that waited: answers to duplicates start no further chains.
  assert.ok(
    chunksDelivered <= 10 + waiting + 2,
    `${chunksDelivered} chunks delivered for a 10-chunk snapshot`,
  );
});

test("thesis §6.2 check-quorum: a follower receiving a snapshot gets heartbeats, so a leader whose quorum needs it stays leader (sim seed 212)", () => {
  const { c, l, idx } = followerBehindSnapshot(40); // 10 chunks of 4 bytes
  // Node 1 is gone: the quorum is node 0 with node 2, which can only catch up by snapshot. The chunks
  // are slow to leave (the leader's host reads each from its disk, behind its WAL writes): none gets
  // out for three election timeouts, while every other message flows.
  c.isolate(1);
  const chunk = (m: Message): boolean => m.type === "snapshot" && m.to === 2;
  const { electionTimeoutMaxTicks } = defaultCoreConfig(0, [0, 1, 2], 1);
  const term = l.softState().term;
  for (let t = 0; t < 3 * electionTimeoutMaxTicks; t++) {
    c.tick(0);
    c.tick(2);
    c.deliverAll((m) => !chunk(m));
  }
  // It used to step down every election timeout (node 2 acknowledged rounds only by answering chunks),
  // and each new leader started the snapshot over: with new voters on empty disks no leader served.
  assert.deepEqual(
    [l.softState().role, l.softState().term],
    ["leader", term],
    "the leader stepped down: node 2's answers did not count",
  );
  assert.ok(l.leaseStatus().ok, `no lease: ${JSON.stringify(l.leaseStatus())}`);
  // The heartbeats' rejections (node 2 lacks the entry they vouch for) leave the snapshot under way.
  const p2 = l.followers().find((p) => p.id === 2);
  assert.equal(p2?.state, "snapshot", `node 2's progress: ${JSON.stringify(p2)}`);
  assert.ok(c.inbox.some(chunk), "no chunk waits for node 2");
  // The chunks get out: node 2 installs the snapshot and catches up.
  c.run(60);
  assert.equal(c.node(2).snapshot?.index, idx);
  assert.equal(c.raft(2).log.committed, l.log.committed);
});

test("§5.3 a lost append in replicate state is sent again: the leader falls back to probing (as etcd does)", () => {
  const c = new TestCluster(3);
  c.elect(0);
  c.run(6);
  const l = c.raft(0);
  assert.equal(l.followers().find((p) => p.id === 2)?.state, "replicate");
  // The last append to node 2 is lost, and nothing else is proposed after it.
  l.propose(cmd("last"));
  c.flush();
  const lost = c.inbox.filter((m) => m.type === "append" && m.to === 2 && m.entries.length > 0);
  assert.equal(lost.length, 1);
  c.inbox = c.inbox.filter((m) => !lost.includes(m));
  c.deliverAll();
  assert.ok(!commands(c.node(2).applied).includes("last"));
  // Heartbeats find the gap (or the stalled window): node 2 gets the entry within a few of them.
  const { heartbeatTicks } = defaultCoreConfig(0, [0, 1, 2], 1);
  c.run(4 * heartbeatTicks);
  assert.ok(commands(c.node(2).applied).includes("last"), "node 2 never got the lost entry");
  assert.equal(c.raft(2).log.committed, l.log.committed);
});

test("thesis §5.3 InstallSnapshot: a follower keeps the entries after a snapshot it already holds", () => {
  const c = new TestCluster(3);
  c.elect(0);
  c.run(6);
  for (let i = 0; i < 6; i++) c.raft(0).propose(cmd(`v${i}`));
  c.deliverAll();
  c.cut.add("0->2"); // node 2 holds the entries but has not heard they committed
  const l = c.raft(0);
  const at = l.log.committed - 3;
  assert.ok(c.raft(2).log.committed < at);
  // An old snapshot that reaches a follower late must not erase entries it acknowledged.
  const f = c.raft(2);
  const lastBefore = f.log.lastIndex();
  f.step({
    type: "snapshot",
    from: 0,
    to: 2,
    term: l.softState().term,
    meta: { index: at, term: l.log.term(at)!, sizeBytes: 1, crc32c: 0 },
    offset: 0,
    data: new Uint8Array(1),
    length: 1,
    done: true,
    round: 0,
  });
  c.flush();
  assert.equal(f.log.lastIndex(), lastBefore);
  assert.equal(c.node(2).snapshot, null, "installed a snapshot it did not need");
});

test("commit index never decreases and nothing is appended behind it (asserted in the core)", () => {
  const c = new TestCluster(5);
  c.run(100);
  let lastCommit = new Map<number, number>();
  for (let round = 0; round < 50; round++) {
    const l = c.leaders()[0];
    if (l !== undefined) c.raft(l).propose(cmd(`r${round}`));
    if (round % 10 === 3) c.isolate(round % 5);
    if (round % 10 === 7) c.heal();
    c.run(5);
    const now = new Map(c.ids.map((id) => [id, c.raft(id).log.committed]));
    for (const [id, v] of now) assert.ok(v >= (lastCommit.get(id) ?? 0));
    lastCommit = now;
  }
});

test("configuration: unsafe leases and impossible timings are refused with the setting named", () => {
  const base = defaultCoreConfig(0, [0, 1, 2], 1);
  assert.throws(
    () => validateCoreConfig({ ...base, leaseTicks: base.electionTimeoutMinTicks }),
    /leaseTicks/,
  );
  assert.throws(
    () => validateCoreConfig({ ...base, heartbeatTicks: base.electionTimeoutMinTicks }),
    /heartbeatTicks/,
  );
  assert.throws(() => validateCoreConfig({ ...base, peers: [0, 1, 1] }), /duplicate/);
  assert.throws(() => validateCoreConfig({ ...base, driftBound: 0.9 }), /driftBound/);
  assert.throws(
    () => validateCoreConfig({ ...base, electionTimeoutMaxTicks: 10 }),
    /electionTimeoutMaxTicks/,
  );
  assert.equal(maxSafeLeaseTicks(30, 1.1), 25);
  assert.doesNotThrow(
    () =>
      new Raft(base, { hardState: { term: 0, votedFor: null, commitIndex: 0 }, snapshot: null, entries: [] }),
  );
});

test("a single-node cluster elects itself and commits on its own", () => {
  const r = new Raft(defaultCoreConfig(0, [0], 1), {
    hardState: { term: 0, votedFor: null, commitIndex: 0 },
    snapshot: null,
    entries: [],
  });
  for (let i = 0; i < 100 && r.softState().role !== "leader"; i++) r.tick();
  assert.equal(r.softState().role, "leader");
  r.propose(cmd("solo"));
  const applied: Entry[] = [];
  for (let i = 0; i < 5 && r.hasReady(); i++) {
    const rd = r.ready();
    applied.push(...rd.committedEntries);
    r.advance(rd);
  }
  assert.deepEqual(commands(applied), ["solo"]);
});

test("Figure 2 AppendEntries rule 5: an old message whose entries end before a stale suffix commits only what it verified", () => {
  // TESTING.md's "leaderCommit beyond the entries sent". Node 1 holds 1..3 of term 1 from an old
  // leader (2 and 3 never committed). The leader of term 2 holds 1@1 and then entries of its own term,
  // and has committed through 3 elsewhere; a delayed, duplicated or small (maxEntriesPerMessage) append
  // carries only entry 1, with leaderCommit 3. It verifies entry 1 alone, so node 1 may commit only
  // through 1 (min(leaderCommit, index of last new entry)), never its own stale 2@1 and 3@1.
  const entry = (index: number, term: number, s: string): Entry => ({
    index,
    term,
    kind: "command",
    data: cmd(s),
  });
  const f = new Raft(defaultCoreConfig(1, [0, 1, 2], 7), {
    hardState: { term: 0, votedFor: null, commitIndex: 0 },
    snapshot: null,
    entries: [],
  });
  const base = { to: 1, round: 0 } as const;
  const settle = (): Message[] => {
    const out: Message[] = [];
    while (f.hasReady()) {
      const rd = f.ready();
      out.push(...rd.messages);
      f.advance(rd);
    }
    return out;
  };
  f.step({
    ...base,
    type: "append",
    from: 2,
    term: 1,
    prevLogIndex: 0,
    prevLogTerm: 0,
    entries: [entry(1, 1, "a"), entry(2, 1, "stale-b"), entry(3, 1, "stale-c")],
    leaderCommit: 0,
  });
  settle();
  assert.equal(f.log.lastIndex(), 3);
  const old = {
    ...base,
    type: "append",
    from: 0,
    term: 2,
    prevLogIndex: 0,
    prevLogTerm: 0,
    entries: [entry(1, 1, "a")],
    leaderCommit: 3,
  } as const;
  f.step(old);
  const replies = settle().filter((m) => m.type === "appendResponse");
  assert.equal(
    f.log.committed,
    1,
    "committed its stale suffix on the word of a message that did not verify it",
  );
  assert.equal(
    f.log.lastIndex(),
    3,
    "the matching entry must not truncate the suffix (§5.3: only a conflict does)",
  );
  assert.deepEqual(
    replies.map((m) => [m.to, m.success, m.matchIndex]),
    [[0, true, 1]],
  );
  // The same message replayed changes nothing.
  f.step(old);
  settle();
  assert.equal(f.log.committed, 1);
  // The leader's next append replaces the stale suffix, and only then does 3 commit.
  f.step({
    ...base,
    type: "append",
    from: 0,
    term: 2,
    prevLogIndex: 1,
    prevLogTerm: 1,
    entries: [entry(2, 2, "b"), entry(3, 2, "c")],
    leaderCommit: 3,
  });
  settle();
  assert.equal(f.log.committed, 3);
  assert.deepEqual([f.log.entry(2)?.term, f.log.entry(3)?.term], [2, 2]);
});

test("ticksToNextTimeout: the ticks before it change nothing a host can see (so it may sleep through them)", () => {
  // Random runs of a 3-node cluster, with leader isolation, transfers, reads and membership changes
  // (removals, learners) mixed in; at every step
  // each node is ticked k-1 times (k = ticksToNextTimeout()) and must stay exactly as it was.
  for (let seed = 1; seed <= 20; seed++) {
    const c = new TestCluster(3);
    let x = seed;
    const rand = (n: number): number => {
      x = (x * 1103515245 + 12345) % 2147483648;
      return x % n;
    };
    for (let step = 0; step < 150; step++) {
      const id = rand(3);
      const r = c.raft(id);
      c.flush();
      const k = r.ticksToNextTimeout();
      assert.ok(Number.isSafeInteger(k) && k >= 1, `seed ${seed} step ${step}: k = ${k}`);
      const before = JSON.stringify([r.softState(), r.leaseStatus(), r.hardState()]);
      for (let i = 1; i < k; i++) {
        r.tick();
        assert.equal(
          r.hasReady(),
          false,
          `seed ${seed} step ${step}: node ${id} had output at tick ${i} of ${k}`,
        );
        const now = JSON.stringify([r.softState(), r.leaseStatus(), r.hardState()]);
        assert.equal(now, before, `seed ${seed} step ${step}: node ${id} changed at tick ${i} of ${k}`);
      }
      switch (rand(10)) {
        case 0:
          c.isolate(rand(3));
          break;
        case 1:
          c.heal();
          break;
        case 2:
          r.transferLeadership(rand(3));
          break;
        case 3:
          r.readIndex(step);
          break;
        case 4:
          r.propose(cmd(`v${step}`));
          break;
        case 5: {
          // Membership: a removed node (or a learner) never campaigns, so it has its own timeouts.
          const who = rand(3);
          const change =
            rand(2) === 0 ? { type: "remove" as const, id: who } : { type: "promote" as const, id: who };
          r.proposeConfChange([change]);
          break;
        }
        case 6:
          r.proposeConfChange([{ type: "addLearner", id: rand(3), address: "127.0.0.1:1" }]);
          break;
        default:
          break;
      }
      for (const o of c.ids) c.raft(o).tick();
      if (rand(2) === 0) c.deliverAll();
      else c.flush();
    }
  }
});
