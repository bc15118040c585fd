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
  assert.equal(t.check({ clientId: "c", seq: 4 }), STALE_SEQUENCE);
  assert.deepEqual(STALE_SEQUENCE, { type: "error", message: "stale sequence number" });
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
  t.load([
    ["a", { seq: 1, index: 1, result: put(1) }],
    ["b", { seq: 1, index: 2, result: put(2) }],
    ["c", { seq: 1, index: 3, result: put(3) }],
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
