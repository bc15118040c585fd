// The client API's bad inputs (TESTING.md): empty, oversize and non-UTF-8 keys, oversize values and
// requests, malformed bytes, unknown consistency levels, duplicate request ids, followers, no leader,
// and deadlines that expire mid-request; each with its exact code and message, and the node stays up.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { GetResponse as GetResponseDecoder } from "../../src/gen/raftkv/v1/client.ts";
import { Prng } from "../../src/lib/prng.ts";
import { runCli } from "../e2e/harness.ts";
import { rawUnary, startCluster, type TestCluster, waitFor } from "./cluster.ts";
import { ask, ErrorCode, protobuf, rawClient, session } from "./wire.ts";

const PUT = "/raftkv.v1.ClientService/Put";
const GET = "/raftkv.v1.ClientService/Get";
const RANGE = "/raftkv.v1.ClientService/Range";
const LIMITS = {
  maxKeyBytes: 64,
  maxValueBytes: 1024,
  maxRequestBytes: 8192,
  maxRangeItems: 5,
  maxRangeBytes: 2048,
  metricsPort: 0,
};
const BAD_UTF8 = new Uint8Array([0x6b, 0xff, 0xfe]);

/** Header code and message of a raw answer, decoded as the response type's header (field 1). */
function headerOf(bytes: Buffer | null): { code: number; message: string } {
  assert.ok(bytes !== null, "an answer, not a gRPC error");
  // Every response's field 1 is its ResponseHeader; decode it with the generated decoder.
  const res = GetResponseDecoder.decode(bytes);
  return { code: res.header?.errorCode ?? -1, message: res.header?.errorMessage ?? "" };
}

describe("one node: keys, values, request bytes and consistency levels", () => {
  let c: TestCluster;
  let address: string;
  let raw: ReturnType<typeof rawClient>;

  before(async () => {
    c = await startCluster({ size: 1, settings: LIMITS });
    await c.leader();
    address = c.addresses[0]!;
    raw = rawClient(address);
  });
  after(async () => {
    raw.close();
    await c.close();
  });

  test("an empty key is INVALID_ARGUMENT for every operation", async () => {
    const checks = [
      ask(raw.put.bind(raw), { key: "", value: new Uint8Array(1), clientId: "", seq: 0n, lease: 0n }),
      ask(raw.get.bind(raw), { key: "", consistency: 0 }),
      ask(raw.delete.bind(raw), { key: "", clientId: "", seq: 0n }),
      ask(raw.compareAndSwap.bind(raw), { key: "", newValue: new Uint8Array(1), clientId: "", seq: 0n }),
    ];
    for (const a of await Promise.all(checks)) {
      assert.equal(a.code, ErrorCode.ERROR_CODE_INVALID_ARGUMENT);
      assert.match(a.message, /^key is empty/);
    }
    await assert.rejects(c.client().put("", "v"), { code: "INVALID_ARGUMENT", message: /key is empty/ });
  });

  test("a key over maxKeyBytes is TOO_LARGE, naming its size and the limit", async () => {
    const a = await ask(raw.put.bind(raw), {
      key: "k".repeat(65),
      value: new Uint8Array(1),
      clientId: "",
      seq: 0n,
      lease: 0n,
    });
    assert.equal(a.code, ErrorCode.ERROR_CODE_TOO_LARGE);
    assert.match(a.message, /^key is 65 bytes, the limit is 64/);
    const multibyte = await ask(raw.get.bind(raw), { key: "é".repeat(33), consistency: 0 });
    assert.equal(multibyte.code, ErrorCode.ERROR_CODE_TOO_LARGE, "UTF-8 bytes count, not characters");
    assert.match(multibyte.message, /^key is 66 bytes, the limit is 64/);
    const exactly = await ask(raw.put.bind(raw), {
      key: "k".repeat(64),
      value: new Uint8Array(1),
      clientId: "",
      seq: 0n,
      lease: 0n,
    });
    assert.equal(exactly.code, ErrorCode.ERROR_CODE_UNSPECIFIED, "a key of exactly maxKeyBytes is fine");
  });

  test("a value over maxValueBytes is TOO_LARGE, for put and both cas values", async () => {
    const big = new Uint8Array(1025);
    const put = await ask(raw.put.bind(raw), { key: "v", value: big, clientId: "", seq: 0n, lease: 0n });
    assert.equal(put.code, ErrorCode.ERROR_CODE_TOO_LARGE);
    assert.match(put.message, /^value is 1025 bytes, the limit is 1024/);
    const cas = await ask(raw.compareAndSwap.bind(raw), {
      key: "v",
      expectedValue: big,
      newValue: new Uint8Array(1),
      clientId: "",
      seq: 0n,
    });
    assert.equal(cas.code, ErrorCode.ERROR_CODE_TOO_LARGE);
    assert.match(cas.message, /^value is 1025 bytes/);
    await assert.rejects(c.client().put("v", big), { code: "TOO_LARGE" });
    const exactly = await ask(raw.put.bind(raw), {
      key: "v",
      value: new Uint8Array(1024),
      clientId: "",
      seq: 0n,
      lease: 0n,
    });
    assert.equal(exactly.code, ErrorCode.ERROR_CODE_UNSPECIFIED);
  });

  test("a request over maxRequestBytes is TOO_LARGE; one over gRPC's limit is RESOURCE_EXHAUSTED", async () => {
    const over = protobuf([
      [1, "k"],
      [2, new Uint8Array(9000)],
    ]);
    const a = headerOf((await rawUnary(address, PUT, over)).bytes);
    assert.equal(a.code, ErrorCode.ERROR_CODE_TOO_LARGE);
    assert.match(a.message, /^the request is 9006 bytes, over maxRequestBytes \(8192\)/);
    // Beyond the gRPC receive limit (the larger of maxRequestBytes and the peer message limit) gRPC itself
    // refuses before any decoding; the client library reports that as TOO_LARGE.
    const huge = protobuf([
      [1, "k"],
      [2, new Uint8Array(8 * 1024 * 1024)],
    ]);
    const r = await rawUnary(address, PUT, huge);
    assert.equal(r.status, grpc.status.RESOURCE_EXHAUSTED);
    assert.match(r.details, /Received message larger than max/);
  });

  test("non-UTF-8 key bytes are INVALID_ARGUMENT (not stored under a U+FFFD key)", async () => {
    for (const [path, bytes] of [
      [
        PUT,
        protobuf([
          [1, BAD_UTF8],
          [2, "v"],
        ]),
      ],
      [GET, protobuf([[1, BAD_UTF8]])],
      [RANGE, protobuf([[1, BAD_UTF8]])],
      [
        PUT,
        protobuf([
          [1, "k"],
          [2, "v"],
          [3, BAD_UTF8],
          [4, 1n],
        ]),
      ],
    ] as const) {
      const a = headerOf((await rawUnary(address, path, bytes)).bytes);
      assert.equal(a.code, ErrorCode.ERROR_CODE_INVALID_ARGUMENT, path);
      assert.match(
        a.message,
        /^a string field \(key, prefix, start_after or client_id\) is not well-formed UTF-8/,
      );
    }
    const all = await c.client().range("");
    assert.ok(!all.items.some((i) => i.key.includes("\ufffd")), "no key was rewritten and stored");
  });

  test("truncated or random bytes are INVALID_ARGUMENT, never INTERNAL, and the node stays up", async () => {
    const truncated = headerOf((await rawUnary(address, PUT, Buffer.from([0x0a, 20, 0x61]))).bytes);
    assert.equal(truncated.code, ErrorCode.ERROR_CODE_INVALID_ARGUMENT);
    assert.match(truncated.message, /^the request is not a well-formed protobuf message: premature EOF/);
    const seed = 7;
    const prng = new Prng(seed);
    const paths = [
      PUT,
      GET,
      RANGE,
      "/raftkv.v1.ClientService/Delete",
      "/raftkv.v1.ClientService/CompareAndSwap",
    ];
    const counts = new Map<string, number>();
    for (let i = 0; i < 200; i++) {
      const bytes = Buffer.from(Array.from({ length: prng.int(1, 64) }, () => prng.int(0, 255)));
      const r = await rawUnary(address, paths[i % paths.length]!, bytes);
      assert.equal(
        r.status,
        grpc.status.OK,
        `seed ${seed} input ${i}: ${bytes.toString("hex")} got ${r.details}`,
      );
      const h = headerOf(r.bytes);
      assert.notEqual(h.code, ErrorCode.ERROR_CODE_INTERNAL, `seed ${seed} input ${i}: ${h.message}`);
      const name = ErrorCode[h.code] ?? String(h.code);
      counts.set(name, (counts.get(name) ?? 0) + 1);
    }
    assert.ok(
      (counts.get("ERROR_CODE_INVALID_ARGUMENT") ?? 0) > 50,
      `outcomes: ${JSON.stringify([...counts])}`,
    );
    await c.client().put("still", "up");
    assert.equal(await c.client().getString("still"), "up");
  });

  test("unknown consistency levels are INVALID_ARGUMENT for get and range", async () => {
    const get = await ask(raw.get.bind(raw), { key: "k", consistency: 42 });
    assert.equal(get.code, ErrorCode.ERROR_CODE_INVALID_ARGUMENT);
    assert.match(get.message, /^unknown consistency 42; use LEASE, READ_INDEX or STALE \(node 0\)/);
    const range = await ask(raw.range.bind(raw), { prefix: "", limit: 0, consistency: -1, startAfter: "" });
    assert.equal(range.code, ErrorCode.ERROR_CODE_INVALID_ARGUMENT);
    assert.match(range.message, /^unknown consistency -1/);
  });

  test("range answers stop at maxRangeItems and before maxRangeBytes, with more=true", async () => {
    const kv = c.client();
    for (let i = 0; i < 7; i++) await kv.put(`r/${i}`, new Uint8Array(300));
    const byItems = await kv.range("r/", { limit: 100 });
    assert.ok(byItems.items.length <= 5 && byItems.more);
    // 300-byte values and 3-byte keys: six would be 1818 bytes, under 2048; seven would be over.
    const a = await ask(raw.range.bind(raw), { prefix: "r/", limit: 0, consistency: 0, startAfter: "" });
    assert.equal(a.code, ErrorCode.ERROR_CODE_UNSPECIFIED);
    assert.equal(a.res.items.length, 5, "maxRangeItems (5) first");
    assert.equal(a.res.more, true);
    for (let i = 0; i < 7; i++) await kv.put(`b/${i}`, new Uint8Array(900));
    const bytes = await ask(raw.range.bind(raw), { prefix: "b/", limit: 0, consistency: 0, startAfter: "" });
    assert.equal(bytes.res.items.length, 2, "903-byte items: two fit in maxRangeBytes (2048), three do not");
    assert.equal(bytes.res.more, true);
  });

  test("duplicate request ids: a retried write applies once and answers its first index", async () => {
    const put = (value: string, seq: bigint) =>
      ask(raw.put.bind(raw), {
        key: "dup",
        value: Buffer.from(value),
        clientId: "dup-client",
        seq,
        lease: 0n,
      });
    const first = await put("a", 1n);
    const retry = await put("a", 1n);
    assert.equal(first.code, ErrorCode.ERROR_CODE_UNSPECIFIED);
    assert.equal(retry.res.index, first.res.index, "the retry reports the original index");
    const second = await put("b", 2n);
    assert.ok(second.res.index > first.res.index);
    const late = await put("a", 1n);
    assert.equal(late.code, ErrorCode.ERROR_CODE_UNSPECIFIED, "an older seq in the window: not re-applied");
    assert.equal(late.res.index, first.res.index, "it answers its first index");
    assert.equal(await c.client().getString("dup"), "b");
    for (const seq of [3n, 4n, 5n, 6n]) await put("c", seq);
    const stale = await put("a", 1n);
    assert.equal(stale.code, ErrorCode.ERROR_CODE_INVALID_ARGUMENT, "5 or more below the highest: refused");
    assert.match(stale.message, /refused by the state machine: stale sequence number/);
    assert.equal(await c.client().getString("dup"), "c");
    const noClient = await ask(raw.put.bind(raw), {
      key: "dup",
      value: Buffer.from("x"),
      clientId: "",
      seq: 7n,
      lease: 0n,
    });
    assert.equal(noClient.code, ErrorCode.ERROR_CODE_INVALID_ARGUMENT);
    assert.match(noClient.message, /^seq is set but client_id is empty/);
    const zero = await ask(raw.put.bind(raw), {
      key: "dup",
      value: Buffer.from("x"),
      clientId: "z",
      seq: 0n,
      lease: 0n,
    });
    assert.equal(zero.code, ErrorCode.ERROR_CODE_INVALID_ARGUMENT);
    assert.match(zero.message, /^sequence number 0 is not a safe integer >= 1/);
  });

  test("the Session stream: duplicate request ids are each answered; undecodable requests are rejected", async () => {
    const value = Buffer.from("s");
    const op = {
      $case: "put" as const,
      value: { key: "s/dup", value, clientId: "sess", seq: 1n, lease: 0n },
    };
    const answers = await session(address, [
      { requestId: 5n, timeoutMs: 0, op },
      { requestId: 5n, timeoutMs: 0, op },
      protobuf([
        [1, 9n],
        [3, protobuf([[1, BAD_UTF8]])],
      ]),
      Buffer.from([0x08, 11, 0x1a, 40, 1]),
    ]);
    assert.equal(answers.length, 4);
    const byId = (id: bigint) => answers.filter((a) => a.requestId === id);
    const puts = byId(5n).map((a) => (a.result?.$case === "put" ? a.result.value : null));
    assert.equal(puts.length, 2);
    assert.equal(puts[0]?.index, puts[1]?.index, "the same (client id, seq) applies once");
    const bad = byId(9n)[0]?.result;
    assert.equal(bad?.$case, "rejected");
    assert.equal(bad?.$case === "rejected" ? bad.value.errorCode : -1, ErrorCode.ERROR_CODE_INVALID_ARGUMENT);
    assert.match(bad?.$case === "rejected" ? bad.value.errorMessage : "", /not well-formed UTF-8/);
    const truncated = byId(11n)[0]?.result;
    assert.equal(truncated?.$case, "rejected");
    assert.match(
      truncated?.$case === "rejected" ? truncated.value.errorMessage : "",
      /not a well-formed protobuf message/,
    );
  });

  test("refusals at the edge are counted in raftkv_client_requests_refused_total", async () => {
    const text = await (await fetch(`http://127.0.0.1:${c.nodes[0]!.metricsPort}/metrics`)).text();
    for (const reason of ["badUtf8", "malformed", "tooLarge", "INVALID_ARGUMENT", "TOO_LARGE"])
      assert.match(
        text,
        new RegExp(`raftkv_client_requests_refused_total\\{reason="${reason}"\\} [1-9]`),
        reason,
      );
  });
});

/** A gRPC DEADLINE_EXCEEDED status as an answer with that code (anything else is rethrown). */
function grpcDeadline(err: unknown): { code: ErrorCode; message: string } {
  if ((err as { code?: unknown }).code === grpc.status.DEADLINE_EXCEEDED)
    return { code: ErrorCode.ERROR_CODE_DEADLINE_EXCEEDED, message: "gRPC deadline" };
  throw err;
}

describe("three nodes: followers, no leader, deadlines", () => {
  let c: TestCluster;
  let leader: number;

  before(async () => {
    // Long election timeouts: the leader must stay leader (check-quorum) for a while after its followers stop.
    const timing = { heartbeatMs: 100, electionTimeoutMinMs: 4000, electionTimeoutMaxMs: 5000 };
    c = await startCluster({ size: 3, settings: { maxPendingProposals: 4, maxPendingReads: 4, ...timing } });
    leader = await c.leader();
    // The leader binds the members to their folders' incarnations at first contact, a configuration
    // change: let it commit first, or it may hold one of the four proposal slots counted below.
    await waitFor(
      "every member bound to an incarnation",
      async () => {
        const r = await runCli(["member", "list", "--json", "--endpoints", c.addresses[leader]!]);
        if (r.code !== 0) return undefined;
        const l = JSON.parse(r.stdout) as { members: { incarnation: string }[] };
        return l.members.length === 3 && l.members.every((m) => /^[0-9a-f]{16}$/.test(m.incarnation))
          ? true
          : undefined;
      },
      30_000,
    );
  });
  after(() => c.close());

  test("a follower answers writes and linearizable reads NOT_LEADER with the leader's address; stale reads it serves", async () => {
    const kv = c.client();
    await kv.put("f/k", "v");
    const follower = [0, 1, 2].find((i) => i !== leader)!;
    const raw = rawClient(c.addresses[follower]!);
    try {
      const put = await ask(raw.put.bind(raw), {
        key: "f/k",
        value: Buffer.from("w"),
        clientId: "",
        seq: 0n,
        lease: 0n,
      });
      assert.equal(put.code, ErrorCode.ERROR_CODE_NOT_LEADER);
      assert.equal(put.header?.leaderAddress, c.addresses[leader]);
      assert.equal(Number(put.header?.leaderId), leader);
      assert.match(put.message, new RegExp(`^node ${follower} is not the leader; node ${leader} is`));
      const get = await ask(raw.get.bind(raw), { key: "f/k", consistency: 2 });
      assert.equal(get.code, ErrorCode.ERROR_CODE_NOT_LEADER);
      const stale = await waitFor("the follower to apply f/k", async () => {
        const a = await ask(raw.get.bind(raw), { key: "f/k", consistency: 3 });
        return a.res.found ? a : undefined;
      });
      assert.equal(Buffer.from(stale.res.value).toString(), "v");
      const viaFollower = c.client({ endpoints: [c.addresses[follower]!] });
      await viaFollower.put("f/k", "redirected");
      assert.equal(await viaFollower.getString("f/k"), "redirected");
    } finally {
      raw.close();
    }
  });

  test("with the followers gone: OVERLOADED beyond maxPendingProposals and maxPendingReads, DEADLINE_EXCEEDED mid-request, then NO_LEADER", async () => {
    const address = c.addresses[leader]!;
    const raw = rawClient(address);
    try {
      await Promise.all([0, 1, 2].filter((id) => id !== leader).map((id) => c.stopNode(id)));
      const put = (i: number, deadlineMs: number) =>
        ask(
          raw.put.bind(raw),
          { key: `p/${i}`, value: Buffer.from("x"), clientId: "", seq: 0n, lease: 0n },
          deadlineMs,
        );
      // Nothing can commit now. Five writes at once: four wait (maxPendingProposals), one is refused at
      // once. Which one is the server's order of arrival (five HTTP/2 streams), so the test counts.
      const started = performance.now();
      const refusedAtMs: number[] = [];
      const atOnce = <T extends { code: ErrorCode }>(p: Promise<T>): Promise<T> =>
        p.then((a) => {
          if (a.code === ErrorCode.ERROR_CODE_OVERLOADED) refusedAtMs.push(performance.now() - started);
          return a;
        });
      // Reads at once too (their own bound, maxPendingReads), while the writes wait: within the lease's
      // 4 s, before check-quorum steps the leader down.
      const putsP = Promise.all([1, 2, 3, 4, 5].map((i) => atOnce(put(i, 2000)).catch(grpcDeadline)));
      const readsP = Promise.all(
        [1, 2, 3, 4, 5].map(() =>
          atOnce(ask(raw.get.bind(raw), { key: "p/1", consistency: 2 }, 2000)).catch(grpcDeadline),
        ),
      );
      const [puts, reads] = await Promise.all([putsP, readsP]);
      const refusedPuts = puts.filter((a) => a.code === ErrorCode.ERROR_CODE_OVERLOADED);
      assert.equal(refusedPuts.length, 1, JSON.stringify(puts.map((a) => a.code)));
      assert.match(
        refusedPuts[0]!.message,
        /^4 writes already wait to commit on this leader \(maxPendingProposals\)/,
      );
      const refusedReads = reads.filter((a) => a.code === ErrorCode.ERROR_CODE_OVERLOADED);
      assert.equal(refusedReads.length, 1, JSON.stringify(reads.map((a) => a.code)));
      assert.match(
        refusedReads[0]!.message,
        /^4 linearizable reads already wait for a heartbeat round \(maxPendingReads\)/,
      );
      assert.equal(refusedAtMs.length, 2);
      for (const ms of refusedAtMs)
        assert.ok(ms < 1000, `refused at once, not queued until its deadline (${ms} ms)`);
      // The waiting ones run out of their deadline mid-request. The server answers a little before the
      // client's deadline, saying a write may still apply; on a machine too busy for that margin the
      // client's own gRPC deadline fires instead. Either way: DEADLINE_EXCEEDED, and nothing else.
      for (const a of puts.filter((x) => x.code !== ErrorCode.ERROR_CODE_OVERLOADED)) {
        assert.equal(a.code, ErrorCode.ERROR_CODE_DEADLINE_EXCEEDED);
        if (a.message !== "gRPC deadline")
          assert.match(a.message, /^the put did not complete within \d+ ms; it may still be applied/);
      }
      for (const a of reads.filter((x) => x.code !== ErrorCode.ERROR_CODE_OVERLOADED)) {
        assert.equal(a.code, ErrorCode.ERROR_CODE_DEADLINE_EXCEEDED);
        if (a.message !== "gRPC deadline") assert.match(a.message, /^the get did not complete within \d+ ms/);
      }
      // A deadline too short for any answer: the client's own gRPC deadline.
      await assert.rejects(put(6, 1), { code: grpc.status.DEADLINE_EXCEEDED });
      // Check-quorum: the leader steps down; with no leader a write is NO_LEADER.
      const noLeader = await waitFor(
        "the lone leader to step down",
        async () => {
          const a = await put(7, 2000);
          return a.code === ErrorCode.ERROR_CODE_NO_LEADER ? a : undefined;
        },
        15_000,
        200,
      );
      assert.match(noLeader.message, /^no leader is known right now \(node \d\); retry shortly/);
      await assert.rejects(c.client({ endpoints: [address], timeoutMs: 1500 }).put("x", "y"), {
        code: "NO_LEADER",
        message: /put failed: the cluster has no leader/,
      });
    } finally {
      raw.close();
    }
  });
});
