// etcd's KV service over the MVCC twin, through the generated etcdserverpb client: revisions, ranges,
// prev_kv, ignore_value/lease, txn with compares and nested requests, compaction, and etcd's errors.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { prefixEnd } from "../../src/etcd/keys.ts";
import {
  CompactionRequest,
  type CompactionResponse,
  Compare_CompareResult,
  Compare_CompareTarget,
  DeleteRangeRequest,
  type DeleteRangeResponse,
  PutRequest,
  type PutResponse,
  RangeRequest,
  RangeRequest_SortOrder,
  RangeRequest_SortTarget,
  type RangeResponse,
  TxnRequest,
  type TxnResponse,
} from "../../src/gen/etcd/etcdserverpb/rpc.ts";
import { bytes, call, startTwinServer, type TwinServer, text } from "./harness.ts";

let s: TwinServer;
const put = (key: string, value: string, extra: Partial<PutRequest> = {}) =>
  call<PutRequest, PutResponse>(
    (r, cb) => s.kv.put(r, cb),
    PutRequest.create({ key: bytes(key), value: bytes(value), ...extra }),
  );
const range = (extra: Partial<RangeRequest>) =>
  call<RangeRequest, RangeResponse>((r, cb) => s.kv.range(r, cb), RangeRequest.create(extra));
const del = (extra: Partial<DeleteRangeRequest>) =>
  call<DeleteRangeRequest, DeleteRangeResponse>(
    (r, cb) => s.kv.deleteRange(r, cb),
    DeleteRangeRequest.create(extra),
  );
const txn = (t: Partial<TxnRequest>) =>
  call<TxnRequest, TxnResponse>((r, cb) => s.kv.txn(r, cb), TxnRequest.create(t));
const keys = (r: { kvs: { key: Uint8Array }[] }) => r.kvs.map((kv) => text(kv.key));

async function rejects(p: Promise<unknown>, code: grpc.status, details: string | RegExp): Promise<void> {
  await assert.rejects(p, (err: grpc.ServiceError) => {
    assert.equal(err.code, code, err.details);
    if (typeof details === "string") assert.equal(err.details, details);
    else assert.match(err.details, details);
    return true;
  });
}

describe("etcd KV over the MVCC twin", () => {
  before(async () => {
    s = await startTwinServer({ maxTxnOps: 4, maxKeyBytes: 64 });
  });
  after(() => s.close());

  it("puts make one revision each; create/mod revision and version as etcd counts them", async () => {
    const a = await put("a", "1");
    assert.equal(a.header?.revision, 2n);
    assert.equal(a.header?.memberId, 1n);
    const b = await put("a", "2", { prevKv: true });
    assert.equal(b.header?.revision, 3n);
    assert.equal(text(b.prevKv!.value), "1");
    const r = await range({ key: bytes("a") });
    assert.equal(r.count, 1n);
    const kv = r.kvs[0]!;
    assert.deepEqual([kv.createRevision, kv.modRevision, kv.version, text(kv.value)], [2n, 3n, 2n, "2"]);
    const old = await range({ key: bytes("a"), revision: 2n });
    assert.equal(text(old.kvs[0]!.value), "1");
    assert.equal(old.header?.revision, 3n, "the header carries the current revision");
  });

  it("ranges: prefix, from-key, limit and more, sort, keys_only, count_only, revision filters", async () => {
    for (const k of ["p/1", "p/3", "p/2"]) await put(k, `v${k}`);
    const prefix = { key: bytes("p/"), rangeEnd: prefixEnd(bytes("p/")) };
    assert.deepEqual(keys(await range(prefix)), ["p/1", "p/2", "p/3"]);
    const limited = await range({ ...prefix, limit: 2n });
    assert.deepEqual([keys(limited), limited.more, limited.count], [["p/1", "p/2"], true, 3n]);
    const desc = await range({ ...prefix, sortOrder: RangeRequest_SortOrder.DESCEND });
    assert.deepEqual(keys(desc), ["p/3", "p/2", "p/1"]);
    const byMod = await range({ ...prefix, sortTarget: RangeRequest_SortTarget.MOD });
    assert.deepEqual(
      keys(byMod),
      ["p/1", "p/3", "p/2"],
      "a target other than key sorts ascending by default",
    );
    const ko = await range({ ...prefix, keysOnly: true });
    assert.deepEqual(
      ko.kvs.map((kv) => kv.value.length),
      [0, 0, 0],
    );
    const co = await range({ ...prefix, countOnly: true });
    assert.deepEqual([co.kvs.length, co.count], [0, 3n]);
    const minMod = byMod.kvs[1]!.modRevision;
    assert.deepEqual(keys(await range({ ...prefix, minModRevision: minMod })), ["p/2", "p/3"]);
    const fromKey = await range({ key: bytes("p/2"), rangeEnd: Uint8Array.of(0) });
    assert.deepEqual(keys(fromKey), ["p/2", "p/3"]);
  });

  it("deletes: prev_kv, nothing deleted makes no revision, version resets", async () => {
    const before = (await range({ key: bytes("a") })).header!.revision;
    const none = await del({ key: bytes("nothing") });
    assert.deepEqual([none.deleted, none.header?.revision], [0n, before]);
    const d = await del({ key: bytes("a"), prevKv: true });
    assert.deepEqual([d.deleted, text(d.prevKvs[0]!.value), d.header?.revision], [1n, "2", before + 1n]);
    await put("a", "again");
    const kv = (await range({ key: bytes("a") })).kvs[0]!;
    assert.deepEqual([kv.version, kv.createRevision], [1n, before + 2n]);
  });

  it("ignore_value and ignore_lease keep what is there; etcd's errors otherwise", async () => {
    await put("a", "", { ignoreValue: true });
    assert.equal(text((await range({ key: bytes("a") })).kvs[0]!.value), "again");
    await rejects(
      put("missing", "", { ignoreValue: true }),
      grpc.status.INVALID_ARGUMENT,
      "etcdserver: key not found",
    );
    await rejects(
      put("a", "x", { ignoreValue: true }),
      grpc.status.INVALID_ARGUMENT,
      "etcdserver: value is provided",
    );
    await rejects(
      put("a", "x", { ignoreLease: true, lease: 5n }),
      grpc.status.INVALID_ARGUMENT,
      "etcdserver: lease is provided",
    );
    await rejects(
      put("a", "x", { lease: 12345n }),
      grpc.status.NOT_FOUND,
      "etcdserver: requested lease not found",
    );
    await rejects(put("", "x"), grpc.status.INVALID_ARGUMENT, "etcdserver: key is not provided");
    await rejects(
      put("k".repeat(65), "x"),
      grpc.status.INVALID_ARGUMENT,
      /key is 65 bytes, over maxKeyBytes \(64\)/,
    );
  });

  it("txn: compares on value, version, create, mod; nested txn; one revision for all its writes", async () => {
    const start = (await range({ key: bytes("a") })).header!.revision;
    const compare = (target: Compare_CompareTarget, result: Compare_CompareResult, u: never) => ({
      key: bytes("a"),
      target,
      result,
      rangeEnd: new Uint8Array(0),
      targetUnion: u,
    });
    const ok = await txn({
      compare: [
        compare(Compare_CompareTarget.VALUE, Compare_CompareResult.EQUAL, {
          $case: "value",
          value: bytes("again"),
        } as never),
        compare(Compare_CompareTarget.VERSION, Compare_CompareResult.GREATER, {
          $case: "version",
          value: 0n,
        } as never),
      ],
      success: [
        {
          request: { $case: "requestPut", value: PutRequest.create({ key: bytes("t1"), value: bytes("x") }) },
        },
        {
          request: { $case: "requestPut", value: PutRequest.create({ key: bytes("t2"), value: bytes("y") }) },
        },
        { request: { $case: "requestRange", value: RangeRequest.create({ key: bytes("t1") }) } },
        {
          request: {
            $case: "requestTxn",
            value: TxnRequest.create({
              compare: [
                compare(Compare_CompareTarget.MOD, Compare_CompareResult.LESS, {
                  $case: "modRevision",
                  value: 1n,
                } as never),
              ],
              failure: [
                {
                  request: {
                    $case: "requestDeleteRange",
                    value: DeleteRangeRequest.create({ key: bytes("p/1") }),
                  },
                },
              ],
            }),
          },
        },
      ],
    });
    assert.equal(ok.succeeded, true);
    assert.equal(ok.header?.revision, start + 1n, "every write of the txn at one revision");
    const read = ok.responses[2]!.response;
    assert.equal(read?.$case, "responseRange");
    if (read?.$case === "responseRange")
      assert.equal(text(read.value.kvs[0]!.value), "x", "a txn reads its own writes");
    const nested = ok.responses[3]!.response;
    assert.equal(nested?.$case === "responseTxn" && nested.value.succeeded, false);
    const t2 = (await range({ key: bytes("t2") })).kvs[0]!;
    const p1 = await range({ key: bytes("p/1") });
    assert.deepEqual([t2.modRevision, p1.count], [start + 1n, 0n]);
    const failed = await txn({
      compare: [
        compare(Compare_CompareTarget.CREATE, Compare_CompareResult.EQUAL, {
          $case: "createRevision",
          value: 0n,
        } as never),
      ],
      failure: [{ request: { $case: "requestRange", value: RangeRequest.create({ key: bytes("a") }) } }],
    });
    assert.deepEqual(
      [failed.succeeded, failed.header?.revision],
      [false, start + 1n],
      "a read-only branch makes no revision",
    );
  });

  it("txn: too many operations, duplicate keys, and a failing put undoes the whole txn", async () => {
    const p = (key: string) => ({
      request: { $case: "requestPut" as const, value: PutRequest.create({ key: bytes(key) }) },
    });
    await rejects(
      txn({ success: [p("1"), p("2"), p("3"), p("4"), p("5")] }),
      grpc.status.INVALID_ARGUMENT,
      "etcdserver: too many operations in txn request",
    );
    await rejects(
      txn({ success: [p("d"), p("d")] }),
      grpc.status.INVALID_ARGUMENT,
      "etcdserver: duplicate key given in txn request",
    );
    const delAll = {
      request: {
        $case: "requestDeleteRange" as const,
        value: DeleteRangeRequest.create({ key: bytes("c"), rangeEnd: bytes("e") }),
      },
    };
    await rejects(
      txn({ success: [delAll, p("d")] }),
      grpc.status.INVALID_ARGUMENT,
      "etcdserver: duplicate key given in txn request",
    );
    const before = await range({ key: bytes("u") });
    const bad = {
      request: {
        $case: "requestPut" as const,
        value: PutRequest.create({ key: bytes("v"), ignoreValue: true }),
      },
    };
    await rejects(txn({ success: [p("u"), bad] }), grpc.status.INVALID_ARGUMENT, "etcdserver: key not found");
    const afterwards = await range({ key: bytes("u") });
    assert.deepEqual([afterwards.count, afterwards.header?.revision], [0n, before.header?.revision]);
  });

  it("compaction: reads below it fail with etcd's error; future revisions too", async () => {
    const rev = (await range({ key: bytes("a") })).header!.revision;
    await put("a", "after");
    await call<CompactionRequest, CompactionResponse>(
      (r, cb) => s.kv.compact(r, cb),
      CompactionRequest.create({ revision: rev }),
    );
    assert.equal(
      (await range({ key: bytes("a"), revision: rev })).kvs.length,
      1,
      "the compacted revision itself stays readable",
    );
    const compacted = "etcdserver: mvcc: required revision has been compacted";
    await rejects(range({ key: bytes("a"), revision: rev - 1n }), grpc.status.OUT_OF_RANGE, compacted);
    await rejects(
      call<CompactionRequest, CompactionResponse>(
        (r, cb) => s.kv.compact(r, cb),
        CompactionRequest.create({ revision: rev }),
      ),
      grpc.status.OUT_OF_RANGE,
      compacted,
    );
    await rejects(
      range({ key: bytes("a"), revision: rev + 100n }),
      grpc.status.OUT_OF_RANGE,
      "etcdserver: mvcc: required revision is a future revision",
    );
  });

  it("oversize and malformed requests get INVALID_ARGUMENT, never INTERNAL", async () => {
    await rejects(
      put("big", "x".repeat(1.6 * 1024 * 1024)),
      grpc.status.INVALID_ARGUMENT,
      "etcdserver: request is too large",
    );
    const raw = new grpc.Client(s.address, grpc.credentials.createInsecure());
    const garbage = Buffer.from([0x0a, 0xff, 0xff, 0xff]);
    const err = await new Promise<grpc.ServiceError>((resolve) =>
      raw.makeUnaryRequest(
        "/etcdserverpb.KV/Range",
        (b: Buffer) => b,
        (b: Buffer) => b,
        garbage,
        (e) => resolve(e!),
      ),
    );
    raw.close();
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT, err.details);
    assert.match(err.details, /not a well-formed \/etcdserverpb.KV\/Range message/);
  });
});
