import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { lowerBound, SortedKeys } from "./sorted-keys.ts";

test("SortedKeys matches a sorted copy of the live keys under any mix of writes and reads", () => {
  const op = fc.oneof(
    fc.record({ kind: fc.constant("add" as const), key: fc.string({ maxLength: 3 }) }),
    fc.record({ kind: fc.constant("remove" as const), key: fc.string({ maxLength: 3 }) }),
    fc.record({ kind: fc.constant("read" as const) }),
  );
  fc.assert(
    fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
      const live = new Map<string, true>();
      const keys = new SortedKeys(live);
      for (const o of ops) {
        if (o.kind === "add" && !live.has(o.key)) {
          live.set(o.key, true);
          keys.noteAdded(o.key);
        } else if (o.kind === "remove" && live.delete(o.key)) {
          keys.noteRemoved();
        } else if (o.kind === "read") {
          assert.deepEqual(keys.current(), [...live.keys()].sort());
        }
      }
      assert.deepEqual(keys.current(), [...live.keys()].sort());
    }),
    { numRuns: 500 },
  );
});

test("SortedKeys bounds pending additions under churn and still answers correctly", () => {
  const live = new Map<string, true>();
  const keys = new SortedKeys(live);
  live.set("keep", true);
  keys.noteAdded("keep");
  for (let i = 0; i < 5000; i++) {
    live.set("churn", true);
    keys.noteAdded("churn");
    live.delete("churn");
    keys.noteRemoved();
  }
  assert.deepEqual(keys.current(), ["keep"]);
});

test("keys are ordered by UTF-16 code unit, as JS < does", () => {
  const live = new Map<string, true>();
  const keys = new SortedKeys(live);
  for (const k of ["\u{1f600}", "\uffff", "b", "a", "ab", "B", "\u00e9"]) {
    live.set(k, true);
    keys.noteAdded(k);
  }
  // U+1F600 is stored as the surrogate pair D83D DE00, which sorts below U+FFFF.
  assert.deepEqual(keys.current(), ["B", "a", "ab", "b", "\u00e9", "\u{1f600}", "\uffff"]);
});

test("lowerBound finds the first key >= target", () => {
  const keys = ["a", "b", "bb", "c"];
  assert.equal(lowerBound(keys, ""), 0);
  assert.equal(lowerBound(keys, "b"), 1);
  assert.equal(lowerBound(keys, "ba"), 2);
  assert.equal(lowerBound(keys, "bc"), 3);
  assert.equal(lowerBound(keys, "d"), 4);
  assert.equal(lowerBound([], "x"), 0);
});
