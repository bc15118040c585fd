// Fuzz regression for the peer edge (issue 12): short fixed-seed runs of scripts/fuzz target "stream",
// whole PeerBatch messages with forged senders and terms through PeerInbox (identity, codec, delivery) into
// a Raft core, then ticked: the edge never throws or lets a forged sender through, and the core never
// asserts on what a peer sent (it refuses it, issue 12's core part). Replay a failure with
// `npx tsx scripts/fuzz.ts --target stream --seed N`.

import assert from "node:assert/strict";
import { test } from "node:test";
import { shortRun } from "../../scripts/fuzz/engine.ts";
import { streamTarget } from "../../scripts/fuzz/targets/stream.ts";

for (const seed of [1, 2]) {
  test(`stream: forged senders and terms never get past the peer edge (seed ${seed})`, async () => {
    const { findings, stats } = await shortRun(streamTarget, seed, 1000);
    assert.deepEqual(findings, [], `fuzz seed ${seed}`);
    assert.ok(stats.accepted > 100 && stats.refused > 100, "the run reaches both outcomes");
    const labels = [...stats.labels.keys()].join("\n");
    for (const outcome of [
      "client-cert/stream-refused/noPeerIdentity",
      "member2-claims-0/stream-refused/senderMismatch",
      "own-cert/stream-refused/fromSelf",
      "non-member/stream-refused/unknownSender",
      "/member2/ended-senderMismatch",
      "/plaintext/accepted",
    ])
      assert.ok(labels.includes(outcome), `the run reaches ${outcome}`);
  });
}
