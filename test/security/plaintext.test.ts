// Plaintext is a choice (issue 12, finding 9): without TLS a node listens on loopback only; a non-loopback
// address is refused at start with one line naming --insecure-listen, before anything is touched; with the
// flag the node says at warn level that its traffic is unauthenticated. Real `raftkv serve` processes.

import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { RaftKvError } from "../../src/lib/errors.ts";
import { isLoopbackHost, resolveServerConfig } from "../../src/server/config.ts";
import { freePorts, runCli, waitFor } from "../e2e/harness.ts";

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), "raftkv-plain-"));
});
after(() => rmSync(dir, { recursive: true, force: true }));

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

test("loopback hosts: localhost, 127.0.0.0/8, ::1; everything else is not", () => {
  for (const h of ["localhost", "LOCALHOST", "127.0.0.1", "127.9.8.7", "[::1]", "::1", "0:0:0:0:0:0:0:1"])
    assert.equal(isLoopbackHost(h), true, h);
  for (const h of ["0.0.0.0", "10.0.0.1", "[::]", "::", "node0.example", "128.0.0.1", "[::ffff:10.0.0.1]"])
    assert.equal(isLoopbackHost(h), false, h);
  assert.equal(isLoopbackHost("[::ffff:127.0.0.1]"), true);
});

test("without TLS, a non-loopback listen address is refused unless insecureListen; insecureListen with TLS is refused", () => {
  const refusal = (input: Record<string, unknown>): string => {
    try {
      resolveServerConfig(input);
    } catch (e) {
      assert.ok(e instanceof RaftKvError);
      assert.equal(e.code, "CONFIG");
      return e.message;
    }
    assert.fail("expected a refusal");
  };
  const base = { id: 0, peers: "0=10.0.0.1:7000,1=10.0.0.2:7000", dataDir: join(dir, "never") };
  assert.match(
    refusal(base),
    /^CONFIG: invalid setting listen: 10\.0\.0\.1:7000 is not a loopback address and TLS is off: without TLS a node listens on loopback only\. Give --tls-ca, --tls-cert and --tls-key .*or --insecure-listen \(insecureListen\)/,
  );
  assert.match(refusal({ ...base, listen: "0.0.0.0:7000" }), /0\.0\.0\.0:7000 is not a loopback address/);
  assert.equal(resolveServerConfig({ ...base, insecureListen: true }).insecureListen, true);
  assert.equal(resolveServerConfig({ ...base, listen: "127.0.0.1:7000" }).insecureListen, false);
  assert.match(
    refusal({ ...base, insecureListen: true, tlsCaFile: "a", tlsCertFile: "b", tlsKeyFile: "c" }),
    /invalid setting insecureListen: TLS is on .* drop --insecure-listen/,
  );
  assert.match(refusal({ ...base, insecureListen: "maybe" }), /insecureListen: expected true or false/);
});

test("raftkv serve on a non-loopback address without TLS exits 2 with one line naming --insecure-listen", async () => {
  const dataDir = join(dir, "refused");
  for (const args of [
    ["--peers", "0=10.11.12.13:7000"],
    ["--peers", "0=127.0.0.1:7000", "--listen", "0.0.0.0:7000"],
  ]) {
    const r = await runCli(["serve", "--id", "0", "--data-dir", dataDir, ...args]);
    assert.equal(r.code, 2, r.stderr);
    const lines = r.stderr.trim().split("\n");
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /^raftkv serve: CONFIG: invalid setting listen: .* is not a loopback address/);
    assert.match(lines[0]!, /--insecure-listen/);
    assert.equal(existsSync(dataDir), false, "nothing was created before the refusal");
  }
});

test("raftkv serve --insecure-listen logs at warn level that traffic is unauthenticated (and serves)", async () => {
  const [port] = await freePorts(1);
  const dataDir = join(dir, "insecure");
  const serve: ChildProcess = spawn(
    process.execPath,
    [
      ...["--import", import.meta.resolve("tsx"), join(ROOT, "src/cli/main.ts"), "serve"],
      ...["--id", "0", "--peers", `0=127.0.0.1:${port}`, "--data-dir", dataDir, "--insecure-listen"],
    ],
    { cwd: ROOT, stdio: "ignore" },
  );
  try {
    const line = await waitFor(
      "the warning in the node's log",
      () =>
        existsSync(join(dataDir, "raftkv.log"))
          ? readFileSync(join(dataDir, "raftkv.log"), "utf8")
              .split("\n")
              .find((l) => l.includes("insecureListen is set"))
          : undefined,
      30_000,
    );
    const entry = JSON.parse(line) as { level: number; msg: string };
    assert.equal(entry.level, 40, "warn");
    assert.match(
      entry.msg,
      /^TLS is off and insecureListen is set: traffic on 127\.0\.0\.1:\d+ is unauthenticated; anyone who reaches the port can read and write keys and disrupt the cluster/,
    );
    const put = await runCli(["put", "plain/k", "v", "--endpoints", `127.0.0.1:${port}`]);
    assert.equal(put.code, 0, put.stderr);
  } finally {
    serve.kill("SIGTERM");
    await new Promise((r) => serve.once("exit", r));
  }
});

test("plaintext on loopback without the flag starts with no such warning", async () => {
  const [port] = await freePorts(1);
  const dataDir = join(dir, "loopback");
  const serve: ChildProcess = spawn(
    process.execPath,
    [
      ...["--import", import.meta.resolve("tsx"), join(ROOT, "src/cli/main.ts"), "serve"],
      ...["--id", "0", "--peers", `0=127.0.0.1:${port}`, "--data-dir", dataDir],
    ],
    { cwd: ROOT, stdio: "ignore" },
  );
  try {
    await waitFor(
      "the node to start",
      () =>
        existsSync(join(dataDir, "raftkv.log")) &&
        readFileSync(join(dataDir, "raftkv.log"), "utf8").includes("node 0 started")
          ? true
          : undefined,
      30_000,
    );
    const put = await runCli(["put", "plain/k", "v", "--endpoints", `127.0.0.1:${port}`]);
    assert.equal(put.code, 0, put.stderr);
    assert.doesNotMatch(readFileSync(join(dataDir, "raftkv.log"), "utf8"), /insecureListen is set/);
  } finally {
    serve.kill("SIGTERM");
    await new Promise((r) => serve.once("exit", r));
  }
});
