import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { RaftKvError } from "../lib/errors.ts";
import { utf8ByteLength, utf8Decode } from "./utf8.ts";

test("utf8ByteLength equals TextEncoder's length for well-formed strings", () => {
  fc.assert(
    fc.property(fc.string({ unit: "binary", maxLength: 40 }), (s) => {
      assert.equal(utf8ByteLength(s), new TextEncoder().encode(s).length);
    }),
  );
  assert.equal(utf8ByteLength("a\u00e9\u20ac\u{1f600}"), 1 + 2 + 3 + 4);
});

test("utf8ByteLength is -1 for lone surrogates", () => {
  for (const s of ["\ud800", "a\udc00", "\ud83d", "\ud83dx", "\ude00\ud83d", "x\udbff"]) {
    assert.equal(utf8ByteLength(s), -1, JSON.stringify(s));
  }
});

test("utf8Decode keeps a leading U+FEFF and rejects invalid UTF-8 with CORRUPT", () => {
  const bom = new TextEncoder().encode("\ufeffk");
  assert.equal(utf8Decode(bom, "key"), "\ufeffk");
  for (const bad of [[0xff], [0xc3], [0xed, 0xa0, 0x80], [0xc0, 0x80], [0x61, 0x80]]) {
    assert.throws(
      () => utf8Decode(Uint8Array.from(bad), "key"),
      (e: unknown) => e instanceof RaftKvError && e.code === "CORRUPT",
    );
  }
});

test("utf8Decode round-trips any well-formed string", () => {
  fc.assert(
    fc.property(fc.string({ unit: "binary", maxLength: 100 }), (s) => {
      assert.equal(utf8Decode(new TextEncoder().encode(s), "s"), s);
    }),
  );
  const long = "k".repeat(1000);
  assert.equal(utf8Decode(new TextEncoder().encode(long), "s"), long);
});
