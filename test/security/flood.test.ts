// A node (a real `raftkv serve` process) under a short flood of oversized and malformed requests, raw
// garbage TCP connections and idle connections keeps serving a well-formed client: every good request
// succeeds, the process stays up, and the refusals show in its metrics. Timings: scripts/flood/main.ts.

import assert from "node:assert/strict";
import { test } from "node:test";
import { FLOOD_KINDS, Flood } from "../../scripts/flood/load.ts";
import { freePorts, TestCluster, waitFor } from "../e2e/harness.ts";

test("a flooded node keeps serving well-formed clients", { timeout: 120_000 }, async () => {
  const [metricsPort] = await freePorts(1);
  const cluster = await TestCluster.start({
    nodes: 1,
    serveArgs: [
      "--metrics-port",
      String(metricsPort),
      "--set",
      "maxConnections=64",
      "--set",
      "maxValueBytes=65536",
    ],
  });
  try {
    await cluster.waitForLeader();
    const address = cluster.node(0).address;
    const good = cluster.client([address], 10_000);
    await good.put("flood/warm", "x");
    const flood = new Flood({
      address,
      kinds: FLOOD_KINDS,
      concurrency: 8,
      idleConnections: 200,
      maxValueBytes: 65536,
      seed: 11,
    });
    flood.start();
    let ok = 0;
    const until = performance.now() + 4000;
    for (let n = 0; performance.now() < until; n++) {
      await good.put(`flood/${n % 20}`, `v${n}`);
      assert.equal(await good.getString(`flood/${n % 20}`), `v${n}`);
      ok++;
    }
    const counts = await flood.stop();
    for (const c of counts) assert.ok(c.sent > 0, `the ${c.kind} flood sent something`);
    assert.ok(ok > 0, "good requests went through during the flood");
    assert.notEqual(cluster.node(0).proc, null, "the node is still running");
    const status = await good.status(address);
    assert.equal(status.role, "leader");
    const text = await waitFor("metrics", async () =>
      (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text(),
    );
    assert.match(text, /raftkv_client_requests_refused_total\{reason="TOO_LARGE"\} [1-9]/);
    assert.match(text, /raftkv_client_requests_refused_total\{reason="malformed"\} [1-9]/);
    assert.match(text, /raftkv_peer_messages_refused_total\{reason="malformed"\} [1-9]/);
    assert.match(text, /raftkv_connections_refused_total\{reason="evictedIdle"\} [1-9]/);
    good.close();
  } finally {
    await cluster.close();
  }
});
