import assert from "node:assert/strict";
import { test } from "node:test";
import { Prng } from "../lib/prng.ts";
import { KeyIndex } from "./key-index.ts";
import { SortedKeys } from "./sorted-keys.ts";

const te = new TextEncoder();

/** Pieces keys are built from: one-byte (incl. NUL and U+00FF), two-byte, astral and lone surrogates,
 *  so that keys mix forms, share prefixes and sort across the U+E000..U+FFFF / astral boundary. */
const PIECES = [
  "a",
  "b",
  "ab",
  "\u0000",
  "\u00e9",
  "\u00ff",
  "\u0100",
  "\u4e2d",
  "\uffff",
  "\u{1f600}",
  "\ud800",
  "\udc00",
];

function randomKey(rng: Prng): string {
  let key = "";
  const pieces = rng.int(0, 4);
  for (let i = 0; i < pieces; i++) key += rng.pick(PIECES);
  return key;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function check(index: KeyIndex, keys: SortedKeys, model: Map<string, number>, rng: Prng): void {
  assert.equal(index.size, model.size);
  const ids = keys.current();
  const sorted = [...model.keys()].sort();
  assert.deepEqual(
    Array.from(ids, (id) => index.key(id)),
    sorted,
  );
  for (const id of ids) {
    const key = index.key(id);
    assert.equal(index.handleOf(id), model.get(key));
    assert.equal(index.utf8Length(id), te.encode(key).length, JSON.stringify(key));
    const probe = randomKey(rng);
    assert.equal(Math.sign(index.compareKey(id, probe)), cmp(key, probe));
    assert.equal(index.startsWith(id, probe), key.startsWith(probe));
  }
  for (let i = 1; i < ids.length; i++) assert.ok(index.compareIds(ids[i - 1]!, ids[i]!) < 0);
}

test("KeyIndex behaves as a Map under random sets, deletes, reads, pins and compaction", () => {
  for (let seed = 1; seed <= 40; seed++) {
    const rng = new Prng(seed);
    const index = new KeyIndex({ minCompactBytes: rng.pick([1, 64, 4096]) });
    const keys = new SortedKeys(index);
    const model = new Map<string, number>();
    let pins = 0;
    try {
      for (let step = 0; step < 3000; step++) {
        const key = randomKey(rng);
        const r = rng.next();
        if (r < 0.45) {
          const handle = rng.int(0, 0xffff_ffff);
          assert.equal(index.set(key, handle), model.get(key) ?? -1);
          model.set(key, handle);
        } else if (r < 0.75) {
          assert.equal(index.delete(key), model.get(key) ?? -1);
          if (model.delete(key)) keys.noteRemoved();
        } else if (r < 0.95) {
          assert.equal(index.get(key), model.get(key) ?? -1);
        } else if (r < 0.97) {
          index.pin();
          pins++;
        } else if (r < 0.99 && pins > 0) {
          index.unpin();
          pins--;
        } else {
          check(index, keys, model, rng);
        }
      }
      while (pins-- > 0) index.unpin();
      check(index, keys, model, rng);
      assert.equal(index.retiredCount, 0, "a read with nothing pinned recycles every retired id");
    } catch (err) {
      console.error(`KeyIndex model test failed at seed ${seed}`);
      throw err;
    }
  }
});

test("a deleted key's id is reused only after SortedKeys dropped it, and not while pinned", () => {
  const index = new KeyIndex();
  const keys = new SortedKeys(index);
  index.set("a", 1);
  index.set("b", 2);
  const ids = keys.current();
  const idOfA = ids[0]!;
  index.pin();
  index.delete("a");
  index.set("c", 3);
  assert.equal(index.key(idOfA), "a", "a retired id keeps its key");
  keys.current();
  index.set("d", 4);
  assert.equal(index.key(idOfA), "a", "no reuse while pinned");
  assert.deepEqual(
    Array.from(ids, (id) => index.key(id)),
    ["a", "b"],
  );
  index.unpin();
  assert.deepEqual(
    Array.from(keys.current(), (id) => index.key(id)),
    ["b", "c", "d"],
  );
  index.set("e", 5);
  assert.equal(index.key(idOfA), "e", "recycled after an unpinned read");
  assert.deepEqual(
    Array.from(keys.current(), (id) => index.key(id)),
    ["b", "c", "d", "e"],
  );
});

test("many keys: the table grows, deletes shift back, and compaction shrinks the arena", () => {
  const index = new KeyIndex();
  const keys = new SortedKeys(index);
  const n = 50_000;
  for (let i = 0; i < n; i++) assert.equal(index.set(`key-${(i * 7919) % n}`, i), -1);
  const full = index.footprintBytes;
  for (let i = 0; i < n; i++) if (i % 10 !== 0) assert.ok(index.delete(`key-${i}`) >= 0);
  for (let i = 0; i < n; i++) assert.equal(index.get(`key-${i}`) >= 0, i % 10 === 0, `key-${i}`);
  const ids = keys.current();
  assert.equal(ids.length, n / 10);
  assert.ok(index.footprintBytes < full, `${index.footprintBytes} bytes after compaction, ${full} before`);
  const expected = Array.from({ length: n / 10 }, (_, i) => `key-${i * 10}`).sort();
  assert.deepEqual(
    Array.from(ids, (id) => index.key(id)),
    expected,
  );
  for (let i = 0; i < n; i++) index.set(`key-${i}`, i);
  assert.equal(keys.current().length, n);
});

test("long keys in both forms round-trip, and empty and NUL keys are distinct", () => {
  const index = new KeyIndex();
  const long1 = "x".repeat(100_000);
  const long2 = `${"\u4e2d".repeat(20_000)}\u{1f600}`;
  for (const k of [long1, long2, "", "\u0000", "\u0000\u0000"]) assert.equal(index.set(k, k.length), -1);
  const ids = new SortedKeys(index).current();
  assert.deepEqual(
    Array.from(ids, (id) => index.key(id)),
    ["", "\u0000", "\u0000\u0000", long1, long2],
  );
  assert.equal(index.get(long1.slice(1)), -1);
  assert.equal(index.get(long2), long2.length);
  assert.equal(index.utf8Length(ids[4]!), te.encode(long2).length);
});

test("set refuses handles that do not fit a uint32", () => {
  const index = new KeyIndex();
  assert.throws(() => index.set("k", -1), /not a uint32/);
  assert.throws(() => index.set("k", 2 ** 32), /not a uint32/);
  assert.throws(() => index.set("k", 1.5), /not a uint32/);
});
