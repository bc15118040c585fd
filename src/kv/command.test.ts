import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { RaftKvError } from "../lib/errors.ts";
import { type ClientSession, decodeCommand, encodeCommand, type KvCommand } from "./command.ts";

const te = new TextEncoder();
const LIMITLESS = { maxKeyBytes: Number.MAX_SAFE_INTEGER, maxValueBytes: Number.MAX_SAFE_INTEGER };

const key = fc.string({ unit: "binary", minLength: 1, maxLength: 24 });
const blob = fc.uint8Array({ maxLength: 48 });
const session = fc.option(
  fc
    .tuple(
      fc.string({ unit: "binary", minLength: 1, maxLength: 16 }),
      fc.oneof(
        fc.integer({ min: 1, max: 1000 }),
        fc.maxSafeNat().filter((n) => n >= 1),
      ),
    )
    .map(([clientId, seq]): ClientSession => ({ clientId, seq })),
  { nil: undefined },
);
const withSession = (s: ClientSession | undefined) => (s === undefined ? {} : { session: s });

const commandArb: fc.Arbitrary<KvCommand> = fc.oneof(
  fc
    .tuple(key, blob, session)
    .map(([k, v, s]): KvCommand => ({ op: "put", key: k, value: v, ...withSession(s) })),
  fc.tuple(key, session).map(([k, s]): KvCommand => ({ op: "delete", key: k, ...withSession(s) })),
  fc
    .tuple(key, fc.option(blob), fc.option(blob), session)
    .map(([k, e, v, s]): KvCommand => ({ op: "cas", key: k, expected: e, value: v, ...withSession(s) })),
);

function isCorrupt(e: unknown): boolean {
  return e instanceof RaftKvError && e.code === "CORRUPT";
}

/** Decoding must yield a command that re-encodes to exactly the same bytes, or throw RaftKvError. */
function decodesCanonicallyOrThrowsTyped(bytes: Uint8Array): void {
  let cmd: KvCommand;
  try {
    cmd = decodeCommand(bytes);
  } catch (e) {
    assert.ok(e instanceof RaftKvError, `non-typed error: ${String(e)}`);
    return;
  }
  assert.deepEqual(encodeCommand(cmd, LIMITLESS), bytes);
}

test("encode/decode round-trips every command, and the encoding is canonical", () => {
  fc.assert(
    fc.property(commandArb, (cmd) => {
      const bytes = encodeCommand(cmd);
      assert.equal(bytes[0], 1, "leading version byte");
      assert.deepEqual(decodeCommand(bytes), cmd);
      assert.deepEqual(encodeCommand(decodeCommand(bytes)), bytes);
    }),
    { numRuns: 500 },
  );
});

test("decode of random bytes yields a valid command or a RaftKvError", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (b) => decodesCanonicallyOrThrowsTyped(b)),
    {
      numRuns: 2000,
    },
  );
  // Plausible headers make the random tail reach deeper into the decoder.
  const header = fc.tuple(
    fc.constantFrom(1, 0, 2),
    fc.integer({ min: 0, max: 4 }),
    fc.integer({ min: 0, max: 8 }),
  );
  fc.assert(
    fc.property(header, fc.uint8Array({ maxLength: 64 }), ([v, op, flags], tail) => {
      decodesCanonicallyOrThrowsTyped(Uint8Array.from([v, op, flags, ...tail]));
    }),
    { numRuns: 3000 },
  );
});

test("decode of mutated encodings yields a valid command or a RaftKvError", () => {
  const mutation = fc.oneof(
    fc.record({ kind: fc.constant("set" as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
    fc.record({ kind: fc.constant("flip" as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
    fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
    fc.record({ kind: fc.constant("insert" as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  );
  fc.assert(
    fc.property(commandArb, fc.array(mutation, { minLength: 1, maxLength: 3 }), (cmd, mutations) => {
      let b = Array.from(encodeCommand(cmd));
      for (const m of mutations) {
        const at = m.at % (b.length + 1);
        if (m.kind === "set" && at < b.length) b[at] = m.byte;
        if (m.kind === "flip" && at < b.length) b[at] = b[at]! ^ (1 << m.bit);
        if (m.kind === "truncate") b = b.slice(0, at);
        if (m.kind === "insert") b.splice(at, 0, m.byte);
      }
      decodesCanonicallyOrThrowsTyped(Uint8Array.from(b));
    }),
    { numRuns: 3000 },
  );
});

test("decode rejects each kind of malformed command with CORRUPT", () => {
  const put = (...rest: number[]) => Uint8Array.from([1, 1, 0, 1, 0, 0, 0, 0x6b, ...rest]); // key "k"
  assert.deepEqual(decodeCommand(put(0, 0, 0, 0)), { op: "put", key: "k", value: new Uint8Array(0) });
  const cases: [string, Uint8Array][] = [
    ["empty", new Uint8Array(0)],
    ["unknown version", Uint8Array.from([2, 1, 0, 1, 0, 0, 0, 0x6b, 0, 0, 0, 0])],
    ["unknown op", Uint8Array.from([1, 9, 0, 1, 0, 0, 0, 0x6b])],
    ["cas flags on put", Uint8Array.from([1, 1, 2, 1, 0, 0, 0, 0x6b, 0, 0, 0, 0])],
    ["unknown flag on cas", Uint8Array.from([1, 3, 8, 1, 0, 0, 0, 0x6b])],
    ["empty key", Uint8Array.from([1, 2, 0, 0, 0, 0, 0])],
    ["key length past the end", Uint8Array.from([1, 2, 0, 0xff, 0xff, 0xff, 0xff, 0x6b])],
    ["invalid UTF-8 key", Uint8Array.from([1, 2, 0, 1, 0, 0, 0, 0xff])],
    ["missing value", put()],
    ["value length past the end", put(5, 0, 0, 0, 1)],
    ["trailing byte", put(0, 0, 0, 0, 7)],
    ["empty client id", Uint8Array.from([1, 2, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0x6b])],
    ["client id too long", Uint8Array.from([1, 2, 1, 65, ...new Array(65 + 8).fill(0x61), 1, 0, 0, 0, 0x6b])],
    ["seq 0", Uint8Array.from([1, 2, 1, 1, 0x63, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0x6b])],
    ["seq above 2^53", Uint8Array.from([1, 2, 1, 1, 0x63, 0, 0, 0, 0, 0, 0, 0x20, 0, 1, 0, 0, 0, 0x6b])],
  ];
  for (const [name, bytes] of cases) assert.throws(() => decodeCommand(bytes), isCorrupt, name);
});

test("decode copies byte arrays out of the entry buffer", () => {
  const bytes = encodeCommand({ op: "put", key: "k", value: te.encode("v") });
  const cmd = decodeCommand(bytes);
  bytes.fill(0);
  assert.deepEqual(cmd, { op: "put", key: "k", value: te.encode("v") });
});

test("decode accepts seq = 2^53 - 1 and keys that start with U+FEFF", () => {
  const cmd: KvCommand = {
    op: "delete",
    key: "\ufeffk",
    session: { clientId: "c", seq: Number.MAX_SAFE_INTEGER },
  };
  assert.deepEqual(decodeCommand(encodeCommand(cmd)), cmd);
});

test("encode validates limits and sessions with typed errors", () => {
  const code = (cmd: KvCommand, limits?: { maxKeyBytes: number; maxValueBytes: number }) => {
    try {
      encodeCommand(cmd, limits);
      return "ok";
    } catch (e) {
      assert.ok(e instanceof RaftKvError);
      return e.code;
    }
  };
  const v = te.encode("value");
  assert.equal(code({ op: "put", key: "", value: v }), "INVALID_ARGUMENT");
  assert.equal(code({ op: "delete", key: "\ud800" }), "INVALID_ARGUMENT");
  assert.equal(code({ op: "put", key: "k".repeat(4097), value: v }), "TOO_LARGE");
  assert.equal(code({ op: "put", key: "k", value: v }, { maxKeyBytes: 10, maxValueBytes: 4 }), "TOO_LARGE");
  assert.equal(
    code({ op: "cas", key: "k", expected: v, value: null }, { maxKeyBytes: 9, maxValueBytes: 4 }),
    "TOO_LARGE",
  );
  assert.equal(
    code({ op: "cas", key: "k", expected: null, value: v }, { maxKeyBytes: 9, maxValueBytes: 4 }),
    "TOO_LARGE",
  );
  assert.equal(code({ op: "delete", key: "k", session: { clientId: "", seq: 1 } }), "INVALID_ARGUMENT");
  assert.equal(
    code({ op: "delete", key: "k", session: { clientId: "x".repeat(65), seq: 1 } }),
    "INVALID_ARGUMENT",
  );
  assert.equal(code({ op: "delete", key: "k", session: { clientId: "c", seq: 0 } }), "INVALID_ARGUMENT");
  assert.equal(
    code({ op: "delete", key: "k", session: { clientId: "c", seq: 2 ** 53 } }),
    "INVALID_ARGUMENT",
  );
  assert.equal(code({ op: "delete", key: "k", session: { clientId: "c", seq: 1.5 } }), "INVALID_ARGUMENT");
  assert.equal(code({ op: "put", key: "k".repeat(4096), value: new Uint8Array(1024 * 1024) }), "ok");
});
