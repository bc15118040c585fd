// StoreStateMachine's snapshots (store-image.ts): an image restored into an empty store gives the same
// state (hash, reads, sessions, etcd metadata) and the same results for what follows, whatever the chunk
// sizes; the image is of the moment it was taken while applies go on; a damaged image is refused with
// CORRUPT, never another error.

import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { RaftKvError } from "../lib/errors.ts";
import { MemStore } from "../store/mem-store.ts";
import { encodeCommand, type KvCommand } from "./command.ts";
import { StoreStateMachine } from "./store-state-machine.ts";

const enc = new TextEncoder();
const hex = (u: Uint8Array | null): string | null => (u === null ? null : Buffer.from(u).toString("hex"));

const commandArb: fc.Arbitrary<KvCommand> = fc.oneof(
  fc.record({
    op: fc.constant("put" as const),
    key: fc.constantFrom("a", "b", "ab", "日本", "z"),
    value: fc.uint8Array({ maxLength: 40 }),
  }),
  fc.record({ op: fc.constant("delete" as const), key: fc.constantFrom("a", "b", "z") }),
  fc
    .record({
      op: fc.constant("put" as const),
      key: fc.constantFrom("s1", "s2"),
      value: fc.uint8Array({ maxLength: 4 }),
      session: fc.record({ clientId: fc.constantFrom("c1", "c2"), seq: fc.integer({ min: 1, max: 5 }) }),
    })
    .map((c) => c as KvCommand),
);

function applyAll(sm: StoreStateMachine, commands: readonly KvCommand[]): unknown[] {
  return commands.map((c) => {
    const r = sm.apply(sm.appliedIndex + 1, encodeCommand(c));
    return r.type === "cas" ? { ...r, current: hex(r.current) } : r;
  });
}

function imageOf(sm: StoreStateMachine, chunkBytes: number): { chunks: Uint8Array[]; sizeBytes: number } {
  const s = sm.snapshotStream(chunkBytes);
  const chunks: Uint8Array[] = [];
  for (let c = s.next(); c !== null; c = s.next()) chunks.push(c.slice());
  s.close();
  assert.equal(
    chunks.reduce((n, c) => n + c.length, 0),
    s.sizeBytes,
  );
  return { chunks, sizeBytes: s.sizeBytes };
}

/** The image's bytes re-cut at `cuts`, pushed into a restore on a fresh store. */
function restore(bytes: Uint8Array, cuts: readonly number[]): StoreStateMachine {
  const r = StoreStateMachine.restoring(bytes.length, { store: new MemStore(), maxSessions: 2 });
  let at = 0;
  for (const cut of [...cuts.filter((c) => c > 0 && c < bytes.length), bytes.length].sort((a, b) => a - b)) {
    if (cut <= at) continue;
    r.push(bytes.slice(at, cut));
    at = cut;
  }
  return r.finish();
}

function plainRecord(sm: StoreStateMachine, key: string): unknown {
  const r = sm.getRecord(key);
  return r === null ? null : { ...r, value: hex(r.value) };
}

function concat(chunks: readonly Uint8Array[]): Uint8Array {
  return Buffer.concat(chunks);
}

test("a store image restores to the same state, and the restored state machine goes on alike", () =>
  fc.assert(
    fc.property(
      fc.array(commandArb, { minLength: 1, maxLength: 40 }),
      fc.array(commandArb, { maxLength: 20 }),
      fc.integer({ min: 1, max: 200 }),
      fc.array(fc.nat(2000), { maxLength: 6 }),
      (before, after, chunkBytes, cuts) => {
        const sm = new StoreStateMachine({ store: new MemStore(), maxSessions: 2 });
        applyAll(sm, before);
        const bytes = concat(imageOf(sm, chunkBytes).chunks);
        const copy = restore(bytes, cuts);
        assert.equal(copy.appliedIndex, sm.appliedIndex);
        assert.equal(copy.hash(), sm.hash());
        assert.equal(copy.revision, sm.revision);
        assert.equal(copy.size, sm.size);
        for (const k of ["a", "b", "ab", "日本", "z", "s1", "s2"])
          assert.deepEqual(plainRecord(copy, k), plainRecord(sm, k), `record of ${k}`);
        assert.deepEqual(applyAll(copy, after), applyAll(sm, after)); // sessions deduplicate alike
        assert.equal(copy.hash(), sm.hash());
        // Equal contents write identical images, whatever the chunk size.
        assert.deepEqual(concat(imageOf(copy, 64).chunks), concat(imageOf(sm, 4096).chunks));
      },
    ),
    { numRuns: 200 },
  ));

test("a snapshot stream reads the state of the moment it was opened while applies go on", () => {
  const sm = new StoreStateMachine({ store: new MemStore() });
  for (let i = 0; i < 50; i++)
    sm.apply(i + 1, encodeCommand({ op: "put", key: `k${i}`, value: enc.encode(`v${i}`) }));
  const expected = concat(imageOf(sm, 32).chunks);
  const stream = sm.snapshotStream(32);
  const chunks: Uint8Array[] = [stream.next()!.slice()];
  for (let i = 0; i < 50; i++) {
    const index = sm.appliedIndex + 1;
    sm.apply(
      index,
      encodeCommand(
        i % 2 === 0 ? { op: "delete", key: `k${i}` } : { op: "put", key: `k${i}`, value: enc.encode("new") },
      ),
    );
  }
  for (let c = stream.next(); c !== null; c = stream.next()) chunks.push(c.slice());
  stream.close();
  assert.equal(stream.appliedIndex, 50);
  assert.deepEqual(concat(chunks), expected);
  assert.equal(restore(expected, []).get("k0") !== null, true);
  assert.equal(sm.get("k0"), null);
});

test("a damaged store image is refused with CORRUPT: flipped bytes, truncation, extra bytes", () => {
  const sm = new StoreStateMachine({ store: new MemStore(), maxSessions: 2 });
  applyAll(sm, [
    { op: "put", key: "a", value: enc.encode("one") },
    { op: "put", key: "b", value: enc.encode("two"), session: { clientId: "c1", seq: 1 } },
    { op: "delete", key: "a" },
  ]);
  const good = concat(imageOf(sm, 16).chunks);
  const refused = (bytes: Uint8Array, sizeBytes = bytes.length, what = ""): void => {
    assert.throws(
      () => {
        const r = StoreStateMachine.restoring(sizeBytes, { store: new MemStore() });
        r.push(bytes);
        r.finish();
      },
      (err: unknown) => err instanceof RaftKvError && err.code === "CORRUPT",
      what,
    );
  };
  for (let i = 0; i < good.length; i++) {
    const bad = good.slice();
    bad[i] = bad[i]! ^ 0x41;
    refused(bad, bad.length, `byte ${i} flipped`);
  }
  for (let n = 0; n < good.length; n++) refused(good.subarray(0, n), good.length, `cut at ${n}`);
  refused(concat([good, new Uint8Array(3)]), good.length + 3, "3 bytes more");
  assert.throws(
    () => StoreStateMachine.restoring(5, { store: new MemStore() }),
    (err: unknown) => err instanceof RaftKvError && err.code === "CORRUPT",
  );
});
