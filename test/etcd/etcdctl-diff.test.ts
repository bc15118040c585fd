// The differential test of issue 18: the same etcdctl 3.4 script against a real 3-node etcd and
// against raftkv's etcd API, outputs equal after normalizing ids and timings (etcdctl-script.ts).
// raftkv's side is three nodes serving etcd's API (src/etcd/etcd-node.ts: MvccState replicated by Raft,
// MvccNode, the adapter); etcdctl talks to node 0 of each, leader or not (etcd forwards to its leader,
// raftkv too). Skipped, saying so, when etcd or etcdctl is not installed.

import assert from "node:assert/strict";
import { test } from "node:test";
import { etcdMissing, startEtcdCluster } from "./etcd-cluster.ts";
import { type Outcome, runScript } from "./etcdctl-script.ts";
import { startRaftkvEtcdCluster } from "./raftkv-cluster.ts";

const missing = etcdMissing();

test("etcdctl 3.4: the same script against etcd and raftkv prints the same", {
  skip: missing ?? false,
  timeout: 300_000,
}, async () => {
  const etcd = await startEtcdCluster(3);
  let reference: Outcome[];
  try {
    reference = await runScript(etcd.endpoints);
  } finally {
    await etcd.stop();
  }
  const raftkv = await startRaftkvEtcdCluster(3);
  let ours: Outcome[];
  try {
    ours = await runScript(raftkv.endpoints);
  } finally {
    await raftkv.stop();
  }
  const diffs = reference
    .map((r, i) => ({ r, o: ours[i]! }))
    .filter(({ r, o }) => r.code !== o.code || r.out !== o.out)
    .map(
      ({ r, o }) =>
        `$ etcdctl ${r.step}\n--- etcd (exit ${r.code})\n${r.out}\n--- raftkv (exit ${o.code})\n${o.out}`,
    );
  assert.equal(diffs.length, 0, `outputs differ:\n\n${diffs.join("\n\n")}`);
});

if (missing !== null) console.log(`etcdctl-diff skipped: ${missing}`);
