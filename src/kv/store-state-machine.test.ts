// The state machine on a Store against the one in memory (KvStateMachine): the same entries give the
// same results, reads and ranges, on the in-memory twin and on LMDB; etcd's per-key metadata; and a
// store reopened (cleanly or after a crash at its durable index) goes on with the same results.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import fc from "fast-check";
import { LmdbStore } from "../store/lmdb-store.ts";
import { MemStore } from "../store/mem-store.ts";
import type { Store } from "../store/store.ts";
import { encodeCommand, type KvCommand } from "./command.ts";
import type { KvResult } from "./result.ts";
import { KvStateMachine } from "./state-machine.ts";
import { type AppliedEntry, StoreStateMachine } from "./store-state-machine.ts";

const enc = new TextEncoder();
const hex = (u: Uint8Array | null): string | null => (u === null ? null : Buffer.from(u).toString("hex"));

/** Results with their byte arrays as hex, so that Buffers and views compare by content. */
function plain(r: KvResult | null): unknown {
  if (r === null || r.type !== "cas") return r;
  return { ...r, current: hex(r.current) };
}

// Keys where UTF-16 and UTF-8 order agree (the one place the two machines differ on purpose).
const keyArb = fc.constantFrom("a", "b", "ab", "abc", "b0", "é", "\u00e9t\u00e9", "z", "日本");
const valueArb = fc.uint8Array({ maxLength: 6 });
const sessionArb = fc.option(
  fc.record({ clientId: fc.constantFrom("c1", "c2", "c3", "c4"), seq: fc.integer({ min: 1, max: 6 }) }),
  { nil: undefined },
);
const commandArb: fc.Arbitrary<KvCommand> = fc
  .oneof(
    fc.record({ op: fc.constant("put" as const), key: keyArb, value: valueArb, session: sessionArb }),
    fc.record({ op: fc.constant("delete" as const), key: keyArb, session: sessionArb }),
    fc.record({
      op: fc.constant("cas" as const),
      key: keyArb,
      expected: fc.option(valueArb, { nil: null }),
      value: fc.option(valueArb, { nil: null }),
      session: sessionArb,
    }),
  )
  .map(({ session, ...rest }) => (session === undefined ? rest : { ...rest, session }) as KvCommand);
type Step = { kind: "command"; data: Uint8Array } | { kind: "noop" } | { kind: "garbage"; data: Uint8Array };
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 10,
    arbitrary: commandArb.map((c) => ({
      kind: "command" as const,
      data: encodeCommand(c),
    })),
  },
  { weight: 1, arbitrary: fc.constant({ kind: "noop" as const }) },
  {
    weight: 1,
    arbitrary: fc.uint8Array({ maxLength: 12 }).map((data) => ({ kind: "garbage" as const, data })),
  },
);

function entriesOf(steps: readonly Step[]): AppliedEntry[] {
  return steps.map((s, i) =>
    s.kind === "noop"
      ? { index: i + 1, kind: "noop", data: new Uint8Array(0) }
      : { index: i + 1, kind: "command", data: s.data },
  );
}

function reference(
  entries: readonly AppliedEntry[],
  maxSessions: number,
): { sm: KvStateMachine; results: unknown[] } {
  const sm = new KvStateMachine({ maxSessions });
  const results = entries.map((e) => {
    if (e.kind === "noop") {
      sm.applyNoop(e.index);
      return null;
    }
    return plain(sm.apply(e.index, e.data));
  });
  return { sm, results };
}

/** Applies `entries` in batches cut at `cuts` (positions), mixing apply, applyNoop and applyEntries. */
function applyInBatches(
  sm: StoreStateMachine,
  entries: readonly AppliedEntry[],
  cuts: readonly number[],
): unknown[] {
  const out: unknown[] = [];
  let at = 0;
  for (const cut of [...cuts.filter((c) => c > 0 && c < entries.length), entries.length].sort(
    (a, b) => a - b,
  )) {
    if (cut <= at) continue;
    const batch = entries.slice(at, cut);
    if (batch.length === 1) {
      const e = batch[0]!;
      if (e.kind === "noop") {
        sm.applyNoop(e.index);
        out.push(null);
      } else out.push(plain(sm.apply(e.index, e.data)));
    } else out.push(...sm.applyEntries(batch).map(plain));
    at = cut;
  }
  return out;
}

function sameReads(ref: KvStateMachine, sm: StoreStateMachine): void {
  assert.equal(sm.size, ref.size);
  assert.equal(sm.sessionCount, ref.sessionCount);
  for (const k of ["a", "b", "ab", "abc", "b0", "é", "\u00e9t\u00e9", "z", "日本", "nope"])
    assert.equal(hex(sm.get(k)), hex(ref.get(k)), `get ${k}`);
  for (const prefix of ["", "a", "ab", "b", "é", "x"]) {
    for (const limit of [1, 2, 100]) {
      for (const after of [undefined, "a", "ab", "b"]) {
        for (const maxBytes of [undefined, 1, 4, 9]) {
          const a = ref.range(prefix, limit, after, maxBytes);
          const b = sm.range(prefix, limit, after, maxBytes);
          const show = (r: typeof a) => ({
            more: r.more,
            entries: r.entries.map((e) => [e.key, hex(e.value)]),
          });
          assert.deepEqual(show(b), show(a), `range ${JSON.stringify({ prefix, limit, after, maxBytes })}`);
        }
      }
    }
  }
}

function differential(name: string, makeStore: () => { store: Store; done: () => void }, runs: number): void {
  test(`StoreStateMachine on ${name} gives KvStateMachine's results, reads and ranges`, () =>
    fc.assert(
      fc.property(
        fc.array(stepArb, { minLength: 1, maxLength: 60 }),
        fc.array(fc.nat(60), { maxLength: 8 }),
        fc.integer({ min: 1, max: 4 }),
        (steps, cuts, maxSessions) => {
          const entries = entriesOf(steps);
          const ref = reference(entries, maxSessions);
          const { store, done } = makeStore();
          try {
            const sm = new StoreStateMachine({ store, maxSessions });
            assert.deepEqual(applyInBatches(sm, entries, cuts), ref.results);
            assert.equal(sm.appliedIndex, entries.length);
            sameReads(ref.sm, sm);
            // A state machine opened again on the same store reads the same and hashes the same.
            const again = new StoreStateMachine({ store, maxSessions });
            assert.equal(again.hash(), sm.hash());
            sameReads(ref.sm, again);
          } finally {
            done();
          }
        },
      ),
      { numRuns: runs },
    ));
}

differential("the in-memory twin", () => ({ store: new MemStore(), done: () => undefined }), 300);

differential(
  "LMDB",
  () => {
    const root = mkdtempSync(join(tmpdir(), "raftkv-kv-lmdb-"));
    const store = LmdbStore.open({ dir: join(root, "state") });
    return {
      store,
      done: () => {
        void store.close().finally(() => rmSync(root, { recursive: true, force: true }));
      },
    };
  },
  30,
);

test("StoreStateMachine: a crash back to the durable index, then the log replayed, gives the same results (sessions too)", () =>
  fc.assert(
    fc.property(fc.array(stepArb, { minLength: 2, maxLength: 50 }), fc.nat(50), (steps, at) => {
      const entries = entriesOf(steps);
      const ref = reference(entries, 2);
      const store = new MemStore();
      const sm = new StoreStateMachine({ store, maxSessions: 2 });
      const durableAt = Math.min(at, entries.length);
      applyInBatches(sm, entries.slice(0, durableAt), []);
      store.makeDurable();
      applyInBatches(sm, entries.slice(durableAt), [durableAt + 3]);
      store.crash();
      // The restart: open on the store, replay the log after its applied index.
      const reopened = new StoreStateMachine({ store, maxSessions: 2 });
      assert.equal(reopened.appliedIndex, durableAt);
      const replayed = applyInBatches(reopened, entries.slice(durableAt), []);
      assert.deepEqual(replayed, ref.results.slice(durableAt));
      sameReads(ref.sm, reopened);
    }),
    { numRuns: 200 },
  ));

test("StoreStateMachine keeps etcd's create_revision, mod_revision and version per key", () => {
  const sm = new StoreStateMachine({ store: new MemStore() });
  assert.equal(sm.revision, 1); // etcd's empty store
  let index = 0;
  const run = (c: KvCommand): KvResult => sm.apply(++index, encodeCommand(c));
  const meta = (k: string) => {
    const r = sm.getRecord(k);
    return r === null ? null : [r.createRevision, r.modRevision, r.version];
  };
  const v = (s: string) => enc.encode(s);
  run({ op: "put", key: "a", value: v("1") });
  assert.deepEqual([sm.revision, meta("a")], [2, [2, 2, 1]]);
  run({ op: "put", key: "a", value: v("2") });
  run({ op: "put", key: "b", value: v("x") });
  assert.deepEqual([sm.revision, meta("a"), meta("b")], [4, [2, 3, 2], [4, 4, 1]]);
  sm.applyNoop(++index);
  run({ op: "delete", key: "a" });
  assert.deepEqual([sm.revision, meta("a")], [5, null]);
  run({ op: "delete", key: "a" }); // nothing to delete: no revision
  run({ op: "cas", key: "b", expected: v("no"), value: v("y") }); // failed: no revision
  assert.equal(sm.revision, 5);
  run({ op: "put", key: "a", value: v("3") }); // recreated: create_revision and version start again
  run({ op: "cas", key: "b", expected: v("x"), value: v("y") });
  assert.deepEqual([sm.revision, meta("a"), meta("b")], [7, [6, 6, 1], [4, 7, 2]]);
  assert.equal(run({ op: "put", key: "c", value: v("") }).type, "put");
  assert.equal(sm.size, 3);
  assert.equal(sm.appliedIndex, index);
});

test("StoreStateMachine orders keys by UTF-8 bytes (etcd's order), where KvStateMachine used UTF-16", () => {
  const sm = new StoreStateMachine({ store: new MemStore() });
  let index = 0;
  for (const key of ["\u{1f600}", "\uffff", "a"])
    sm.apply(++index, encodeCommand({ op: "put", key, value: enc.encode(key) }));
  assert.deepEqual(
    sm.range("", 10).entries.map((e) => e.key),
    ["a", "\uffff", "\u{1f600}"],
  );
});
