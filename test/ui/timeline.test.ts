// The dashboard's timeline: what each node event becomes, in a bounded ring read by sequence number.

import assert from "node:assert/strict";
import { test } from "node:test";
import { Timeline } from "../../src/ui/timeline.ts";

test("elections, leadership, step-downs, leases and snapshots become entries; the ring is bounded", () => {
  let now = 1000;
  const t = new Timeline(1, 4, () => now, "follower");
  t.record({ type: "role", role: "preCandidate", term: 1, leaderId: null });
  t.record({ type: "role", role: "candidate", term: 2, leaderId: null });
  now = 2000;
  t.record({ type: "role", role: "leader", term: 2, leaderId: 1 });
  assert.equal(t.lastLeaderChangeAtMs, 2000);
  assert.equal(
    t.record({ type: "leader", leaderId: 1, term: 2 }),
    null,
    "its own leadership is not 'following'",
  );
  t.record({ type: "lease", lease: "waitingOldLease", term: 2 });
  t.record({ type: "role", role: "follower", term: 3, leaderId: null });
  const kinds = t.since(0).map((e) => e.kind);
  assert.deepEqual(kinds, ["election", "leader", "lease", "stepDown"], "4 entries kept, the oldest dropped");
  assert.equal(t.since(0)[3]!.text, "stepped down as leader (term 3)");
  assert.deepEqual(
    t.since(t.lastSeq - 1).map((e) => e.seq),
    [t.lastSeq],
  );
  assert.deepEqual(t.since(t.lastSeq), []);
  t.record({ type: "leader", leaderId: 2, term: 3 });
  assert.equal(t.since(t.lastSeq - 1)[0]!.text, "following leader 2 (term 3)");
  t.record({ type: "snapshot", index: 42, source: "installed" });
  assert.equal(t.since(t.lastSeq - 1)[0]!.text, "snapshot through index 42 installed from the leader");
  assert.equal(
    t.record({ type: "lease", lease: "noLease", term: 3 }),
    null,
    "a follower has no lease to lapse",
  );
});
