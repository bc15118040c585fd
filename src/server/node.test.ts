// In-process tests of a real single-node server: client operations, the Session stream, edge validation,
// status, /metrics, and a clean stop and restart from the same data folder (the state store opened as it
// was, no snapshot restored).

import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { RaftKvClient } from "../client/index.ts";
import { type ClientResponse, ClientServiceClient, type Consistency } from "../gen/raftkv/v1/client.ts";
import { resolveServerConfig, type ServerConfig } from "./config.ts";
import { type RaftKvNode, startNode } from "./node.ts";

let dir: string;
let config: ServerConfig;
let node: RaftKvNode;
let client: RaftKvClient;

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const started = performance.now();
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (performance.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "raftkv-node-"));
  const port = await freePort();
  config = resolveServerConfig({
    id: 0,
    peers: `0=127.0.0.1:${port}`,
    dataDir: dir,
    clusterId: "unit",
    metricsPort: 0,
    maxRangeItems: 3,
    maxValueBytes: 1024,
    logLevel: "warn",
    // Snapshots every few entries, so that the restart below restores from one.
    snapshotEveryEntries: 4,
    keepEntriesAfterSnapshot: 1,
  });
  node = await startNode(config, { logToStderr: false, seed: 1 });
  client = new RaftKvClient({ endpoints: [node.listenAddress], timeoutMs: 5000 });
  await until("leadership", async () =>
    (await client.status(node.listenAddress)).lease === "valid" ? true : undefined,
  );
});

after(async () => {
  client?.close();
  await node?.stop("test over");
  rmSync(dir, { recursive: true, force: true });
});

test("put, get, cas, delete and range on a single-node cluster", async () => {
  const w = await client.put("a/1", "one");
  assert.ok(w.index > 0);
  await client.put("a/2", "two");
  await client.put("a/3", "three");
  await client.put("a/4", "four");
  assert.equal(await client.getString("a/1"), "one");
  assert.equal(await client.getString("a/1", { consistency: "readIndex" }), "one");
  assert.equal(await client.getString("a/1", { consistency: "stale" }), "one");
  assert.equal(await client.get("missing"), null);
  const failed = await client.cas("a/1", "nope", "uno");
  assert.equal(failed.swapped, false);
  assert.deepEqual(failed.current, new TextEncoder().encode("one"));
  assert.equal((await client.cas("a/1", "one", "uno")).swapped, true);
  assert.equal((await client.cas("fresh", null, "x")).swapped, true);
  assert.equal((await client.cas("fresh", null, "y")).swapped, false);
  const r = await client.range("a/", { limit: 10 });
  assert.deepEqual(
    r.items.map((i) => i.key),
    ["a/1", "a/2", "a/3"],
    "the answer is capped at maxRangeItems",
  );
  assert.equal(r.more, true);
  assert.equal((await client.delete("a/4")).deleted, true);
  assert.equal((await client.delete("a/4")).deleted, false);
});

test("the edge refuses bad requests with INVALID_ARGUMENT or TOO_LARGE", async () => {
  await assert.rejects(client.put("", "v"), { code: "INVALID_ARGUMENT" });
  await assert.rejects(client.put("k", new Uint8Array(2000)), { code: "TOO_LARGE" });
  const raw = new ClientServiceClient(node.listenAddress, grpc.credentials.createInsecure());
  try {
    const res = await new Promise<{ code: number; message: string }>((resolve, reject) =>
      raw.get({ key: "k", consistency: 42 as Consistency }, (err, r) =>
        err === null
          ? resolve({ code: r.header?.errorCode ?? -1, message: r.header?.errorMessage ?? "" })
          : reject(err),
      ),
    );
    assert.equal(res.code, 4);
    assert.match(res.message, /unknown consistency 42/);
  } finally {
    raw.close();
  }
});

test("the Session stream multiplexes requests and answers each by request_id", async () => {
  const raw = new ClientServiceClient(node.listenAddress, grpc.credentials.createInsecure());
  const call = raw.session();
  const answers = new Map<bigint, ClientResponse>();
  const done = new Promise<void>((resolve, reject) => {
    call.on("data", (r: ClientResponse) => answers.set(r.requestId, r));
    call.on("end", resolve);
    call.on("error", reject);
  });
  const value = new TextEncoder().encode("streamed");
  call.write({
    requestId: 1n,
    timeoutMs: 0,
    op: { $case: "put", value: { key: "s", value, clientId: "", seq: 0n, lease: 0n } },
  });
  call.write({ requestId: 2n, timeoutMs: 2000, op: { $case: "status", value: {} } });
  call.write({ requestId: 3n, timeoutMs: 0, op: undefined });
  call.end();
  await done;
  raw.close();
  assert.equal(answers.size, 3);
  const put = answers.get(1n)?.result;
  assert.equal(put?.$case, "put");
  assert.equal(put?.$case === "put" ? put.value.header?.errorCode : -1, 0);
  assert.equal(answers.get(2n)?.result?.$case, "status");
  const rejected = answers.get(3n)?.result;
  assert.equal(rejected?.$case, "rejected");
  assert.match(rejected?.$case === "rejected" ? rejected.value.errorMessage : "", /carries no operation/);
  assert.equal(await client.getString("s"), "streamed");
});

test("status and /metrics describe the node", async () => {
  const s = await client.status(node.listenAddress);
  assert.equal(s.role, "leader");
  assert.equal(s.clusterId, "unit");
  assert.equal(s.leaderId, 0);
  assert.ok(s.appliedIndex >= s.commitIndex - 1 && s.commitIndex > 0);
  assert.equal(s.pid, process.pid, "the node runs in this test's process");
  assert.equal(s.dataDir, dir);
  assert.ok(s.uptimeMs !== null && s.uptimeMs > 0);
  assert.match(s.version, /^\d+\.\d+\.\d+/);
  assert.ok(node.metricsPort !== null);
  const text = await (await fetch(`http://127.0.0.1:${node.metricsPort}/metrics`)).text();
  assert.match(text, /raftkv_role\{role="leader"\} 1/);
  assert.match(text, /raftkv_process_memory_bytes\{kind="heapUsed"\} \d+/);
  assert.match(text, /raftkv_request_duration_seconds_count\{op="put",code="OK"\} \d+/);
  assert.match(text, /raftkv_lease_remaining_seconds 0\.\d+/);
  assert.match(text, /raftkv_has_leader 1/);
  assert.match(text, /raftkv_build_info\{version="\d+\.\d+\.\d+[^"]*",node_version="v\d+[^"]*"\} 1/);
  assert.match(text, /# TYPE raftkv_proposals_total counter\nraftkv_proposals_total\{result="ok"\} [1-9]/);
  assert.match(text, /# TYPE raftkv_peer_messages_total counter/);
  assert.match(text, /raftkv_wal_fsync_duration_seconds_count\{op="(fdatasync|dsyncWrite)"\} [1-9]/);
  assert.match(text, /^process_cpu_user_seconds_total \d/m, "the default process_* metrics");
  assert.match(text, /^nodejs_heap_size_used_bytes \d/m, "the default nodejs_* metrics");
  assert.doesNotMatch(text, /raftkv_peer_messages\{/, "no gauge holding a running total");
});

test("/health and /ready: 200 with a JSON body while a leader can serve linearizable reads", async () => {
  const health = await fetch(`http://127.0.0.1:${node.metricsPort}/health`);
  assert.equal(health.status, 200);
  const h = (await health.json()) as { health: boolean; reason: null; role: string; checks: object };
  assert.equal(h.health, true);
  assert.equal(h.reason, null);
  assert.equal(h.role, "leader");
  assert.deepEqual(Object.keys(h.checks), ["leader", "read", "storage"]);
  const ready = await fetch(`http://127.0.0.1:${node.metricsPort}/ready`);
  assert.equal(ready.status, 200);
  assert.equal(((await ready.json()) as { ready: boolean }).ready, true);
  assert.equal((await fetch(`http://127.0.0.1:${node.metricsPort}/nope`)).status, 404);
});

test("range pages with startAfter; rangeAll iterates every page to the end", async () => {
  for (const k of ["p/1", "p/2", "p/3", "p/4", "p/5", "q/1"]) await client.put(k, `v-${k}`);
  const page = await client.range("p/", { startAfter: "p/2" });
  assert.deepEqual(
    page.items.map((i) => i.key),
    ["p/3", "p/4", "p/5"],
  );
  assert.equal(page.more, false);
  assert.deepEqual((await client.range("p/", { startAfter: "p/5" })).items, []);
  assert.deepEqual(
    (await client.range("p/", { startAfter: "a" })).items.map((i) => i.key),
    ["p/1", "p/2", "p/3"],
    "a startAfter below the prefix starts at the prefix",
  );
  const all: string[] = [];
  for await (const kv of client.rangeAll("p/", { pageSize: 2 })) all.push(kv.key);
  assert.deepEqual(all, ["p/1", "p/2", "p/3", "p/4", "p/5"], "pages of 2 (and the server's cap of 3)");
  await assert.rejects(client.range("p/", { startAfter: "x".repeat(5000) }), { code: "TOO_LARGE" });
});

test("a stopped node restarts from its data folder with everything applied", async () => {
  const before = await client.status(node.listenAddress);
  await node.stop("restart test");
  assert.equal(await node.done, 0);
  assert.ok(
    readdirSync(join(dir, "snap")).some((f) => f.endsWith(".snap")),
    "a snapshot to restore from",
  );
  const generation = readFileSync(join(dir, "state", "CURRENT"), "utf8");
  node = await startNode(config, { logToStderr: false, seed: 2 });
  // The state store opened as it was: no restore built a new generation of it.
  assert.equal(readFileSync(join(dir, "state", "CURRENT"), "utf8"), generation);
  assert.ok(node.raft.stateMachine.persistedIndex() >= before.appliedIndex);
  assert.equal(
    await until("the value after restart", () => client.getString("s").then((v) => v ?? undefined)),
    "streamed",
  );
  const after = await client.status(node.listenAddress);
  assert.ok(after.term > before.term);
  assert.ok(after.appliedIndex > before.appliedIndex);
});
