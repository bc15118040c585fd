// The Store conformance suite (store.ts states the contract): run against the in-memory twin and the
// LMDB store by store.test.ts. A randomized part checks every read, scan and view against a model
// (a sorted map per applied index) through writes, flushes, reopenings and commits landing at any time.

import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import type { DurableStore } from "./durable-store.ts";
import { compareBytes, prefixEnd, type ScanOptions, type StoreEntry } from "./store.ts";

export interface StoreHarness {
  /** The store as it is now (a new object after reopen). */
  store(): DurableStore;
  /** Closes cleanly and opens again on the same state. */
  reopen(): Promise<void>;
  /** Lets background work (LMDB commits) run. */
  settle(): Promise<void>;
  cleanup(): Promise<void>;
}

export interface StoreConformanceOptions {
  readonly name: string;
  create(): Promise<StoreHarness>;
  /** Fewer random runs for slow stores. */
  readonly runs?: number;
}

const enc = new TextEncoder();
const b = (s: string): Uint8Array => enc.encode(s);
const hex = (u: Uint8Array): string => Buffer.from(u).toString("hex");

/** Byte arrays compared by content (a store may hand out Buffers). */
function bytesEq(actual: Uint8Array | null | undefined, expected: Uint8Array | null): void {
  assert.equal(actual == null ? null : hex(actual), expected === null ? null : hex(expected));
}

function list(it: Iterable<StoreEntry>): [string, string][] {
  return Array.from(it, (e) => [hex(e.key), hex(e.value)]);
}

type Model = Map<string, Uint8Array>;

/** The model's entries within `o`, as list() shows them. */
function modelScan(m: Model, o: ScanOptions): [string, string][] {
  const keys = [...m.keys()].map((k) => Buffer.from(k, "hex")).sort(compareBytes);
  let out = keys.filter(
    (k) =>
      (o.start === undefined || compareBytes(k, o.start) >= 0) &&
      (o.end === undefined || compareBytes(k, o.end) < 0),
  );
  if (o.reverse === true) out = out.reverse();
  if (o.limit !== undefined) out = out.slice(0, o.limit);
  return out.map((k) => [k.toString("hex"), hex(m.get(k.toString("hex"))!)]);
}

export function runStoreConformance(o: StoreConformanceOptions): void {
  const withStore = async (fn: (h: StoreHarness) => Promise<void>): Promise<void> => {
    const h = await o.create();
    try {
      await fn(h);
    } finally {
      await h.cleanup();
    }
  };

  test(`${o.name}: a new store is empty at applied index 0`, () =>
    withStore(async (h) => {
      const s = h.store();
      assert.equal(s.appliedIndex, 0);
      assert.equal(s.durableIndex, 0);
      assert.equal(s.get(b("a")), null);
      assert.deepEqual(list(s.scan()), []);
    }));

  test(`${o.name}: a batch is read back inside it and after it, in byte order`, () =>
    withStore(async (h) => {
      const s = h.store();
      // "é" is 0xc3 0xa9: above every ASCII key; "a\u0000" sorts right after "a", before "a0".
      const keys = ["b", "a0", "a", "é", "a\u0000", "\uffff", "\u{1f600}"];
      const seen = s.write(3, (w) => {
        for (const k of keys) w.put(b(k), b(`v-${k}`));
        return w.get(b("a0"));
      });
      bytesEq(seen, b("v-a0"));
      assert.equal(s.appliedIndex, 3);
      const sorted = keys.map(b).sort(compareBytes);
      assert.deepEqual(
        list(s.scan()).map(([k]) => k),
        sorted.map(hex),
      );
      // UTF-8 byte order puts U+FFFF (ef bf bf) below U+1F600 (f0 9f 98 80), unlike UTF-16 order.
      assert.deepEqual(
        list(s.scan({ start: b("\uffff") })).map(([k]) => k),
        [hex(b("\uffff")), hex(b("\u{1f600}"))],
      );
      await h.settle();
      bytesEq(s.get(b("é")), b("v-é"));
      assert.equal(list(s.scan()).length, keys.length);
    }));

  test(`${o.name}: load fills an empty store at index 0; the first write then names the index`, () =>
    withStore(async (h) => {
      const s = h.store();
      s.load((w) => {
        w.put(b("b"), b("2"));
        w.put(b("a"), b("1"));
      });
      s.load((w) => w.put(b("c"), b("3")));
      assert.equal(s.appliedIndex, 0);
      const v = s.view();
      assert.deepEqual(list(v.scan()), [
        [hex(b("a")), hex(b("1"))],
        [hex(b("b")), hex(b("2"))],
        [hex(b("c")), hex(b("3"))],
      ]);
      v.close();
      s.write(40, () => undefined);
      assert.equal(s.appliedIndex, 40);
      assert.equal(await s.flush(), 40);
      await h.reopen();
      assert.equal(h.store().appliedIndex, 40);
      bytesEq(h.store().get(b("c")), b("3"));
      assert.throws(() => h.store().load(() => undefined), /store load at applied index 40/);
    }));

  test(`${o.name}: deletes say whether the key was there; a throwing batch leaves nothing`, () =>
    withStore(async (h) => {
      const s = h.store();
      s.write(1, (w) => {
        w.put(b("x"), b("1"));
        w.put(b("y"), b("2"));
      });
      const r = s.write(2, (w) => [w.delete(b("x")), w.delete(b("nope")), w.get(b("x"))]);
      assert.deepEqual(r.slice(0, 2), [true, false]);
      bytesEq(r[2] as Uint8Array | null, null);
      assert.throws(
        () =>
          s.write(3, (w) => {
            w.put(b("z"), b("3"));
            w.delete(b("y"));
            throw new Error("boom");
          }),
        /boom/,
      );
      assert.equal(s.appliedIndex, 2);
      assert.equal(s.get(b("z")), null);
      bytesEq(s.get(b("y")), b("2"));
      assert.throws(() => s.write(2, () => undefined), /index 2/);
      await h.settle();
      assert.deepEqual(list(s.scan()), [[hex(b("y")), hex(b("2"))]]);
    }));

  test(`${o.name}: scans honour start, end, limit and reverse, and prefix ends`, () =>
    withStore(async (h) => {
      const s = h.store();
      // "\u0000": the lowest key there is (lmdb's reverse range left it out unless told its low end).
      const keys = ["\u0000", "\u0000\u0000", "a", "ab", "abc", "abd", "ac", "b", "b\u00ff"];
      s.write(1, (w) => {
        for (const k of keys) w.put(b(k), k === "\u0000" ? new Uint8Array(0) : b(k));
      });
      for (const settled of [false, true]) {
        if (settled) await h.settle();
        const m: Model = new Map(keys.map((k) => [hex(b(k)), k === "\u0000" ? new Uint8Array(0) : b(k)]));
        const end = prefixEnd(b("ab"));
        const cases: ScanOptions[] = [
          {},
          { start: b("ab") },
          { start: b("ab"), ...(end === undefined ? {} : { end }) },
          { start: b("ab"), end: b("b"), limit: 2 },
          { reverse: true },
          { reverse: true, start: b("ab"), end: b("b") },
          { reverse: true, end: b("abd"), limit: 2 },
          { limit: 0 },
        ];
        for (const c of cases) assert.deepEqual(list(s.scan(c)), modelScan(m, c), JSON.stringify(c));
      }
      assert.equal(prefixEnd(new Uint8Array([0xff, 0xff])), undefined);
      assert.deepEqual(prefixEnd(new Uint8Array([1, 0xff])), new Uint8Array([2]));
    }));

  test(`${o.name}: a view keeps reading the state it was taken at`, () =>
    withStore(async (h) => {
      const s = h.store();
      s.write(1, (w) => {
        w.put(b("k1"), b("old"));
        w.put(b("k2"), b("old"));
      });
      await h.settle(); // the view reads committed state, not only batches still in flight
      const v = s.view();
      s.write(2, (w) => {
        w.put(b("k1"), b("new"));
        w.delete(b("k2"));
        w.put(b("k3"), b("new"));
      });
      await h.settle();
      s.write(3, (w) => w.put(b("k4"), b("new")));
      assert.equal(v.appliedIndex, 1);
      bytesEq(v.get(b("k1")), b("old"));
      bytesEq(v.get(b("k2")), b("old"));
      assert.equal(v.get(b("k3")), null);
      assert.deepEqual(
        list(v.scan()).map(([k, x]) => [k, x]),
        [
          [hex(b("k1")), hex(b("old"))],
          [hex(b("k2")), hex(b("old"))],
        ],
      );
      v.close();
      assert.throws(() => v.get(b("k1")), /after close/);
      assert.deepEqual(
        list(s.scan()).map(([k]) => k),
        ["k1", "k3", "k4"].map((k) => hex(b(k))),
      );
    }));

  test(`${o.name}: flush makes everything durable; a reopened store has it all`, () =>
    withStore(async (h) => {
      const big = new Uint8Array(1024 * 1024).map((_, i) => i & 0xff);
      h.store().write(5, (w) => {
        w.put(b("big"), big);
        w.put(b("small"), b("s"));
      });
      h.store().write(9, (w) => w.delete(b("small")));
      assert.equal(await h.store().flush(), 9);
      assert.equal(h.store().durableIndex, 9);
      h.store().write(10, (w) => w.put(b("after"), b("a")));
      await h.reopen();
      const s = h.store();
      assert.equal(s.appliedIndex, 10);
      assert.equal(s.durableIndex, 10);
      bytesEq(s.get(b("big")), big);
      assert.equal(s.get(b("small")), null);
      bytesEq(s.get(b("after")), b("a"));
    }));

  test(`${o.name}: backlogAtMost resolves once the batches in flight are committed`, () =>
    withStore(async (h) => {
      const s = h.store();
      for (let i = 1; i <= 50; i++) s.write(i, (w) => w.put(b(`k${i}`), new Uint8Array(1000)));
      await s.backlogAtMost(0);
      assert.equal(s.stats().pendingBatches, 0);
      assert.equal(s.appliedIndex, 50);
    }));

  test(`${o.name}: random batches, views, flushes and reopenings agree with a model`, () =>
    fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            {
              weight: 6,
              arbitrary: fc.record({
                kind: fc.constant("write" as const),
                ops: fc.array(
                  fc.tuple(
                    fc.boolean(),
                    fc.uint8Array({ minLength: 1, maxLength: 3, max: 4 }),
                    fc.uint8Array({ maxLength: 8 }),
                  ),
                  { maxLength: 6 },
                ),
                fail: fc.integer({ min: 0, max: 4 }).map((x) => x === 0),
              }),
            },
            { weight: 2, arbitrary: fc.constant({ kind: "settle" as const }) },
            { weight: 2, arbitrary: fc.constant({ kind: "view" as const }) },
            {
              weight: 3,
              arbitrary: fc.record({
                kind: fc.constant("scan" as const),
                start: fc.option(fc.uint8Array({ minLength: 1, maxLength: 2, max: 4 }), { nil: undefined }),
                end: fc.option(fc.uint8Array({ minLength: 1, maxLength: 2, max: 4 }), { nil: undefined }),
                limit: fc.option(fc.nat(5), { nil: undefined }),
                reverse: fc.boolean(),
              }),
            },
            { weight: 1, arbitrary: fc.constant({ kind: "flush" as const }) },
            { weight: 1, arbitrary: fc.constant({ kind: "reopen" as const }) },
          ),
          { maxLength: 40 },
        ),
        async (steps) => {
          const h = await o.create();
          try {
            const model: Model = new Map();
            let index = 0;
            const views: { view: ReturnType<DurableStore["view"]>; model: Model }[] = [];
            for (const step of steps) {
              const s = h.store();
              switch (step.kind) {
                case "write": {
                  const next = new Map(model);
                  const run = (): void =>
                    s.write(index + 1, (w) => {
                      for (const [put, key, value] of step.ops) {
                        if (put) {
                          w.put(key, value);
                          next.set(hex(key), value);
                        } else assert.equal(w.delete(key), next.delete(hex(key)));
                        const got = w.get(key);
                        assert.deepEqual(got === null ? null : hex(got), put ? hex(value) : null);
                      }
                      if (step.fail) throw new Error("abandoned batch");
                    });
                  if (step.fail) assert.throws(run, /abandoned/);
                  else {
                    run();
                    index++;
                    model.clear();
                    for (const [k, v] of next) model.set(k, v);
                  }
                  break;
                }
                case "settle":
                  await h.settle();
                  break;
                case "view":
                  views.push({ view: s.view(), model: new Map(model) });
                  break;
                case "scan": {
                  const opts: ScanOptions = {
                    ...(step.start === undefined ? {} : { start: step.start }),
                    ...(step.end === undefined ? {} : { end: step.end }),
                    ...(step.limit === undefined ? {} : { limit: step.limit }),
                    reverse: step.reverse,
                  };
                  assert.deepEqual(list(s.scan(opts)), modelScan(model, opts));
                  for (const v of views) assert.deepEqual(list(v.view.scan(opts)), modelScan(v.model, opts));
                  break;
                }
                case "flush":
                  assert.equal(await s.flush(), index);
                  break;
                case "reopen":
                  for (const v of views) v.view.close();
                  views.length = 0;
                  await h.reopen();
                  break;
              }
              assert.equal(h.store().appliedIndex, index);
            }
            for (const v of views) {
              assert.deepEqual(list(v.view.scan()), modelScan(v.model, {}));
              v.view.close();
            }
            assert.deepEqual(list(h.store().scan()), modelScan(model, {}));
          } finally {
            await h.cleanup();
          }
        },
      ),
      { numRuns: o.runs ?? 100 },
    ));
}
