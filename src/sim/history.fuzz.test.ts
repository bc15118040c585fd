// Fuzz regression for the history.jsonl parser: a short seeded run of scripts/fuzz (replay a failure
// with `npx tsx scripts/fuzz.ts --target history --seed N`), and its findings as fixed cases.

import assert from "node:assert/strict";
import { test } from "node:test";
import { shortRun } from "../../scripts/fuzz/engine.ts";
import { historyTarget } from "../../scripts/fuzz/targets/history.ts";
import { RaftKvError } from "../lib/errors.ts";
import { parseHistoryJsonl } from "./history.ts";

for (const seed of [1, 2]) {
  test(`parseHistoryJsonl: mutated histories throw only INVALID_ARGUMENT naming the line (seed ${seed})`, async () => {
    const { findings, stats } = await shortRun(historyTarget, seed, 6000);
    assert.deepEqual(findings, [], `fuzz seed ${seed}`);
    assert.ok(stats.accepted > 100 && stats.refused > 100, "the run reaches both outcomes");
  });
}

const line = (field: string, json: string): string =>
  `{"client":1,"op":"put","key":"k","value":"v","expected":null,"call":1,"return":2,"ok":true,"result":null,${JSON.stringify(field)}:${json}}`;

function invalidArgument(text: string): RaftKvError {
  try {
    parseHistoryJsonl(text, "h.jsonl");
  } catch (e) {
    assert.ok(e instanceof RaftKvError, `expected a RaftKvError, got ${String(e)}`);
    assert.equal(e.code, "INVALID_ARGUMENT");
    return e;
  }
  assert.fail("the history should be refused");
}

test("a field holding a deeply nested array is refused, not a stack overflow (fuzz finding history-bad-error)", () => {
  // JSON.parse accepts the nesting; printing it in the refusal used to throw RangeError.
  const e = invalidArgument(line("ok", `${"[".repeat(20_000)}${"]".repeat(20_000)}`));
  assert.match(
    e.message,
    /^INVALID_ARGUMENT: h\.jsonl:1: field "ok" must be true, false or null, got a deeply nested array/,
  );
});

test("a refused value is shown truncated in the message", () => {
  const e = invalidArgument(line("ok", JSON.stringify("x".repeat(100_000))));
  assert.ok(e.message.length < 400, `message of ${e.message.length} chars`);
  assert.match(e.message, /got "x{79}…/);
});
