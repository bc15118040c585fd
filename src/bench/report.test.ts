// The benchmark's ratios: raftkv through its own client against etcd's counterpart workload, and raftkv
// through the etcd client (its etcd v3 API) against etcd's very same workload, each row kept apart.

import assert from "node:assert/strict";
import { test } from "node:test";
import { checkEtcdApiFloors, labelOf, type MedianRow, ratios } from "./report.ts";

function row(o: Partial<MedianRow> & Pick<MedianRow, "system" | "client" | "workload">): MedianRow {
  const base = {
    path: "unary" as const,
    concurrency: 64,
    reps: 3,
    opsPerSec: 1000,
    errors: 0,
    p50Ms: 10,
    p99Ms: 20,
    maxMs: 30,
    serverCpuSecondsPerKop: 0.1,
    generatorCpuSecondsPerKop: 0.1,
    peakRssMb: 100,
    otherCpuCores: 0,
    opsPerSecRuns: [1000],
  };
  const r = { ...base, ...o };
  return { ...r, label: labelOf(r) } as MedianRow;
}

test("raftkv through the etcd client is its own row, compared with etcd's same workload", () => {
  const rows = [
    row({ system: "raftkv", client: "raftkv", workload: "get-lease", opsPerSec: 3000 }),
    row({ system: "raftkv", client: "etcd", workload: "get-linearizable", opsPerSec: 2500 }),
    row({ system: "raftkv", client: "etcd", workload: "put", opsPerSec: 900, serverCpuSecondsPerKop: 0.3 }),
    row({ system: "etcd", client: "etcd", workload: "get-linearizable", opsPerSec: 1000 }),
    row({ system: "etcd", client: "etcd", workload: "put", opsPerSec: 1000 }),
  ];
  assert.deepEqual(
    rows.map((r) => r.label),
    ["raftkv/unary", "raftkv/etcd-api", "raftkv/etcd-api", "etcd/unary", "etcd/unary"],
  );
  const rs = ratios(rows);
  assert.deepEqual(
    rs.map((r) => [r.raftkv, r.workload, r.etcdWorkload, r.throughput]),
    [
      ["raftkv/unary", "get-lease", "get-linearizable", 3],
      ["raftkv/etcd-api", "get-lease", "get-linearizable", 2.5],
      ["raftkv/etcd-api", "put", "put", 0.9],
    ],
  );
  const floors = checkEtcdApiFloors(rs);
  const byName = new Map(floors.map((f) => [f.floor, f.met]));
  assert.equal(byName.get("linearizable reads >= 2x etcd's at c=64"), true);
  assert.equal(byName.get("puts >= etcd's at c=64"), false);
  assert.equal(byName.get("puts >= etcd's at c=256"), null, "not run");
  assert.equal(byName.get("server CPU per put <= etcd's (c=64)"), false);
});
