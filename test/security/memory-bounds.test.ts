// Memory bounded by bytes, not only by counts (issue 12, findings 5 and 6), on a real 3-node cluster:
// with large values the log is snapshotted and compacted once it holds snapshotEveryBytes (10,000
// entries of 1 MiB used to stay in memory until a count-based snapshot), and a Range over large values
// answers at most maxRangeBytes and reads no more than that.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { startCluster, type TestCluster, waitFor } from "./cluster.ts";

let c: TestCluster;
const MiB = 1024 * 1024;

before(async () => {
  c = await startCluster({
    size: 3,
    settings: {
      snapshotEveryEntries: 10_000,
      snapshotEveryBytes: 2 * MiB,
      keepBytesAfterSnapshot: MiB,
      maxRangeBytes: 3 * MiB,
    },
  });
});
after(() => c.close());

test("finding 5: a log holding snapshotEveryBytes is snapshotted and compacted, long before snapshotEveryEntries", async () => {
  await c.leader();
  const kv = c.client({ timeoutMs: 20_000 });
  const value = new Uint8Array(512 * 1024).fill(1);
  for (let i = 0; i < 12; i++) await kv.put(`big-${String(i).padStart(2, "0")}`, value);
  await waitFor("every node to snapshot by bytes", () =>
    c.nodes.every((n) => n !== null && n.view().snapshotIndex > 0) ? true : undefined,
  );
  for (const n of c.nodes) assert.ok(n!.view().appliedIndex < 10_000);
});

test("finding 6: a Range over large values stops at maxRangeBytes and the leader keeps its lease", async () => {
  const leader = await c.leader();
  const term = c.nodes[leader]!.view().term;
  const kv = c.client({ timeoutMs: 20_000 });
  const r = await kv.range("big-", { limit: 1000 });
  assert.equal(r.items.length, 5, "five 512 KiB values fit in 3 MiB, a sixth would not");
  assert.equal(r.more, true);
  assert.equal(c.nodes[leader]!.view().role, "leader");
  assert.equal(c.nodes[leader]!.view().term, term);
});
