// MvccNode (the node-side MvccApi) on three in-process Raft nodes running MvccState: writes through the
// log with etcd's revisions in the header, serializable and linearizable reads, read-only txns as
// reads, watchers on every node fed from the applied stream (from the past through the history, then
// live; equal streams everywhere; compaction and slow-watcher cancels), and TTL leases decided on the
// leader's clock (keepalive keeps a lease, expiry revokes its keys at one revision, a leader change
// keeps it).

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { rangeRequest as rangeReq } from "../kv/mvcc-range.ts";
import type { PutOp, RevisionChanges, WatchEvent } from "../kv/mvcc-types.ts";
import type { StoreResult } from "../kv/store-state-machine.ts";
import { type RaftNode, resolveNodeConfig, startRaftNode } from "./embed.ts";
import type { WatchDelivery, WatchRequest } from "./mvcc-api.ts";
import { MvccNode, mvccHostOf } from "./mvcc-node.ts";
import { MvccState } from "./mvcc-state.ts";

const b = (s: string) => new TextEncoder().encode(s);
const str = (u: Uint8Array) => new TextDecoder().decode(u);
const EMPTY = new Uint8Array(0);
const ALL = new Uint8Array([0]);

async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: n }, async () => {
      const s = net.createServer();
      await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
      return s;
    }),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

async function until<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  ms = 30_000,
): Promise<T> {
  const started = performance.now();
  for (;;) {
    const v = await Promise.resolve(probe()).catch(() => undefined);
    if (v !== undefined) return v;
    if (performance.now() - started > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function put(key: string, value: string, o: Partial<PutOp> = {}): PutOp {
  return {
    op: "put",
    key: b(key),
    value: b(value),
    lease: 0n,
    prevKv: false,
    ignoreValue: false,
    ignoreLease: false,
    ...o,
  };
}

function watchReq(o: Partial<WatchRequest> = {}): WatchRequest {
  return {
    key: ALL,
    rangeEnd: ALL,
    startRevision: 0,
    prevKv: false,
    noPut: false,
    noDelete: false,
    progressNotify: false,
    ...o,
  };
}

let root: string;
const nodes: RaftNode<MvccState, StoreResult>[] = [];
const apis: MvccNode[] = [];

before(async () => {
  root = mkdtempSync(join(tmpdir(), "raftkv-mvcc-"));
  const ports = await freePorts(3);
  const peers = ports.map((p, i) => `${i}=127.0.0.1:${p}`).join(",");
  for (const id of [0, 1, 2]) {
    const node = await startRaftNode({
      config: resolveNodeConfig({
        id,
        peers,
        dataDir: join(root, `n${id}`),
        clusterId: "mvcc-test",
        logLevel: "warn",
        // Three nodes share this process's event loop, and the suite runs beside other files: with the
        // default 300-600 ms an overloaded machine made spurious elections that failed writes mid-test.
        heartbeatMs: 100,
        electionTimeoutMinMs: 1000,
        electionTimeoutMaxMs: 2000,
      }),
      stateMachine: new MvccState(),
      logToStderr: false,
      seed: id + 7,
    });
    nodes.push(node);
    apis.push(
      new MvccNode(mvccHostOf(node), {
        minLeaseTtlSeconds: 1,
        watch: { maxBufferedEvents: 50, catchUpSliceEvents: 7, maxWatchers: 100 },
      }),
    );
  }
});

after(async () => {
  for (const a of apis) a.close();
  await Promise.all(nodes.map((n) => n.stop("test over")));
  rmSync(root, { recursive: true, force: true });
});

async function leader(): Promise<{ node: RaftNode<MvccState, StoreResult>; api: MvccNode }> {
  const i = await until("a leader with a lease", () => {
    const k = nodes.findIndex((n) => n.status().role === "leader" && n.status().lease === "valid");
    return k >= 0 ? k : undefined;
  });
  return { node: nodes[i]!, api: apis[i]! };
}

/** Collects a watcher's deliveries. */
function collect(api: MvccNode, req: WatchRequest) {
  const got: WatchDelivery[] = [];
  const handle = api.watch(req, (d) => {
    got.push(d);
  });
  const events = () =>
    got.flatMap((d) =>
      d.kind === "events" ? d.events.map((e) => [d.revision, e.type, str(e.kv.key), str(e.kv.value)]) : [],
    );
  return { got, handle, events };
}

test("writes through the log carry etcd's revisions; reads at each consistency; a read-only txn is a read", async () => {
  const { api } = await leader();
  const first = await api.write(put("a", "1"), 10_000);
  assert.equal(first.header.revision, 2);
  const second = await api.write(put("a", "2", { prevKv: true }), 10_000);
  assert.equal(second.header.revision, 3);
  assert.ok(
    second.result.op === "put" && second.result.prevKv !== null && str(second.result.prevKv.value) === "1",
  );
  const now = await api.range(rangeReq(b("a")), "linearizable", 10_000);
  assert.ok("result" in now && str(now.result.kvs[0]!.value) === "2" && now.header.revision === 3);
  const past = await api.range(rangeReq(b("a"), EMPTY, { revision: 2 }), "linearizable", 10_000);
  assert.ok("result" in past && str(past.result.kvs[0]!.value) === "1");
  for (const follower of apis.filter((a) => a !== api)) {
    const seen = await until("a follower to apply", async () => {
      const r = await follower.range(rangeReq(b("a")), "serializable", 10_000);
      return "result" in r && r.header.revision === 3 ? r : undefined;
    });
    assert.ok("result" in seen && str(seen.result.kvs[0]!.value) === "2");
  }
  const ro = await api.write(
    { op: "txn", compare: [], success: [{ op: "range", request: rangeReq(b("a")) }], failure: [] },
    10_000,
  );
  assert.ok(ro.result.op === "txn" && ro.header.revision === 3, "a read-only txn takes no revision");
  const future = await api.range(rangeReq(b("a"), EMPTY, { revision: 99 }), "serializable", 10_000);
  assert.ok("error" in future && future.error.message === "mvcc: required revision is a future revision");
});

test("watch: every node's stream from a past revision equals the committed changes, with no gaps or duplicates", async () => {
  const { api } = await leader();
  const start = api.revisions().current + 1;
  for (let i = 0; i < 30; i++) await api.write(put(`w/${i % 4}`, String(i)), 10_000);
  // Watchers from the past on every node (catch-up through the history in slices of 7 events), then live.
  const watchers = apis.map((a) =>
    collect(a, watchReq({ key: b("w/"), rangeEnd: b("w0"), startRevision: start })),
  );
  for (let i = 30; i < 45; i++) await api.write(put(`w/${i % 4}`, String(i)), 10_000);
  await api.write({ op: "deleteRange", key: b("w/"), rangeEnd: b("w0"), prevKv: false }, 10_000);
  const end = api.revisions().current;
  const expected: (string | number)[][] = [];
  for (let i = 0; i < 45; i++) expected.push([start + i, "put", `w/${i % 4}`, String(i)]);
  for (let k = 0; k < 4; k++) expected.push([end, "delete", `w/${k}`, ""]);
  for (const w of watchers) {
    await until("the watcher to see the last revision", () =>
      w.events().length >= expected.length ? true : undefined,
    );
    assert.deepEqual(w.events(), expected);
    w.handle.cancel();
  }
});

test("watch filters and prev_kv; a start below the compaction is canceled with the compact revision", async () => {
  const { api } = await leader();
  const start = api.revisions().current + 1;
  const w = collect(api, watchReq({ key: b("f"), rangeEnd: EMPTY, noDelete: true, prevKv: true }));
  await api.write(put("f", "1"), 10_000);
  await api.write(put("g", "x"), 10_000);
  await api.write({ op: "deleteRange", key: b("f"), rangeEnd: EMPTY, prevKv: false }, 10_000);
  await api.write(put("f", "2"), 10_000);
  await until("two puts", () => (w.events().length >= 2 ? true : undefined));
  assert.deepEqual(w.events(), [
    [start, "put", "f", "1"],
    [start + 3, "put", "f", "2"],
  ]);
  const withPrev = w.got.flatMap((d) => (d.kind === "events" ? d.events : [])) as WatchEvent[];
  assert.equal(withPrev[0]!.prevKv, null);
  const compact = await api.write({ op: "compact", revision: start + 2 }, 10_000);
  assert.equal(compact.result.op, "compact");
  const old = collect(api, watchReq({ startRevision: start }));
  await until("the cancel", () => (old.got.length > 0 ? true : undefined));
  assert.deepEqual(old.got, [
    { kind: "canceled", reason: "mvcc: required revision has been compacted", compactRevision: start + 2 },
  ]);
  w.handle.cancel();
});

test("a watcher that stops taking deliveries is canceled once its buffer is full; the apply loop goes on", async () => {
  const { api } = await leader();
  const got: WatchDelivery[] = [];
  api.watch(watchReq({ key: b("slow/"), rangeEnd: b("slow0") }), (d) => {
    got.push(d);
    return false; // never resumes
  });
  for (let i = 0; i < 60; i++) await api.write(put(`slow/${i}`, "v"), 10_000);
  const cancel = await until("the cancel", () => got.find((d) => d.kind === "canceled"));
  assert.match((cancel as { reason: string }).reason, /watcher too slow: more than 50 events waiting/);
  assert.equal(got.filter((d) => d.kind === "events").length, 1, "one delivery taken, then held");
  const r = await api.range(rangeReq(b("slow/"), b("slow0"), { countOnly: true }), "linearizable", 10_000);
  assert.ok("result" in r && r.result.count === 60);
});

test("leases: keepalive keeps a lease past its TTL; without it the leader revokes the keys at one revision", async () => {
  const { api } = await leader();
  const grant = await api.leaseGrant(0n, 1, 10_000);
  assert.ok(grant.result.op === "leaseGrant" && grant.result.ttlSeconds === 1 && grant.result.id > 0n);
  const id = grant.result.id;
  await api.write(put("l/a", "1", { lease: id }), 10_000);
  await api.write(put("l/b", "2", { lease: id }), 10_000);
  const w = collect(api, watchReq({ key: b("l/"), rangeEnd: b("l0") }));
  const ttl = await api.leaseTimeToLive(id, true);
  assert.deepEqual(ttl.info?.keys.map(str), ["l/a", "l/b"]);
  assert.ok((await api.leases()).ids.includes(id));
  const revoked = until("the lease to expire", async () => {
    const r = await api.range(rangeReq(b("l/"), b("l0"), { countOnly: true }), "linearizable", 10_000);
    return "result" in r && r.result.count === 0 ? true : undefined;
  });
  await revoked;
  const deletes = w.got.filter((d) => d.kind === "events");
  assert.equal(deletes.length, 1, "both keys deleted at one revision");
  assert.deepEqual(
    w.events().map((e) => [e[1], e[2]]),
    [
      ["delete", "l/a"],
      ["delete", "l/b"],
    ],
  );
  assert.equal((await api.leaseKeepAlive(id)).ttlSeconds, null);
  w.handle.cancel();

  // Kept alive well within its TTL (every 250 ms for a 5 s TTL), a lease outlives its TTL.
  const kept = await api.leaseGrant(0n, 5, 10_000);
  assert.ok(kept.result.op === "leaseGrant");
  const keptId = kept.result.id;
  await api.write(put("k/a", "1", { lease: keptId }), 10_000);
  const startedMs = performance.now();
  while (performance.now() - startedMs < 7000) {
    assert.equal((await api.leaseKeepAlive(keptId)).ttlSeconds, 5);
    await new Promise((r) => setTimeout(r, 250));
  }
  const left = await api.leaseTimeToLive(keptId, true);
  assert.ok(left.info !== null && left.info.ttlSeconds <= 5 && left.info.ttlSeconds > 0);
  assert.deepEqual(left.info.keys.map(str), ["k/a"]);
  await api.leaseRevoke(keptId, 10_000);
});

test("after a leader change the new leader keeps the lease and its keys (TTL refreshed), then expires it", async () => {
  const { node, api } = await leader();
  const grant = await api.leaseGrant(0n, 3, 10_000);
  assert.ok(grant.result.op === "leaseGrant");
  const id = grant.result.id;
  await api.write(put("t/a", "1", { lease: id }), 10_000);
  const target = nodes.find((n) => n !== node)!;
  await until("the transfer", () => (node.transferLeadership(target.id) ? true : undefined));
  const next = await until("a new leader", () => {
    const k = nodes.findIndex(
      (n) => n !== node && n.status().role === "leader" && n.status().lease === "valid",
    );
    return k >= 0 ? apis[k] : undefined;
  });
  const ttl = await until(
    "the new leader's view of the lease",
    async () => (await next.leaseTimeToLive(id, true)).info ?? undefined,
  );
  assert.deepEqual(ttl.keys.map(str), ["t/a"]);
  await until("expiry under the new leader", async () => {
    const r = await next.range(rangeReq(b("t/a")), "linearizable", 10_000);
    return "result" in r && r.result.count === 0 ? true : undefined;
  });
  assert.equal((await next.leaseTimeToLive(id, false)).info, null);
  await assert.rejects(apis[nodes.indexOf(node)]!.leaseKeepAlive(id), { code: "NOT_LEADER" });
});

test("changes reach the hub in revision order, equal on every node", async () => {
  const { api } = await leader();
  await api.write(put("z", "last"), 10_000);
  const end = api.revisions().current;
  const histories: RevisionChanges[][] = [];
  for (const n of nodes) {
    await until("every node to apply", () => (n.stateMachine.current.revision === end ? true : undefined));
    histories.push(n.stateMachine.current.changesFrom(n.stateMachine.current.compacted, 1 << 20));
  }
  const revs = histories[0]!.map((c) => c.revision);
  assert.deepEqual(
    revs,
    [...revs].sort((x, y) => x - y),
  );
  for (const h of histories.slice(1))
    assert.deepEqual(
      h.map((c) => c.revision),
      revs,
    );
  for (const n of nodes)
    assert.deepEqual(n.stateMachine.current.hashKv(end), nodes[0]!.stateMachine.current.hashKv(end));
});
