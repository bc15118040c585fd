// Bad inputs to raftkv.v1's Txn, Watch and lease RPCs (TESTING.md), on the wire: non-UTF-8 keys, wrong
// wire types inside nested messages, oversize requests, sessions on puts with a lease, bad TTLs,
// undecodable keepalives and watches, too many streams; each with its exact code, and the node stays up.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import {
  LeaseKeepAliveResponse,
  TxnResponse,
  WatchResponse,
  ErrorCode as WireErrorCode,
} from "../../src/gen/raftkv/v1/client.ts";
import { rawUnary, startCluster, type TestCluster } from "./cluster.ts";
import { ask, protobuf, rawClient } from "./wire.ts";

const TXN = "/raftkv.v1.ClientService/Txn";
const WATCH = "/raftkv.v1.ClientService/Watch";
const KEEPALIVE = "/raftkv.v1.ClientService/LeaseKeepAlive";
const BAD_UTF8 = new Uint8Array([0x6b, 0xff, 0xfe]);
const id = (b: Buffer): Buffer => b;

/** The responses of a server stream of raw bytes, until it ends (or `count` arrived). */
function watchRaw(
  address: string,
  bytes: Uint8Array,
  count = Number.POSITIVE_INFINITY,
): Promise<{ responses: WatchResponse[]; status: number }> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  const call = client.makeServerStreamRequest(WATCH, id, id, Buffer.from(bytes), new grpc.Metadata(), {
    deadline: Date.now() + 5000,
  });
  const responses: WatchResponse[] = [];
  return new Promise((resolve) => {
    const done = (status: number): void => {
      client.close();
      resolve({ responses, status });
    };
    call.on("data", (b: Buffer) => {
      responses.push(WatchResponse.decode(b));
      if (responses.length >= count) call.cancel();
    });
    call.on("error", (e: grpc.ServiceError) => done(e.code));
    call.on("end", () => done(grpc.status.OK));
  });
}

describe("one node: Txn, Watch and lease requests at the edge", () => {
  let c: TestCluster;
  let address: string;
  let raw: ReturnType<typeof rawClient>;

  before(async () => {
    c = await startCluster({
      size: 1,
      settings: {
        maxKeyBytes: 64,
        maxValueBytes: 1024,
        maxRequestBytes: 8192,
        maxConcurrentStreams: 2,
        metricsPort: 0,
      },
    });
    await c.leader();
    address = c.addresses[0]!;
    raw = rawClient(address);
  });
  after(async () => {
    raw.close();
    await c.close();
  });

  test("txn: a non-UTF-8 key, a wrong wire type deep inside, an oversize request; then a good txn", async () => {
    const put = (key: Uint8Array | string) =>
      protobuf([
        [
          2,
          protobuf([
            [
              1,
              protobuf([
                [1, key],
                [2, "v"],
              ]),
            ],
          ]),
        ],
      ]);
    const bad = await rawUnary(address, TXN, put(BAD_UTF8));
    const badUtf8 = TxnResponse.decode(bad.bytes!).header!;
    assert.equal(badUtf8.errorCode, WireErrorCode.ERROR_CODE_INVALID_ARGUMENT);
    assert.match(badUtf8.errorMessage, /not well-formed UTF-8/);
    const wrongType = protobuf([[2, protobuf([[1, protobuf([[1, 7n]])]])]]);
    const wt = TxnResponse.decode((await rawUnary(address, TXN, wrongType)).bytes!).header!;
    assert.equal(wt.errorCode, WireErrorCode.ERROR_CODE_INVALID_ARGUMENT);
    assert.match(wt.errorMessage, /TxnRequest\.success\.put\.key \(field 1\) was sent as varint/);
    const big = TxnResponse.decode((await rawUnary(address, TXN, put("k".repeat(9000)))).bytes!).header!;
    assert.equal(big.errorCode, WireErrorCode.ERROR_CODE_TOO_LARGE);
    const ok = TxnResponse.decode((await rawUnary(address, TXN, put("k"))).bytes!);
    assert.equal(ok.header!.errorCode, WireErrorCode.ERROR_CODE_UNSPECIFIED);
    assert.equal(ok.succeeded, true);
    assert.ok(ok.header!.revision > 1n);
  });

  test("put with a lease: no client_id/seq, the lease must exist; grants need a TTL >= 1", async () => {
    const withSession = await ask(raw.put.bind(raw), {
      key: "l",
      value: new Uint8Array(1),
      clientId: "c",
      seq: 1n,
      lease: 5n,
    });
    assert.equal(withSession.code, WireErrorCode.ERROR_CODE_INVALID_ARGUMENT);
    assert.match(withSession.message, /a put with a lease carries client_id or seq/);
    const noLease = await ask(raw.put.bind(raw), {
      key: "l",
      value: new Uint8Array(1),
      clientId: "",
      seq: 0n,
      lease: 5n,
    });
    assert.equal(noLease.code, WireErrorCode.ERROR_CODE_INVALID_ARGUMENT);
    assert.match(noLease.message, /requested lease not found/);
    const ttl0 = await ask(raw.leaseGrant.bind(raw), { ttlSeconds: 0n, id: 0n });
    assert.equal(ttl0.code, WireErrorCode.ERROR_CODE_INVALID_ARGUMENT);
    assert.match(ttl0.message, /ttl_seconds 0 is not a positive integer/);
    const negative = await ask(raw.leaseRevoke.bind(raw), { id: -1n });
    assert.match(negative.message, /id -1 is negative/);
    const unknown = await ask(raw.leaseRevoke.bind(raw), { id: 77n });
    assert.equal(unknown.code, WireErrorCode.ERROR_CODE_INVALID_ARGUMENT);
    assert.match(unknown.message, /lease not found/);
    const ttl = await ask(raw.leaseTimeToLive.bind(raw), { id: 77n, keys: true });
    assert.equal(ttl.res.ttlSeconds, -1n);
  });

  test("watch: a bad key is answered with one canceled response and the stream ends", async () => {
    const badUtf8 = await watchRaw(address, protobuf([[1, BAD_UTF8]]));
    assert.equal(badUtf8.status, grpc.status.OK);
    assert.equal(badUtf8.responses.length, 1);
    const [r] = badUtf8.responses;
    assert.equal(r!.canceled, true);
    assert.equal(r!.header!.errorCode, WireErrorCode.ERROR_CODE_INVALID_ARGUMENT);
    assert.match(r!.cancelReason, /not well-formed UTF-8/);
    const empty = await watchRaw(address, protobuf([]));
    assert.match(empty.responses[0]!.cancelReason, /key is empty/);
    const tooLong = await watchRaw(address, protobuf([[1, "k".repeat(65)]]));
    assert.equal(tooLong.responses[0]!.header!.errorCode, WireErrorCode.ERROR_CODE_TOO_LARGE);
    // A good one: created first, at the current revision.
    const good = await watchRaw(address, protobuf([[1, "w"]]), 1);
    assert.equal(good.responses[0]?.created, true);
  });

  test("keepalive: an undecodable request is answered on the stream, which goes on", async () => {
    const client = new grpc.Client(address, grpc.credentials.createInsecure());
    const call = client.makeBidiStreamRequest(KEEPALIVE, id, id, new grpc.Metadata());
    const answers: LeaseKeepAliveResponse[] = [];
    const ended = new Promise<void>((resolve) => {
      call.on("data", (b: Buffer) => answers.push(LeaseKeepAliveResponse.decode(b)));
      call.on("end", resolve);
      call.on("error", () => resolve());
    });
    call.write(protobuf([[1, "not a varint"]]));
    call.write(protobuf([[1, 99n]]));
    call.end();
    await ended;
    client.close();
    assert.equal(answers.length, 2);
    assert.equal(answers[0]!.header!.errorCode, WireErrorCode.ERROR_CODE_INVALID_ARGUMENT);
    assert.match(
      answers[0]!.header!.errorMessage,
      /LeaseKeepAliveRequest\.id \(field 1\) was sent as length-delimited/,
    );
    assert.equal(answers[1]!.header!.errorCode, WireErrorCode.ERROR_CODE_UNSPECIFIED);
    assert.equal(answers[1]!.ttlSeconds, 0n, "no such lease: TTL 0");
  });

  test("streams: beyond maxConcurrentStreams a watch is refused RESOURCE_EXHAUSTED", async () => {
    const clients = [0, 1].map(() => new grpc.Client(address, grpc.credentials.createInsecure()));
    const open = clients.map((cl) =>
      cl.makeServerStreamRequest(WATCH, id, id, protobuf([[1, "s"]]), new grpc.Metadata(), {}),
    );
    const created = open.map((call) => new Promise((r) => call.once("data", r)));
    for (const call of open) call.on("error", () => undefined);
    await Promise.all(created);
    const third = await watchRaw(address, protobuf([[1, "s"]]));
    assert.equal(third.status, grpc.status.RESOURCE_EXHAUSTED);
    for (const call of open) call.cancel();
    for (const cl of clients) cl.close();
    // The slots come back.
    await new Promise((r) => setTimeout(r, 200));
    const again = await watchRaw(address, protobuf([[1, "s"]]), 1);
    assert.equal(again.responses[0]?.created, true);
  });
});
