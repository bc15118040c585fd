// Heartbeats never wait for the disk (issue 16): while the host persists a Ready, the core lets a
// follower's answer to a heartbeat leave at once, but only with a term and vote already durable, and
// with its matchIndex lowered to what the follower's disk holds; acknowledgements of entries still wait.

import assert from "node:assert/strict";
import { test } from "node:test";
import { defaultCoreConfig } from "./config.ts";
import { Raft } from "./raft.ts";
import { followerBehindSnapshot } from "./test-cluster.ts";
import type { AppendEntries, Entry, Message } from "./types.ts";

const EMPTY = new Uint8Array(0);

function entries(from: number, to: number, term: number): Entry[] {
  const out: Entry[] = [];
  for (let i = from; i <= to; i++) out.push({ index: i, term, kind: "command", data: EMPTY });
  return out;
}

function append(prev: number, prevTerm: number, es: Entry[], round: number, commit = 0): AppendEntries {
  return {
    type: "append",
    from: 0,
    to: 1,
    term: 2,
    prevLogIndex: prev,
    prevLogTerm: prevTerm,
    entries: es,
    leaderCommit: commit,
    round,
  };
}

function answers(ms: readonly Message[]) {
  return ms.flatMap((m) => (m.type === "appendResponse" ? [{ match: m.matchIndex, round: m.round }] : []));
}

test("a follower's answer to a heartbeat leaves before the fsync in flight, capped at what is durable", () => {
  const f = new Raft(defaultCoreConfig(1, [0, 1, 2], 11), {
    hardState: { term: 1, votedFor: null, commitIndex: 0 },
    snapshot: null,
    entries: [],
  });
  // Term 2 arrives with entries 1..3: the new term is not durable until this Ready is persisted.
  f.step(append(0, 0, entries(1, 3, 2), 1));
  const rd1 = f.ready();
  assert.equal(rd1.termOrVoteChanged, true);
  f.step(append(3, 2, [], 2));
  assert.deepEqual(f.takeUrgentMessages(), [], "nothing leaves early while the term is not durable");
  f.advance(rd1);
  f.ready(); // the heartbeat's answer went out with the next Ready (term durable now)
  // Entries 4..5 are being written; a heartbeat vouching for them arrives meanwhile.
  f.step(append(3, 2, entries(4, 5, 2), 3));
  const rd2 = f.ready();
  assert.equal(rd2.entries.length, 2);
  assert.deepEqual(answers(rd2.messages), [{ match: 5, round: 3 }], "the entries' ack waits in its Ready");
  f.step(append(5, 2, [], 4, 5));
  const urgent = f.takeUrgentMessages();
  assert.deepEqual(answers(urgent), [{ match: 3, round: 4 }], "answered now, claiming only entries 1..3");
  assert.deepEqual(answers(f.ready().messages), [], "and not a second time in the next Ready");
  f.advance(rd2);
  // Once 4..5 are durable, a heartbeat's answer claims them.
  f.step(append(5, 2, [], 5, 5));
  assert.deepEqual(answers(f.takeUrgentMessages()), [{ match: 5, round: 5 }]);
});

test("entries' acknowledgements and vote answers never leave early", () => {
  const f = new Raft(defaultCoreConfig(1, [0, 1, 2], 12), {
    hardState: { term: 2, votedFor: null, commitIndex: 0 },
    snapshot: null,
    entries: [],
  });
  f.step(append(0, 0, entries(1, 2, 2), 1));
  assert.deepEqual(f.takeUrgentMessages(), [], "an append with entries is answered after its write");
  f.ready();
  f.step({
    type: "vote",
    from: 2,
    to: 1,
    term: 3,
    preVote: false,
    lastLogIndex: 2,
    lastLogTerm: 2,
    transfer: true,
  });
  assert.deepEqual(f.takeUrgentMessages(), [], "a vote is answered after the vote is durable");
});

test("a leader's heartbeats leave while its own write is in flight", () => {
  const l = new Raft(defaultCoreConfig(0, [0, 1, 2], 13), {
    hardState: { term: 0, votedFor: null, commitIndex: 0 },
    snapshot: null,
    entries: [],
  });
  // Campaign (pre-vote, then vote) and replicate the NO-OP: answer everything, persisting every Ready,
  // until both followers are in replicate state (a probing follower's heartbeat carries entries).
  for (let i = 0; i < 200 && (l.softState().role !== "leader" || l.log.committed < 1 || i < 20); i++) {
    l.tick();
    while (l.hasReady()) {
      const rd = l.ready();
      l.advance(rd);
      for (const m of rd.messages)
        if (m.type === "append")
          l.step({
            type: "appendResponse",
            from: m.to,
            to: 0,
            term: m.term,
            success: true,
            matchIndex: m.prevLogIndex + m.entries.length,
            conflictTerm: 0,
            conflictIndex: 0,
            round: m.round,
          });
        else if (m.type === "vote")
          l.step({
            type: "voteResponse",
            from: m.to,
            to: 0,
            term: m.term,
            preVote: m.preVote,
            granted: true,
            leaseRemainingTicks: 0,
          });
    }
  }
  assert.equal(l.softState().role, "leader");
  l.propose(new Uint8Array([1]));
  const inFlight = l.ready(); // its entries are being written
  assert.ok(inFlight.entries.length > 0);
  let heartbeats = 0;
  for (let i = 0; i < 10; i++) {
    l.tick();
    heartbeats += l.takeUrgentMessages().filter((m) => m.type === "append" && m.entries.length === 0).length;
  }
  assert.ok(heartbeats >= 2, `heartbeats to both followers left early (${heartbeats})`);
  l.advance(inFlight);
});

test("a follower installing a snapshot answers the leader's resends and heartbeats at once, acknowledging their rounds", () => {
  const f = new Raft(defaultCoreConfig(1, [0, 1, 2], 14), {
    hardState: { term: 2, votedFor: null, commitIndex: 0 },
    snapshot: null,
    entries: [],
  });
  const meta = { index: 10, term: 2, sizeBytes: 8, crc32c: 0 };
  const chunk = (offset: number, length: number, round: number): Message => ({
    type: "snapshot",
    from: 0,
    to: 1,
    term: 2,
    meta,
    offset,
    data: new Uint8Array(length),
    length,
    done: offset + length >= meta.sizeBytes,
    round,
  });
  f.step(chunk(0, 4, 1));
  f.advance(f.ready());
  f.step(chunk(4, 4, 2));
  const installing = f.ready(); // the host writes the last chunk, then verifies and installs the image
  assert.deepEqual(installing.installSnapshot, meta);
  assert.deepEqual(installing.messages, [], "installed is answered when the install is done");
  // The leader resends its chunk in flight (the last one) while the install goes on: answered now,
  // naming that chunk (nothing to resend) and the new round.
  f.step(chunk(4, 4, 3));
  const keepAlive = f.takeUrgentMessages();
  assert.deepEqual(
    keepAlive.map((m) =>
      m.type === "snapshotResponse" ? [m.snapshotIndex, m.nextOffset, m.installed, m.round] : m.type,
    ),
    [[10, 4, false, 3]],
  );
  // A heartbeat meanwhile (a leader that sends appends): a term notice, no claim about the log.
  f.step(append(10, 2, [], 4));
  assert.deepEqual(answers(f.takeUrgentMessages()), [{ match: 0, round: 4 }]);
  f.snapshotInstalled(meta);
  f.advance(installing);
  const done = f.ready().messages;
  assert.deepEqual(
    done.map((m) =>
      m.type === "snapshotResponse" ? [m.snapshotIndex, m.nextOffset, m.installed, m.round] : m.type,
    ),
    [[10, 8, true, 2]],
  );
});

test("a leader whose quorum needs a follower installing a snapshot for several election timeouts keeps leading", () => {
  const { c, l } = followerBehindSnapshot(40); // 10 chunks of 4 bytes
  c.isolate(1); // the quorum is {0,2}: node 2 must keep answering
  const f = c.raft(2);
  const fNode = c.node(2);
  c.nodes.delete(2); // node 2's host is driven here: its install takes 100 ticks
  let held: { rd: ReturnType<Raft["ready"]>; since: number } | null = null;
  const toLeader = (ms: readonly Message[]): void => {
    for (const m of ms) if (m.to === 0) l.step(m);
  };
  let installs = 0;
  for (let t = 0; t < 300; t++) {
    l.tick();
    f.tick();
    c.flush();
    const inbox = c.inbox;
    c.inbox = [];
    for (const m of inbox) if (m.to === 2) f.step(m);
    if (held !== null) {
      toLeader(f.takeUrgentMessages());
      if (t - held.since >= 100) {
        fNode.snapshot = held.rd.installSnapshot;
        f.snapshotInstalled(held.rd.installSnapshot!);
        f.advance(held.rd);
        held = null;
        installs++;
      }
    }
    while (held === null && f.hasReady()) {
      const rd = f.ready();
      if (rd.installSnapshot !== null) {
        held = { rd, since: t };
        break;
      }
      toLeader(rd.messages);
      f.advance(rd);
    }
    c.flush();
    assert.equal(
      l.softState().role,
      "leader",
      `the leader stepped down at tick ${t} (install ${held !== null ? "under way" : "done"})`,
    );
  }
  assert.equal(installs, 1);
  assert.equal(f.log.lastIndex(), l.log.lastIndex(), "the follower caught up after its install");
});
