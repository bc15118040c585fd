// Held ticks (Raft.tick(true), releaseTimeouts): a node back from an event-loop stall counts the ticks it
// missed before it has read what arrived meanwhile. Counted held, they act on no silence until the host
// has read that input: a follower whose leader's heartbeats wait in its socket does not campaign, and a
// leader whose followers' acks wait does not step down; with nothing waiting, release acts as the plain
// ticks would have.

import assert from "node:assert/strict";
import { test } from "node:test";
import { defaultCoreConfig } from "./config.ts";
import { TestCluster } from "./test-cluster.ts";
import type { Message } from "./types.ts";

const { electionTimeoutMaxTicks, electionTimeoutMinTicks, heartbeatTicks } = defaultCoreConfig(
  0,
  [0, 1, 2],
  1,
);

const votes = (c: TestCluster, from: number): Message[] =>
  c.inbox.filter((m) => m.from === from && m.type === "vote");

/** Node 0 leads; node 1 stalls for `stallTicks` while the leader keeps sending heartbeats, which wait. */
function followerStalled(stallTicks: number): TestCluster {
  const c = new TestCluster(3);
  c.elect(0);
  c.run(5);
  for (let t = 0; t < stallTicks; t++) {
    c.tick(0);
    c.tick(2);
    c.deliverAll((m) => m.to !== 1);
  }
  assert.ok(
    c.inbox.some((m) => m.to === 1 && m.from === 0),
    "heartbeats wait for node 1",
  );
  return c;
}

test("a follower back from a stall does not campaign while its leader's heartbeats wait to be read", () => {
  const stall = electionTimeoutMaxTicks + 10;
  const c = followerStalled(stall);
  const f = c.raft(1);
  for (let t = 0; t < stall; t++) f.tick(true);
  c.flush();
  assert.equal(f.softState().role, "follower");
  assert.deepEqual(votes(c, 1), [], "held ticks started no election");
  c.deliverAll((m) => m.to === 1); // the host reads what arrived: the leader's heartbeats
  f.releaseTimeouts();
  c.flush();
  assert.deepEqual([f.softState().role, f.softState().leaderId], ["follower", 0]);
  assert.deepEqual(votes(c, 1), []);
  c.run(3 * electionTimeoutMaxTicks);
  assert.deepEqual(c.leaders(), [0], "the leader kept its leadership");
});

test("the same ticks delivered plainly make the stalled follower campaign (what holding avoids)", () => {
  const stall = electionTimeoutMaxTicks + 10;
  const c = followerStalled(stall);
  const f = c.raft(1);
  for (let t = 0; t < stall; t++) f.tick();
  c.flush();
  assert.notEqual(f.softState().role, "follower");
  assert.ok(votes(c, 1).length > 0);
});

test("with nothing to read, release acts on the timeout the held ticks owe", () => {
  const c = new TestCluster(3);
  c.elect(0);
  c.run(5);
  c.isolate(0); // the leader is gone: nothing arrives during the stall
  const f = c.raft(1);
  for (let t = 0; t < electionTimeoutMaxTicks + 10; t++) f.tick(true);
  c.flush();
  assert.equal(f.softState().role, "follower");
  f.releaseTimeouts();
  c.flush();
  assert.notEqual(f.softState().role, "follower", "released: the election timeout fires");
  assert.ok(votes(c, 1).length > 0);
  f.releaseTimeouts(); // once only: nothing more is owed
});

test("a leader back from a stall does not step down while its followers' acks wait to be read", () => {
  const c = new TestCluster(3);
  c.elect(0);
  c.run(5);
  const l = c.raft(0);
  const term = l.softState().term;
  // A heartbeat round goes out and is answered, but the leader stalls before it reads the answers.
  while (!c.inbox.some((m) => m.from === 0 && m.type === "append")) c.tick(0);
  c.deliverAll((m) => m.to !== 0);
  assert.ok(
    c.inbox.some((m) => m.to === 0),
    "acks wait for the leader",
  );
  // The stall is shorter than an election timeout, but the round acked before it is older than one.
  const stall = electionTimeoutMinTicks - 2;
  for (let t = 0; t < stall; t++) l.tick(true);
  c.flush();
  assert.deepEqual([l.softState().role, l.softState().term], ["leader", term]);
  c.deliverAll((m) => m.to === 0);
  l.releaseTimeouts();
  c.flush();
  assert.deepEqual([l.softState().role, l.softState().term], ["leader", term], "stepped down with acks read");

  // Plain ticks over the same stall, acks unread: check-quorum steps it down (what holding avoids).
  const d = new TestCluster(3);
  d.elect(0);
  d.run(5);
  const m = d.raft(0);
  while (!d.inbox.some((x) => x.from === 0 && x.type === "append")) d.tick(0);
  d.deliverAll((x) => x.to !== 0);
  for (let t = 0; t < stall + heartbeatTicks; t++) m.tick();
  d.flush();
  assert.equal(m.softState().role, "follower", "plain ticks: check-quorum stepped down");
});

test("a leader cut off for an election timeout steps down at release", () => {
  const c = new TestCluster(3);
  c.elect(0);
  c.run(5);
  c.isolate(0);
  const l = c.raft(0);
  for (let t = 0; t < 2 * electionTimeoutMinTicks; t++) l.tick(true);
  c.flush();
  assert.equal(l.softState().role, "leader", "held: no step-down yet");
  assert.equal(l.leaseStatus().ok, false, "but its lease ran out with the ticks, held or not");
  l.releaseTimeouts();
  c.flush();
  assert.equal(l.softState().role, "follower");
});
