// etcd's MVCC semantics on the Store (mvcc-store.ts through StoreStateMachine): scripted cases named
// after etcd's behaviour, and a differential property test against the simple model (mvcc-model.ts):
// the same commands (MVCC and raftkv.v1, mixed) give the same results, reads at every revision, the
// same change lists for watchers, on the in-memory store, in single and batched applies, and after a
// reopen.

import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { MemStore } from "../store/mem-store.ts";
import { encodeCommand } from "./command.ts";
import { decodeMvccCommand, encodeMvccCommand } from "./mvcc-codec.ts";
import { MvccModel } from "./mvcc-model.ts";
import { rangeRequest as rangeReq } from "./mvcc-range.ts";
import type {
  Compare,
  MvccCommand,
  MvccResult,
  PutOp,
  RangeRequest,
  RevisionChanges,
  TxnOp,
  TxnRequestOp,
} from "./mvcc-types.ts";
import { validateMvccRequest } from "./mvcc-validate.ts";
import { StoreStateMachine } from "./store-state-machine.ts";

const b = (s: string) => new TextEncoder().encode(s);
const EMPTY = new Uint8Array(0);

function put(key: Uint8Array, value: Uint8Array, o: Partial<PutOp> = {}): PutOp {
  return { op: "put", key, value, lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false, ...o };
}

/** Bytes as hex and Buffers as plain arrays, so results compare by content. */
function plain(x: unknown): unknown {
  if (x instanceof Uint8Array) return Buffer.from(x).toString("hex");
  if (Array.isArray(x)) return x.map(plain);
  if (x !== null && typeof x === "object")
    return Object.fromEntries(Object.entries(x).map(([k, v]) => [k, plain(v)]));
  return x;
}

const show = (x: unknown): string =>
  JSON.stringify(plain(x), (_, v) => (typeof v === "bigint" ? `${v}n` : v));

class Harness {
  readonly store = new MemStore();
  readonly changes: RevisionChanges[] = [];
  sm = new StoreStateMachine({ store: this.store, onChanges: (c) => this.changes.push(...c) });
  private index = 0;

  run(cmd: MvccCommand): MvccResult {
    const bytes = encodeMvccCommand(cmd);
    assert.deepEqual(plain(decodeMvccCommand(bytes)), plain(cmd), "codec round trip");
    const r = this.sm.applyAny(++this.index, bytes);
    assert.ok(!("type" in r), "an MVCC result");
    return r as MvccResult;
  }

  kv(op: "put" | "delete", key: string, value = ""): void {
    const cmd = op === "put" ? { op, key, value: b(value) } : { op, key };
    this.sm.apply(++this.index, encodeCommand(cmd));
  }

  get(key: string, revision = 0) {
    const r = this.sm.mvccRange(rangeReq(b(key), EMPTY, { revision }));
    if ("op" in r) return r.code;
    const kv = r.kvs[0];
    return kv === undefined
      ? null
      : [new TextDecoder().decode(kv.value), kv.createRevision, kv.modRevision, kv.version];
  }
}

test("etcd revisions: the empty store is at 1, each changing write request is one more, a Txn one in all", () => {
  const h = new Harness();
  assert.equal(h.sm.revision, 1);
  assert.equal(h.run(put(b("a"), b("1"))).revision, 2);
  assert.equal(h.run(put(b("a"), b("1"))).revision, 3); // the same value is still a write
  assert.equal(h.run({ op: "deleteRange", key: b("zz"), rangeEnd: EMPTY, prevKv: false }).revision, 3);
  const txn: TxnOp = {
    op: "txn",
    compare: [],
    success: [
      put(b("b"), b("x")),
      put(b("c"), b("y")),
      { op: "deleteRange", key: b("a"), rangeEnd: EMPTY, prevKv: false },
    ],
    failure: [],
  };
  assert.equal(h.run(txn).revision, 4);
  assert.deepEqual(h.get("b"), ["x", 4, 4, 1]);
  assert.deepEqual(plain(h.changes.at(-1)!.events.map((e) => [e.type, e.kv.key])), [
    ["put", "62"],
    ["put", "63"],
    ["delete", "61"],
  ]);
  h.kv("put", "a", "v1"); // raftkv.v1 writes take revisions of the same sequence
  assert.deepEqual(h.get("a"), ["v1", 5, 5, 1]);
  assert.deepEqual(h.get("a", 3), ["1", 2, 3, 2]);
  assert.equal(h.get("a", 4), null); // the tombstone
});

test("reads at a past revision, compaction: ErrCompacted below it, ErrFutureRev above now", () => {
  const h = new Harness();
  for (let i = 0; i < 5; i++) h.run(put(b("k"), b(String(i))));
  assert.equal(h.sm.revision, 6);
  assert.equal(h.get("k", 7), "futureRevision");
  const c = h.run({ op: "compact", revision: 4 });
  assert.deepEqual(c, { op: "compact", revision: 6 });
  assert.equal(h.get("k", 3), "compacted");
  assert.deepEqual(h.get("k", 4), ["2", 2, 4, 3]);
  assert.deepEqual(h.run({ op: "compact", revision: 4 }), {
    op: "error",
    code: "compacted",
    message: "mvcc: required revision has been compacted",
    revision: 6,
  });
  assert.equal(
    (h.run({ op: "compact", revision: 9 }) as { message: string }).message,
    "mvcc: required revision is a future revision",
  );
  // History below the compaction is gone but the version at it stays.
  assert.deepEqual(
    h.sm.changesFrom(4, 100).map((c) => c.revision),
    [4, 5, 6],
  );
});

test("leases: put --lease attaches, revoke deletes the attached keys at one revision, etcd's lease errors", () => {
  const h = new Harness();
  assert.equal((h.run(put(b("a"), b("1"), { lease: 7n })) as { code: string }).code, "leaseNotFound");
  assert.deepEqual(h.run({ op: "leaseGrant", id: 7n, ttlSeconds: 10 }), {
    op: "leaseGrant",
    id: 7n,
    ttlSeconds: 10,
    revision: 1,
  });
  assert.equal((h.run({ op: "leaseGrant", id: 7n, ttlSeconds: 5 }) as { code: string }).code, "leaseExists");
  h.run(put(b("a"), b("1"), { lease: 7n }));
  h.run(put(b("b"), b("2"), { lease: 7n }));
  h.run(put(b("c"), b("3"), { lease: 7n }));
  h.kv("put", "c", "4"); // a raftkv.v1 put detaches, as an etcd put without a lease does
  h.run(put(b("a"), b("5"), { ignoreValue: true, ignoreLease: true }));
  assert.deepEqual(plain(h.sm.lease(7n)), { id: 7n, grantedTtlSeconds: 10, keys: ["61", "62"] });
  assert.deepEqual(plain(h.sm.lease(7n)?.keys), ["61", "62"]);
  assert.deepEqual(h.run({ op: "leaseRevoke", id: 7n }), { op: "leaseRevoke", revision: 7 });
  assert.deepEqual(plain(h.changes.at(-1)), plain({ revision: 7, events: h.changes.at(-1)!.events }));
  assert.deepEqual(
    h.changes.at(-1)!.events.map((e) => e.type),
    ["delete", "delete"],
  );
  assert.equal(h.get("a"), null);
  assert.deepEqual(h.get("c"), ["4", 4, 5, 2]);
  assert.equal(h.sm.lease(7n), null);
  assert.equal((h.run({ op: "leaseRevoke", id: 7n }) as { code: string }).code, "leaseNotFound");
  assert.equal(h.sm.size, 1);
});

test("txn: compares on value/version/create/mod/lease, nested txns chosen on the state before, ranges see the txn's writes", () => {
  const h = new Harness();
  h.run(put(b("a"), b("1")));
  const cmp = (result: Compare["result"], against: Compare["against"], key = "a"): Compare => ({
    result,
    key: b(key),
    rangeEnd: EMPTY,
    against,
  });
  const nested: TxnRequestOp = {
    op: "txn",
    compare: [cmp("equal", { target: "version", version: 0 }, "n")],
    success: [put(b("n"), b("nested")), { op: "range", request: rangeReq(b("a")) }],
    failure: [],
  };
  const r = h.run({
    op: "txn",
    compare: [
      cmp("equal", { target: "value", value: b("1") }),
      cmp("greater", { target: "mod", modRevision: 1 }),
      cmp("less", { target: "create", createRevision: 3 }),
      cmp("equal", { target: "lease", lease: 0n }),
      cmp("notEqual", { target: "value", value: b("2") }),
    ],
    success: [put(b("a"), b("2"), { prevKv: true }), nested],
    failure: [],
  });
  assert.equal(r.op, "txn");
  if (r.op !== "txn") return;
  assert.equal(r.succeeded, true);
  assert.equal(r.revision, 3);
  const inner = r.responses[1];
  assert.ok(inner?.op === "txn" && inner.succeeded);
  const seen = inner.responses[1];
  assert.ok(seen?.op === "range");
  assert.deepEqual(plain(seen.result.kvs.map((kv) => [kv.value, kv.modRevision])), [["32", 3]]);
  // A value compare on a missing key is false; other targets compare with the zero KeyValue.
  const missing = h.run({
    op: "txn",
    compare: [cmp("notEqual", { target: "value", value: b("x") }, "zz")],
    success: [],
    failure: [],
  });
  assert.ok(missing.op === "txn" && !missing.succeeded);
  const zero = h.run({
    op: "txn",
    compare: [cmp("equal", { target: "create", createRevision: 0 }, "zz")],
    success: [],
    failure: [],
  });
  assert.ok(zero.op === "txn" && zero.succeeded && zero.revision === 3);
  const dup = h.run({
    op: "txn",
    compare: [],
    success: [put(b("x"), b("1")), put(b("x"), b("2"))],
    failure: [],
  });
  assert.deepEqual(dup, {
    op: "error",
    code: "duplicateKey",
    message: "etcdserver: duplicate key given in txn request",
    revision: 3,
  });
  const missingKey = h.run({
    op: "txn",
    compare: [],
    success: [put(b("a"), b("z")), put(b("q"), EMPTY, { ignoreValue: true })],
    failure: [],
  });
  assert.equal((missingKey as { code: string }).code, "keyNotFound");
  assert.deepEqual(h.get("a"), ["2", 2, 3, 2]); // the failed txn changed nothing
});

test("range options: limit and more, count before the filters, sort by target, keys_only, count_only", () => {
  const h = new Harness();
  for (const [k, v] of [
    ["a", "3"],
    ["b", "1"],
    ["c", "2"],
    ["d", "0"],
  ] as const)
    h.run(put(b(k), b(v)));
  h.run(put(b("a"), b("9")));
  const r = (o: Partial<RangeRequest>) => {
    const res = h.sm.mvccRange(rangeReq(b("a"), new Uint8Array([0]), o));
    assert.ok(!("op" in res));
    return {
      keys: res.kvs.map((kv) => new TextDecoder().decode(kv.key)).join(""),
      more: res.more,
      count: res.count,
    };
  };
  assert.deepEqual(r({ limit: 2 }), { keys: "ab", more: true, count: 4 });
  assert.deepEqual(r({ sortTarget: "value" }), { keys: "dbca", more: false, count: 4 });
  assert.deepEqual(r({ sortTarget: "key", sortOrder: "descend", limit: 3 }), {
    keys: "dcb",
    more: true,
    count: 4,
  });
  assert.deepEqual(r({ sortTarget: "version", sortOrder: "descend" }), {
    keys: "abcd",
    more: false,
    count: 4,
  });
  assert.deepEqual(r({ minModRevision: 4 }), { keys: "acd", more: false, count: 4 });
  assert.deepEqual(r({ maxCreateRevision: 3 }), { keys: "ab", more: false, count: 4 });
  assert.deepEqual(r({ countOnly: true }), { keys: "", more: false, count: 4 });
  const ko = h.sm.mvccRange(rangeReq(b("a"), b("c"), { keysOnly: true }));
  assert.ok(!("op" in ko) && ko.kvs.every((kv) => kv.value.length === 0) && ko.kvs.length === 2);
  const bounded = h.sm.mvccRange(rangeReq(b("a"), new Uint8Array([0])), { maxItems: 3, maxBytes: 1 << 20 });
  assert.ok(!("op" in bounded) && bounded.kvs.length === 3 && bounded.more);
});

// ------------------------------------------------------------------ differential test against the model

const KEYS = [
  b("a"),
  b("b"),
  b("ab"),
  new Uint8Array([0x61, 0]),
  new Uint8Array([0x61, 0, 0]),
  new Uint8Array([0xff]),
];
const keyArb = fc.constantFrom(...KEYS);
const endArb = fc.oneof(fc.constant(EMPTY), fc.constant(new Uint8Array([0])), keyArb);
const valueArb = fc.constantFrom(EMPTY, b("x"), b("y"), b("zz"));
const leaseArb = fc.constantFrom(0n, 1n, 2n, -5n);

const putArb: fc.Arbitrary<PutOp> = fc
  .record({
    key: keyArb,
    value: valueArb,
    lease: leaseArb,
    prevKv: fc.boolean(),
    ignoreValue: fc.boolean(),
    ignoreLease: fc.boolean(),
  })
  .map((p) => ({
    op: "put" as const,
    ...p,
    value: p.ignoreValue ? EMPTY : p.value,
    lease: p.ignoreLease ? 0n : p.lease,
  }));
const delArb = fc.record({
  op: fc.constant("deleteRange" as const),
  key: keyArb,
  rangeEnd: endArb,
  prevKv: fc.boolean(),
});
const rangeArb = (maxRev: number) =>
  fc
    .record({
      key: keyArb,
      rangeEnd: endArb,
      limit: fc.nat(3),
      revision: fc.nat(maxRev),
      sortOrder: fc.constantFrom("none" as const, "ascend" as const, "descend" as const),
      sortTarget: fc.constantFrom(
        "key" as const,
        "version" as const,
        "create" as const,
        "mod" as const,
        "value" as const,
      ),
      keysOnly: fc.boolean(),
      countOnly: fc.boolean(),
      minModRevision: fc.nat(maxRev),
      maxModRevision: fc.nat(maxRev),
      minCreateRevision: fc.nat(maxRev),
      maxCreateRevision: fc.nat(maxRev),
    })
    .map((r) => ({
      ...r,
      minModRevision: r.minModRevision % 3 === 0 ? r.minModRevision : 0,
      maxModRevision: r.maxModRevision % 2 ? r.maxModRevision : 0,
    }));
const compareArb: fc.Arbitrary<Compare> = fc.record({
  result: fc.constantFrom("equal" as const, "greater" as const, "less" as const, "notEqual" as const),
  key: keyArb,
  rangeEnd: fc.constantFrom(EMPTY, EMPTY, new Uint8Array([0])),
  against: fc.oneof(
    fc.record({ target: fc.constant("version" as const), version: fc.nat(3) }),
    fc.record({ target: fc.constant("create" as const), createRevision: fc.nat(8) }),
    fc.record({ target: fc.constant("mod" as const), modRevision: fc.nat(8) }),
    fc.record({ target: fc.constant("value" as const), value: valueArb }),
    fc.record({ target: fc.constant("lease" as const), lease: leaseArb }),
  ),
});
const { op: txnArb } = fc.letrec<{ op: TxnOp; req: TxnRequestOp }>((tie) => ({
  op: fc.record({
    op: fc.constant("txn" as const),
    compare: fc.array(compareArb, { maxLength: 2 }),
    success: fc.array(tie("req"), { maxLength: 3 }),
    failure: fc.array(tie("req"), { maxLength: 2 }),
  }),
  req: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    putArb,
    delArb,
    rangeArb(12).map((request) => ({ op: "range" as const, request })),
    tie("op"),
  ),
}));
type Step =
  | { mvcc: MvccCommand }
  | { kv: "put" | "delete"; key: Uint8Array; value: Uint8Array }
  | { read: RangeRequest };
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 4, arbitrary: putArb.map((mvcc) => ({ mvcc })) },
  { weight: 2, arbitrary: delArb.map((mvcc) => ({ mvcc })) },
  { weight: 3, arbitrary: txnArb.map((mvcc) => ({ mvcc })) },
  { weight: 1, arbitrary: fc.nat(14).map((revision) => ({ mvcc: { op: "compact" as const, revision } })) },
  {
    weight: 1,
    arbitrary: fc
      .record({ id: leaseArb, ttlSeconds: fc.nat(60) })
      .map((l) => ({ mvcc: { op: "leaseGrant" as const, ...l } })),
  },
  { weight: 1, arbitrary: leaseArb.map((id) => ({ mvcc: { op: "leaseRevoke" as const, id } })) },
  {
    weight: 2,
    arbitrary: fc
      .record({
        kv: fc.constantFrom("put" as const, "delete" as const),
        key: fc.constantFrom("a", "b", "ab", "c"),
        value: valueArb,
      })
      .map((s) => ({ ...s, key: b(s.key) })),
  },
  { weight: 4, arbitrary: rangeArb(14).map((read) => ({ read })) },
);

const SEED = Number(process.env.SEED ?? Math.floor(Math.random() * 1e9));

test("MVCC on the Store answers as the model: results, reads at every revision, watch changes, after a reopen", () => {
  console.log(`fast-check seed ${SEED} (replay: SEED=${SEED})`);

  fc.assert(
    fc.property(fc.array(stepArb, { minLength: 1, maxLength: 40 }), (steps) => {
      differential(steps);
    }),
    { numRuns: 300, seed: SEED },
  );
});

function differential(steps: Step[]) {
  {
    const model = new MvccModel();
    const h = new Harness();
    for (const step of steps) {
      if ("mvcc" in step) {
        const edge = validateMvccRequest(step.mvcc, 128);
        if (edge !== null && edge.code !== "duplicateKey") continue; // the edge refuses it
        assert.deepEqual(plain(h.run(step.mvcc)), plain(model.apply(step.mvcc)), show(step));
      } else if ("kv" in step) {
        h.kv(step.kv, new TextDecoder().decode(step.key), new TextDecoder().decode(step.value));
        model.applyKv(step.kv, step.key, step.value);
      } else {
        assert.deepEqual(plain(h.sm.mvccRange(step.read)), plain(model.range(step.read)), show(step));
      }
      assert.equal(h.sm.revision, model.revision);
    }
    assert.deepEqual(plain(h.changes), plain(model.changes));
    // Reads at every revision not compacted, and the history replay a watcher resumes from.
    for (let rev = Math.max(1, model.compacted); rev <= model.revision; rev++) {
      const all = rangeReq(new Uint8Array([0]), new Uint8Array([0]), { revision: rev });
      assert.deepEqual(plain(h.sm.mvccRange(all)), plain(model.range(all)), `all keys at ${rev}`);
    }
    const from = model.compacted + 1;
    assert.deepEqual(
      plain(h.sm.changesFrom(from, 1 << 20)),
      plain(model.changes.filter((c) => c.revision >= from)),
    );
    assert.deepEqual(h.sm.leaseIds(), model.leaseIds());
    const reopened = new StoreStateMachine({ store: h.store });
    assert.deepEqual(
      [reopened.revision, reopened.compacted, reopened.size],
      [h.sm.revision, h.sm.compacted, h.sm.size],
    );
    assert.deepEqual(reopened.hashKv(0), h.sm.hashKv(0));
  }
}
