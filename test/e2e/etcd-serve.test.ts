// The etcd v3 API on real `raftkv serve` processes (issue 18): three nodes serve etcd's services on
// their client port beside raftkv.v1, over the KV server's own state store, so a write through either API
// is read, watched and revisioned through the other. The etcd3 npm client and etcdctl (skipped, saying so,
// when /usr/bin/etcdctl is missing) work unchanged; a kill -9 of the leader loses no acknowledged put;
// revisions and leases survive a restart of every node.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Etcd3 } from "etcd3";
import { etcdctl, etcdMissing } from "../etcd/etcd-cluster.ts";
import { TestCluster, waitFor } from "./harness.ts";

const ctlMissing = etcdMissing();
if (ctlMissing !== null) console.log(`etcd-serve: the etcdctl steps skip: ${ctlMissing}`);

let c: TestCluster;
let client: Etcd3;
const enc = new TextEncoder();

/** Retries an etcd3 call that may meet an election (UNAVAILABLE, "leader changed"); `what` names it. */
async function retrying<T>(what: string, call: () => Promise<T>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await call();
    } catch (err) {
      if (Date.now() > deadline)
        throw new Error(`${what}: still failing after ${timeoutMs} ms: ${String(err)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

describe("the etcd v3 API on a 3-node `raftkv serve` cluster", () => {
  before(async () => {
    c = await TestCluster.start({ nodes: 3 });
    await c.waitForLeader(30_000);
    client = new Etcd3({ hosts: c.endpoints, dialTimeout: 5000 });
  });
  after(async () => {
    client?.close();
    await c?.close();
  });

  it("one store behind both APIs: raftkv.v1 writes are etcd revisions, etcd writes are raftkv.v1 values", async () => {
    const v1 = c.client();
    try {
      await v1.put("both/v1", enc.encode("from-v1"));
      await retrying("etcd put", () => client.put("both/etcd").value("from-etcd").exec());
      assert.equal(await client.get("both/v1").string(), "from-v1");
      assert.equal(new TextDecoder().decode((await v1.get("both/etcd"))!), "from-etcd");
      const all = await client.getAll().prefix("both/").exec();
      assert.equal(all.kvs.length, 2);
      const [a, b] = all.kvs.map((kv) => Number(kv.mod_revision));
      assert.ok(a! >= 1 && b! >= 1 && a !== b, `two writes, two revisions (${a}, ${b})`);
      assert.ok(Number(all.header.revision) >= Math.max(a!, b!));
    } finally {
      v1.close();
    }
  });

  it("a watch on one node sees puts made through the other nodes, by both APIs", async () => {
    const one = new Etcd3({ hosts: [c.endpoints[0]!], dialTimeout: 5000 });
    const other = new Etcd3({ hosts: [c.endpoints[2]!], dialTimeout: 5000 });
    const v1 = c.client([c.endpoints[1]!]);
    try {
      const watcher = await one.watch().prefix("watched/").create();
      const seen: string[] = [];
      watcher.on("put", (kv) => seen.push(`${kv.key.toString()}=${kv.value.toString()}`));
      await other.put("watched/a").value("1");
      await v1.put("watched/b", enc.encode("2"));
      await waitFor("two watch events", async () => (seen.length >= 2 ? true : undefined), 15_000);
      assert.deepEqual(seen, ["watched/a=1", "watched/b=2"]);
      await watcher.cancel();
    } finally {
      one.close();
      other.close();
      v1.close();
    }
  });

  it("etcdctl: put, get --prefix, txn, watch, lease, member list, move-leader, endpoint status", {
    skip: ctlMissing ?? false,
  }, async () => {
    const e = c.endpoints;
    assert.equal((await etcdctl(e, ["put", "ctl/x", "1"])).stdout.trim(), "OK");
    assert.equal((await etcdctl(e, ["put", "ctl/y", "2"])).stdout.trim(), "OK");
    assert.equal((await etcdctl(e, ["get", "ctl/", "--prefix"])).stdout, "ctl/x\n1\nctl/y\n2\n");
    const txn = await etcdctl(e, ["txn"], {
      stdin: 'value("ctl/x") = "1"\n\nput ctl/x 3\n\nput ctl/x 4\n\n',
    });
    assert.match(txn.stdout, /^SUCCESS/);
    assert.equal((await etcdctl(e, ["get", "ctl/x", "--print-value-only"])).stdout.trim(), "3");
    const watching = etcdctl([e[0]!], ["watch", "ctl/w"], {
      until: (out) => out.includes("late"),
      timeoutMs: 20_000,
    });
    await new Promise((r) => setTimeout(r, 1000)); // etcdctl connects and creates the watch
    await etcdctl([e[2]!], ["put", "ctl/w", "late"]);
    assert.match((await watching).stdout, /PUT\nctl\/w\nlate/);
    const grant = await etcdctl(e, ["lease", "grant", "60"]);
    const id = /lease ([0-9a-f]+) granted/.exec(grant.stdout)?.[1];
    assert.ok(id !== undefined, grant.stdout + grant.stderr);
    await etcdctl(e, ["put", "--lease", id, "ctl/leased", "v"]);
    assert.equal((await etcdctl(e, ["get", "ctl/leased", "--print-value-only"])).stdout.trim(), "v");
    await etcdctl(e, ["lease", "revoke", id]);
    assert.equal((await etcdctl(e, ["get", "ctl/leased"])).stdout, "");
    const members = (await etcdctl(e, ["member", "list"])).stdout.trim().split("\n");
    assert.equal(members.length, 3, members.join("\n"));
    // move-leader: etcdctl finds the leader among the endpoints and asks it to hand over.
    const before = await c.waitForLeader();
    const target = [0, 1, 2].find((id) => id !== before.nodeId)!;
    const moved = await etcdctl(e, ["move-leader", (target + 1).toString(16)]);
    assert.match(moved.stdout, /Leadership transferred/, moved.stdout + moved.stderr);
    await waitFor(
      `node ${target} leads`,
      async () => {
        const s = await c.statuses();
        return s.some((x) => x.nodeId === target && x.role === "leader") ? true : undefined;
      },
      10_000,
    );
    const status = await etcdctl(e, ["endpoint", "status", "-w", "json"]);
    const rows = JSON.parse(status.stdout) as {
      Status: { leader: string; dbSize: number; header: { member_id: string } };
    }[];
    assert.equal(rows.length, 3);
    for (const r of rows) assert.ok(r.Status.dbSize > 0, `dbSize is the LMDB file's size: ${status.stdout}`);
    assert.equal(
      new Set(rows.map((r) => String(r.Status.leader))).size,
      1,
      "every endpoint names one leader",
    );
  });

  it("etcdctl member add --learner, promote (refused while it is behind), remove", {
    skip: ctlMissing ?? false,
  }, async () => {
    const e = c.endpoints;
    // A learner at an address where nothing runs: it never catches up, so promote must be refused.
    const add = await etcdctl(e, ["member", "add", "spare", "--learner", "--peer-urls=http://127.0.0.1:9"]);
    const hex = /Member\s+([0-9a-f]+) added/.exec(add.stdout)?.[1];
    assert.ok(hex !== undefined, add.stdout + add.stderr);
    // The leader has applied the change; a follower answers MemberList from its own applied state.
    let listed = "";
    const rows = await waitFor(
      "four members listed",
      async () => {
        listed = (await etcdctl(e, ["member", "list", "-w", "json"])).stdout;
        const m = (
          JSON.parse(listed) as { members: { ID: string; isLearner?: boolean; peerURLs: string[] }[] }
        ).members;
        return m.length === 4 ? m : undefined;
      },
      10_000,
    );
    const learner = rows.find((m) => BigInt(m.ID).toString(16) === hex);
    assert.ok(learner !== undefined, `member ${hex} in ${listed}`);
    assert.equal(learner.isLearner, true);
    assert.deepEqual(learner.peerURLs, ["http://127.0.0.1:9"]);
    const promote = await etcdctl(e, ["member", "promote", hex]);
    assert.notEqual(promote.code, 0, `promote of a learner that never caught up: ${promote.stdout}`);
    assert.match(promote.stderr, /behind|caught up|not ready|learner/i);
    const removed = await etcdctl(e, ["member", "remove", hex]);
    assert.match(removed.stdout, new RegExp(`Member\\s+${hex} removed`));
    // A follower answers MemberList from the configuration it applied, a moment after the leader.
    await waitFor(
      "three members in every endpoint's member list",
      async () => {
        for (const one of e) {
          const rows = (await etcdctl([one], ["member", "list"])).stdout.trim().split("\n");
          if (rows.length !== 3) return undefined;
        }
        return true;
      },
      10_000,
    );
  });

  it("kill -9 of the leader under etcd puts: no acknowledged put lost, the API answers from the new leader", async () => {
    const acked = new Set<string>();
    let writing = true;
    let n = 0;
    const writer = (async () => {
      while (writing) {
        const key = `crash/${n++}`;
        try {
          await client.put(key).value(key);
          acked.add(key);
        } catch {
          // unknown outcome: not counted as acknowledged
        }
      }
    })();
    await waitFor("some puts acknowledged", async () => (acked.size >= 20 ? true : undefined), 20_000);
    const leader = await c.waitForLeader(20_000);
    await c.kill(leader.nodeId, "SIGKILL");
    const before = acked.size;
    await waitFor(
      "puts acknowledged by the new leader",
      async () => (acked.size >= before + 20 ? true : undefined),
      30_000,
    );
    writing = false;
    await writer;
    const keys = await retrying("read back", () => client.getAll().prefix("crash/").keys());
    const present = new Set(keys);
    const lost = [...acked].filter((k) => !present.has(k));
    assert.deepEqual(lost, [], `${lost.length} of ${acked.size} acknowledged puts lost`);
    c.startNode(leader.nodeId);
  });

  it("revisions and leases survive a restart of every node", async () => {
    await c.waitForLeader(30_000);
    await retrying("put", () => client.put("durable/k").value("v").exec());
    const lease = client.lease(600, { autoKeepAlive: false });
    await retrying("grant", () => lease.grant());
    await retrying("leased put", () => lease.put("durable/leased").value("x").exec());
    const beforeKv = (await client.get("durable/k").exec()).kvs[0]!;
    for (const n of c.nodes) await c.kill(n.id, "SIGKILL");
    for (const n of c.nodes) c.startNode(n.id);
    await c.waitForLeader(30_000);
    const afterKv = await retrying(
      "get after restart",
      async () => (await client.get("durable/k").exec()).kvs[0]!,
    );
    assert.equal(afterKv.value.toString(), "v");
    assert.equal(afterKv.mod_revision, beforeKv.mod_revision);
    assert.equal(afterKv.create_revision, beforeKv.create_revision);
    assert.equal(afterKv.version, beforeKv.version);
    const renewed = await retrying("keepalive after restart", () => lease.keepaliveOnce());
    assert.equal(String(renewed.TTL), "600", "the lease outlived the restart");
    assert.equal(await client.get("durable/leased").string(), "x");
    await lease.revoke();
    assert.equal(await client.get("durable/leased").string(), null);
  });
});
