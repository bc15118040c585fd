import assert from "node:assert/strict";
import { test } from "node:test";
import { RaftKvError } from "../lib/errors.ts";
import { Prng } from "../lib/prng.ts";
import type { KvResult } from "./result.ts";
import { DEFAULT_MAX_SESSIONS, SessionTable, STALE_SEQUENCE } from "./session-table.ts";

const put = (revision: number): KvResult => ({ type: "put", revision });

test("thesis §6.3: a new seq applies, a retry of the last seq gets its cached result, older is stale", () => {
  const t = new SessionTable();
  assert.equal(t.check({ clientId: "c", seq: 1 }), null);
  t.record("c", 1, 10, put(10));
  assert.deepEqual(t.check({ clientId: "c", seq: 1 }), put(10));
  assert.equal(t.check({ clientId: "c", seq: 2 }), null);
  t.record("c", 5, 11, put(11)); // gaps are allowed: only the order matters
  assert.deepEqual(t.check({ clientId: "c", seq: 5 }), put(11));
  assert.equal(t.check({ clientId: "c", seq: 4 }), null, "in the window and never applied: applies");
  assert.deepEqual(t.check({ clientId: "c", seq: 1 }), put(10), "in the window and applied: cached");
  assert.equal(t.check({ clientId: "c", seq: 0 }), STALE_SEQUENCE, "5 or more below the highest");
  assert.match(STALE_SEQUENCE.type === "error" ? STALE_SEQUENCE.message : "", /^stale sequence number/);
});

test("pipelined writes on one client id: any order within the window applies each once", () => {
  const t = new SessionTable();
  // Seqs 1..5 in flight at once; the log orders them 3, 5, 1, 4, 2.
  let index = 0;
  for (const seq of [3, 5, 1, 4, 2]) {
    assert.equal(t.check({ clientId: "p", seq }), null, `seq ${seq} has not applied`);
    t.record("p", seq, ++index, put(index));
  }
  for (const [seq, at] of [
    [3, 1],
    [5, 2],
    [1, 3],
    [4, 4],
    [2, 5],
  ] as const)
    assert.deepEqual(t.check({ clientId: "p", seq }), put(at), `retry of seq ${seq}`);
  // Seq 6 moves the window to (1, 6]: seq 1's result is gone, seq 2's still answers.
  t.record("p", 6, ++index, put(index));
  assert.equal(t.check({ clientId: "p", seq: 1 }), STALE_SEQUENCE);
  assert.deepEqual(t.check({ clientId: "p", seq: 2 }), put(5));
  assert.deepEqual(
    t.get("p")?.writes.map((w) => w.seq),
    [2, 3, 4, 5, 6],
  );
  // A jump far ahead leaves only the new write in the window; a write left behind is refused.
  t.record("p", 100, ++index, put(index));
  assert.deepEqual(
    t.get("p")?.writes.map((w) => w.seq),
    [100],
  );
  assert.equal(t.check({ clientId: "p", seq: 7 }), STALE_SEQUENCE);
  assert.equal(t.check({ clientId: "p", seq: 96 }), null);
});

test("eviction removes the session with the oldest last-applied index", () => {
  const t = new SessionTable(3);
  t.record("a", 1, 1, put(1));
  t.record("b", 1, 2, put(2));
  t.record("c", 1, 3, put(3));
  t.record("a", 2, 4, put(4)); // a is now the newest
  t.record("d", 1, 5, put(5)); // evicts b (index 2)
  assert.deepEqual(
    [...t.entries()].map(([id, s]) => [id, s.index]),
    [
      ["c", 3],
      ["a", 4],
      ["d", 5],
    ],
  );
  assert.equal(t.check({ clientId: "b", seq: 1 }), null, "evicted: a retry would apply again");
});

test("load keeps the newest maxSessions, oldest first", () => {
  const t = new SessionTable(2);
  const one = (index: number) => ({ writes: [{ seq: 1, index, result: put(index) }], index });
  t.load([
    ["a", one(1)],
    ["b", one(2)],
    ["c", one(3)],
  ]);
  assert.deepEqual(
    [...t.entries()].map(([id]) => id),
    ["b", "c"],
  );
});

test("maxSessions must be a safe integer >= 1 (CONFIG)", () => {
  assert.equal(new SessionTable().maxSessions, DEFAULT_MAX_SESSIONS);
  assert.equal(DEFAULT_MAX_SESSIONS, 10_000);
  for (const bad of [0, -1, 1.5, Number.NaN]) {
    assert.throws(
      () => new SessionTable(bad),
      (e: unknown) => e instanceof RaftKvError && e.code === "CONFIG",
    );
  }
});

test("eviction order survives queue compaction over many writes (seeded, replays from the seed)", () => {
  const seed = 20_240_611;
  const prng = new Prng(seed);
  const t = new SessionTable(5);
  const model = new Map<string, number>(); // clientId -> index, in ascending index order
  const seqs = new Map<string, number>();
  for (let index = 1; index <= 20_000; index++) {
    const clientId = `c${prng.int(0, prng.chance(0.9) ? 3 : 40)}`;
    const seq = (seqs.get(clientId) ?? 0) + 1;
    seqs.set(clientId, seq);
    t.record(clientId, seq, index, put(index));
    model.delete(clientId);
    model.set(clientId, index);
    if (model.size > 5) model.delete(model.keys().next().value!);
    if (index % 997 === 0 || index === 20_000) {
      const got = [...t.entries()].map(([id, s]) => [id, s.index]);
      assert.deepEqual(got, [...model.entries()], `seed ${seed}, index ${index}`);
    }
  }
});
