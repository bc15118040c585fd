// End-to-end CLI error cases: no node reachable, no leader, deadline, bad arguments and bad settings each
// give one clear line on stderr and a non-zero exit code.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { freePorts, runCli, TestCluster, waitFor } from "./harness.ts";

/** One node of a three-member cluster whose other members never start: it can never elect a leader. */
let lonely: TestCluster;
let endpoint: string;

before(async () => {
  lonely = await TestCluster.start({ nodes: 3, serveArgs: ["--set", "maxValueBytes=64"] });
  await Promise.all([lonely.kill(1), lonely.kill(2)]);
  endpoint = lonely.node(0).address;
  await waitFor("node 0 to answer", async () => ((await lonely.statuses()).length === 1 ? true : undefined));
});

after(async () => {
  await lonely?.close();
});

function oneLine(stderr: string): string {
  const lines = stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `expected one line on stderr, got: ${stderr}`);
  return lines[0]!;
}

test("no node reachable: UNAVAILABLE, exit 1", async () => {
  const [a, b] = await freePorts(2);
  const r = await runCli(["get", "k", "--endpoints", `127.0.0.1:${a},127.0.0.1:${b}`, "--timeout", "1500ms"]);
  assert.equal(r.code, 1);
  const line = oneLine(r.stderr);
  assert.match(line, /^raftkv get: UNAVAILABLE: get failed: no node could be reached .*--endpoints/);
  assert.match(line, /connection refused/);
  assert.doesNotMatch(line, /Last error|Resolution note|No connection established/, "no grpc-js text");
  assert.equal(line.match(/start the cluster/g)?.length, 1, "what to do, said once");
});

test("no leader: NO_LEADER, exit 1", async () => {
  const r = await runCli(["put", "k", "v", "--endpoints", endpoint, "--timeout", "1500ms"]);
  assert.equal(r.code, 1);
  assert.match(oneLine(r.stderr), /^raftkv put: NO_LEADER: put failed: the cluster has no leader/);
});

test("deadline: a node that does not answer gives DEADLINE_EXCEEDED, exit 1", async () => {
  lonely.pause(0);
  try {
    const r = await runCli([
      "get",
      "k",
      "--endpoints",
      endpoint,
      "--timeout",
      "1s",
      "--consistency",
      "stale",
    ]);
    assert.equal(r.code, 1);
    assert.match(oneLine(r.stderr), /^raftkv get: DEADLINE_EXCEEDED: get did not complete within 1000 ms/);
  } finally {
    lonely.resume(0);
  }
});

test("bad arguments: exit 2 with the reason", async () => {
  const bogus = await runCli(["get", "k", "--endpoints", endpoint, "--consistency", "bogus"]);
  assert.equal(bogus.code, 2);
  assert.match(
    oneLine(bogus.stderr),
    /INVALID_ARGUMENT: --consistency "bogus" is not a consistency level; use one of/,
  );

  const timeout = await runCli(["get", "k", "--endpoints", endpoint, "--timeout", "soon"]);
  assert.equal(timeout.code, 2);
  assert.match(timeout.stderr, /--timeout "soon" is not a positive duration/);

  const missing = await runCli(["put"]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /missing required argument 'key'/);

  const asJson = await runCli(["get", "k", "--endpoints", endpoint, "--timeout", "soon", "--json"]);
  assert.equal(asJson.code, 2);
  assert.equal(asJson.stderr, "", "with --json the error goes to stdout, as JSON");
  assert.deepEqual(JSON.parse(asJson.stdout), {
    ok: false,
    command: "get",
    error: {
      code: "INVALID_ARGUMENT",
      message: '--timeout "soon" is not a positive duration',
      hint: "use milliseconds (--timeout 500) or seconds (--timeout 2s)",
    },
  });
  const unknownFlag = await runCli(["get", "k", "--bogus", "--json"]);
  assert.equal(unknownFlag.code, 2);
  assert.equal(JSON.parse(unknownFlag.stdout).error.message, "unknown option '--bogus'");

  // Refused by the node at the edge, before any leader is needed.
  const empty = await runCli(["put", "", "v", "--endpoints", endpoint]);
  assert.equal(empty.code, 2);
  assert.match(
    oneLine(empty.stderr),
    /^raftkv put: INVALID_ARGUMENT: key is empty; use a non-empty key \(node 0\)/,
  );

  const big = await runCli(["put", "k", "x".repeat(100), "--endpoints", endpoint]);
  assert.equal(big.code, 2);
  assert.match(oneLine(big.stderr), /^raftkv put: TOO_LARGE: value is 100 bytes, the limit is 64/);
});

test("unsafe or malformed settings are refused at start, naming the setting", async () => {
  const [port] = await freePorts(1);
  const base = [
    "serve",
    "--id",
    "0",
    "--peers",
    `0=127.0.0.1:${port}`,
    "--data-dir",
    `${lonely.root}/refused`,
  ];
  const lease = await runCli([...base, "--lease-ms", "5000"]);
  assert.equal(lease.code, 2);
  assert.match(
    oneLine(lease.stderr),
    /^raftkv serve: CONFIG: invalid setting leaseMs: a lease of 5000 ms is unsafe/,
  );

  const typo = await runCli([...base, "--set", "heartbeatMillis=5"]);
  assert.equal(typo.code, 2);
  assert.match(oneLine(typo.stderr), /invalid setting heartbeatMillis: unknown setting/);

  const notMember = await runCli(["serve", "--id", "7", "--peers", `0=127.0.0.1:${port}`, "--data-dir", "x"]);
  assert.equal(notMember.code, 2);
  assert.match(oneLine(notMember.stderr), /invalid setting peers: must include this node's id 7/);
});
