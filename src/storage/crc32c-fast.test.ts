// crc32cFast must equal lib/crc32c.ts on every input, including continuations.

import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { crc32c } from "../lib/crc32c.ts";
import { crc32cFast } from "./crc32c-fast.ts";

test("crc32cFast matches the standard check value and lib/crc32c", () => {
  assert.equal(crc32cFast(new TextEncoder().encode("123456789")), 0xe3069283);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), fc.integer({ min: 0, max: 0xffffffff }), (bytes, prev) => {
      assert.equal(crc32cFast(bytes), crc32c(bytes));
      assert.equal(crc32cFast(bytes, prev), crc32c(bytes, prev));
    }),
    { numRuns: 2000 },
  );
});
