// Backup and restore on real processes (issue 13): `raftkv snapshot save` streams a consistent backup
// from the leader of a cluster under writes (asked at a follower: it follows the redirect), `snapshot
// status` checks it, and `snapshot restore` builds the data folders of a new 3-node cluster with a new
// cluster id. The restored cluster holds every write acknowledged before the save began, with the same
// etcd revisions, and takes new writes; restoring under the old cluster id, into a folder in use, or
// from a damaged file is refused with the reason.

import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Etcd3 } from "etcd3";
import { runCli, TestCluster, waitFor } from "./harness.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

describe("raftkv snapshot save / status / restore", () => {
  let old: TestCluster;
  let restored: TestCluster | null = null;
  let file = "";
  const acked = new Map<string, string>();
  let revisionOfFirst = 0;

  before(async () => {
    old = await TestCluster.start({ nodes: 3 });
    await old.waitForLeader(30_000);
    file = join(old.root, "backup.rkv");
  });
  after(async () => {
    await restored?.close();
    await old?.close();
  });

  it("save from a follower under writes: the backup holds every write acknowledged before it", async () => {
    const v1 = old.client();
    const etcd = new Etcd3({ hosts: old.endpoints, dialTimeout: 5000 });
    try {
      for (let i = 0; i < 200; i++) {
        await v1.put(`k/${i}`, enc.encode(`v${i}`));
        acked.set(`k/${i}`, `v${i}`);
      }
      revisionOfFirst = Number((await etcd.get("k/0").exec()).kvs[0]!.mod_revision);
      // Writes go on during the save; those acknowledged before it began must be in the backup.
      let writing = true;
      let n = 0;
      const writer = (async () => {
        while (writing) {
          await v1.put(`during/${n}`, enc.encode("x")).catch(() => undefined);
          n++;
        }
      })();
      const leader = await old.waitForLeader();
      const follower = old.endpoints.find((_e, id) => id !== leader.nodeId)!;
      const saved = await runCli(["snapshot", "save", file, "--endpoints", follower, "--json"], 60_000);
      writing = false;
      await writer;
      assert.equal(saved.code, 0, saved.stdout + saved.stderr);
      const info = JSON.parse(saved.stdout) as { index: number; sizeBytes: number; clusterId: string };
      assert.equal(info.clusterId, "e2e");
      assert.ok(info.index >= 200, `taken at index ${info.index}, after 200 acknowledged puts`);
      const status = await runCli(["snapshot", "status", file, "--json"]);
      assert.equal(status.code, 0, status.stdout + status.stderr);
      assert.deepEqual(JSON.parse(status.stdout), info);
    } finally {
      v1.close();
      etcd.close();
    }
  });

  it("restore refuses the old cluster id, a folder in use, and a damaged file, saying why", async () => {
    const sameId = await runCli([
      ...["snapshot", "restore", file, "--data-dir", join(old.root, "r-same"), "--id", "0"],
      ...["--peers", "0=127.0.0.1:1", "--cluster-id", "e2e"],
    ]);
    assert.notEqual(sameId.code, 0);
    assert.match(sameId.stderr, /backup is of cluster "e2e".*another --cluster-id/);
    const inUse = await runCli([
      ...["snapshot", "restore", file, "--data-dir", old.node(0).dataDir, "--id", "0"],
      ...["--peers", "0=127.0.0.1:1", "--cluster-id", "other"],
    ]);
    assert.notEqual(inUse.code, 0);
    assert.match(inUse.stderr, /is not empty/);
    const damaged = join(old.root, "damaged.rkv");
    const bytes = readFileSync(file);
    bytes[bytes.length - 10]! ^= 0xff;
    writeFileSync(damaged, bytes);
    const bad = await runCli(["snapshot", "status", damaged]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /fails its checksum/);
    writeFileSync(damaged, bytes.subarray(0, bytes.length - 100));
    const short = await runCli(["snapshot", "status", damaged]);
    assert.match(short.stderr, /cut short/);
  });

  it("a new cluster restored from the backup serves every acknowledged write, at the same revisions", async () => {
    restored = await TestCluster.start({
      nodes: 3,
      serveArgs: ["--cluster-id", "e2e-restored"],
      prepare: async (root, peers) => {
        for (const id of [0, 1, 2]) {
          const r = await runCli([
            ...["snapshot", "restore", file, "--data-dir", join(root, `node-${id}`), "--id", String(id)],
            ...["--peers", peers, "--cluster-id", "e2e-restored"],
          ]);
          assert.equal(r.code, 0, r.stdout + r.stderr);
          assert.match(r.stdout, /start it with: raftkv serve --id/);
        }
      },
    });
    await restored.waitForLeader(30_000);
    const v1 = restored.client();
    const etcd = new Etcd3({ hosts: restored.endpoints, dialTimeout: 5000 });
    try {
      for (const [k, v] of acked) {
        const got = await v1.get(k);
        assert.equal(got === null ? null : dec.decode(got), v, `key ${k} after restore`);
      }
      const first = (await etcd.get("k/0").exec()).kvs[0]!;
      assert.equal(Number(first.mod_revision), revisionOfFirst, "revisions are kept");
      await v1.put("after/restore", enc.encode("yes"));
      assert.equal(dec.decode((await v1.get("after/restore"))!), "yes");
      // Every member holds the restored state (stale reads answer from each node's own state).
      for (const e of restored.endpoints) {
        const one = restored.client([e]);
        try {
          await waitFor(`k/199 on ${e}`, async () =>
            (await one.get("k/199", { consistency: "stale" })) === null ? undefined : true,
          );
        } finally {
          one.close();
        }
      }
    } finally {
      v1.close();
      etcd.close();
    }
  });
});
