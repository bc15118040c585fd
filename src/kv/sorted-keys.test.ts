import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { KeyIndex } from "./key-index.ts";
import { lowerBound, SortedKeys } from "./sorted-keys.ts";

function keysOf(index: KeyIndex, ids: Int32Array): string[] {
  return Array.from(ids, (id) => index.key(id));
}

test("SortedKeys matches a sorted copy of the live keys under any mix of writes and reads", () => {
  const op = fc.oneof(
    fc.record({ kind: fc.constant("add" as const), key: fc.string({ maxLength: 3, unit: "binary" }) }),
    fc.record({ kind: fc.constant("remove" as const), key: fc.string({ maxLength: 3, unit: "binary" }) }),
    fc.record({ kind: fc.constant("read" as const) }),
  );
  fc.assert(
    fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
      const live = new Set<string>();
      const index = new KeyIndex();
      const keys = new SortedKeys(index);
      for (const o of ops) {
        if (o.kind === "add") {
          live.add(o.key);
          index.set(o.key, 1);
        } else if (o.kind === "remove") {
          live.delete(o.key);
          if (index.delete(o.key) >= 0) keys.noteRemoved();
        } else {
          assert.deepEqual(keysOf(index, keys.current()), [...live].sort());
        }
      }
      assert.deepEqual(keysOf(index, keys.current()), [...live].sort());
    }),
    { numRuns: 500 },
  );
});

test("SortedKeys bounds retired ids under churn without readers and still answers correctly", () => {
  const index = new KeyIndex();
  const keys = new SortedKeys(index);
  index.set("keep", 0);
  for (let i = 0; i < 5000; i++) {
    index.set(`churn-${i}`, 1);
    index.delete(`churn-${i}`);
    keys.noteRemoved();
    assert.ok(index.retiredCount <= index.size + 1025, `${index.retiredCount} retired ids at ${i}`);
  }
  assert.deepEqual(keysOf(index, keys.current()), ["keep"]);
  assert.equal(index.retiredCount, 0);
});

test("while the index is pinned, churn keeps retired ids (no merge per delete) until a read after unpin", () => {
  const index = new KeyIndex();
  const keys = new SortedKeys(index);
  index.set("keep", 0);
  const ids = keys.current();
  index.pin();
  for (let i = 0; i < 3000; i++) {
    index.set(`churn-${i}`, 1);
    index.delete(`churn-${i}`);
    keys.noteRemoved();
  }
  assert.equal(index.retiredCount, 3000);
  assert.deepEqual(keysOf(index, keys.current()), ["keep"]);
  assert.equal(index.retiredCount, 3000, "nothing is recycled while pinned");
  assert.deepEqual(keysOf(index, ids), ["keep"]);
  index.unpin();
  assert.deepEqual(keysOf(index, keys.current()), ["keep"]);
  assert.equal(index.retiredCount, 0);
});

test("a list taken from SortedKeys is never changed by later writes", () => {
  const index = new KeyIndex();
  const keys = new SortedKeys(index);
  for (const k of ["c", "a", "b"]) index.set(k, 0);
  const before = keys.current();
  const copy = before.slice();
  index.pin(); // as a snapshot stream does: the ids in `before` keep their keys
  index.delete("a");
  index.set("d", 0);
  assert.deepEqual(keysOf(index, keys.current()), ["b", "c", "d"]);
  assert.deepEqual(before, copy);
  assert.deepEqual(keysOf(index, before), ["a", "b", "c"]);
  index.unpin();
});

test("keys are ordered by UTF-16 code unit, as JS < does", () => {
  const index = new KeyIndex();
  const keys = new SortedKeys(index);
  for (const k of ["\u{1f600}", "\uffff", "b", "a", "ab", "B", "\u00e9"]) index.set(k, 0);
  // U+1F600 is stored as the surrogate pair D83D DE00, which sorts below U+FFFF.
  assert.deepEqual(keysOf(index, keys.current()), ["B", "a", "ab", "b", "\u00e9", "\u{1f600}", "\uffff"]);
});

test("lowerBound finds the first key >= target", () => {
  const index = new KeyIndex();
  const keys = new SortedKeys(index);
  for (const k of ["c", "bb", "a", "b"]) index.set(k, 0);
  const ids = keys.current();
  assert.equal(lowerBound(index, ids, ""), 0);
  assert.equal(lowerBound(index, ids, "b"), 1);
  assert.equal(lowerBound(index, ids, "ba"), 2);
  assert.equal(lowerBound(index, ids, "bc"), 3);
  assert.equal(lowerBound(index, ids, "d"), 4);
  assert.equal(lowerBound(index, new Int32Array(0), "x"), 0);
});
