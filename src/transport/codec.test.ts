// Tests of the peer codec: round trips, fuzzed input, and each refusal with its reason.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import type { Message } from "../core/types.ts";
import { ClientRequest } from "../gen/raftkv/v1/client.ts";
import {
  AppendEntriesRequest,
  AppendEntriesResponse,
  EntryKind,
  InstallSnapshotRequest,
  InstallSnapshotResponse,
  PeerBatch,
  PeerMessage,
  RequestVoteRequest,
  RequestVoteResponse,
  TimeoutNowRequest,
} from "../gen/raftkv/v1/peer.ts";
import {
  type CodecContext,
  type Decoded,
  decodeBatch,
  decodeMessage,
  decodeUnaryRequest,
  encodeBatch,
  encodeMessage,
  encodeUnaryResponse,
  fromWire,
  maxWireBytes,
  REFUSAL_REASONS,
  type RefusalReason,
  toWire,
  type UnaryKind,
} from "./codec.ts";
import { arbMessage, arbMessageOfType, MESSAGE_TYPES } from "./codec-arbitraries.ts";

const CLUSTER = "test-cluster";
const ADDR = "127.0.0.1:40000";
const ctx: CodecContext = {
  clusterId: CLUSTER,
  self: 1,
  peers: new Set([0, 1, 2]),
  limits: { maxBytesPerMessage: 4096, maxEntriesPerMessage: 16 },
};
const arbValid = arbMessage({ from: [0, 2], to: 1, maxEntries: 16, maxChunkBytes: 512 });

/** fast-check seeds are printed by fc.assert on failure; pass { seed, path } here to replay. */
const params: fc.Parameters<unknown> = { numRuns: 300 };

function expectOk(d: Decoded): Message {
  if (!d.ok) assert.fail(`refused: ${d.reason}: ${d.detail}`);
  return d.message;
}

function expectRefused(d: Decoded, reason: RefusalReason): void {
  assert.equal(d.ok, false, "expected a refusal");
  if (d.ok) return;
  assert.equal(d.reason, reason, d.detail);
  assert.equal(d.peerAddress, ADDR);
  assert.ok(REFUSAL_REASONS.includes(d.reason));
}

/** Encodes a hand-built wire message (possibly invalid) and decodes it through the codec. */
function viaWire(w: PeerMessage): Decoded {
  return decodeMessage(PeerMessage.encode(w).finish(), ctx, ADDR);
}

const header = (
  over: Partial<{
    clusterId: string;
    from: bigint;
    to: bigint;
    term: bigint;
    fromIncarnation: string;
    toIncarnation: string;
  }> = {},
) => ({
  clusterId: CLUSTER,
  from: 0n,
  to: 1n,
  term: 5n,
  fromIncarnation: "",
  toIncarnation: "",
  ...over,
});

function append(over: Partial<AppendEntriesRequest> = {}): PeerMessage {
  const value: AppendEntriesRequest = {
    header: header(),
    prevLogIndex: 3n,
    prevLogTerm: 2n,
    entries: [
      { index: 4n, term: 2n, kind: EntryKind.ENTRY_KIND_COMMAND, data: new Uint8Array([1, 2]) },
      { index: 5n, term: 5n, kind: EntryKind.ENTRY_KIND_NOOP, data: new Uint8Array(0) },
    ],
    leaderCommit: 4n,
    round: 9n,
    ...over,
  };
  return { body: { $case: "appendEntries", value } };
}

describe("codec round trips (property)", () => {
  for (const type of MESSAGE_TYPES) {
    test(`${type}: encode then decode gives the message back`, () => {
      const arb = arbMessageOfType(type, { from: [0, 2], to: 1, maxEntries: 16, maxChunkBytes: 512 });
      fc.assert(
        fc.property(arb, (m) => {
          assert.deepStrictEqual(expectOk(decodeMessage(encodeMessage(m, CLUSTER), ctx, ADDR)), m);
        }),
        params,
      );
    });
  }

  test("a batch of any messages decodes to the same messages in order", () => {
    fc.assert(
      fc.property(fc.array(arbValid, { maxLength: 10 }), (ms) => {
        const batch = encodeBatch(ms.map((m) => encodeMessage(m, CLUSTER)));
        // The hand-made framing is a valid PeerBatch for the generated decoder too.
        assert.equal(PeerBatch.decode(batch).messages.length, ms.length);
        const d = decodeBatch(batch, ctx, ADDR);
        assert.ok(d.ok);
        assert.deepStrictEqual(d.results.map(expectOk), ms);
      }),
      { numRuns: 100 },
    );
  });

  test("unary requests and responses round-trip", () => {
    fc.assert(
      fc.property(arbValid, (m) => {
        const body = toWire(m, CLUSTER).body;
        assert.ok(body);
        switch (body.$case) {
          case "appendEntries":
            return roundTripsUnary(m, "appendEntries", AppendEntriesRequest.encode(body.value).finish());
          case "requestVote":
            return roundTripsUnary(m, "requestVote", RequestVoteRequest.encode(body.value).finish());
          case "installSnapshot":
            return roundTripsUnary(m, "installSnapshot", InstallSnapshotRequest.encode(body.value).finish());
          case "timeoutNow":
            return roundTripsUnary(m, "timeoutNow", TimeoutNowRequest.encode(body.value).finish());
          case "appendEntriesResponse": {
            assert.ok(m.type === "appendResponse");
            const value = AppendEntriesResponse.decode(encodeUnaryResponse(m, CLUSTER));
            return roundTripsWire(m, { body: { $case: body.$case, value } });
          }
          case "requestVoteResponse": {
            assert.ok(m.type === "voteResponse");
            const value = RequestVoteResponse.decode(encodeUnaryResponse(m, CLUSTER));
            return roundTripsWire(m, { body: { $case: body.$case, value } });
          }
          case "installSnapshotResponse": {
            assert.ok(m.type === "snapshotResponse");
            const value = InstallSnapshotResponse.decode(encodeUnaryResponse(m, CLUSTER));
            return roundTripsWire(m, { body: { $case: body.$case, value } });
          }
        }
      }),
      params,
    );
  });
});

function roundTripsUnary(m: Message, kind: UnaryKind, bytes: Uint8Array): void {
  assert.deepStrictEqual(expectOk(decodeUnaryRequest(kind, bytes, ctx, ADDR)), m);
}

function roundTripsWire(m: Message, w: PeerMessage): void {
  assert.deepStrictEqual(expectOk(fromWire(w, ctx, ADDR)), m);
}

describe("codec under hostile input (property)", () => {
  test("random bytes never throw past the decoders", () => {
    const kinds: UnaryKind[] = ["appendEntries", "requestVote", "installSnapshot", "timeoutNow"];
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), (bytes) => {
        for (const d of [
          decodeMessage(bytes, ctx, ADDR),
          ...kinds.map((k) => decodeUnaryRequest(k, bytes, ctx, ADDR)),
        ])
          if (!d.ok) assert.ok(REFUSAL_REASONS.includes(d.reason));
        const b = decodeBatch(bytes, ctx, ADDR);
        if (!b.ok) assert.equal(b.reason, "malformed");
      }),
      { numRuns: 2000 },
    );
  });

  test("mutated encodings never throw, and what they accept is valid again", () => {
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant("flip" as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
      fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
      fc.record({
        kind: fc.constant("insert" as const),
        at: fc.nat(),
        bytes: fc.uint8Array({ minLength: 1, maxLength: 12 }),
      }),
      fc.record({ kind: fc.constant("set" as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
    );
    fc.assert(
      fc.property(arbValid, fc.array(mutation, { minLength: 1, maxLength: 4 }), (m, mutations) => {
        let bytes = encodeMessage(m, CLUSTER);
        for (const mu of mutations) bytes = mutate(bytes, mu);
        const d = decodeMessage(bytes, ctx, ADDR);
        if (d.ok) {
          // Whatever got through is a message the codec accepts again unchanged.
          assert.deepStrictEqual(
            expectOk(decodeMessage(encodeMessage(d.message, CLUSTER), ctx, ADDR)),
            d.message,
          );
        }
        decodeBatch(encodeBatch([bytes]), ctx, ADDR);
        decodeBatch(bytes, ctx, ADDR);
      }),
      { numRuns: 2000 },
    );
  });
});

type Mutation =
  | { kind: "flip"; at: number; bit: number }
  | { kind: "truncate"; at: number }
  | { kind: "insert"; at: number; bytes: Uint8Array }
  | { kind: "set"; at: number; value: number };

function mutate(bytes: Uint8Array, mu: Mutation): Uint8Array {
  if (bytes.length === 0) return bytes;
  const at = mu.at % bytes.length;
  const out = new Uint8Array(bytes);
  switch (mu.kind) {
    case "flip":
      out[at] = out[at]! ^ (1 << mu.bit);
      return out;
    case "set":
      out[at] = mu.value;
      return out;
    case "truncate":
      return out.subarray(0, at);
    case "insert":
      return new Uint8Array([...out.subarray(0, at), ...mu.bytes, ...out.subarray(at)]);
  }
}

describe("codec refusals", () => {
  test("accepts the reference append", () => {
    const m = expectOk(viaWire(append()));
    assert.equal(m.type, "append");
  });

  test("another cluster id is refused with the peer address and claimed sender", () => {
    const d = viaWire(append({ header: header({ clusterId: "other\ncluster" }) }));
    expectRefused(d, "clusterMismatch");
    assert.ok(!d.ok && d.detail.includes('"other\\ncluster"'), "peer string is quoted");
  });

  test("unknown sender, ourselves, another recipient", () => {
    expectRefused(viaWire(append({ header: header({ from: 7n }) })), "unknownSender");
    const self = viaWire(append({ header: header({ from: 1n }) }));
    expectRefused(self, "fromSelf");
    assert.equal(!self.ok && self.from, 1);
    expectRefused(viaWire(append({ header: header({ to: 2n }) })), "wrongRecipient");
  });

  test("integers above 2^52 (2^52 + 1, 2^53 - 1, 2^53, 2^63 - 1, 2^64 - 1) and negative sint64", () => {
    for (const big of [2n ** 52n + 1n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 63n - 1n, 2n ** 64n - 1n]) {
      expectRefused(viaWire(append({ header: header({ term: big }) })), "unsafeInteger");
      expectRefused(viaWire(append({ leaderCommit: big })), "unsafeInteger");
      expectRefused(viaWire(append({ header: header({ from: big }) })), "unsafeInteger");
    }
    // The limit itself passes: index + 1 above it is still a safe integer (fuzz finding: an InstallSnapshot
    // at index 2^53 - 1 made the next WAL segment's name unparseable).
    const ok = expectOk(viaWire(append({ leaderCommit: 2n ** 52n })));
    assert.equal(ok.type === "append" && ok.leaderCommit, 2 ** 52);
    const resp = (nextOffset: bigint): PeerMessage => ({
      body: {
        $case: "installSnapshotResponse",
        value: { header: header(), snapshotIndex: 3n, nextOffset, installed: false, round: 0n },
      },
    });
    expectOk(viaWire(resp(-1n)));
    expectRefused(viaWire(resp(-2n)), "unsafeInteger");
    expectRefused(viaWire(resp(-(2n ** 62n))), "unsafeInteger");
    // In-process objects can hold negative bigints for unsigned fields; they are refused too.
    expectRefused(fromWire(append({ round: -1n }), ctx, ADDR), "unsafeInteger");
  });

  test("term 0 where a term is required; allowed only in a refused pre-vote answer", () => {
    expectRefused(viaWire(append({ header: header({ term: 0n }) })), "zeroTerm");
    const voteResp = (preVote: boolean, granted: boolean): PeerMessage => ({
      body: {
        $case: "requestVoteResponse",
        value: { header: header({ term: 0n }), preVote, granted, leaseRemainingTicks: 0n },
      },
    });
    expectOk(viaWire(voteResp(true, false)));
    expectRefused(viaWire(voteResp(true, true)), "zeroTerm");
    expectRefused(viaWire(voteResp(false, false)), "zeroTerm");
    const e = { index: 4n, term: 0n, kind: EntryKind.ENTRY_KIND_COMMAND, data: new Uint8Array(0) };
    expectRefused(viaWire(append({ prevLogIndex: 3n, prevLogTerm: 2n, entries: [e] })), "zeroTerm");
    expectRefused(
      viaWire(append({ prevLogIndex: 0n, prevLogTerm: 0n, entries: [{ ...e, index: 1n }] })),
      "zeroTerm",
    );
  });

  test("entries: backwards terms, terms above the message, gaps, bad kinds, noop with data", () => {
    const e = (
      index: bigint,
      term: bigint,
      kind = EntryKind.ENTRY_KIND_COMMAND,
      data = new Uint8Array(0),
    ) => ({
      index,
      term,
      kind,
      data,
    });
    expectRefused(viaWire(append({ entries: [e(4n, 3n), e(5n, 2n)] })), "entryTermBackwards");
    expectRefused(viaWire(append({ entries: [e(4n, 1n)] })), "entryTermBackwards"); // below prevLogTerm 2
    expectRefused(viaWire(append({ entries: [e(4n, 6n)] })), "entryTermAboveMessage");
    expectRefused(viaWire(append({ entries: [e(5n, 2n)] })), "entriesNotContiguous");
    expectRefused(viaWire(append({ entries: [e(4n, 2n), e(4n, 2n)] })), "entriesNotContiguous");
    expectRefused(viaWire(append({ entries: [e(4n, 2n, 0 as EntryKind)] })), "badEntryKind");
    expectRefused(viaWire(append({ entries: [e(4n, 2n, 9 as EntryKind)] })), "badEntryKind");
    const noopData = e(4n, 2n, EntryKind.ENTRY_KIND_NOOP, new Uint8Array([1]));
    expectRefused(viaWire(append({ entries: [noopData] })), "badField");
    expectRefused(viaWire(append({ prevLogIndex: 0n, prevLogTerm: 2n, entries: [] })), "badField");
    expectRefused(viaWire(append({ prevLogIndex: 3n, prevLogTerm: 0n, entries: [] })), "badField");
    expectRefused(viaWire(append({ prevLogTerm: 6n, entries: [] })), "badField");
  });

  test("oversize: too many entries, too many data bytes, too many wire bytes", () => {
    const many = Array.from({ length: 17 }, (_, i) => ({
      index: BigInt(4 + i),
      term: 2n,
      kind: EntryKind.ENTRY_KIND_COMMAND,
      data: new Uint8Array(0),
    }));
    expectRefused(viaWire(append({ entries: many })), "tooManyEntries");
    expectOk(viaWire(append({ entries: many.slice(0, 16) })));
    const big = (n: number) => ({
      index: 4n,
      term: 2n,
      kind: EntryKind.ENTRY_KIND_COMMAND,
      data: new Uint8Array(n),
    });
    expectOk(viaWire(append({ entries: [big(4096)] })));
    expectRefused(viaWire(append({ entries: [big(4097)] })), "tooLarge");
    const huge = new Uint8Array(maxWireBytes(ctx.limits) + 1);
    expectRefused(decodeMessage(huge, ctx, ADDR), "tooLarge");
    expectRefused(decodeUnaryRequest("appendEntries", huge, ctx, ADDR), "tooLarge");
  });

  test("snapshot chunks: overrun, length mismatch, early done, oversize, zero meta", () => {
    const snap = (over: {
      offset?: bigint;
      length?: bigint;
      data?: Uint8Array;
      done?: boolean;
      size?: bigint;
    }) => {
      const data = over.data ?? new Uint8Array(10);
      const value = {
        header: header(),
        meta: {
          index: 7n,
          term: 4n,
          sizeBytes: over.size ?? 30n,
          crc32c: 1234,
          membership: new Uint8Array(0),
        },
        offset: over.offset ?? 10n,
        data,
        length: over.length ?? BigInt(data.length),
        done: over.done ?? false,
        round: 1n,
      };
      return { body: { $case: "installSnapshot" as const, value } };
    };
    expectOk(viaWire(snap({})));
    expectOk(viaWire(snap({ offset: 20n, done: true })));
    expectRefused(viaWire(snap({ offset: 25n })), "badSnapshotChunk");
    expectRefused(viaWire(snap({ length: 9n })), "badSnapshotChunk");
    expectRefused(viaWire(snap({ done: true })), "badSnapshotChunk");
    expectRefused(viaWire(snap({ data: new Uint8Array(5000), size: 10000n })), "tooLarge");
    const noMeta = snap({});
    noMeta.body.value.meta = undefined as never;
    expectRefused(viaWire(noMeta), "missingField");
    const metaAbove = snap({});
    metaAbove.body.value.meta = {
      index: 7n,
      term: 6n,
      sizeBytes: 30n,
      crc32c: 0,
      membership: new Uint8Array(0),
    };
    expectRefused(viaWire(metaAbove), "badField");
  });

  test("decoded bytes are detached from the receive buffer", () => {
    const bytes = PeerMessage.encode(append()).finish();
    const m = expectOk(decodeMessage(bytes, ctx, ADDR));
    bytes.fill(0);
    assert.ok(m.type === "append");
    assert.deepStrictEqual([...(m.entries[0]?.data ?? [])], [1, 2]);
  });

  test("empty, truncated, unknown-field and wrong-type input", () => {
    expectRefused(decodeMessage(new Uint8Array(0), ctx, ADDR), "missingBody");
    const bytes = PeerMessage.encode(append()).finish();
    for (const cut of [1, 5, bytes.length - 1]) {
      const d = decodeMessage(bytes.subarray(0, cut), ctx, ADDR);
      assert.equal(d.ok, false, `cut at ${cut}`);
    }
    // Unknown fields (here field 99, varint) are skipped: forward compatibility.
    const withUnknown = new Uint8Array([...bytes, 0x98, 0x06, 0x2a]);
    expectOk(decodeMessage(withUnknown, ctx, ADDR));
    // A valid client request is not a peer message.
    const wrong = ClientRequest.encode({
      requestId: 1n,
      timeoutMs: 0,
      op: { $case: "get", value: { key: "k", consistency: 0 } },
    }).finish();
    const d = decodeMessage(wrong, ctx, ADDR);
    assert.equal(d.ok, false);
    // A batch with broken framing is refused whole.
    const batch = decodeBatch(new Uint8Array([0x0a, 0x7f, 1, 2]), ctx, ADDR);
    assert.equal(batch.ok, false);
    assert.equal(!batch.ok && batch.reason, "malformed");
  });
});

describe("incarnations (issue 13: a wiped folder under a known id is refused)", () => {
  const OURS = "1111111111111111";
  const OLD = "aaaaaaaaaaaaaaaa";
  const WIPED = "bbbbbbbbbbbbbbbb";
  // This node (1) is incarnation OURS; its latest configuration binds node 0 to OLD, node 2 not at all.
  const bound: CodecContext = { ...ctx, incarnation: OURS, bindings: new Map([[0, OLD]]) };
  const decode = (h: ReturnType<typeof header>, c: CodecContext = bound): Decoded =>
    decodeMessage(PeerMessage.encode(append({ header: h })).finish(), c, ADDR);

  test("a message addressed to another incarnation of this node is refused: this folder is not the one the sender knows", () => {
    const d = decode(header({ fromIncarnation: OLD, toIncarnation: WIPED }));
    expectRefused(d, "recipientIncarnation");
    assert.ok(!d.ok);
    assert.match(
      d.detail,
      /node 0 knows node 1 as incarnation bbbbbbbbbbbbbbbb, this data folder is incarnation 1111111111111111/,
    );
    assert.equal(d.from, 0);
  });

  test("a message from a bound member's other incarnation is refused, and so is one that gives none", () => {
    const d = decode(header({ fromIncarnation: WIPED, toIncarnation: OURS }));
    expectRefused(d, "senderIncarnation");
    assert.match(
      !d.ok ? d.detail : "",
      /binds node 0 to incarnation aaaaaaaaaaaaaaaa, the message comes from incarnation bbbbbbbbbbbbbbbb/,
    );
    expectRefused(decode(header({ fromIncarnation: "", toIncarnation: OURS })), "senderIncarnation");
  });

  test("matching, unbound and unknown incarnations are accepted; the sender's is reported", () => {
    const ok = decode(header({ fromIncarnation: OLD, toIncarnation: OURS }));
    assert.ok(ok.ok && ok.fromIncarnation === OLD);
    // Node 2 is not bound yet: any incarnation of it passes (the leader binds it at first contact).
    const unbound = decode(header({ from: 2n, fromIncarnation: WIPED }));
    assert.ok(unbound.ok && unbound.fromIncarnation === WIPED);
    // A sender that does not know our binding (to_incarnation empty) is not refused for it.
    assert.ok(decode(header({ fromIncarnation: OLD })).ok);
    // Without incarnations of our own (an older storage), nothing is checked against them.
    assert.ok(decode(header({ fromIncarnation: OLD, toIncarnation: WIPED }), ctx).ok);
  });

  test("malformed incarnations are refused", () => {
    for (const bad of ["xyz", "AAAAAAAAAAAAAAAA", `${OLD}0`])
      for (const h of [header({ fromIncarnation: bad }), header({ toIncarnation: bad })])
        expectRefused(decode(h), "badField");
  });

  test("encodeMessage carries both incarnations in the header", () => {
    const m = expectOk(viaWire(append()));
    const bytes = encodeMessage(m, CLUSTER, { from: OLD, to: OURS });
    const w = PeerMessage.decode(bytes);
    assert.ok(w.body?.$case === "appendEntries");
    assert.equal(w.body.value.header?.fromIncarnation, OLD);
    assert.equal(w.body.value.header?.toIncarnation, OURS);
    const d = decodeMessage(bytes, bound, ADDR);
    assert.ok(d.ok && d.fromIncarnation === OLD);
  });
});
