// Crash tests of the in-memory twin at every point of a scripted run: after each batch and each flush,
// a power loss (crash()) must leave a whole batch prefix, at or after the last flush, and the store must
// go on from there.

import assert from "node:assert/strict";
import { test } from "node:test";
import { contentsOf, modelAt, writeBatch } from "./crash-workload.ts";
import { MemStore } from "./mem-store.ts";

/** Batch i, and a flush after every third batch: the points a crash can come between. */
function run(store: MemStore, points: number): { flushed: number } {
  let flushed = 0;
  let point = 0;
  for (let i = 1; point < points; i++) {
    writeBatch(store, i);
    if (++point >= points) break;
    if (i % 3 === 0) {
      flushed = store.makeDurable();
      point++;
    }
  }
  return { flushed };
}

test("MemStore: a crash at every write and flush point keeps a whole batch prefix and everything flushed", () => {
  for (let points = 1; points <= 60; points++) {
    const store = new MemStore();
    const { flushed } = run(store, points);
    const applied = store.appliedIndex;
    store.crash();
    assert.equal(store.appliedIndex, flushed, `crash after ${points} points (applied ${applied})`);
    assert.deepEqual(contentsOf(store), modelAt(store.appliedIndex), `crash after ${points} points`);
    // It goes on from there: the batches after the flushed index apply again.
    for (let i = store.appliedIndex + 1; i <= applied; i++) writeBatch(store, i);
    assert.deepEqual(contentsOf(store), modelAt(applied));
  }
});
