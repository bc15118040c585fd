// The lease monitor's proof rule: two nodes' leases overlap only when one sighting provably follows the other
// while the first lease still held.

import assert from "node:assert/strict";
import { performance } from "node:perf_hooks";
import { test } from "node:test";
import type { ChaosCluster } from "../../src/chaos/cluster.ts";
import { LeaseMonitor, type LeaseSighting } from "../../src/chaos/lease-monitor.ts";

function monitor(): LeaseMonitor {
  // observe() never touches the cluster; the poll loop (not started here) does.
  return new LeaseMonitor(null as unknown as ChaosCluster, 0, 0);
}

const seen = (
  node: number,
  term: number,
  sentMs: number,
  answeredMs: number,
  remainingMs: number,
): LeaseSighting => ({
  node,
  term,
  sentMs,
  answeredMs,
  remainingMs,
});

test("a later sighting of another node inside the first lease is an overlap", () => {
  const m = monitor();
  m.observe(seen(0, 3, 100, 102, 200));
  m.observe(seen(1, 4, 150, 153, 250));
  assert.equal(m.overlapsFound, 1);
  assert.equal(m.overlaps[0]?.first.node, 0);
});

test("sightings whose calls overlap in time prove nothing", () => {
  const m = monitor();
  m.observe(seen(0, 3, 100, 110, 200));
  m.observe(seen(1, 4, 105, 112, 250));
  assert.equal(m.overlapsFound, 0);
});

test("a sighting after the first lease ran out is no overlap", () => {
  const m = monitor();
  m.observe(seen(0, 3, 100, 102, 50));
  m.observe(seen(1, 4, 160, 162, 250));
  assert.equal(m.overlapsFound, 0);
  // Answered after node 1's lease is proven to end (160 + 250): not counted.
  m.observe(seen(2, 5, 163, 411.5, 100));
  assert.equal(m.overlapsFound, 0);
});

test("the same node seen again is never an overlap", () => {
  const m = monitor();
  m.observe(seen(0, 3, 100, 102, 200));
  m.observe(seen(0, 3, 150, 152, 200));
  m.observe(seen(0, 5, 180, 182, 200));
  assert.equal(m.overlapsFound, 0);
  assert.equal(m.sightings, 3);
});

test("a node whose clock runs fast has less harness time left than it says (clock faults)", async () => {
  // Node 0 leads and says 200 ms of its lease are left, but its clock runs at 2x: 100 ms of harness time.
  const cluster = {
    ids: [0],
    runningClockRate: () => 2,
    status: async () => ({ nodeId: 0, term: 3, role: "leader", lease: "valid", leaseRemainingMs: 200 }),
  } as unknown as ChaosCluster;
  const m = new LeaseMonitor(cluster, 10, 0);
  m.start();
  await new Promise((r) => setTimeout(r, 50));
  await m.stop();
  assert.ok(m.sightings > 0);
  // Node 1 seen leading 120 ms after node 0's last answer: within 200 ms, but not within 100.
  const t = performance.now() + 120;
  m.observe(seen(1, 4, t, t + 1, 200));
  assert.equal(m.overlapsFound, 0);
  m.observe(seen(0, 5, t + 2, t + 3, 200)); // and node 1's unscaled lease does cover this one
  assert.equal(m.overlapsFound, 1);
});
