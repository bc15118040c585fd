// StoreStateMachine's snapshots (store-image.ts): an image restored into an empty store gives the same
// state (hash, reads, sessions, etcd metadata) and the same results for what follows, whatever the chunk
// sizes; the image is of the moment it was taken while applies go on; a damaged image is refused with
// CORRUPT, never another error.

import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { crc32c } from "../lib/crc32c.ts";
import { RaftKvError } from "../lib/errors.ts";
import { MemStore } from "../store/mem-store.ts";
import type { StoreEntry, StoreView } from "../store/store.ts";
import { encodeCommand, type KvCommand } from "./command.ts";
import { StoreImageStream } from "./store-image.ts";
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
  assert.equal(s.sizeBytes, null, "a store image is sized as it is written, in one pass");
  return { chunks, sizeBytes: chunks.reduce((n, c) => n + c.length, 0) };
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

/** The image as format v3 wrote it (count in the head): snapshot files and backups from before v4. */
function v3Image(store: MemStore): Uint8Array {
  const entries = [...store.scan()];
  const body = entries.reduce((n, e) => n + 8 + e.key.length + e.value.length, 0);
  const out = new Uint8Array(1 + 8 + 8 + body + 4);
  const dv = new DataView(out.buffer);
  dv.setUint8(0, 3);
  dv.setBigUint64(1, BigInt(store.appliedIndex), true);
  dv.setBigUint64(9, BigInt(entries.length), true);
  let at = 17;
  for (const e of entries) {
    dv.setUint32(at, e.key.length, true);
    out.set(e.key, at + 4);
    dv.setUint32(at + 4 + e.key.length, e.value.length, true);
    out.set(e.value, at + 8 + e.key.length);
    at += 8 + e.key.length + e.value.length;
  }
  dv.setUint32(at, crc32c(out.subarray(0, at)), true);
  return out;
}

test("an image of the previous format (v3, count in the head) still restores to the same state", () => {
  const store = new MemStore();
  const sm = new StoreStateMachine({ store, maxSessions: 2 });
  applyAll(sm, [
    { op: "put", key: "a", value: enc.encode("one") },
    { op: "put", key: "b", value: enc.encode("two"), session: { clientId: "c1", seq: 1 } },
    { op: "delete", key: "a" },
    { op: "put", key: "日本", value: enc.encode("three") },
  ]);
  const old = v3Image(store);
  for (const cuts of [[], [1], [5, 17, 18], [old.length - 4, old.length - 1]]) {
    const copy = restore(old, cuts);
    assert.equal(copy.appliedIndex, sm.appliedIndex);
    assert.equal(copy.hash(), sm.hash());
    assert.deepEqual(plainRecord(copy, "日本"), plainRecord(sm, "日本"));
  }
  const bad = old.slice();
  bad[10] = bad[10]! ^ 1; // the count, checksum kept: refused either way
  assert.throws(
    () => restore(bad, []),
    (err: unknown) => err instanceof RaftKvError && err.code === "CORRUPT",
  );
});

test("a v4 image whose count disagrees with its entries is refused, even with a matching checksum", () => {
  const sm = new StoreStateMachine({ store: new MemStore(), maxSessions: 2 });
  applyAll(sm, [{ op: "put", key: "a", value: enc.encode("one") }]);
  const good = concat(imageOf(sm, 1024).chunks);
  const bad = Uint8Array.from(good);
  const dv = new DataView(bad.buffer);
  const countAt = bad.length - 12;
  dv.setBigUint64(countAt, dv.getBigUint64(countAt, true) + 1n, true);
  dv.setUint32(bad.length - 4, crc32c(bad.subarray(0, bad.length - 4)), true);
  assert.throws(
    () => restore(bad, []),
    (err: unknown) => err instanceof RaftKvError && err.code === "CORRUPT" && /entries/.test(err.message),
  );
});

test("a store image is written in one pass over the view, and opening it reads nothing", () => {
  const store = new MemStore();
  const sm = new StoreStateMachine({ store, maxSessions: 2 });
  for (let i = 0; i < 200; i++)
    sm.apply(i + 1, encodeCommand({ op: "put", key: `k${i}`, value: enc.encode(`v${i}`) }));
  let scans = 0;
  let entriesRead = 0;
  const inner = store.view();
  const counted: StoreView = {
    appliedIndex: inner.appliedIndex,
    get: (key) => inner.get(key),
    scan: (o) => {
      scans++;
      const it = inner.scan(o);
      return (function* (): Generator<StoreEntry> {
        for (const e of it) {
          entriesRead++;
          yield e;
        }
      })();
    },
    close: () => inner.close(),
  };
  const stream = new StoreImageStream(counted, 256);
  assert.equal(entriesRead, 0, "opening the stream read no entry (no sizing pass)");
  const first = stream.next();
  assert.ok(first !== null);
  const chunks: Uint8Array[] = [first.slice()];
  // Each piece is about chunkBytes of work: the first entries' chunk did not read the whole store.
  chunks.push(stream.next()!.slice());
  assert.ok(entriesRead < 100, `the first chunks read ${entriesRead} entries`);
  for (let c = stream.next(); c !== null; c = stream.next()) chunks.push(c.slice());
  stream.close();
  assert.equal(scans, 1);
  assert.equal(entriesRead, [...store.scan()].length);
  assert.equal(restore(concat(chunks), []).hash(), sm.hash());
});
