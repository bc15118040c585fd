// End-to-end, 3 real nodes: put/get via CLI and library, redirects, exactly-once retries, leader kill -9
// keeps every acknowledged write, and restarted nodes catch up (from the log and by snapshot).

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { deadlineIn } from "../../src/clock/deadline.ts";
import { ClientServiceClient, type PutRequest, type PutResponse } from "../../src/gen/raftkv/v1/client.ts";
import { runCli, TestCluster, waitFor } from "./harness.ts";

let cluster: TestCluster;

before(async () => {
  // Small snapshot interval so a node that was down for a while catches up by InstallSnapshot.
  cluster = await TestCluster.start({
    nodes: 3,
    serveArgs: ["--snapshot-every-entries", "40", "--set", "keepEntriesAfterSnapshot=5"],
  });
  await cluster.waitForLeader(30_000);
});

after(async () => {
  await cluster?.close();
});

test("put and get through the CLI and the library", async () => {
  const endpoints = cluster.endpoints.join(",");
  const put = await runCli(["put", "greeting", "hello", "--endpoints", endpoints]);
  assert.equal(put.code, 0, put.stderr);
  assert.match(put.stdout, /^OK \(index \d+\)/);

  const client = cluster.client();
  try {
    assert.equal(await client.getString("greeting"), "hello");
    await client.put("bytes", new Uint8Array([0, 1, 2, 255]));
    assert.deepEqual(await client.get("bytes", { consistency: "readIndex" }), new Uint8Array([0, 1, 2, 255]));
    await client.put("from-lib", "value");
  } finally {
    client.close();
  }
  const get = await runCli(["get", "from-lib", "--endpoints", endpoints, "--json"]);
  assert.equal(get.code, 0, get.stderr);
  assert.deepEqual(JSON.parse(get.stdout), { key: "from-lib", found: true, value: "value" });
  const missing = await runCli(["get", "no-such-key", "--endpoints", endpoints]);
  assert.equal(missing.code, 3);
  assert.match(missing.stderr, /key not found: no-such-key/);
});

test("the CLI: a value from stdin, range pages with --after and --all, status columns, --version", async () => {
  const endpoints = cluster.endpoints.join(",");
  const bytes = new Uint8Array([0, 1, 2, 255, 10]);
  const put = await runCli(["put", "stdin/bin", "--endpoints", endpoints], 30_000, bytes);
  assert.equal(put.code, 0, put.stderr);
  const got = await runCli(["get", "stdin/bin", "--endpoints", endpoints, "--json"]);
  assert.deepEqual(JSON.parse(got.stdout).valueBase64, Buffer.from(bytes).toString("base64"));
  for (const k of ["r/1", "r/2", "r/3", "r/4", "r/5"])
    assert.equal((await runCli(["put", k, `v${k}`, "--endpoints", endpoints])).code, 0);
  const page = await runCli(["range", "r/", "--limit", "2", "--endpoints", endpoints]);
  assert.equal(page.stdout, "r/1\tvr/1\nr/2\tvr/2\n");
  assert.match(page.stderr, /next page with --after "r\/2", or every key with --all/);
  const next = await runCli(["range", "r/", "--limit", "2", "--after", "r/2", "--endpoints", endpoints]);
  assert.equal(next.stdout, "r/3\tvr/3\nr/4\tvr/4\n");
  const all = await runCli(["range", "r/", "--limit", "2", "--all", "--json", "--endpoints", endpoints]);
  assert.deepEqual(
    JSON.parse(all.stdout).items.map((i: { key: string }) => i.key),
    ["r/1", "r/2", "r/3", "r/4", "r/5"],
  );
  const status = await runCli(["status", "--endpoints", endpoints]);
  assert.match(status.stdout.split("\n")[0]!, /PID\s+VERSION\s+UPTIME\s+DATA$/);
  const rows = JSON.parse((await runCli(["status", "--json", "--endpoints", endpoints])).stdout) as {
    pid: number;
    dataDir: string;
    uptimeMs: number;
  }[];
  assert.equal(rows.length, 3);
  for (const r of rows) {
    assert.ok(r.pid > 0 && r.uptimeMs > 0);
    assert.match(r.dataDir, /node-\d$/);
  }
  const version = await runCli(["--version"]);
  assert.match(version.stdout, /^\d+\.\d+\.\d+\n$/);
  const help = await runCli(["put", "--help"]);
  assert.doesNotMatch(help.stdout, /--consistency/, "help lists only the options the command uses");
});

test("a request sent to a follower is redirected to the leader", async () => {
  const leader = await cluster.waitForLeader();
  const follower = cluster.nodes.find((n) => n.id !== leader.nodeId)!;
  const client = cluster.client([follower.address]);
  try {
    await client.put("redirected", "yes");
    assert.equal(client.knownLeader, leader.endpoint, "the client learned the leader from the redirect");
    assert.equal(await client.getString("redirected"), "yes");
    // Stale reads are served by the follower itself.
    const stale = await waitFor("the follower to apply the write", async () =>
      (await client.getString("redirected", { consistency: "stale" })) === "yes" ? true : undefined,
    );
    assert.equal(stale, true);
  } finally {
    client.close();
  }
  const cli = await runCli(["put", "redirected-cli", "ok", "--endpoints", follower.address]);
  assert.equal(cli.code, 0, cli.stderr);
});

test("a retried write (same client id and seq) applies exactly once", async () => {
  const leader = await cluster.waitForLeader();
  const raw = new ClientServiceClient(leader.endpoint, grpc.credentials.createInsecure());
  const put = (req: PutRequest): Promise<PutResponse> =>
    new Promise((resolve, reject) =>
      raw.put(req, new grpc.Metadata(), { deadline: deadlineIn(5000) }, (err, res) =>
        err === null ? resolve(res) : reject(err),
      ),
    );
  try {
    const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
    const first = await put({ key: "once", value: enc("v1"), clientId: "e2e-once", seq: 1n, lease: 0n });
    assert.equal(first.header?.errorCode, 0, first.header?.errorMessage);
    const second = await put({ key: "once", value: enc("v2"), clientId: "e2e-once", seq: 2n, lease: 0n });
    assert.equal(second.header?.errorCode, 0, second.header?.errorMessage);
    const retry = await put({ key: "once", value: enc("v1"), clientId: "e2e-once", seq: 1n, lease: 0n });
    assert.equal(retry.header?.errorCode, 0, "a retry of an older seq within the window is answered");
    assert.equal(retry.index, first.index, "with its original result, not applied again");
    const again = await put({ key: "once", value: enc("v2"), clientId: "e2e-once", seq: 2n, lease: 0n });
    assert.equal(again.header?.errorCode, 0);
    assert.equal(again.index, second.index, "a retry of the last seq returns the original result");
    // Five writes pipelined on one client id, all in flight at once: each applies exactly once.
    const pipelined = await Promise.all(
      [3n, 4n, 5n, 6n, 7n].map((seq) =>
        put({ key: `pipe/${seq}`, value: enc("p"), clientId: "e2e-once", seq, lease: 0n }),
      ),
    );
    for (const r of pipelined) assert.equal(r.header?.errorCode, 0, r.header?.errorMessage);
    assert.equal(new Set(pipelined.map((r) => r.index)).size, 5);
    const stale = await put({ key: "once", value: enc("v1"), clientId: "e2e-once", seq: 2n, lease: 0n });
    assert.equal(stale.header?.errorCode, 4, "5 or more below the highest seq: refused (INVALID_ARGUMENT)");
    assert.match(stale.header?.errorMessage ?? "", /stale sequence number/);
  } finally {
    raw.close();
  }
  const client = cluster.client();
  try {
    assert.equal(await client.getString("once", { consistency: "readIndex" }), "v2");
  } finally {
    client.close();
  }
});

test("kill -9 of the leader elects a new one and every acknowledged write survives; the node catches up", async () => {
  const old = await cluster.waitForLeader();
  const client = cluster.client(cluster.endpoints, 15_000);
  const acked = new Map<string, string>();
  let stop = false;
  let seq = 0;
  const writer = async (w: number): Promise<void> => {
    while (!stop) {
      const key = `kill/${w}/${seq++}`;
      const value = `v${seq}`;
      try {
        await client.put(key, value);
        acked.set(key, value);
      } catch {
        // Outcome unknown: not acknowledged, so not required to survive.
      }
    }
  };
  const writers = [0, 1, 2, 3].map(writer);
  try {
    await waitFor("writes before the kill", () => (acked.size >= 40 ? true : undefined));
    await cluster.kill(old.nodeId, "SIGKILL");
    const before = acked.size;
    const leader = await cluster.waitForLeader(20_000, [old.nodeId]);
    assert.notEqual(leader.nodeId, old.nodeId);
    await waitFor(
      "writes after the new leader",
      () => (acked.size >= before + 40 ? true : undefined),
      20_000,
    );
  } finally {
    stop = true;
    await Promise.all(writers);
  }
  try {
    for (const [key, value] of acked)
      assert.equal(await client.getString(key, { consistency: "readIndex" }), value, `acknowledged ${key}`);
  } finally {
    client.close();
  }

  // The killed node restarts (its lock is stale after kill -9) and catches up.
  cluster.startNode(old.nodeId);
  const leader = await cluster.waitForLeader();
  const lastKey = [...acked.keys()].at(-1)!;
  const restarted = cluster.client([cluster.node(old.nodeId).address]);
  try {
    await waitFor(
      `node ${old.nodeId} to catch up`,
      async () => {
        const s = await restarted.status(cluster.node(old.nodeId).address);
        const v = await restarted.getString(lastKey, { consistency: "stale" });
        return s.appliedIndex >= leader.commitIndex && v === acked.get(lastKey) ? true : undefined;
      },
      20_000,
    );
  } finally {
    restarted.close();
  }
});

test("a node that missed compacted entries catches up by snapshot", async () => {
  const leader = await cluster.waitForLeader();
  const follower = cluster.nodes.find((n) => n.id !== leader.nodeId && n.proc !== null)!;
  assert.equal(await cluster.kill(follower.id, "SIGTERM"), 0, "a clean stop exits 0");
  const client = cluster.client();
  try {
    for (let i = 0; i < 120; i++) await client.put(`snap/${i}`, `value-${i}`);
    const behind = await waitFor("the leader to snapshot past the stopped node", async () => {
      const s = (await cluster.statuses()).find((x) => x.role === "leader");
      return s !== undefined && s.snapshotIndex > 100 ? s : undefined;
    });
    cluster.startNode(follower.id);
    const own = cluster.client([follower.address]);
    try {
      await waitFor(
        `node ${follower.id} to install a snapshot and catch up`,
        async () => {
          const s = await own.status(follower.address);
          const v = await own.getString("snap/119", { consistency: "stale" });
          return s.snapshotIndex > 0 && s.appliedIndex >= behind.snapshotIndex && v === "value-119"
            ? true
            : undefined;
        },
        20_000,
      );
      assert.match(cluster.logOf(follower.id), /installed from the leader/);
    } finally {
      own.close();
    }
  } finally {
    client.close();
  }
});
