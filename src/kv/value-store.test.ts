import assert from "node:assert/strict";
import { test } from "node:test";
import { AssertionError } from "../lib/assert.ts";
import { MemValueStore } from "./value-store.ts";
import { checkValueStore } from "./value-store-conformance.ts";

test("MemValueStore keeps what was added until released, and reuses released handles", () => {
  for (let seed = 1; seed <= 20; seed++)
    checkValueStore(new MemValueStore(), { seed, ops: 500, maxValueBytes: 64 });
  const s = new MemValueStore();
  const a = s.add(Uint8Array.of(1));
  s.release(a);
  assert.equal(s.add(Uint8Array.of(2)), a);
});

test("MemValueStore refuses a handle that is not live", () => {
  const s = new MemValueStore();
  assert.throws(() => s.read(0), AssertionError);
  s.release(s.add(Uint8Array.of(1)));
  assert.throws(() => s.size(0), AssertionError);
  assert.throws(() => s.release(0), AssertionError);
});
