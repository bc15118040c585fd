import assert from "node:assert/strict";
import { test } from "node:test";
import {
  DEFAULT_KV_LIMITS,
  DEFAULT_MAX_KEY_BYTES,
  DEFAULT_MAX_VALUE_BYTES,
  validateClientId,
  validateKey,
  validateSeq,
  validateValue,
} from "./limits.ts";

test("defaults are 4 KiB keys and 1 MiB values", () => {
  assert.equal(DEFAULT_MAX_KEY_BYTES, 4096);
  assert.equal(DEFAULT_MAX_VALUE_BYTES, 1024 * 1024);
  assert.deepEqual(DEFAULT_KV_LIMITS, { maxKeyBytes: 4096, maxValueBytes: 1024 * 1024 });
});

test("validateKey accepts keys up to the limit in UTF-8 bytes", () => {
  assert.equal(validateKey("a"), null);
  assert.equal(validateKey("k".repeat(4096)), null);
  assert.equal(validateKey("\u{1f600}".repeat(1024)), null); // 4096 bytes
  assert.equal(validateKey("\ufeff"), null);
});

test("validateKey rejects empty, ill-formed and oversized keys with typed errors", () => {
  assert.equal(validateKey("")?.code, "INVALID_ARGUMENT");
  assert.match(validateKey("")?.message ?? "", /key is empty/);
  assert.equal(validateKey("a\ud800b")?.code, "INVALID_ARGUMENT");
  assert.match(validateKey("a\ud800b")?.message ?? "", /lone surrogate/);
  const big = validateKey("k".repeat(4097));
  assert.equal(big?.code, "TOO_LARGE");
  assert.match(big?.message ?? "", /key is 4097 bytes, the limit is 4096/);
  // 2 UTF-16 units but 3 UTF-8 bytes each: the byte count is what is limited.
  assert.equal(validateKey("\u20ac".repeat(2), { maxKeyBytes: 5, maxValueBytes: 10 })?.code, "TOO_LARGE");
});

test("validateValue limits bytes; empty values are fine", () => {
  assert.equal(validateValue(new Uint8Array(0)), null);
  assert.equal(validateValue(new Uint8Array(DEFAULT_MAX_VALUE_BYTES)), null);
  const err = validateValue(new Uint8Array(DEFAULT_MAX_VALUE_BYTES + 1));
  assert.equal(err?.code, "TOO_LARGE");
  assert.match(err?.message ?? "", /value is 1048577 bytes, the limit is 1048576/);
  assert.equal(validateValue(new Uint8Array(3), { maxKeyBytes: 1, maxValueBytes: 2 })?.code, "TOO_LARGE");
});

test("validateClientId and validateSeq", () => {
  assert.equal(validateClientId("c".repeat(64)), null);
  assert.equal(validateClientId("c".repeat(65))?.code, "INVALID_ARGUMENT");
  assert.equal(validateClientId("")?.code, "INVALID_ARGUMENT");
  assert.equal(validateClientId("\udc00")?.code, "INVALID_ARGUMENT");
  assert.equal(validateSeq(1), null);
  assert.equal(validateSeq(Number.MAX_SAFE_INTEGER), null);
  for (const bad of [0, -1, 1.5, Number.NaN, Number.MAX_SAFE_INTEGER + 1, Number.POSITIVE_INFINITY]) {
    assert.equal(validateSeq(bad)?.code, "INVALID_ARGUMENT", String(bad));
  }
});
