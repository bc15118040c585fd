// The edge of raftkv.v1's Txn, Watch and lease requests: what each malformed request is refused with,
// and how a well-formed one becomes an MVCC command.

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  type Compare,
  CompareResult,
  Consistency,
  type TxnOp,
  type TxnRequest,
  type WatchRequest,
} from "../gen/raftkv/v1/client.ts";
import { RaftKvError } from "../lib/errors.ts";
import {
  leasedPut,
  leaseIdOf,
  prefixSpan,
  type TxnLimits,
  ttlOf,
  txnOf,
  txnResults,
  watchOf,
} from "./client-mvcc.ts";

const LIMITS: TxnLimits = { maxKeyBytes: 16, maxValueBytes: 8, maxTxnOps: 3, maxRangeItems: 100 };
const enc = (s: string) => new TextEncoder().encode(s);

function refused(fn: () => unknown, code: string, message: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof RaftKvError, String(e));
    assert.equal(e.code, code);
    assert.match(e.message, message);
    return true;
  });
}

const put = (
  key: string,
  value = "v",
  more: Partial<{ clientId: string; seq: bigint; lease: bigint }> = {},
): TxnOp => ({
  op: { $case: "put", value: { key, value: enc(value), clientId: "", seq: 0n, lease: 0n, ...more } },
});
const cmp = (c: Partial<Compare>): Compare => ({
  key: "k",
  prefix: false,
  result: CompareResult.COMPARE_RESULT_EQUAL,
  against: { $case: "version", value: 0n },
  ...c,
});
const txn = (t: Partial<TxnRequest>): TxnRequest => ({ compare: [], success: [], failure: [], ...t });

test("txn: compares and operations become an MVCC txn", () => {
  const t = txnOf(
    txn({
      compare: [
        cmp({}),
        cmp({
          key: "p/",
          prefix: true,
          result: CompareResult.COMPARE_RESULT_GREATER,
          against: { $case: "modRevision", value: 7n },
        }),
      ],
      success: [put("a", "1", { lease: 5n }), { op: { $case: "deletePrefix", value: { prefix: "p/" } } }],
      failure: [
        { op: { $case: "get", value: { key: "a", consistency: Consistency.CONSISTENCY_UNSPECIFIED } } },
        { op: { $case: "range", value: { prefix: "", limit: 0, consistency: 0, startAfter: "b" } } },
      ],
    }),
    LIMITS,
  );
  assert.deepEqual(t.compare[0], {
    result: "equal",
    key: enc("k"),
    rangeEnd: new Uint8Array(0),
    against: { target: "version", version: 0 },
  });
  assert.deepEqual(t.compare[1]?.rangeEnd, enc("p0"), "a prefix compare covers [p/, p0)");
  assert.deepEqual(t.compare[1]?.against, { target: "mod", modRevision: 7 });
  assert.deepEqual(t.success[0], {
    op: "put",
    key: enc("a"),
    value: enc("1"),
    lease: 5n,
    prevKv: false,
    ignoreValue: false,
    ignoreLease: false,
  });
  assert.deepEqual(t.success[1], { op: "deleteRange", key: enc("p/"), rangeEnd: enc("p0"), prevKv: false });
  const get = t.failure[0];
  assert.ok(get?.op === "range");
  assert.deepEqual(
    [get.request.key, get.request.rangeEnd, get.request.limit],
    [enc("a"), new Uint8Array(0), 1],
  );
  const range = t.failure[1];
  assert.ok(range?.op === "range");
  assert.deepEqual(
    [range.request.key, range.request.rangeEnd, range.request.limit],
    [enc("b\u0000"), Uint8Array.of(0), 100],
  );
});

test("txn: each malformed part is refused with what to fix", () => {
  refused(
    () => txnOf(txn({ success: [put("a"), put("b"), put("c"), put("d")] }), LIMITS),
    "INVALID_ARGUMENT",
    /4 success operations, over the limit of 3/,
  );
  refused(
    () => txnOf(txn({ compare: [cmp({}), cmp({}), cmp({}), cmp({})] }), LIMITS),
    "INVALID_ARGUMENT",
    /4 compares/,
  );
  refused(() => txnOf(txn({ success: [put("")] }), LIMITS), "INVALID_ARGUMENT", /key is empty/);
  refused(() => txnOf(txn({ success: [put("k".repeat(17))] }), LIMITS), "TOO_LARGE", /key is 17 bytes/);
  refused(() => txnOf(txn({ success: [put("k", "123456789")] }), LIMITS), "TOO_LARGE", /value is 9 bytes/);
  refused(
    () => txnOf(txn({ success: [put("k", "v", { clientId: "c", seq: 1n })] }), LIMITS),
    "INVALID_ARGUMENT",
    /a put in a txn carries client_id or seq/,
  );
  refused(
    () => txnOf(txn({ success: [put("k", "v", { lease: -1n })] }), LIMITS),
    "INVALID_ARGUMENT",
    /lease -1 is negative/,
  );
  refused(
    () => txnOf(txn({ failure: [{ op: undefined }] }), LIMITS),
    "INVALID_ARGUMENT",
    /carries no operation/,
  );
  refused(
    () =>
      txnOf(
        txn({
          failure: [
            { op: { $case: "get", value: { key: "a", consistency: Consistency.CONSISTENCY_STALE } } },
          ],
        }),
        LIMITS,
      ),
    "INVALID_ARGUMENT",
    /sets consistency/,
  );
  refused(
    () => txnOf(txn({ success: [{ op: { $case: "deletePrefix", value: { prefix: "" } } }] }), LIMITS),
    "INVALID_ARGUMENT",
    /empty prefix/,
  );
  refused(
    () => txnOf(txn({ compare: [cmp({ result: CompareResult.COMPARE_RESULT_UNSPECIFIED })] }), LIMITS),
    "INVALID_ARGUMENT",
    /has no result/,
  );
  refused(
    () => txnOf(txn({ compare: [cmp({ against: undefined })] }), LIMITS),
    "INVALID_ARGUMENT",
    /compares against nothing/,
  );
  refused(
    () => txnOf(txn({ compare: [cmp({ against: { $case: "version", value: 2n ** 60n } })] }), LIMITS),
    "INVALID_ARGUMENT",
    /not a safe integer/,
  );
  refused(
    () => txnOf(txn({ compare: [cmp({ against: { $case: "value", value: enc("123456789") } })] }), LIMITS),
    "TOO_LARGE",
    /value is 9 bytes/,
  );
  refused(
    () => txnOf(txn({ compare: [cmp({ key: "\ud800" })] }), LIMITS),
    "INVALID_ARGUMENT",
    /lone surrogate/,
  );
});

test("txn results follow the branch that ran: a get answers found/kv, a delete_prefix its count", () => {
  const req = txn({
    success: [{ op: { $case: "get", value: { key: "a", consistency: 0 } } }],
    failure: [{ op: { $case: "deletePrefix", value: { prefix: "p/" } } }, put("x")],
  });
  const kv = { key: enc("a"), value: enc("1"), createRevision: 2, modRevision: 3, version: 2, lease: 0n };
  assert.deepEqual(
    txnResults(req, {
      op: "txn",
      succeeded: true,
      responses: [{ op: "range", result: { kvs: [kv], more: false, count: 1 } }],
    }),
    [
      {
        result: {
          $case: "get",
          value: {
            found: true,
            kv: { key: "a", value: enc("1"), createRevision: 2n, modRevision: 3n, version: 2n, lease: 0n },
          },
        },
      },
    ],
  );
  assert.deepEqual(
    txnResults(req, {
      op: "txn",
      succeeded: true,
      responses: [{ op: "range", result: { kvs: [], more: false, count: 0 } }],
    }),
    [{ result: { $case: "get", value: { found: false, kv: undefined } } }],
  );
  assert.deepEqual(
    txnResults(req, {
      op: "txn",
      succeeded: false,
      responses: [
        { op: "deleteRange", deleted: 2, prevKvs: [] },
        { op: "put", prevKv: null },
      ],
    }),
    [{ result: { $case: "deletePrefix", value: { deleted: 2n } } }, { result: { $case: "put", value: {} } }],
  );
});

test("put with a lease: no session, a valid lease id and value", () => {
  const req = { key: "k", value: enc("v"), clientId: "", seq: 0n, lease: 9n };
  assert.equal(leasedPut(req, LIMITS).lease, 9n);
  refused(
    () => leasedPut({ ...req, clientId: "c", seq: 1n }, LIMITS),
    "INVALID_ARGUMENT",
    /a put with a lease carries client_id or seq/,
  );
  refused(() => leasedPut({ ...req, lease: -3n }, LIMITS), "INVALID_ARGUMENT", /negative/);
  refused(() => leasedPut({ ...req, value: enc("123456789") }, LIMITS), "TOO_LARGE", /value is 9 bytes/);
});

test("leases: TTLs and ids at the edge", () => {
  assert.equal(ttlOf(1n), 1);
  refused(() => ttlOf(0n), "INVALID_ARGUMENT", /ttl_seconds 0 is not a positive integer/);
  refused(() => ttlOf(-5n), "INVALID_ARGUMENT", /ttl_seconds -5/);
  refused(() => ttlOf(2n ** 60n), "INVALID_ARGUMENT", /not a positive integer/);
  assert.equal(leaseIdOf(0n), 0n);
  refused(() => leaseIdOf(-1n, "id"), "INVALID_ARGUMENT", /id -1 is negative/);
});

test("watch: a key, a prefix (empty: every key), a start revision that is a safe integer", () => {
  const w = (r: Partial<WatchRequest>): WatchRequest => ({
    key: "k",
    prefix: false,
    startRevision: 0n,
    prevKv: false,
    noPut: false,
    noDelete: false,
    progressNotify: false,
    ...r,
  });
  assert.deepEqual(watchOf(w({ startRevision: 5n, prevKv: true }), LIMITS), {
    key: enc("k"),
    rangeEnd: new Uint8Array(0),
    startRevision: 5,
    prevKv: true,
    noPut: false,
    noDelete: false,
    progressNotify: false,
  });
  assert.deepEqual(watchOf(w({ key: "", prefix: true }), LIMITS).rangeEnd, Uint8Array.of(0));
  assert.deepEqual(watchOf(w({ key: "", prefix: true }), LIMITS).key, Uint8Array.of(0));
  assert.deepEqual(
    prefixSpan("a\u00ff").rangeEnd,
    enc("a\u00ff").map((b, i, a) => (i === a.length - 1 ? b + 1 : b)),
  );
  refused(() => watchOf(w({ key: "" }), LIMITS), "INVALID_ARGUMENT", /key is empty/);
  refused(
    () => watchOf(w({ startRevision: 2n ** 63n }), LIMITS),
    "INVALID_ARGUMENT",
    /start_revision .* is not a safe integer/,
  );
  refused(() => watchOf(w({ key: "k".repeat(17), prefix: true }), LIMITS), "TOO_LARGE", /key is 17 bytes/);
});
