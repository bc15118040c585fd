// Fuzz regression for the KV decoders (commands and snapshot images): short seeded runs of
// scripts/fuzz (replay a failure with `npx tsx scripts/fuzz.ts --target command|snapshot --seed N`).

import assert from "node:assert/strict";
import { test } from "node:test";
import { shortRun } from "../../scripts/fuzz/engine.ts";
import { commandTarget } from "../../scripts/fuzz/targets/command.ts";
import { snapshotTarget } from "../../scripts/fuzz/targets/snapshot.ts";

for (const seed of [1, 2]) {
  test(`decodeCommand: mutated commands throw only CORRUPT, accepted ones are canonical (seed ${seed})`, async () => {
    const { findings, stats } = await shortRun(commandTarget, seed, 15_000);
    assert.deepEqual(findings, [], `fuzz seed ${seed}`);
    assert.ok(stats.accepted > 100 && stats.refused > 100, "the run reaches both outcomes");
  });

  test(`KvStateMachine.restore: mutated images throw only CORRUPT, accepted ones write back the same bytes (seed ${seed})`, async () => {
    const { findings, stats } = await shortRun(snapshotTarget, seed, 8000);
    assert.deepEqual(findings, [], `fuzz seed ${seed}`);
    assert.ok(stats.accepted > 100 && stats.refused > 100, "the run reaches both outcomes");
  });
}
