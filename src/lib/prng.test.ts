import assert from "node:assert/strict";
import { test } from "node:test";
import { crc32c } from "./crc32c.ts";
import { Prng } from "./prng.ts";

test("Prng is deterministic per seed and spreads values", () => {
  const a = new Prng(42);
  const b = new Prng(42);
  const xs = Array.from({ length: 1000 }, () => a.int(0, 9));
  const ys = Array.from({ length: 1000 }, () => b.int(0, 9));
  assert.deepEqual(xs, ys);
  for (let d = 0; d <= 9; d++)
    assert.ok(xs.filter((x) => x === d).length > 50, `digit ${d} underrepresented`);
  assert.notDeepEqual(
    Array.from({ length: 20 }, () => new Prng(1).nextU32()),
    Array.from({ length: 20 }, () => new Prng(2).nextU32()),
  );
});

test("crc32c matches the standard check value", () => {
  assert.equal(crc32c(new TextEncoder().encode("123456789")), 0xe3069283);
  const whole = crc32c(new TextEncoder().encode("hello world"));
  const part = crc32c(new TextEncoder().encode(" world"), crc32c(new TextEncoder().encode("hello")));
  assert.equal(part, whole);
});

test("crc32c slice-by-8 agrees with the bytewise definition at every length and split", () => {
  const poly = 0x82f63b78;
  const slow = (b: Uint8Array): number => {
    let c = 0xffffffff;
    for (const x of b) {
      c ^= x;
      for (let k = 0; k < 8; k++) c = c & 1 ? (poly ^ (c >>> 1)) >>> 0 : c >>> 1;
    }
    return ~c >>> 0;
  };
  const rng = new Prng(7);
  for (let len = 0; len < 70; len++) {
    const b = Uint8Array.from({ length: len }, () => rng.int(0, 255));
    assert.equal(crc32c(b), slow(b), `length ${len}`);
    const cut = rng.int(0, len);
    assert.equal(crc32c(b.subarray(cut), crc32c(b.subarray(0, cut))), slow(b));
  }
});
