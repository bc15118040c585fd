import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { AssertionError } from "../lib/assert.ts";
import { RaftKvError } from "../lib/errors.ts";
import { type ClientSession, encodeCommand, type KvCommand } from "./command.ts";
import type { KvResult } from "./result.ts";
import { STALE_SEQUENCE, WRITES_IN_FLIGHT_PER_CLIENT } from "./session-table.ts";
import { KvStateMachine } from "./state-machine.ts";
import { MemValueStore } from "./value-store.ts";

const te = new TextEncoder();
const b = (s: string) => te.encode(s);
const put = (key: string, value: string, session?: ClientSession) =>
  encodeCommand({ op: "put", key, value: b(value), ...(session ? { session } : {}) });
const del = (key: string, session?: ClientSession) =>
  encodeCommand({ op: "delete", key, ...(session ? { session } : {}) });
const cas = (key: string, expected: string | null, value: string | null, session?: ClientSession) =>
  encodeCommand({
    op: "cas",
    key,
    expected: expected === null ? null : b(expected),
    value: value === null ? null : b(value),
    ...(session ? { session } : {}),
  });

/** Applies each entry at the next index and returns the results. */
function feed(sm: KvStateMachine, entries: readonly Uint8Array[]): KvResult[] {
  return entries.map((e) => sm.apply(sm.appliedIndex + 1, e));
}

function contents(sm: KvStateMachine): [string, string][] {
  return sm.range("", 1_000_000).entries.map((e) => [e.key, new TextDecoder().decode(e.value)]);
}

test("put stores the value and reports its revision; delete says whether the key existed", () => {
  const sm = new KvStateMachine();
  assert.deepEqual(sm.apply(1, put("a", "1")), { type: "put", revision: 1 });
  assert.deepEqual(sm.apply(2, put("a", "2")), { type: "put", revision: 2 });
  assert.deepEqual(sm.get("a"), b("2"));
  assert.equal(sm.size, 1);
  assert.deepEqual(sm.apply(3, del("a")), { type: "delete", revision: 3, existed: true });
  assert.deepEqual(sm.apply(4, del("a")), { type: "delete", revision: 4, existed: false });
  assert.equal(sm.get("a"), null);
  assert.equal(sm.size, 0);
  assert.equal(sm.appliedIndex, 4);
});

test("cas with expected null succeeds only on an absent key", () => {
  const sm = new KvStateMachine();
  assert.deepEqual(sm.apply(1, cas("k", null, "v")), {
    type: "cas",
    revision: 1,
    succeeded: true,
    current: b("v"),
  });
  assert.deepEqual(sm.apply(2, cas("k", null, "w")), {
    type: "cas",
    revision: 2,
    succeeded: false,
    current: b("v"),
  });
  assert.deepEqual(sm.get("k"), b("v"));
  // Absent key, delete on match: succeeds and leaves it absent.
  assert.deepEqual(sm.apply(3, cas("x", null, null)), {
    type: "cas",
    revision: 3,
    succeeded: true,
    current: null,
  });
  assert.equal(sm.size, 1);
});

test("cas compares bytes exactly, swaps or deletes on match, reports the current value on mismatch", () => {
  const sm = new KvStateMachine();
  feed(sm, [put("k", "v1")]);
  assert.deepEqual(sm.apply(2, cas("k", "v", "x")), {
    type: "cas",
    revision: 2,
    succeeded: false,
    current: b("v1"),
  });
  assert.deepEqual(sm.apply(3, cas("k", "v1x", "x")), {
    type: "cas",
    revision: 3,
    succeeded: false,
    current: b("v1"),
  });
  assert.deepEqual(sm.apply(4, cas("k", "v1", "v2")), {
    type: "cas",
    revision: 4,
    succeeded: true,
    current: b("v2"),
  });
  assert.deepEqual(sm.apply(5, cas("absent", "v2", "x")), {
    type: "cas",
    revision: 5,
    succeeded: false,
    current: null,
  });
  assert.deepEqual(sm.apply(6, cas("k", "v2", null)), {
    type: "cas",
    revision: 6,
    succeeded: true,
    current: null,
  });
  assert.equal(sm.get("k"), null);
  assert.deepEqual(sm.apply(7, cas("k", "", "e")), {
    type: "cas",
    revision: 7,
    succeeded: false,
    current: null,
  });
  feed(sm, [put("k", "")]);
  assert.deepEqual(sm.apply(9, cas("k", "", "e")), {
    type: "cas",
    revision: 9,
    succeeded: true,
    current: b("e"),
  });
});

test("an undecodable command yields the same error result everywhere and only advances the index", () => {
  const garbage = [new Uint8Array(0), Uint8Array.from([9, 9, 9]), put("k", "v").subarray(0, 5)];
  const a = new KvStateMachine();
  const c = new KvStateMachine();
  const ra = feed(a, garbage);
  assert.deepEqual(ra, feed(c, garbage));
  for (const r of ra) {
    assert.equal(r.type, "error");
    if (r.type === "error") assert.match(r.message, /^CORRUPT: kv command: /);
  }
  assert.equal(a.appliedIndex, 3);
  assert.equal(a.size, 0);
});

test("apply and applyNoop require exactly appliedIndex + 1", () => {
  const sm = new KvStateMachine();
  assert.throws(() => sm.apply(2, put("k", "v")), AssertionError);
  assert.throws(() => sm.applyNoop(0), AssertionError);
  sm.applyNoop(1);
  assert.equal(sm.appliedIndex, 1);
  assert.throws(() => sm.apply(1, put("k", "v")), AssertionError);
  assert.deepEqual(sm.apply(2, put("k", "v")), { type: "put", revision: 2 });
});

test("thesis §6.3: a retried (clientId, seq) is applied once and answered from the session table", () => {
  const sm = new KvStateMachine();
  const s1 = { clientId: "client-1", seq: 1 };
  const first = put("counter", "1", s1);
  assert.deepEqual(sm.apply(1, first), { type: "put", revision: 1 });
  feed(sm, [put("counter", "other writer")]);
  // The retry (e.g. after a leader change) comes back with the original result and changes nothing.
  assert.deepEqual(sm.apply(3, first), { type: "put", revision: 1 });
  assert.deepEqual(sm.get("counter"), b("other writer"));
  // A retried cas returns its first outcome, even though running it again would now fail.
  const c2 = cas("lock", null, "me", { clientId: "client-1", seq: 2 });
  assert.deepEqual(sm.apply(4, c2), { type: "cas", revision: 4, succeeded: true, current: b("me") });
  assert.deepEqual(sm.apply(5, c2), { type: "cas", revision: 4, succeeded: true, current: b("me") });
  // A seq below the last that never applied applies (a pipelining client's writes, ordered differently
  // by the log); one 5 or more below the highest is stale and does not apply.
  const s7 = { clientId: "client-1", seq: 7 };
  assert.deepEqual(sm.apply(6, put("late", "x", s7)), { type: "put", revision: 6 });
  assert.deepEqual(sm.apply(7, put("late", "y", { clientId: "client-1", seq: 3 })), {
    type: "put",
    revision: 7,
  });
  assert.deepEqual(sm.apply(8, del("counter", s1)), STALE_SEQUENCE);
  assert.deepEqual(sm.get("counter"), b("other writer"));
  assert.deepEqual(sm.get("late"), b("y"));
  // Sessions are per client.
  assert.deepEqual(sm.apply(9, del("counter", { clientId: "client-2", seq: 1 })), {
    type: "delete",
    revision: 9,
    existed: true,
  });
  assert.equal(sm.sessionCount, 2);
});

test("session eviction is deterministic: replicas evict the same client, who may then double-apply", () => {
  const replicas = [new KvStateMachine({ maxSessions: 2 }), new KvStateMachine({ maxSessions: 2 })];
  const entries = [
    put("k", "a1", { clientId: "a", seq: 1 }),
    put("k", "b1", { clientId: "b", seq: 1 }),
    put("k", "a2", { clientId: "a", seq: 2 }),
    put("k", "c1", { clientId: "c", seq: 1 }), // evicts b: its last write (index 2) is the oldest
    put("k", "b1", { clientId: "b", seq: 1 }), // b's retry is not recognised and applies again
    put("k", "a2", { clientId: "a", seq: 2 }), // a was evicted by b's return (index 3 oldest)
  ];
  const results = replicas.map((sm) => feed(sm, entries));
  assert.deepEqual(results[0], results[1]);
  assert.deepEqual(results[0]?.slice(4), [
    { type: "put", revision: 5 },
    { type: "put", revision: 6 },
  ]);
  assert.equal(replicas[0]?.sessionCount, 2);
  assert.equal(replicas[0]?.hash(), replicas[1]?.hash());
  assert.throws(
    () => new KvStateMachine({ maxSessions: 0 }),
    (e: unknown) => e instanceof RaftKvError && e.code === "CONFIG",
  );
});

test("range returns keys with the prefix in UTF-16 code-unit order, up to limit, with more", () => {
  const sm = new KvStateMachine();
  feed(
    sm,
    ["b/2", "a/1", "b/1", "b/10", "b", "c", "b/\u{1f600}", "b/\uffff"].map((k) => put(k, k)),
  );
  const keys = (prefix: string, limit: number) => sm.range(prefix, limit).entries.map((e) => e.key);
  assert.deepEqual(keys("b/", 10), ["b/1", "b/10", "b/2", "b/\u{1f600}", "b/\uffff"]);
  assert.equal(sm.range("b/", 10).more, false);
  assert.deepEqual(sm.range("b/", 2).entries, [
    { key: "b/1", value: b("b/1") },
    { key: "b/10", value: b("b/10") },
  ]);
  assert.equal(sm.range("b/", 2).more, true);
  assert.equal(sm.range("b/", 5).more, false);
  assert.equal(sm.range("", 8).more, false);
  assert.equal(sm.range("", 7).more, true);
  assert.deepEqual(keys("zz", 5), []);
  feed(sm, [del("b/10"), put("b/0", "x"), del("a/1")]);
  assert.deepEqual(keys("b/", 3), ["b/0", "b/1", "b/2"]);
  assert.deepEqual(keys("a", 3), []);
  for (const bad of [0, -1, 1.5, Number.NaN]) {
    assert.throws(
      () => sm.range("", bad),
      (e: unknown) => e instanceof RaftKvError && e.code === "INVALID_ARGUMENT",
    );
  }
});

test("snapshot/restore preserves contents, applied index, sessions and hash", () => {
  const sm = new KvStateMachine();
  const s = { clientId: "c", seq: 7 };
  feed(sm, [put("x", "1"), put("\u00e9t\u00e9", "2"), del("x"), put("y", "3", s), cas("z", null, "4")]);
  sm.applyNoop(6);
  const restored = KvStateMachine.restore(sm.snapshot());
  assert.equal(restored.appliedIndex, 6);
  assert.equal(restored.size, sm.size);
  assert.deepEqual(contents(restored), contents(sm));
  assert.equal(restored.hash(), sm.hash());
  assert.equal(restored.sessionCount, 1);
  assert.deepEqual(restored.snapshot(), sm.snapshot());
  // The session table survived: the retry is answered from it.
  assert.deepEqual(restored.apply(7, put("y", "3", s)), { type: "put", revision: 4 });
  // An empty machine round-trips too.
  const empty = KvStateMachine.restore(new KvStateMachine().snapshot());
  assert.equal(empty.appliedIndex, 0);
  assert.equal(empty.size, 0);
});

test("restore rejects every corrupted byte, truncation and extension with CORRUPT", () => {
  const sm = new KvStateMachine();
  feed(sm, [put("a", "1", { clientId: "c", seq: 1 }), cas("b", null, "2", { clientId: "d", seq: 3 })]);
  const snap = sm.snapshot();
  const isCorrupt = (e: unknown) => e instanceof RaftKvError && e.code === "CORRUPT";
  for (let i = 0; i < snap.length; i++) {
    for (const bit of [0, 7]) {
      const bad = snap.slice();
      bad[i] = bad[i]! ^ (1 << bit);
      assert.throws(() => KvStateMachine.restore(bad), isCorrupt, `byte ${i} bit ${bit}`);
    }
  }
  for (let n = 0; n < snap.length; n++) {
    assert.throws(() => KvStateMachine.restore(snap.subarray(0, n)), isCorrupt, `truncated to ${n}`);
  }
  assert.throws(() => KvStateMachine.restore(Uint8Array.from([...snap, 0])), isCorrupt);
});

test("replicas fed the same entries have equal hashes and byte-identical snapshots, however they got there", () => {
  const entries = [
    put("a", "1"),
    put("b", "2", { clientId: "c1", seq: 1 }),
    del("a"),
    cas("b", "2", "3", { clientId: "c2", seq: 1 }),
    put("a", "4"),
    Uint8Array.from([0xde, 0xad]),
    put("c", "5", { clientId: "c1", seq: 2 }),
  ];
  const a = new KvStateMachine();
  feed(a, entries);
  // b joins late from a snapshot taken halfway, then applies the rest.
  const early = new KvStateMachine();
  feed(early, entries.slice(0, 3));
  const late = KvStateMachine.restore(early.snapshot());
  feed(late, entries.slice(3));
  assert.equal(late.hash(), a.hash());
  assert.deepEqual(late.snapshot(), a.snapshot());
  // A different history gives a different hash.
  const other = new KvStateMachine();
  feed(other, entries.slice(0, 6));
  assert.notEqual(other.hash(), a.hash());
});

const TEST_KEYS = ["a", "b", "ab", "\u00e9", "\u{1f600}"];
const workloadCommand: fc.Arbitrary<KvCommand> = (() => {
  const key = fc.constantFrom(...TEST_KEYS);
  const value = fc.constantFrom("", "x", "y").map(b);
  const session = fc.option(
    fc
      .tuple(fc.constantFrom("c1", "c2", "c3", "c4"), fc.integer({ min: 1, max: 6 }))
      .map(([clientId, seq]): ClientSession => ({ clientId, seq })),
    { nil: undefined },
  );
  const s = (x: ClientSession | undefined) => (x === undefined ? {} : { session: x });
  return fc.oneof(
    fc.tuple(key, value, session).map(([k, v, x]): KvCommand => ({ op: "put", key: k, value: v, ...s(x) })),
    fc.tuple(key, session).map(([k, x]): KvCommand => ({ op: "delete", key: k, ...s(x) })),
    fc
      .tuple(key, fc.option(value), fc.option(value), session)
      .map(([k, e, v, x]): KvCommand => ({ op: "cas", key: k, expected: e, value: v, ...s(x) })),
  );
})();

/** A plain re-statement of the semantics, to check the state machine against. */
function model(
  cmds: readonly KvCommand[],
  maxSessions: number,
): { results: KvResult[]; data: Map<string, Uint8Array> } {
  const data = new Map<string, Uint8Array>();
  // Per client: the highest seq applied, and the results of the seqs applied within the window below it.
  const sessions = new Map<string, { highest: number; results: Map<number, KvResult> }>();
  const same = (x: Uint8Array | null, y: Uint8Array | null) =>
    x === null || y === null ? x === y : x.length === y.length && x.every((v, i) => v === y[i]);
  const results = cmds.map((cmd, i): KvResult => {
    const index = i + 1;
    const last = cmd.session ? sessions.get(cmd.session.clientId) : undefined;
    if (cmd.session && last && cmd.session.seq <= last.highest - WRITES_IN_FLIGHT_PER_CLIENT)
      return STALE_SEQUENCE;
    const cached = cmd.session ? last?.results.get(cmd.session.seq) : undefined;
    if (cached !== undefined) return cached;
    let result: KvResult;
    if (cmd.op === "put") {
      data.set(cmd.key, cmd.value);
      result = { type: "put", revision: index };
    } else if (cmd.op === "delete") {
      result = { type: "delete", revision: index, existed: data.delete(cmd.key) };
    } else {
      const current = data.get(cmd.key) ?? null;
      const succeeded = same(current, cmd.expected);
      if (succeeded && cmd.value === null) data.delete(cmd.key);
      if (succeeded && cmd.value !== null) data.set(cmd.key, cmd.value);
      result = { type: "cas", revision: index, succeeded, current: succeeded ? cmd.value : current };
    }
    if (cmd.session) {
      const highest = Math.max(last?.highest ?? 0, cmd.session.seq);
      const kept = [...(last?.results ?? [])].filter(([q]) => q > highest - WRITES_IN_FLIGHT_PER_CLIENT);
      sessions.delete(cmd.session.clientId);
      sessions.set(cmd.session.clientId, {
        highest,
        results: new Map([...kept, [cmd.session.seq, result]]),
      });
      if (sessions.size > maxSessions) sessions.delete(sessions.keys().next().value!);
    }
    return result;
  });
  return { results, data };
}

test("random workloads: results and contents match a model; replicas agree even via a mid-way restore", () => {
  fc.assert(
    fc.property(fc.array(workloadCommand, { maxLength: 60 }), fc.nat(), (cmds, cut) => {
      const entries = cmds.map((c) => encodeCommand(c));
      const a = new KvStateMachine({ maxSessions: 2 });
      const resultsA = feed(a, entries);
      const expected = model(cmds, 2);
      assert.deepEqual(resultsA, expected.results);
      const sorted = [...expected.data.entries()].sort(([x], [y]) => (x < y ? -1 : 1));
      assert.deepEqual(
        a.range("", 100).entries,
        sorted.map(([key, value]) => ({ key, value })),
      );

      const at = cut % (entries.length + 1);
      const first = new KvStateMachine({ maxSessions: 2 });
      const resultsB = feed(first, entries.slice(0, at));
      const b2 = KvStateMachine.restore(first.snapshot(), { maxSessions: 2 });
      resultsB.push(...feed(b2, entries.slice(at)));
      assert.deepEqual(resultsB, resultsA);
      assert.equal(b2.hash(), a.hash());
      assert.deepEqual(b2.snapshot(), a.snapshot());
    }),
    { numRuns: 300 },
  );
});

/** A MemValueStore that counts its live handles. */
class CountingStore extends MemValueStore {
  live = 0;
  override add(bytes: Uint8Array): number {
    this.live++;
    return super.add(bytes);
  }
  override release(handle: number): void {
    super.release(handle);
    this.live--;
  }
  override clear(): void {
    super.clear();
    this.live = 0;
  }
}

test("values live in the store given: one live handle per key, released on overwrite and delete", () => {
  fc.assert(
    fc.property(fc.array(workloadCommand, { maxLength: 60 }), (cmds) => {
      const values = new CountingStore();
      const sm = new KvStateMachine({ maxSessions: 2, values });
      feed(
        sm,
        cmds.map((c) => encodeCommand(c)),
      );
      assert.equal(values.live, sm.size);
      const again = new CountingStore();
      again.add(b("left over from before"));
      const restored = KvStateMachine.restore(sm.snapshot(), { maxSessions: 2, values: again });
      assert.equal(again.live, restored.size, "restore clears the store first");
      assert.deepEqual(restored.snapshot(), sm.snapshot());
    }),
    { numRuns: 200 },
  );
});

function drain(stream: { next(): Uint8Array | null }): Uint8Array {
  const parts: Uint8Array[] = [];
  for (let c = stream.next(); c !== null; c = stream.next()) parts.push(c);
  return Uint8Array.from(parts.flatMap((p) => [...p]));
}

test("snapshotStream gives snapshot()'s bytes in chunks, of the moment it was opened", () => {
  fc.assert(
    fc.property(
      fc.array(workloadCommand, { maxLength: 40 }),
      fc.array(workloadCommand, { maxLength: 20 }),
      fc.integer({ min: 1, max: 64 }),
      (before, during, chunkBytes) => {
        const values = new CountingStore();
        const sm = new KvStateMachine({ maxSessions: 2, values });
        feed(
          sm,
          before.map((c) => encodeCommand(c)),
        );
        const expected = sm.snapshot();
        const stream = sm.snapshotStream(chunkBytes);
        assert.equal(stream.sizeBytes, expected.length);
        assert.equal(stream.appliedIndex, sm.appliedIndex);
        const first = stream.next();
        feed(
          sm,
          during.map((c) => encodeCommand(c)),
        );
        const rest = drain(stream);
        assert.deepEqual(Uint8Array.from([...(first ?? []), ...rest]), expected);
        stream.close();
        assert.equal(values.live, sm.size, "values replaced during the stream are released at close");
        assert.deepEqual(drain(sm.snapshotStream(chunkBytes)), sm.snapshot());
      },
    ),
    { numRuns: 200 },
  );
});

test("restoring from chunks of any sizes gives the state restore() gives; damage is CORRUPT", () => {
  fc.assert(
    fc.property(
      fc.array(workloadCommand, { maxLength: 40 }),
      fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 8 }),
      fc.nat(),
      (cmds, sizes, flip) => {
        const sm = new KvStateMachine({ maxSessions: 2 });
        feed(
          sm,
          cmds.map((c) => encodeCommand(c)),
        );
        const image = sm.snapshot();
        const pushAll = (bytes: Uint8Array): KvStateMachine => {
          const r = KvStateMachine.restoring(bytes.length, { maxSessions: 2 });
          for (let at = 0, i = 0; at < bytes.length; i++) {
            const n = sizes[i % sizes.length]!;
            r.push(bytes.slice(at, at + n));
            at += n;
          }
          return r.finish();
        };
        const restored = pushAll(image);
        assert.deepEqual(restored.snapshot(), image);
        assert.deepEqual(contents(restored), contents(sm));
        const bad = image.slice();
        bad[flip % bad.length]! ^= 1 << (flip % 8);
        assert.throws(
          () => pushAll(bad),
          (e: unknown) => e instanceof RaftKvError && e.code === "CORRUPT",
        );
      },
    ),
    { numRuns: 200 },
  );
});

test("range pages with startAfter, in key order", () => {
  const sm = new KvStateMachine();
  let i = 0;
  for (const k of ["a1", "a2", "a3", "b1"])
    sm.apply(++i, encodeCommand({ op: "put", key: k, value: new Uint8Array([i]) }));
  assert.deepEqual(
    sm.range("a", 10, "a1").entries.map((e) => e.key),
    ["a2", "a3"],
  );
  assert.deepEqual(
    sm.range("a", 1, "a15").entries.map((e) => e.key),
    ["a2"],
  );
  assert.equal(sm.range("a", 1, "a15").more, true);
  assert.deepEqual(sm.range("a", 10, "a3").entries, []);
});
