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
