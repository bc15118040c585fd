// End-to-end, 3 real nodes: raftkv.v1's revisions, Txn, Watch and leases through the client library,
// including a watch that resumes across a leader kill with no gaps or duplicates, and a lease kept
// alive across a leader change and gone once no longer kept alive.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, before, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { Compare, Op, type RaftKvClient, type WatchEvent } from "../../src/client/index.ts";
import { deadlineIn } from "../../src/clock/deadline.ts";
import {
  ClientServiceClient,
  ErrorCode,
  type LeaseGrantResponse,
  type LeaseKeepAliveResponse,
  type TxnResponse,
} from "../../src/gen/raftkv/v1/client.ts";
import { runCli, TestCluster, waitFor } from "./harness.ts";

let cluster: TestCluster;

before(async () => {
  cluster = await TestCluster.start({ nodes: 3 });
  await cluster.waitForLeader(30_000);
});

after(async () => {
  await cluster?.close();
});

const text = (b: Uint8Array): string => new TextDecoder().decode(b);

/** Kills the leader (SIGKILL), waits for another, restarts the killed node; returns its id. */
async function killLeader(): Promise<number> {
  const old = await cluster.waitForLeader(30_000);
  await cluster.kill(old.nodeId, "SIGKILL");
  await cluster.waitForLeader(30_000, [old.nodeId]);
  return old.nodeId;
}

async function restart(id: number): Promise<void> {
  cluster.startNode(id);
  await waitFor(
    `node ${id} back`,
    async () => ((await cluster.statuses()).some((s) => s.nodeId === id) ? true : undefined),
    30_000,
  );
}

async function collect(
  events: AsyncIterator<WatchEvent>,
  n: number,
  timeoutMs: number,
): Promise<WatchEvent[]> {
  const out: WatchEvent[] = [];
  const deadline = performance.now() + timeoutMs;
  while (out.length < n) {
    const left = deadline - performance.now();
    if (left <= 0) throw new Error(`watch: ${out.length} of ${n} events within ${timeoutMs} ms`);
    let timer: NodeJS.Timeout | undefined;
    const next = await Promise.race([
      events.next(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`watch: ${out.length} of ${n} events within ${timeoutMs} ms`)),
          left,
        );
      }),
    ]).finally(() => clearTimeout(timer));
    if (next.done === true) throw new Error(`watch ended after ${out.length} of ${n} events`);
    out.push(next.value);
  }
  return out;
}

function withClient<T>(fn: (c: RaftKvClient) => Promise<T>): Promise<T> {
  const c = cluster.client(cluster.endpoints, 15_000);
  return fn(c).finally(() => c.close());
}

test("revisions: one store revision per write, per key create/mod revision and version (reset by delete)", () =>
  withClient(async (c) => {
    const a = await c.put("rev/a", "1");
    assert.ok(a.revision > 1, `a put has a store revision (got ${a.revision})`);
    const b = await c.put("rev/a", "2");
    assert.equal(b.revision, a.revision + 1, "the next write is the next revision");
    const got = await c.getKv("rev/a");
    assert.equal(got.revision >= b.revision, true);
    assert.deepEqual(
      { ...got.kv, value: text(got.kv!.value) },
      {
        key: "rev/a",
        value: "2",
        createRevision: a.revision,
        modRevision: b.revision,
        version: 2,
        lease: 0n,
      },
    );
    const del = await c.delete("rev/a");
    assert.equal(del.deleted, true);
    assert.equal(del.revision, b.revision + 1);
    const again = await c.put("rev/a", "3");
    const kv = (await c.getKv("rev/a")).kv!;
    assert.equal(kv.createRevision, again.revision, "a delete resets create_revision");
    assert.equal(kv.version, 1, "and version");
    const cas = await c.cas("rev/a", "3", "4");
    assert.equal(cas.swapped, true);
    assert.equal(cas.revision, again.revision + 1);
    const r = await c.range("rev/");
    assert.equal(r.items.length, 1);
    assert.equal(r.items[0]!.modRevision, cas.revision);
    assert.equal(r.items[0]!.version, 2);
    assert.equal(r.revision >= cas.revision, true);
  }));

test("txn: the success branch when the compares hold, the failure branch otherwise, atomically", () =>
  withClient(async (c) => {
    const create = () =>
      c
        .txn()
        .if(Compare.version("txn/k", "=", 0))
        .then(Op.put("txn/k", "first"), Op.put("txn/other", "x"))
        .else(Op.get("txn/k"), Op.range("txn/"))
        .commit();
    const first = await create();
    assert.equal(first.succeeded, true);
    assert.deepEqual(first.results, [{ type: "put" }, { type: "put" }]);
    const kv = (await c.getKv("txn/k")).kv!;
    assert.equal(kv.modRevision, first.revision, "both puts are one revision");
    assert.equal((await c.getKv("txn/other")).kv!.modRevision, first.revision);
    const second = await create();
    assert.equal(second.succeeded, false);
    assert.equal(second.revision, first.revision, "a failed txn that only reads writes nothing");
    const [get, range] = second.results;
    assert.equal(get?.type, "get");
    assert.equal(get?.type === "get" ? text(get.kv!.value) : "", "first");
    assert.equal(range?.type === "range" ? range.items.map((i) => i.key).join(",") : "", "txn/k,txn/other");
    // Compares on value and mod revision; a delete in the branch.
    const swap = await c
      .txn()
      .if(Compare.value("txn/k", "=", "first"), Compare.modRevision("txn/k", "=", first.revision))
      .then(Op.put("txn/k", "second"), Op.delete("txn/other"))
      .commit();
    assert.equal(swap.succeeded, true);
    assert.deepEqual(swap.results[1], { type: "delete", deleted: 1 });
    assert.equal(await c.getString("txn/k"), "second");
    assert.equal(await c.get("txn/other"), null);
    await assert.rejects(
      c.txn().then(Op.put("txn/dup", "1"), Op.put("txn/dup", "2")).commit(),
      (e: Error & { code?: string }) => e.code === "INVALID_ARGUMENT" && /duplicate key/.test(e.message),
    );
    await assert.rejects(
      c.put("txn/leased", "v", { lease: 12345n }),
      (e: Error & { code?: string }) => e.code === "INVALID_ARGUMENT" && /lease not found/.test(e.message),
    );
  }));

test("watch: from a past revision it yields exactly the committed changes, resuming across a leader kill", () =>
  withClient(async (c) => {
    const start = (await c.put("w/start", "s")).revision + 1;
    const total = 40;
    const watcher = c.watch("w/k/", { prefix: true, startRevision: start, prevKv: true });
    const it = watcher[Symbol.asyncIterator]();
    await watcher.ready();
    const writes = (async () => {
      for (let i = 0; i < total; i++) {
        await c.put(`w/k/${i % 7}`, String(i));
        if (i === 9) await c.delete("w/k/3");
      }
    })();
    const firstPart = await collect(it, 10, 20_000);
    const killed = await killLeader();
    await writes;
    const rest = await collect(it, total + 1 - 10, 30_000);
    const seen = [...firstPart, ...rest];
    // The committed sequence, from a watch that nothing disturbed.
    const replay = c.watch("w/k/", { prefix: true, startRevision: start, prevKv: true });
    const committed = await collect(replay[Symbol.asyncIterator](), total + 1, 20_000);
    replay.close();
    const shape = (e: WatchEvent) =>
      `${e.revision} ${e.type} ${e.kv.key}=${text(e.kv.value)} v${e.kv.version} prev=${e.prevKv === null ? "-" : text(e.prevKv.value)}`;
    assert.deepEqual(seen.map(shape), committed.map(shape));
    const revisions = seen.map((e) => e.revision);
    assert.deepEqual(
      revisions,
      [...revisions].sort((x, y) => x - y),
      "in revision order",
    );
    assert.equal(new Set(revisions).size, revisions.length, "no duplicates");
    assert.equal(seen.filter((e) => e.type === "delete").length, 1);
    assert.deepEqual(
      seen.filter((e) => e.type === "put").map((e) => text(e.kv.value)),
      Array.from({ length: total }, (_, i) => String(i)),
      "every put, once, in order",
    );
    assert.ok(watcher.reconnectCount >= 1, "the watch was on the killed leader and moved");
    watcher.close();
    await restart(killed);
  }));

test("lease: kept alive across a leader change, its keys gone after the TTL once no longer kept alive", () =>
  withClient(async (c) => {
    // 6 s: the client counts a lease lost after a whole TTL without a renewal, and a failover takes an
    // election timeout (1-2 s) and more on a busy machine (a 3 s lease was lost once in CI).
    const lease = await c.lease(6);
    assert.ok(lease.ttlSeconds >= 6);
    await c.put("lease/k", "held", { lease });
    assert.equal((await c.getKv("lease/k")).kv?.lease, lease.id);
    assert.ok((await c.leases()).includes(lease.id));
    const ttl = await lease.timeToLive({ keys: true });
    assert.deepEqual(ttl.keys, ["lease/k"]);
    assert.equal(ttl.grantedTtlSeconds, lease.ttlSeconds);
    const killed = await killLeader();
    // Longer than the TTL after the kill: the lease is still renewed (by the new leader).
    await new Promise((r) => setTimeout(r, (lease.ttlSeconds + 2) * 1000));
    assert.equal(lease.isLostNow, false);
    assert.equal(await c.getString("lease/k"), "held", "kept while kept alive");
    await restart(killed);
    lease.close();
    const stoppedAt = performance.now();
    await waitFor(
      "the leased key to go",
      async () => ((await c.get("lease/k")) === null ? true : undefined),
      30_000,
    );
    const goneAfterMs = performance.now() - stoppedAt;
    assert.ok(goneAfterMs < (lease.ttlSeconds + 5) * 1000, `gone ${goneAfterMs} ms after keepalives stopped`);
    assert.equal((await c.leases()).includes(lease.id), false);
    assert.equal((await c.leaseTimeToLive(lease.id)).ttlSeconds, -1);
    // Revoke deletes at once.
    const other = await c.lease(30);
    await c.put("lease/r1", "a", { lease: other.id });
    await c.put("lease/r2", "b", { lease: other.id });
    await other.revoke();
    assert.deepEqual((await c.range("lease/")).items, []);
    assert.equal((await other.lost).code, "INVALID_ARGUMENT");
    // Revoked by someone else: the keepalive loop learns it (TTL 0) and the lease reports it lost.
    const third = await c.lease(30);
    let lostEvents = 0;
    third.on("lost", () => lostEvents++);
    await withClient((other2) => other2.leaseRevoke(third.id));
    const why = await third.lost;
    assert.match(why.message, /is gone \(expired or revoked\)/);
    assert.equal(lostEvents, 1);
    assert.equal(third.isLostNow, true);
  }));

test("the CLI: lease grant|timetolive|list|keepalive|revoke, put --lease, txn from stdin, watch --rev", async () => {
  const ep = ["--endpoints", cluster.endpoints.join(",")];
  const grant = await runCli(["lease", "grant", "30", ...ep]);
  assert.equal(grant.code, 0, grant.stderr);
  const m = /^lease ([0-9a-f]+) granted with TTL\((\d+)s\)\n$/.exec(grant.stdout);
  assert.ok(m !== null, grant.stdout);
  const id = m[1]!;
  const put = await runCli(["put", "cli/leased", "v1", "--lease", id, ...ep, "--json"]);
  assert.equal(put.code, 0, put.stderr);
  const first = JSON.parse(put.stdout) as { revision: number };
  assert.ok(first.revision > 1);
  const ttl = await runCli(["lease", "timetolive", id, "--keys", ...ep]);
  assert.match(
    ttl.stdout,
    new RegExp(
      `^lease ${id} granted with TTL\\(30s\\), remaining\\(\\d+s\\), attached keys\\(\\[cli/leased\\]\\)\\n$`,
    ),
  );
  const list = await runCli(["lease", "list", ...ep, "--json"]);
  assert.ok((JSON.parse(list.stdout) as { leases: string[] }).leases.includes(id));
  const keep = await runCli(["lease", "keepalive", id, "--once", ...ep]);
  assert.equal(keep.code, 0, keep.stderr);
  assert.match(keep.stdout, new RegExp(`^lease ${id} keepalived with TTL\\(30\\)\\n$`));

  // etcdctl's txn format: compares, blank line, success requests, blank line, failure requests.
  const script =
    'val("cli/leased") = "v1"\nversion("cli/none") = "0"\n\nput cli/t "from txn"\nget cli/leased\ndel cli/nothing\n\nget cli/t\n';
  const ok = await runCli(["txn", ...ep], 30_000, new TextEncoder().encode(script));
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(ok.stdout, "SUCCESS\n\nOK\n\ncli/leased\nv1\n\n0\n");
  const failed = await runCli(
    ["txn", ...ep],
    30_000,
    new TextEncoder().encode('mod("cli/t") < "2"\n\nput cli/t never\n\nget cli/t\n'),
  );
  assert.equal(failed.code, 3, "a failed comparison exits 3, as cas does");
  assert.equal(failed.stdout, "FAILURE\n\ncli/t\nfrom txn\n");
  const bad = await runCli(["txn", ...ep], 30_000, new TextEncoder().encode("mod(cli/t) < 2\n\n\n"));
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /txn: bad compare/);

  // watch from the leased put's revision: the put, the txn's put, then the revoke's delete.
  const watch = runCli([
    "watch",
    "cli/",
    "--prefix",
    "--rev",
    String(first.revision),
    "--prev-kv",
    "--max-events",
    "3",
    ...ep,
  ]);
  const revoke = await runCli(["lease", "revoke", id, ...ep]);
  assert.equal(revoke.stdout, `lease ${id} revoked\n`);
  const w = await watch;
  assert.equal(w.code, 0, w.stderr);
  assert.equal(w.stdout, "PUT\ncli/leased\nv1\nPUT\ncli/t\nfrom txn\nDELETE\ncli/leased\nv1\ncli/leased\n\n");
  const gone = await runCli(["lease", "timetolive", id, ...ep]);
  assert.equal(gone.code, 3);
  assert.equal(gone.stdout, `lease ${id} already expired\n`);
  const badId = await runCli(["put", "cli/x", "v", "--lease", "zz", ...ep]);
  assert.equal(badId.code, 2);
  assert.match(badId.stderr, /not a hexadecimal lease id/);
});

test("one store for both APIs: etcdctl sees raftkv.v1's keys, revisions and leases, and the other way round", async () => {
  const etcdctl = (args: string[]) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const p = spawn("etcdctl", [`--endpoints=${cluster.endpoints.join(",")}`, ...args], {
        env: { ...process.env, ETCDCTL_API: "3" },
      });
      let stdout = "";
      let stderr = "";
      p.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
      p.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      p.on("error", () => resolve({ code: -1, stdout, stderr: "etcdctl not found" }));
      p.on("close", (code) => resolve({ code, stdout, stderr }));
    });
  const probe = await etcdctl(["version"]);
  if (probe.code !== 0) {
    process.stderr.write("skipped: etcdctl is not installed\n");
    return;
  }
  await withClient(async (c) => {
    const lease = await c.lease(30);
    const put = await c.put("both/a", "from v1", { lease });
    const got = await etcdctl(["get", "both/a", "-w", "json"]);
    assert.equal(got.code, 0, got.stderr);
    const kv = (JSON.parse(got.stdout) as { kvs: { value: string; lease: number; mod_revision: number }[] })
      .kvs[0]!;
    assert.equal(Buffer.from(kv.value, "base64").toString(), "from v1");
    assert.equal(kv.mod_revision, put.revision, "the same revision counter");
    assert.equal(BigInt(kv.lease), lease.id, "the same lease");
    const ttl = await etcdctl(["lease", "timetolive", lease.id.toString(16), "--keys"]);
    assert.match(ttl.stdout, /attached keys\(\[both\/a\]\)/);
    const e = await etcdctl(["put", "both/b", "from etcd"]);
    assert.equal(e.code, 0, e.stderr);
    const b = (await c.getKv("both/b")).kv!;
    assert.equal(text(b.value), "from etcd");
    assert.equal(b.modRevision, put.revision + 1);
    // A lease granted through etcd's API, kept alive and revoked through raftkv.v1.
    const grant = await etcdctl(["lease", "grant", "30"]);
    const hexId = /lease ([0-9a-f]+) granted/.exec(grant.stdout)?.[1];
    assert.ok(hexId !== undefined, grant.stdout);
    const kept = await c.keepAlive(BigInt(`0x${hexId}`));
    await new Promise<void>((resolve) => kept.once("keepalive", () => resolve()));
    await c.put("both/c", "leased by etcd", { lease: kept.id });
    await kept.revoke();
    assert.equal(await c.get("both/c"), null);
    await lease.revoke();
    assert.equal((await etcdctl(["get", "both/a", "--print-value-only"])).stdout, "");
  });
});

test("a follower answers Txn, LeaseGrant and keepalives NOT_LEADER with the leader's address", async () => {
  const leader = await cluster.waitForLeader(30_000);
  const follower = cluster.nodes.find((n) => n.id !== leader.nodeId && n.proc !== null)!;
  const raw = new ClientServiceClient(follower.address, grpc.credentials.createInsecure());
  try {
    const txn = await new Promise<TxnResponse>((resolve, reject) =>
      raw.txn(
        { compare: [], success: [Op.put("nl/k", "v").wire], failure: [] },
        new grpc.Metadata(),
        { deadline: deadlineIn(5000) },
        (err, res) => (err === null ? resolve(res) : reject(err)),
      ),
    );
    assert.equal(txn.header?.errorCode, ErrorCode.ERROR_CODE_NOT_LEADER);
    assert.equal(txn.header?.leaderAddress, cluster.node(leader.nodeId).address);
    const grant = await new Promise<LeaseGrantResponse>((resolve, reject) =>
      raw.leaseGrant(
        { ttlSeconds: 10n, id: 0n },
        new grpc.Metadata(),
        { deadline: deadlineIn(5000) },
        (err, res) => (err === null ? resolve(res) : reject(err)),
      ),
    );
    assert.equal(grant.header?.errorCode, ErrorCode.ERROR_CODE_NOT_LEADER);
    assert.equal(grant.header?.leaderAddress, cluster.node(leader.nodeId).address);
    const call = raw.leaseKeepAlive();
    const answer = new Promise<LeaseKeepAliveResponse>((resolve, reject) => {
      call.once("data", resolve);
      call.once("error", reject);
    });
    call.write({ id: 1n });
    const ka = await answer;
    call.end();
    assert.equal(ka.header?.errorCode, ErrorCode.ERROR_CODE_NOT_LEADER);
    assert.equal(ka.header?.leaderAddress, cluster.node(leader.nodeId).address);
  } finally {
    raw.close();
  }
});

test("watch: a watcher that stops reading is canceled by the node as slow, and resumes with no gap", () =>
  withClient(async (c) => {
    const start = (await c.put("slow/start", "s")).revision + 1;
    const watcher = c.watch("slow/k/", { prefix: true, startRevision: start, maxBufferedEvents: 20 });
    await watcher.ready();
    const total = 3000;
    const filler = "x".repeat(300);
    // Not read while the puts go in: the client pauses its stream, the node's queue for it grows.
    for (let i = 0; i < total; i += 50)
      await Promise.all(
        Array.from({ length: 50 }, (_, j) => c.put(`slow/k/${(i + j) % 10}`, `${i + j} ${filler}`)),
      );
    const events = await collect(watcher[Symbol.asyncIterator](), total, 60_000);
    const values = events.map((e) => Number(text(e.kv.value).split(" ")[0]));
    assert.equal(new Set(values).size, total, "every put once");
    const revisions = events.map((e) => e.revision);
    for (let i = 1; i < revisions.length; i++)
      assert.ok(revisions[i]! > revisions[i - 1]!, "increasing revisions");
    const replay = c.watch("slow/k/", { prefix: true, startRevision: start });
    const committed = await collect(replay[Symbol.asyncIterator](), total, 60_000);
    replay.close();
    assert.deepEqual(
      events.map((e) => `${e.revision} ${text(e.kv.value).split(" ")[0]}`),
      committed.map((e) => `${e.revision} ${text(e.kv.value).split(" ")[0]}`),
      "exactly the committed sequence",
    );
    assert.ok(watcher.reconnectCount >= 1, "the node canceled the slow watcher and the client came back");
    watcher.close();
  }));

test("watch: a bad key rejects ready() and the iterator with INVALID_ARGUMENT (no retry loop)", () =>
  withClient(async (c) => {
    const w = c.watch("");
    await assert.rejects(
      w.ready(),
      (e: Error & { code?: string }) => e.code === "INVALID_ARGUMENT" && /key is empty/.test(e.message),
    );
    await assert.rejects(
      (async () => {
        for await (const _ of w) assert.fail("no events");
      })(),
      (e: Error & { code?: string }) => e.code === "INVALID_ARGUMENT",
    );
  }));
