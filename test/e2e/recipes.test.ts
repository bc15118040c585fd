// End-to-end, 3 real nodes: the Mutex and Election recipes (src/client/concurrency.ts). Mutual exclusion
// is checked with a shared counter incremented by a read and a separate write under the lock (a lost
// update shows as a short count) and with a count of holders that must never exceed one; a holder whose
// lease runs out loses the lock to the next contender; an election hands over on resign and on lease loss.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Election, type Leader, Mutex, type RaftKvClient } from "../../src/client/index.ts";
import { TestCluster, waitFor } from "./harness.ts";

let cluster: TestCluster;

before(async () => {
  cluster = await TestCluster.start({ nodes: 3 });
  await cluster.waitForLeader(30_000);
});

after(async () => {
  await cluster?.close();
});

const text = (b: Uint8Array | null | undefined): string => (b == null ? "" : new TextDecoder().decode(b));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test("Mutex: three contenders increment a shared counter under the lock with no lost update", async () => {
  const clients = [0, 1, 2].map(() => cluster.client(cluster.endpoints, 15_000));
  try {
    await clients[0]!.put("mx/counter", "0");
    const rounds = 8;
    let holding = 0;
    let maxHolding = 0;
    const tokens: number[] = [];
    await Promise.all(
      clients.map(async (c) => {
        const lease = await c.lease(10);
        const m = new Mutex(c, lease, "mx/lock");
        try {
          for (let i = 0; i < rounds; i++) {
            await m.lock();
            holding++;
            maxHolding = Math.max(maxHolding, holding);
            tokens.push(m.revision);
            const n = Number(await c.getString("mx/counter"));
            await sleep(5); // widen the window a second holder would hit
            await c.put("mx/counter", String(n + 1));
            holding--;
            await m.unlock();
          }
        } finally {
          await lease.revoke();
        }
      }),
    );
    assert.equal(maxHolding, 1, "never two holders at once");
    assert.equal(await clients[0]!.getString("mx/counter"), String(3 * rounds), "no lost update");
    assert.deepEqual(
      tokens,
      [...tokens].sort((a, b) => a - b),
      "fencing tokens increase",
    );
    assert.deepEqual((await clients[0]!.range("mx/lock/")).items, [], "every contender's key is gone");
  } finally {
    for (const c of clients) c.close();
  }
});

test("Mutex: a holder whose lease is lost loses the lock to the next contender", async () => {
  const a = cluster.client(cluster.endpoints, 15_000);
  const b = cluster.client(cluster.endpoints, 15_000);
  try {
    const leaseA = await a.lease(2);
    const ma = new Mutex(a, leaseA, "mx/lost");
    await ma.lock();
    const leaseB = await b.lease(10);
    const mb = new Mutex(b, leaseB, "mx/lost");
    let bHas = false;
    const bLocked = mb.lock().then(() => {
      bHas = true;
    });
    await sleep(500);
    assert.equal(bHas, false, "b waits while a holds the lock");
    // a's process "dies": its keepalives stop; the lease expires through the log and a's key with it.
    leaseA.close();
    const stopped = performance.now();
    await bLocked;
    const tookMs = performance.now() - stopped;
    assert.ok(
      tookMs < (leaseA.ttlSeconds + 5) * 1000,
      `b got the lock ${tookMs} ms after a's keepalives stopped`,
    );
    assert.equal(await mb.isOwner(), true);
    assert.equal(await ma.isOwner(), false);
    assert.equal((await a.getKv(ma.ownKey)).kv, null, "a's key went with its lease");
    await mb.unlock();
    await leaseB.revoke();
  } finally {
    a.close();
    b.close();
  }
});

test("Election: campaign, proclaim, observe; the leader hands over on resign and on lease loss", async () => {
  const [c1, c2, c3, watcher] = [0, 1, 2, 3].map(() => cluster.client(cluster.endpoints, 15_000)) as [
    RaftKvClient,
    RaftKvClient,
    RaftKvClient,
    RaftKvClient,
  ];
  try {
    const [l1, l2, l3] = await Promise.all([c1.lease(10), c2.lease(10), c3.lease(2)]);
    const e1 = new Election(c1, l1!, "el/main");
    const e2 = new Election(c2, l2!, "el/main");
    const e3 = new Election(c3, l3!, "el/main");
    assert.equal(await new Election(watcher, l1!, "el/main").leader(), null);
    await e1.campaign("one");
    const seen: string[] = [];
    const observer = new Election(watcher, l1!, "el/main");
    const abort = new AbortController();
    const observing = (async () => {
      for await (const leader of observer.observe({ signal: abort.signal }))
        seen.push(leader === null ? "none" : text(leader.value));
    })().catch((err: unknown) => {
      if (!abort.signal.aborted) throw err;
    });
    await waitFor("the observer to see one", () => (seen.includes("one") ? true : undefined));
    let second = false;
    const c2Leads = e2.campaign("two").then(() => {
      second = true;
    });
    await sleep(300);
    const c3Leads = e3.campaign("three");
    await sleep(300);
    assert.equal(second, false, "the second candidate waits");
    await e1.proclaim("one again");
    await waitFor("the proclaimed value", () => (seen.includes("one again") ? true : undefined));
    await e1.resign();
    await c2Leads;
    const leader = (await observer.leader()) as Leader;
    assert.equal(text(leader.value), "two");
    await waitFor("the observer to see two", () => (seen.includes("two") ? true : undefined));
    // Three leads after two resigns, and nobody once three's keepalives stop and its lease runs out.
    await e2.resign();
    await c3Leads;
    await waitFor("the observer to see three", () => (seen.includes("three") ? true : undefined));
    l3!.close();
    await waitFor(
      "three's lease to run out",
      async () => ((await observer.leader()) === null ? true : undefined),
      20_000,
    );
    await waitFor("the observer to see none", () => (seen[seen.length - 1] === "none" ? true : undefined));
    assert.deepEqual(seen, ["one", "one again", "two", "three", "none"]);
    abort.abort();
    await observing;
    await Promise.all([l1!.revoke(), l2!.revoke()]);
  } finally {
    for (const c of [c1, c2, c3, watcher]) c.close();
  }
});

test("Mutex: mutual exclusion holds across a leader kill (leases are kept, lock txns are sent again)", async () => {
  const clients = [0, 1].map(() => cluster.client(cluster.endpoints, 20_000));
  try {
    await clients[0]!.put("mxk/counter", "0");
    const rounds = 10;
    let holding = 0;
    let maxHolding = 0;
    let done = 0;
    const work = Promise.all(
      clients.map(async (c) => {
        const lease = await c.lease(10);
        const m = new Mutex(c, lease, "mxk/lock");
        try {
          for (let i = 0; i < rounds; i++) {
            await m.lock();
            holding++;
            maxHolding = Math.max(maxHolding, holding);
            const n = Number(await c.getString("mxk/counter"));
            await sleep(20);
            await c.put("mxk/counter", String(n + 1));
            holding--;
            done++;
            await m.unlock();
          }
        } finally {
          await lease.revoke();
        }
      }),
    );
    await waitFor("a few rounds", () => (done >= 4 ? true : undefined), 30_000, 20);
    const old = await cluster.waitForLeader(30_000);
    await cluster.kill(old.nodeId, "SIGKILL");
    const doneAtKill = done;
    await work;
    assert.ok(
      doneAtKill < 2 * rounds,
      `the leader died mid-work (${doneAtKill} of ${2 * rounds} rounds done)`,
    );
    assert.equal(maxHolding, 1, "never two holders at once");
    assert.equal(await clients[0]!.getString("mxk/counter"), String(2 * rounds), "no lost update");
    cluster.startNode(old.nodeId);
    await cluster.waitForLeader(30_000);
  } finally {
    for (const c of clients) c.close();
  }
});
