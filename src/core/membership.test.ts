// Scenario tests for membership change (thesis §4.3 joint consensus, learners, removal), each naming the
// case it checks; and property tests of the configuration arithmetic.

import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  applyChanges,
  type ConfChange,
  decodeMembership,
  describeMembership,
  encodeMembership,
  incarnationOf,
  isVoter,
  leaveJoint,
  type Membership,
  unboundMembers,
  votersOnly,
} from "./membership.ts";
import { jointTally, jointValue, majority } from "./quorum.ts";
import { learnerBehind, type Raft } from "./raft.ts";
import { TestCluster } from "./test-cluster.ts";
import type { Entry, HardState, NodeId } from "./types.ts";

const enc = new TextEncoder();
const cmd = (s: string): Uint8Array => enc.encode(s);
const commands = (entries: readonly Entry[]): string[] =>
  entries.filter((e) => e.kind === "command").map((e) => new TextDecoder().decode(e.data));
const conf = (r: Raft): string => describeMembership(r.configuration().membership);

function change(c: TestCluster, leader: NodeId, changes: ConfChange[]): number {
  const r = c.raft(leader).proposeConfChange(changes);
  assert.ok(r.ok, `change refused: ${r.ok ? "" : r.detail}`);
  return r.index;
}

/** Deliver the messages queued now (one hop), honouring cut links. */
function hop(c: TestCluster): void {
  c.flush();
  const batch = c.inbox;
  c.inbox = [];
  for (const m of batch)
    if (!c.cut.has(`${m.from}->${m.to}`) && !c.cut.has(`*->${m.to}`) && !c.cut.has(`${m.from}->*`))
      c.raft(m.to).step(m);
  c.flush();
}

/** One hop at a time until `until` holds (at most 50 hops). */
function hopUntil(c: TestCluster, until: () => boolean): void {
  for (let i = 0; i < 50 && !until(); i++) {
    hop(c);
    if (c.inbox.length === 0) c.tick(c.leaders()[0] ?? 0);
  }
  assert.ok(until(), "condition not reached");
}

/** A 3-node cluster led by 0 with a few commands committed. */
function cluster3(): TestCluster {
  const c = new TestCluster(3);
  c.elect(0);
  c.run(5);
  for (const s of ["a", "b"]) c.raft(0).propose(cmd(s));
  c.deliverAll();
  c.run(5);
  return c;
}

test("thesis §4.2.1 learners: a learner added receives the log, counts in no quorum, and is promoted once caught up", () => {
  const c = cluster3();
  c.join(3);
  change(c, 0, [{ type: "addLearner", id: 3, address: "" }]);
  c.deliverAll();
  c.run(10);
  for (const id of c.ids) assert.equal(conf(c.raft(id)), "voters {0,1,2} learners {3}", `node ${id}`);
  assert.deepEqual(commands(c.node(3).applied), ["a", "b"]);
  // Not counted: with both voters cut off, the learner's acknowledgement commits nothing.
  c.cut.add("*->1").add("*->2");
  const before = c.raft(0).log.committed;
  c.raft(0).propose(cmd("x"));
  c.deliverAll();
  c.tick(0, 3);
  c.deliverAll();
  assert.equal(c.raft(0).log.committed, before, "a learner counted in the quorum");
  assert.equal(c.raft(3).log.lastIndex(), c.raft(0).log.lastIndex(), "the learner has the entry");
  c.heal();
  c.run(10);
  // Learners never campaign, however long they hear nothing.
  c.isolate(3);
  c.tick(3, 500);
  assert.equal(c.raft(3).softState().role, "follower");
  c.heal();
  c.run(10);
  change(c, 0, [{ type: "promote", id: 3 }]);
  c.deliverAll();
  c.run(10);
  for (const id of c.ids)
    assert.equal(conf(c.raft(id)), "voters {0,1,2,3}", `node ${id} left the joint config`);
  // Now counted: a majority of four is three, so the leader and one voter commit nothing.
  c.cut.add("*->2").add("*->3");
  const at = c.raft(0).log.committed;
  c.raft(0).propose(cmd("y"));
  c.deliverAll();
  assert.equal(c.raft(0).log.committed, at, "committed without a majority of four");
  c.heal();
  c.run(40);
  assert.ok(commands(c.node(3).applied).includes("y"), "the promoted learner applies what commits");
});

test("a learner far behind is not promoted (refused with the reason), and a second change waits for the first", () => {
  const c = cluster3();
  c.join(3);
  c.isolate(3);
  change(c, 0, [{ type: "addLearner", id: 3, address: "" }]);
  c.deliverAll();
  const early = c.raft(0).proposeConfChange([{ type: "promote", id: 3 }]);
  assert.ok(!early.ok && early.reason === "learnerBehind", `a short log: ${JSON.stringify(early)}`);
  for (let i = 0; i < 600; i++) c.raft(0).propose(cmd(`v${i}`));
  c.deliverAll();
  c.run(3);
  const r = c.raft(0).proposeConfChange([{ type: "promote", id: 3 }]);
  assert.ok(!r.ok && r.reason === "learnerBehind", JSON.stringify(r));
  // However short the log, a learner that never acknowledged an entry is behind (seen through etcdctl:
  // a learner at an address where nothing runs was promoted while the log had fewer than 512 entries).
  assert.equal(learnerBehind(0, 3), true);
  assert.equal(learnerBehind(20, 30), true, "under 90 % of the leader's log");
  assert.equal(learnerBehind(29, 30), false);
  assert.equal(learnerBehind(99_000, 100_000), true, "more than 512 entries behind");
  assert.match(r.detail, /learner 3 has \d+ of \d+ entries/);
  // Two changes at once: the second is refused while the first is in flight.
  c.heal();
  c.cut.add("0->1").add("0->2");
  change(c, 0, [{ type: "remove", id: 2 }]);
  const second = c.raft(0).proposeConfChange([{ type: "remove", id: 1 }]);
  assert.ok(!second.ok && second.reason === "changeInFlight", JSON.stringify(second));
  assert.match(second.detail, /in flight/);
  c.heal();
  c.run(20);
  assert.equal(conf(c.raft(0)), "voters {0,1} learners {3}");
  assert.ok(c.raft(0).proposeConfChange([{ type: "remove", id: 3 }]).ok, "free again once committed");
});

test("thesis §4.2.3 removing a follower: it leaves the quorum, and its campaigns afterwards are refused", () => {
  const c = cluster3();
  const term = c.raft(0).softState().term;
  change(c, 0, [{ type: "remove", id: 2 }]);
  c.deliverAll();
  c.run(10);
  assert.equal(conf(c.raft(0)), "voters {0,1}");
  assert.equal(conf(c.raft(1)), "voters {0,1}");
  // The leader no longer replicates to 2, and needs only 0 and 1 to commit.
  c.cut.add("*->2");
  c.raft(0).propose(cmd("after"));
  c.deliverAll();
  c.run(5);
  assert.ok(commands(c.node(1).applied).includes("after"));
  c.heal();
  // Node 2 may never learn that it was removed; when it times out, its messages are refused.
  c.node(0).refused.length = 0;
  for (let i = 0; i < 300; i++) {
    c.raft(2).tick();
    c.deliverAll();
  }
  c.run(5);
  assert.equal(c.leaders().includes(0), true);
  assert.equal(c.raft(0).softState().term, term, "the removed node disturbed no term");
  const refused = [...c.node(0).refused, ...c.node(1).refused];
  if (isVoter(c.raft(2).configuration().membership, 2)) {
    assert.ok(refused.some((r) => r.reason === "removedMember" && r.from === 2));
    assert.match(refused.find((r) => r.reason === "removedMember")!.detail, /add it as a new member/);
  } else
    assert.equal(c.raft(2).softState().role, "follower", "a node that knows it is removed never campaigns");
  // Its id is never reused.
  const again = c.raft(0).proposeConfChange([{ type: "addVoter", id: 2, address: "" }]);
  assert.ok(!again.ok && again.reason === "invalid" && /never reused/.test(again.detail));
});

test("thesis §4.2.2 removing the leader: it leads through the joint configuration, then steps down and hands over", () => {
  const c = cluster3();
  change(c, 0, [{ type: "remove", id: 0 }]);
  // Joint {0,1,2} -> {1,2}: the leader is only in the old configuration and keeps leading.
  const r0 = c.raft(0);
  hopUntil(c, () => conf(r0) === "joint {0,1,2} -> {1,2}");
  assert.equal(r0.softState().role, "leader", "leads through the joint configuration");
  hopUntil(c, () => conf(r0) === "voters {1,2}");
  assert.equal(r0.softState().role, "follower", "stepped down once the final configuration committed");
  assert.ok(
    c.inbox.some((m) => m.type === "timeoutNow" && m.from === 0),
    "handed leadership to an up-to-date voter",
  );
  c.run(10);
  const leaders = c.leaders();
  assert.equal(leaders.length, 1);
  assert.ok(leaders[0] === 1 || leaders[0] === 2, `leader ${leaders[0]}`);
  c.raft(leaders[0]!).propose(cmd("new"));
  c.deliverAll();
  c.run(60); // the new leader first waits out the lease of the old one (thesis §6.4.1)
  for (const id of [1, 2]) assert.ok(commands(c.node(id).applied).includes("new"));
  // The removed leader never campaigns again.
  c.tick(0, 400);
  assert.equal(c.raft(0).softState().role, "follower");
  assert.equal(c.leaders().length, 1);
});

test("thesis §4.2.2 two voters replaced at once, then stopped for good: the commit of each configuration is synced, so a power loss does not take the others back to the joint one (sim seeds 300, 484)", () => {
  const c = cluster3();
  // What a power loss leaves of each node's hard state: the last one written with a sync (a commit-only
  // one rides unsynced, and may be lost).
  const durable = new Map<NodeId, HardState>();
  const watch = (id: NodeId): void => {
    const r = c.raft(id);
    const ready = r.ready.bind(r);
    r.ready = () => {
      const rd = ready();
      if (rd.mustSync) durable.set(id, r.hardState());
      return rd;
    };
  };
  for (const id of [0, 1, 2]) watch(id);
  for (const id of [3, 4]) {
    c.join(id);
    watch(id);
  }
  change(c, 0, [
    { type: "remove", id: 1 },
    { type: "remove", id: 2 },
    { type: "addVoter", id: 3, address: "" },
    { type: "addVoter", id: 4, address: "" },
  ]);
  c.deliverAll();
  c.run(10);
  for (const id of [0, 3, 4]) assert.equal(conf(c.raft(id)), "voters {0,3,4}", `node ${id}`);
  // The change committed, so nodes 1 and 2 are stopped for good (thesis §4.2.2: servers not in C_new
  // may be shut down once it has committed). Then the power goes on 0, 3 and 4.
  c.isolate(1);
  c.isolate(2);
  for (const id of [0, 3, 4]) {
    c.node(id).hardState = durable.get(id)!;
    c.restart(id, id === 0 ? [0, 1, 2] : []);
  }
  // Back in joint {0,1,2} -> {0,3,4}, they would need two of 0, 1, 2 for every election and commit:
  // only node 0 is left of those, so the cluster would never serve again.
  for (const id of [0, 3, 4])
    assert.equal(conf(c.raft(id)), "voters {0,3,4}", `node ${id} after the restart`);
  c.run(100);
  const leaders = c.leaders();
  assert.equal(leaders.length, 1, `leaders ${leaders}`);
  c.raft(leaders[0]!).propose(cmd("after"));
  c.run(60);
  for (const id of [0, 3, 4]) assert.ok(commands(c.node(id).applied).includes("after"), `node ${id}`);
});

test("thesis §4.3 a joint configuration whose leader is only in the old one commits nothing on the old majority alone", () => {
  const c = cluster3();
  c.join(3);
  change(c, 0, [{ type: "addLearner", id: 3, address: "" }]);
  c.deliverAll();
  c.run(5);
  // Replace 0 by 3: joint {0,1,2} -> {1,2,3}. Cut 2 and 3 once the joint entry committed.
  change(c, 0, [
    { type: "remove", id: 0 },
    { type: "promote", id: 3 },
  ]);
  hopUntil(c, () => conf(c.raft(0)) === "joint {0,1,2} -> {1,2,3}");
  c.cut.add("*->2").add("*->3").add("2->*").add("3->*");
  c.inbox = [];
  const before = c.raft(0).log.committed;
  c.raft(0).propose(cmd("x"));
  c.deliverAll();
  c.run(5);
  // Old majority {0,1} has it; the new one {1,2,3} has only 1 of 3: not committed.
  assert.equal(c.raft(1).log.lastIndex(), c.raft(0).log.lastIndex());
  assert.equal(c.raft(0).log.committed, before, "committed on the old configuration's majority alone");
  c.heal();
  c.run(100);
  const leaders = c.leaders();
  assert.equal(leaders.length, 1);
  assert.ok([1, 2, 3].includes(leaders[0]!));
  for (const id of [1, 2, 3]) {
    assert.equal(conf(c.raft(id)), "voters {1,2,3}", `node ${id}`);
    assert.ok(commands(c.node(id).applied).includes("x"));
  }
});

test("thesis §4.3 a change while a partition isolates the leader: it never commits, the majority carries on", () => {
  const c = cluster3();
  c.join(3);
  c.isolate(0);
  c.raft(0).proposeConfChange([{ type: "addVoter", id: 3, address: "" }]);
  c.deliverAll();
  c.run(80);
  assert.equal(conf(c.raft(0)), "voters {0,1,2}", "an uncommitted configuration is not in effect");
  const l = c.leaders().find((id) => id !== 0);
  assert.ok(l !== undefined, "the majority elected a leader");
  change(c, l, [{ type: "addLearner", id: 3, address: "" }]);
  c.deliverAll();
  c.heal();
  c.run(80);
  for (const id of c.ids) assert.equal(conf(c.raft(id)), "voters {0,1,2} learners {3}", `node ${id}`);
  assert.equal(c.raft(0).log.lastIndex(), c.raft(l).log.lastIndex(), "the old leader's entry was replaced");
});

test("thesis §4.3 a joint configuration left behind by a failed leader is left by the next one", () => {
  const c = cluster3();
  const jointIndex = change(c, 0, [{ type: "remove", id: 2 }]);
  // The joint entry commits everywhere; the leader crashes before its leave entry was written.
  hopUntil(c, () => conf(c.raft(1)) === "joint {0,1,2} -> {0,1}" && conf(c.raft(2)) === conf(c.raft(1)));
  c.inbox = [];
  c.node(0).entries = c.node(0).entries.filter((e) => e.index <= jointIndex);
  assert.equal(conf(c.restart(0, [0, 1, 2])), "joint {0,1,2} -> {0,1}", "recovered joint");
  // Node 1 wins a joint election (a majority of {0,1,2} and of {0,1}) and leaves on its own.
  c.elect(1);
  c.run(20);
  assert.deepEqual(c.leaders(), [1]);
  for (const id of [0, 1]) assert.equal(conf(c.raft(id)), "voters {0,1}", `node ${id}`);
});

test("thesis §6.4.1 leases across configurations: while joint, the lease holds only on acknowledgements of both majorities", () => {
  const c = cluster3();
  for (const id of [3, 4]) c.join(id);
  change(c, 0, [
    { type: "addLearner", id: 3, address: "" },
    { type: "addLearner", id: 4, address: "" },
  ]);
  c.deliverAll();
  c.run(10);
  assert.ok(c.raft(0).leaseStatus().ok, "lease before the change");
  // Joint {0,1,2} -> {0,3,4}; cut 3 and 4 as soon as the joint entry took effect on the leader.
  change(c, 0, [
    { type: "remove", id: 1 },
    { type: "remove", id: 2 },
    { type: "promote", id: 3 },
    { type: "promote", id: 4 },
  ]);
  hopUntil(c, () => conf(c.raft(0)) === "joint {0,1,2} -> {0,3,4}");
  c.cut.add("*->3").add("*->4").add("3->*").add("4->*");
  c.inbox = c.inbox.filter((m) => m.to !== 3 && m.to !== 4 && m.from !== 3 && m.from !== 4);
  const l = c.raft(0);
  let lapsedAt = -1;
  for (let t = 0; t < 40; t++) {
    c.tick(0);
    c.deliverAll();
    if (!l.leaseStatus().ok) {
      lapsedAt = t;
      break;
    }
  }
  assert.ok(lapsedAt >= 0, "the old majority alone renewed the lease");
  // ReadIndex needs both majorities too.
  assert.equal(l.readIndex(77), null);
  c.run(3);
  assert.ok(!c.node(0).readStates.some((r) => r.requestId === 77), "a read released on one majority");
  // And check-quorum: the leader steps down within an election timeout.
  c.run(40);
  assert.notEqual(l.softState().role, "leader");
});

test("configurations are recovered at restart from the log, and from snapshot metadata after compaction", () => {
  const c = cluster3();
  c.join(3);
  change(c, 0, [{ type: "addLearner", id: 3, address: "10.0.0.3:7000" }]);
  c.deliverAll();
  c.run(10);
  const want = "voters {0,1,2} learners {3}";
  assert.equal(conf(c.restart(1, [0, 1, 2])), want, "from the log");
  c.run(10);
  // Compact the leader's log and restart it from the snapshot alone.
  const l = c.raft(0);
  const idx = l.log.committed;
  const meta = {
    index: idx,
    term: l.log.term(idx)!,
    sizeBytes: 1,
    crc32c: 0,
    membership: l.membershipAt(idx),
  };
  l.snapshotSaved(meta);
  l.compact(idx);
  c.node(0).snapshot = meta;
  c.node(0).image = new Uint8Array(1);
  c.node(0).entries = [];
  const r0 = c.restart(0, [0, 1, 2]);
  assert.equal(conf(r0), want, "from the snapshot");
  assert.equal(r0.configuration().membership.addresses.find((a) => a.id === 3)?.address, "10.0.0.3:7000");
  // A new learner behind the compacted log learns the configuration from the snapshot it installs.
  c.run(100);
  const leader = c.leaders()[0]!;
  c.join(4);
  change(c, leader, [{ type: "addLearner", id: 4, address: "" }]);
  c.deliverAll();
  const lr = c.raft(leader);
  const at = lr.log.committed;
  const m2 = { index: at, term: lr.log.term(at)!, sizeBytes: 1, crc32c: 0, membership: lr.membershipAt(at) };
  lr.snapshotSaved(m2);
  lr.compact(at);
  c.node(leader).image = new Uint8Array(1);
  c.run(20);
  assert.equal(conf(c.raft(4)), "voters {0,1,2} learners {3,4}");
});

test("the bootstrap configuration is written into the log once, by a leader whose NO-OP committed", () => {
  const c = new TestCluster(3);
  c.elect(0);
  assert.equal(c.raft(1).recordConfiguration().ok, false, "a follower records nothing");
  c.run(5);
  const r = c.raft(0).recordConfiguration();
  assert.ok(r.ok);
  c.run(5);
  for (const id of c.ids) assert.equal(c.raft(id).configuration().index, r.index, `node ${id}`);
  assert.equal(c.raft(0).recordConfiguration().ok, false, "only once");
  assert.equal(conf(c.restart(1, [])), "voters {0,1,2}", "recovered from the log, not the flags");
});

// ---------------------------------------------------------------- configuration arithmetic

const arbMembership = fc
  .record({
    voters: fc.uniqueArray(fc.nat(9), { minLength: 1, maxLength: 7 }),
    learners: fc.uniqueArray(fc.nat(9), { maxLength: 3 }),
  })
  .map(
    ({ voters, learners }): Membership =>
      votersOnly(voters).learners.length === 0
        ? {
            ...votersOnly(voters),
            learners: learners.filter((l) => !voters.includes(l)).sort((a, b) => a - b),
          }
        : votersOnly(voters),
  );

test("thesis §4.3 every two quorums that can act at one time intersect: joint quorums meet both configurations' majorities", () => {
  fc.assert(
    fc.property(arbMembership, fc.uniqueArray(fc.nat(9), { minLength: 1, maxLength: 7 }), (m, newVoters) => {
      const joint: Membership = {
        ...m,
        outgoing: m.voters,
        voters: [...newVoters].sort((a, b) => a - b),
        learners: [],
      };
      // Any two sets that win a joint election share a voter of each configuration.
      const all = [...new Set([...joint.voters, ...joint.outgoing])];
      const subsets = fc.sample(fc.subarray(all), 20);
      for (const a of subsets)
        for (const b of subsets) {
          const won = (s: number[]): boolean =>
            jointTally(new Map(s.map((id) => [id, true])), joint) === "won";
          if (!won(a) || !won(b)) continue;
          for (const half of [joint.voters, joint.outgoing])
            assert.ok(
              half.some((v) => a.includes(v) && b.includes(v)),
              `${a} and ${b} miss ${half}`,
            );
        }
      // jointValue is reached by a majority of each configuration.
      const values = new Map(all.map((id, i) => [id, (i * 7) % 5] as const));
      const q = jointValue(joint, (id) => values.get(id) ?? 0);
      for (const half of [joint.voters, joint.outgoing])
        assert.ok(half.filter((id) => (values.get(id) ?? 0) >= q).length >= majority(half.length));
    }),
  );
});

test("configuration changes: voter changes go through a joint step, learner-only ones do not; encoding round-trips", () => {
  fc.assert(
    fc.property(arbMembership, fc.nat(12), (m, id) => {
      for (const ch of [
        { type: "addVoter", id, address: "" },
        { type: "addLearner", id, address: "" },
        { type: "remove", id },
        { type: "promote", id },
      ] as ConfChange[]) {
        const next = applyChanges(m, [ch]);
        if (typeof next === "string") continue;
        const votersChanged = next.voters.join() !== m.voters.join();
        assert.equal(next.outgoing.length > 0, votersChanged, `${ch.type} ${id}`);
        if (votersChanged) assert.deepEqual(next.outgoing, m.voters);
        const left = votersChanged ? leaveJoint(next) : next;
        assert.deepEqual(left.outgoing, []);
        assert.ok(left.voters.length > 0);
        if (ch.type === "remove") assert.ok(left.removed.includes(id));
        assert.deepEqual(decodeMembership(encodeMembership(left)), left);
        assert.equal(
          typeof applyChanges(next, [ch]),
          votersChanged ? "string" : typeof applyChanges(next, [ch]),
        );
      }
    }),
  );
  assert.match(String(decodeMembership(enc.encode("{"))), /not valid JSON/);
  assert.match(String(decodeMembership(enc.encode('{"v":1,"voters":[-1]}'))), /voters holds -1/);
});

test("a follower cut off through several changes catches up from a leader its old configuration does not name", () => {
  const c = cluster3();
  c.cut.add("*->2");
  c.cut.add("2->*");
  // While 2 hears nothing: 3 joins as a learner, is promoted, and leads.
  c.join(3);
  change(c, 0, [{ type: "addLearner", id: 3, address: "" }]);
  c.deliverAll();
  c.run(10);
  change(c, 0, [{ type: "promote", id: 3 }]);
  c.deliverAll();
  c.run(10);
  assert.equal(conf(c.raft(0)), "voters {0,1,2,3}");
  assert.ok(c.raft(0).transferLeadership(3));
  c.deliverAll();
  c.run(10);
  assert.deepEqual(c.leaders(), [3]);
  c.raft(3).propose(cmd("from 3"));
  c.deliverAll();
  c.run(5);
  assert.equal(conf(c.raft(2)), "voters {0,1,2}", "2 still holds the configuration before 3 joined");
  // Healed: 3's appends reach a node whose configuration does not name 3; it must follow 3 all the same.
  c.heal();
  c.cut.clear();
  for (let i = 0; i < 100 && c.raft(2).log.committed < c.raft(3).log.committed; i++) {
    c.tick(3);
    c.deliverAll();
  }
  assert.deepEqual(c.leaders(), [3]);
  assert.equal(c.raft(2).log.committed, c.raft(3).log.committed);
  assert.equal(conf(c.raft(2)), "voters {0,1,2,3}");
  assert.ok(commands(c.node(2).applied).includes("from 3"));
});

test("thesis §4.3 a leader elected with a joint entry and the entry leaving it uncommitted commits its NO-OP only on a majority of each configuration", () => {
  // {0,1,2} replaces 2 by a new node 3: joint {0,1,2} -> {0,1,3}. Node 3 hears nothing of it.
  const c = cluster3();
  c.join(3);
  c.isolate(3);
  const joint = change(c, 0, [
    { type: "remove", id: 2 },
    { type: "addVoter", id: 3, address: "" },
  ]);
  // The joint entry commits on {0,1,2}; the leader appends the entry leaving it; 1 and 2 store both.
  const leave = joint + 1;
  hopUntil(c, () => c.raft(1).log.lastIndex() >= leave && c.raft(2).log.lastIndex() >= leave);
  assert.equal(c.raft(0).log.entry(leave)?.kind, "config");
  // The leader fails. Node 1 restarts from a hard state whose commit index predates the joint entry
  // (the host writes a commit index lazily): for it, {0,1,2} is in effect, both entries are pending.
  c.isolate(0);
  c.inbox = [];
  c.node(1).hardState = { ...c.node(1).hardState, commitIndex: joint - 1 };
  c.restart(1, [0, 1, 2]);
  assert.equal(conf(c.raft(1)), "voters {0,1,2}");
  // Node 2 elects it (a majority of {0,1,2}) and stores its NO-OP: a majority of the old configuration,
  // but of {0,1,3} only node 1. Committing the NO-OP would commit {0,1,3} on that alone.
  c.elect(1);
  c.run(5);
  const l = c.raft(1);
  const noop = l.log.lastIndex();
  assert.equal(l.log.entry(noop)?.kind, "noop");
  assert.equal(c.raft(2).log.lastIndex(), noop, "node 2 holds the NO-OP");
  assert.ok(
    l.log.committed < leave,
    `committed ${l.log.committed} on {1,2} alone (the leave entry is ${leave})`,
  );
  assert.equal(conf(l), "voters {0,1,2}");
  // The leader replicates to the new configuration's members already (3 is not in the configuration
  // in effect: its answers count all the same): once 3 holds the NO-OP, a majority of each
  // configuration does, and both configurations take effect in one commit.
  c.heal();
  c.isolate(0);
  c.run(10);
  assert.ok(l.log.committed >= noop);
  assert.equal(conf(l), "voters {0,1,3}");
  assert.deepEqual(commands(c.node(3).applied), ["a", "b"]);
});

const INC_A = "a1b2c3d4e5f60718";
const INC_B = "0f1e2d3c4b5a6978";

test("bind: a member gets its incarnation; voters, learners and removed ids stay, and no joint step is taken", () => {
  const base = applyChanges(votersOnly([0, 1, 2]), [{ type: "addLearner", id: 3, address: "h:3" }]);
  assert.ok(typeof base !== "string", String(base));
  assert.deepEqual(unboundMembers(base), [0, 1, 2, 3]);
  const bound = applyChanges(base, [
    { type: "bind", id: 1, incarnation: INC_A },
    { type: "bind", id: 3, incarnation: INC_B },
  ]);
  assert.ok(typeof bound !== "string", String(bound));
  assert.deepEqual(bound.voters, base.voters);
  assert.deepEqual(bound.learners, base.learners);
  assert.deepEqual(bound.outgoing, [], "a bind changes no quorum: no joint configuration");
  assert.deepEqual(bound.removed, base.removed);
  assert.equal(incarnationOf(bound, 1), INC_A);
  assert.equal(incarnationOf(bound, 3), INC_B);
  assert.equal(bound.addresses.find((a) => a.id === 3)?.address, "h:3", "the address is kept");
  assert.deepEqual(unboundMembers(bound), [0, 2]);
  // A binding is for good: neither the same incarnation again nor another one (a wiped folder) replaces it.
  assert.match(String(applyChanges(bound, [{ type: "bind", id: 1, incarnation: INC_A }])), /already/);
  assert.match(
    String(applyChanges(bound, [{ type: "bind", id: 1, incarnation: INC_B }])),
    /remove the member and add it as a new one/,
  );
  assert.match(String(applyChanges(bound, [{ type: "bind", id: 9, incarnation: INC_A }])), /not a member/);
  for (const bad of ["", "A1B2C3D4E5F60718", "a1b2", `${INC_A}0`, "g1b2c3d4e5f60718"])
    assert.match(
      String(applyChanges(base, [{ type: "bind", id: 0, incarnation: bad }])),
      /not 16 lowercase hex digits/,
      bad,
    );
  // Bindings survive a voter change through the joint step, and go with the member when it is removed.
  const joint = applyChanges(bound, [{ type: "remove", id: 1 }]);
  assert.ok(typeof joint !== "string", String(joint));
  assert.equal(incarnationOf(joint, 1), INC_A, "an outgoing voter keeps its binding while joint");
  const left = leaveJoint(joint);
  assert.equal(incarnationOf(left, 1), undefined);
  assert.equal(incarnationOf(left, 3), INC_B);
  assert.ok(left.removed.includes(1));
});

test("bind encoding: bound members encode with their incarnation, entries written before bindings still decode as unbound", () => {
  const m = applyChanges(votersOnly([0, 1, 2]), [{ type: "bind", id: 2, incarnation: INC_A }]);
  assert.ok(typeof m !== "string", String(m));
  const text = new TextDecoder().decode(encodeMembership(m));
  assert.match(text, /\[2,"","a1b2c3d4e5f60718"\]/);
  assert.match(text, /\[0,""\]/, "an unbound member keeps the old [id, address] shape");
  assert.deepEqual(decodeMembership(encodeMembership(m)), m);
  // An entry as older versions wrote it: no incarnations anywhere.
  const old =
    '{"v":1,"voters":[0,1,2],"outgoing":[],"learners":[],"addresses":[[0,"a:0"],[1,"a:1"],[2,"a:2"]],"removed":[]}';
  const decoded = decodeMembership(enc.encode(old));
  assert.ok(typeof decoded !== "string", String(decoded));
  assert.deepEqual(unboundMembers(decoded), [0, 1, 2]);
  assert.equal(new TextDecoder().decode(encodeMembership(decoded)), old, "re-encodes to the same bytes");
  const withBad = (inc: string): string =>
    `{"v":1,"voters":[0],"outgoing":[],"learners":[],"addresses":[[0,"a:0",${JSON.stringify(inc)}]],"removed":[]}`;
  assert.match(String(decodeMembership(enc.encode(withBad("xyz")))), /incarnation of 0 is not 16/);
  assert.match(
    String(decodeMembership(enc.encode(withBad("")))),
    /incarnation of 0 is not 16/,
    "a bound member has a real incarnation; unbound ones have no third element",
  );
});

test("thesis §4.3 bind obeys one change in flight: a second change is refused until it commits, then the binding takes effect", () => {
  const c = cluster3();
  const l = c.raft(0);
  c.cut.add("0->1").add("0->2");
  const r = l.proposeConfChange([{ type: "bind", id: 1, incarnation: INC_A }]);
  assert.ok(r.ok, JSON.stringify(r));
  assert.equal(incarnationOf(l.latestConfiguration(), 1), INC_A, "the leader's log holds the binding");
  assert.equal(incarnationOf(l.configuration().membership, 1), undefined, "not in effect before it commits");
  const second = l.proposeConfChange([{ type: "bind", id: 2, incarnation: INC_B }]);
  assert.ok(!second.ok && second.reason === "changeInFlight", JSON.stringify(second));
  // A follower whose log holds the entry knows the binding at once, before it learns the commit.
  c.cut.delete("0->1");
  hop(c);
  assert.equal(incarnationOf(c.raft(1).latestConfiguration(), 1), INC_A);
  assert.equal(incarnationOf(c.raft(1).configuration().membership, 1), undefined, "commit not known yet");
  c.heal();
  c.run(20);
  for (const id of [0, 1, 2]) {
    const m = c.raft(id).configuration().membership;
    assert.equal(incarnationOf(m, 1), INC_A, `node ${id}`);
    assert.equal(conf(c.raft(id)), "voters {0,1,2}", "the voters are unchanged");
  }
  assert.ok(
    l.proposeConfChange([{ type: "bind", id: 2, incarnation: INC_B }]).ok,
    "free again once committed",
  );
});
