// The `etcd3` npm client (a devDependency, unchanged) against raftkv's etcd API: put/get, prefix reads,
// txn, watch, leases with keepalive, a lock and an election, as applications use them, against three
// raftkv nodes serving etcd's API (the client spreads its calls over all three; followers forward).

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Etcd3 } from "etcd3";
import { type RaftkvEtcdCluster, startRaftkvEtcdCluster } from "./raftkv-cluster.ts";

let s: RaftkvEtcdCluster;
let client: Etcd3;

async function until(what: string, ok: () => boolean): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!ok()) {
    assert.ok(Date.now() < deadline, `${what}: not within 15 s`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe("the etcd3 npm client against raftkv's etcd API", () => {
  before(async () => {
    s = await startRaftkvEtcdCluster(3);
    client = new Etcd3({ hosts: [...s.endpoints], dialTimeout: 5000 });
  });
  after(async () => {
    client.close();
    await s.stop();
  });

  it("put, get, prefix reads, delete", async () => {
    await client.put("app/a").value("1");
    await client.put("app/b").value("2");
    assert.equal(await client.get("app/a").string(), "1");
    assert.deepEqual(await client.getAll().prefix("app/").strings(), { "app/a": "1", "app/b": "2" });
    assert.equal(await client.getAll().prefix("app/").count(), 2);
    await client.delete().key("app/a");
    assert.equal(await client.get("app/a").string(), null);
  });

  it("txn: compare-and-swap on value, then on mod revision", async () => {
    const swapped = await client
      .if("app/b", "Value", "==", "2")
      .then(client.put("app/b").value("3"))
      .commit();
    assert.equal(swapped.succeeded, true);
    const stale = await client.if("app/b", "Value", "==", "2").then(client.put("app/b").value("4")).commit();
    assert.equal(stale.succeeded, false);
    assert.equal(await client.get("app/b").string(), "3");
  });

  it("watch: puts and deletes of a prefix arrive in order", async () => {
    const watcher = await client.watch().prefix("w/").create();
    const seen: string[] = [];
    watcher.on("put", (kv) => seen.push(`put ${kv.key.toString()}=${kv.value.toString()}`));
    watcher.on("delete", (kv) => seen.push(`delete ${kv.key.toString()}`));
    await client.put("w/1").value("a");
    await client.put("w/2").value("b");
    await client.delete().key("w/1");
    await until("three events", () => seen.length >= 3);
    assert.deepEqual(seen, ["put w/1=a", "put w/2=b", "delete w/1"]);
    await watcher.cancel();
  });

  it("leases: keys live while kept alive and go with the revoke", async () => {
    const lease = client.lease(5);
    await lease.put("leased").value("x");
    const id = await lease.grant();
    assert.ok(id !== "0", "a lease id was granted");
    assert.equal(await client.get("leased").string(), "x");
    const renewed = await lease.keepaliveOnce();
    assert.equal(String(renewed.TTL), "5");
    await lease.revoke();
    assert.equal(await client.get("leased").string(), null);
  });

  it("lock: held by one at a time (etcd3's lock fails fast while held)", async () => {
    const first = client.lock("locks/x").ttl(10);
    await first.acquire();
    await assert.rejects(client.lock("locks/x").ttl(10).acquire(), /Failed to acquire a lock on locks\/x/);
    await first.release();
    const second = client.lock("locks/x").ttl(10);
    await second.acquire();
    await second.release();
  });

  it("election: one leader, the next takes over when it resigns", async () => {
    const election = client.election("elect");
    const a = election.campaign("a");
    await new Promise<void>((resolve, reject) => {
      a.on("elected", () => resolve());
      a.on("error", reject);
    });
    assert.equal(await election.leader(), "a");
    const b = election.campaign("b");
    await a.resign();
    await new Promise<void>((resolve, reject) => {
      b.on("elected", () => resolve());
      b.on("error", reject);
    });
    assert.equal(await election.leader(), "b");
    await b.resign();
  });
});
