// End-to-end operator commands on real processes (issue 13): `raftkv endpoint health` reports each
// endpoint healthy or not with the time it took and exits 1 when any is unhealthy; `raftkv status` shows
// the configuration (voters, learners, joint or not) and each member's progress.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { freePorts, runCli, TestCluster, waitFor } from "./harness.ts";

let cluster: TestCluster;

before(async () => {
  cluster = await TestCluster.start({ nodes: 3 });
  await cluster.waitForLeader(30_000);
});

after(async () => {
  await cluster?.close();
});

test("endpoint health: every endpoint healthy, then one down and one never up: exit 1, both named", async () => {
  const endpoints = cluster.endpoints.join(",");
  // Right after an election a follower may not have heard from the leader yet: wait for all three.
  const ok = await waitFor(
    "every endpoint healthy",
    async () => {
      const r = await runCli(["endpoint", "health", "--endpoints", endpoints]);
      return r.code === 0 ? r : undefined;
    },
    30_000,
  );
  const lines = ok.stdout.trim().split("\n");
  assert.equal(lines.length, 3, ok.stdout);
  for (const l of lines) assert.match(l, /^127\.0\.0\.1:\d+ is healthy: took \d+ ms \(node \d, leader \d\)$/);

  const status = await runCli(["status", "--endpoints", endpoints]);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, /configuration: voters \{0,1,2\}, from log index \d+/);
  assert.match(status.stdout, /ID\s+PEER ADDRESS\s+ROLE\s+LEADER\s+PROGRESS/);
  assert.equal(status.stdout.match(/^\d+\s+127\.0\.0\.1:\d+\s+voter\b/gm)?.length, 3, status.stdout);

  const [closed] = await freePorts(1);
  // A follower goes down (not the leader: the two left would be unhealthy until they elect one, which
  // takes an election timeout, 1-2 s, against the 2 s the health check is given).
  const leader = await cluster.waitForLeader();
  const victim = cluster.nodes.find((n) => n.id !== 0 && n.id !== leader.nodeId)!;
  await cluster.kill(victim.id, "SIGKILL");
  const bad = await runCli([
    "endpoint",
    "health",
    "--json",
    "--timeout",
    "2s",
    "--endpoints",
    `${endpoints},127.0.0.1:${closed}`,
  ]);
  assert.equal(bad.code, 1, bad.stderr);
  const r = JSON.parse(bad.stdout) as { ok: boolean; endpoints: { endpoint: string; healthy: boolean }[] };
  assert.equal(r.ok, false);
  const unhealthy = r.endpoints.filter((e) => !e.healthy).map((e) => e.endpoint);
  assert.deepEqual(unhealthy.sort(), [cluster.endpoints[victim.id], `127.0.0.1:${closed}`].sort());
});
