// Tests of server settings: defaults to ticks, the lease bound (thesis §6.4.1), and refusals naming the setting.

import assert from "node:assert/strict";
import { test } from "node:test";
import { RaftKvError } from "../lib/errors.ts";
import { DEFAULT_SETTINGS, maxSafeLeaseMs, parsePeers, resolveServerConfig, toCoreConfig } from "./config.ts";

const base = { id: 0, peers: "0=127.0.0.1:7000,1=127.0.0.1:7001,2=127.0.0.1:7002", dataDir: "/tmp/x" };

function refusal(input: Record<string, unknown>): string {
  try {
    resolveServerConfig(input);
  } catch (e) {
    assert.ok(e instanceof RaftKvError);
    assert.equal(e.code, "CONFIG");
    return e.message;
  }
  assert.fail("expected a refusal");
}

test("defaults convert to the core's ticks: 10 ms ticks, heartbeat 10, election 100..200, the max safe lease", () => {
  const c = resolveServerConfig(base);
  const core = toCoreConfig(c, 7);
  assert.equal(core.heartbeatTicks, 10);
  assert.equal(core.electionTimeoutMinTicks, 100);
  assert.equal(core.electionTimeoutMaxTicks, 200);
  assert.equal(core.leaseTicks, 88); // floor(99 / 1.1) - 1 (99 / 1.1 is 89.99... in floating point)
  assert.equal(maxSafeLeaseMs(DEFAULT_SETTINGS), 880);
  assert.deepEqual(core.peers, [0, 1, 2]);
  assert.equal(c.listen, "127.0.0.1:7000", "listen defaults to this node's peer address");
  assert.equal(c.clusterId, "raftkv");
  assert.equal(c.metricsPort, null);
});

test("thesis §6.4.1: a lease longer than the election timeout allows under the drift bound is refused", () => {
  assert.match(
    refusal({ ...base, leaseMs: 1000 }),
    /invalid setting leaseMs: a lease of 1000 ms is unsafe.*at most 880 ms/,
  );
  assert.match(
    refusal({ ...base, leaseMs: 880, driftBound: 1.5 }),
    /invalid setting leaseMs: .* at most 650 ms/,
    "a larger drift bound shrinks the safe lease",
  );
  assert.equal(toCoreConfig(resolveServerConfig({ ...base, leaseMs: 120 }), 1).leaseTicks, 12);
});

test("settings are validated with the setting's name", () => {
  assert.match(refusal({ ...base, heartbeatMs: 600 }), /invalid setting heartbeatMs: must be at most half/);
  assert.match(refusal({ ...base, electionTimeoutMaxMs: 900 }), /invalid setting electionTimeoutMaxMs/);
  assert.match(refusal({ ...base, driftBound: 3 }), /invalid setting driftBound: must be in \[1, 2\]/);
  assert.match(refusal({ ...base, tickMs: "ten" }), /invalid setting tickMs: expected a number, got "ten"/);
  assert.match(
    refusal({ ...base, maxValueBytes: 0 }),
    /invalid setting maxValueBytes: must be a positive integer/,
  );
  assert.match(refusal({ ...base, heartbeatMilis: 5 }), /invalid setting heartbeatMilis: unknown setting/);
  assert.match(refusal({ ...base, id: 5 }), /invalid setting peers: must include this node's id 5/);
  assert.match(refusal({ peers: base.peers, dataDir: "d" }), /invalid setting id: missing/);
  assert.match(refusal({ ...base, dataDir: "" }), /invalid setting dataDir/);
  assert.match(refusal({ ...base, listen: "localhost" }), /invalid setting listen: expected "host:port"/);
  assert.match(refusal({ ...base, maxRequestBytes: 1024 }), /invalid setting maxRequestBytes/);
  assert.match(refusal({ ...base, logLevel: "loud" }), /invalid setting logLevel/);
});

test("string values from flags parse like JSON values", () => {
  const c = resolveServerConfig({
    ...base,
    heartbeatMs: "40",
    preVote: "false",
    leaseMs: "auto",
    metricsPort: "9100",
  });
  assert.equal(c.heartbeatMs, 40);
  assert.equal(c.preVote, false);
  assert.equal(c.leaseMs, null);
  assert.equal(c.metricsPort, 9100);
});

test("peers parse from a list or an object, and refuse duplicates", () => {
  assert.deepEqual(
    [...parsePeers("0=a:1, 1=b:2")],
    [
      [0, "a:1"],
      [1, "b:2"],
    ],
  );
  assert.deepEqual([...parsePeers({ "3": "[::1]:9000" })], [[3, "[::1]:9000"]]);
  assert.throws(() => parsePeers("0=a:1,0=b:2"), /node id 0 appears twice/);
  assert.throws(() => parsePeers("0=a:1,1=a:1"), /share an address/);
  assert.throws(() => parsePeers("x=a:1"), /not a non-negative integer/);
  assert.throws(() => parsePeers("0=a:99999"), /port in 1\.\.65535/);
});
