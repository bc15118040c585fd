// End-to-end, 5 real nodes in separate data folders: the cluster keeps serving reads and writes with two
// nodes down (the leader among them), and every acknowledged write survives.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { runCli, TestCluster } from "./harness.ts";

let cluster: TestCluster;

before(async () => {
  cluster = await TestCluster.start({ nodes: 5 });
  await cluster.waitForLeader(30_000);
});

after(async () => {
  await cluster?.close();
});

test("a 5-node cluster keeps serving with two nodes down", async () => {
  const client = cluster.client(cluster.endpoints, 15_000);
  try {
    for (let i = 0; i < 20; i++) await client.put(`five/${i}`, `before-${i}`);
    const leader = await cluster.waitForLeader();
    const victim = cluster.nodes.find((n) => n.id !== leader.nodeId)!;
    await Promise.all([cluster.kill(leader.nodeId, "SIGKILL"), cluster.kill(victim.id, "SIGKILL")]);

    const next = await cluster.waitForLeader(20_000, [leader.nodeId, victim.id]);
    assert.ok(![leader.nodeId, victim.id].includes(next.nodeId));
    for (let i = 0; i < 20; i++) await client.put(`five/${i + 20}`, `after-${i}`);
    for (let i = 0; i < 20; i++) {
      assert.equal(await client.getString(`five/${i}`), `before-${i}`);
      assert.equal(await client.getString(`five/${i + 20}`, { consistency: "readIndex" }), `after-${i}`);
    }
    const r = await client.range("five/", { limit: 100 });
    assert.equal(r.items.length, 40);
    assert.equal(r.more, false);

    const status = await runCli(["status", "--endpoints", cluster.endpoints.join(",")]);
    assert.equal(status.code, 0, status.stderr);
    assert.equal(status.stdout.match(/unreachable/g)?.length, 2, status.stdout);
    // One row of the status table leads (the member table below it names roles voter/learner).
    assert.equal(status.stdout.match(/^\d+\s+\S+\s+leader\s/gm)?.length, 1, status.stdout);
  } finally {
    client.close();
  }
});
