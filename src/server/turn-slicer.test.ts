import assert from "node:assert/strict";
import { test } from "node:test";
import { TurnSlicer } from "./turn-slicer.ts";

test("a burst is started at most perTurn items per turn, in order; a lone item starts at once", () => {
  const started: number[] = [];
  const turns: (() => void)[] = [];
  const s = new TurnSlicer<number>(
    32,
    (i) => started.push(i),
    (fn) => turns.push(fn),
  );
  s.push(-1);
  assert.deepEqual(started, [-1], "started at once");
  for (let i = 0; i < 100; i++) s.push(i);
  assert.equal(started.length, 32, "this turn's share: 32 in all");
  assert.equal(s.queued, 69);
  let turn = 0;
  while (turns.length > 0) {
    turns.shift()!();
    turn++;
    assert.ok(started.length <= 32 * (turn + 1));
  }
  assert.deepEqual(started, [-1, ...Array.from({ length: 100 }, (_, i) => i)]);
  assert.equal(s.queued, 0);
  assert.equal(turn, 4, "69 queued: turns of 32, 32 and 5, then one that finds nothing left");
});
