// Tests of the bounded per-peer queue's drop policy.

import assert from "node:assert/strict";
import { test } from "node:test";
import type { Message } from "../core/types.ts";
import { PeerQueue } from "./peer-queue.ts";

const append = (term: number): Message => ({
  type: "append",
  from: 0,
  to: 1,
  term,
  prevLogIndex: 0,
  prevLogTerm: 0,
  entries: [],
  leaderCommit: 0,
  round: 0,
});
const vote = (term: number): Message => ({
  type: "vote",
  from: 0,
  to: 1,
  term,
  preVote: false,
  lastLogIndex: 0,
  lastLogTerm: 0,
  transfer: false,
});
const tag = (m: Message | null): string => (m === null ? "none" : `${m.type}:${m.term}`);

test("at capacity the oldest non-election message goes first", () => {
  const q = new PeerQueue(3);
  assert.equal(tag(q.push(vote(1))), "none");
  q.push(append(2));
  q.push(append(3));
  assert.equal(tag(q.push(append(4))), "append:2");
  assert.equal(tag(q.push(vote(5))), "append:3");
  assert.deepStrictEqual(q.takeAll().map(tag), ["vote:1", "append:4", "vote:5"]);
  assert.equal(q.length, 0);
});

test("when only election messages are queued, a new replication message is the one dropped", () => {
  const q = new PeerQueue(2);
  q.push(vote(1));
  q.push(vote(2));
  assert.equal(tag(q.push(append(3))), "append:3");
  assert.equal(tag(q.push(vote(4))), "vote:1");
  assert.deepStrictEqual(q.takeAll().map(tag), ["vote:2", "vote:4"]);
});

test("takeWhere removes matching messages in order and keeps the rest", () => {
  const q = new PeerQueue(10);
  for (const t of [1, 2, 3, 4]) q.push(append(t));
  assert.deepStrictEqual(q.takeWhere((m) => m.term % 2 === 0).map(tag), ["append:2", "append:4"]);
  assert.deepStrictEqual(q.peek().map(tag), ["append:1", "append:3"]);
  assert.throws(() => new PeerQueue(0));
});

test("putBack returns unsent messages to the front, in order, ahead of later ones", () => {
  const q = new PeerQueue(4);
  for (const t of [1, 2, 3]) q.push(append(t));
  const taken = q.takeAll();
  q.putBack(taken.slice(1));
  q.push(append(4));
  assert.deepStrictEqual(q.takeAll().map(tag), ["append:2", "append:3", "append:4"]);
  for (const t of [5, 6, 7]) q.push(append(t));
  const again = q.takeAll();
  q.push(append(8));
  q.push(append(9));
  assert.throws(() => q.putBack(again), /capacity/, "more than the capacity is refused");
});
