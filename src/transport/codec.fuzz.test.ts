// Fuzz regression for the peer codec and the generated client decoders: short seeded runs of
// scripts/fuzz (replay a failure with `npx tsx scripts/fuzz.ts --target codec --seed N`).

import assert from "node:assert/strict";
import { test } from "node:test";
import { shortRun } from "../../scripts/fuzz/engine.ts";
import { codecTarget } from "../../scripts/fuzz/targets/codec.ts";
import { PROTO_DECODERS, protoTarget } from "../../scripts/fuzz/targets/proto.ts";
import { PutRequest } from "../gen/raftkv/v1/client.ts";

for (const seed of [1, 2]) {
  test(`codec: mutated peer messages never throw and are refused with a reason (seed ${seed})`, async () => {
    const { findings, stats } = await shortRun(codecTarget, seed, 3000);
    assert.deepEqual(findings, [], `fuzz seed ${seed}`);
    assert.ok(stats.accepted > 100 && stats.refused > 100, "the run reaches both outcomes");
  });
}

test("client decoders: bad bytes throw Error instances only (the server maps them to INVALID_ARGUMENT)", async () => {
  const { findings, stats } = await shortRun(protoTarget, 1, 4000);
  assert.deepEqual(findings, []);
  const thrown = new Set(
    [...stats.labels.keys()].filter((l) => l.startsWith("refused")).map((l) => l.split(": ")[1]),
  );
  for (const t of thrown)
    assert.match(t ?? "", /^[A-Za-z(). ]+\/(Error|RangeError|TypeError)$/, `unexpected ${t}`);
});

test("client decoders: non-UTF-8 strings become U+FFFD unless the reader is strict", () => {
  // PutRequest{key: 0xff 0x6b}: the generated decoder substitutes, so the server must decode strictly.
  const bytes = Uint8Array.of(0x0a, 0x02, 0xff, 0x6b);
  assert.equal(PutRequest.decode(bytes).key, "\ufffdk");
  const strict = PROTO_DECODERS.find((d) => d.name === "ClientRequest(strict)")!;
  // ClientRequest{put: PutRequest{key: 0xff}} through a fatal UTF-8 reader throws a TypeError.
  assert.throws(() => strict.decode(Uint8Array.of(0x1a, 0x03, 0x0a, 0x01, 0xff)), TypeError);
});
