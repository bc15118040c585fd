// The listener's own refusals at start: a port in use is a CONFIG error naming the address, and the
// node releases its data folder so that it starts once the port is free.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { resolveServerConfig } from "../../src/server/config.ts";
import { startNode } from "../../src/server/node.ts";
import { freePorts } from "./cluster.ts";

test("a port in use: CONFIG naming the address; the node starts once it is free", async () => {
  const dir = mkdtempSync(join(tmpdir(), "raftkv-listen-"));
  const [port] = await freePorts(1);
  const squatter = net.createServer();
  await new Promise<void>((r) => squatter.listen(port, "127.0.0.1", () => r()));
  const config = resolveServerConfig({ id: 0, peers: `0=127.0.0.1:${port}`, dataDir: dir, logLevel: "warn" });
  try {
    await assert.rejects(startNode(config, { logToStderr: false }), {
      code: "CONFIG",
      message: new RegExp(
        `^CONFIG: cannot listen on 127\\.0\\.0\\.1:${port}: listen EADDRINUSE.*\\(node 0\\); is another process using the port\\? pick a free --listen address`,
      ),
    });
    await new Promise((r) => squatter.close(r));
    const node = await startNode(config, { logToStderr: false });
    assert.equal(node.listenAddress, `127.0.0.1:${port}`);
    await node.stop("test over");
  } finally {
    squatter.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a port held for an instant (an outgoing connection's ephemeral port, say): the node waits and starts", async () => {
  const dir = mkdtempSync(join(tmpdir(), "raftkv-listen-"));
  const [port] = await freePorts(1);
  const squatter = net.createServer();
  await new Promise<void>((r) => squatter.listen(port, "127.0.0.1", () => r()));
  const config = resolveServerConfig({ id: 0, peers: `0=127.0.0.1:${port}`, dataDir: dir, logLevel: "warn" });
  // Gone well within ADDRESS_IN_USE_RETRY_MS (2 s): the node keeps trying and gets the port.
  const leaving = setTimeout(() => squatter.close(), 300);
  try {
    const node = await startNode(config, { logToStderr: false });
    assert.equal(node.listenAddress, `127.0.0.1:${port}`);
    await node.stop("test over");
  } finally {
    clearTimeout(leaving);
    squatter.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
