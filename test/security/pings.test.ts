// Lock-out by pings (issue 12, finding 7): HTTP/2 connections that send PING, SETTINGS and WINDOW_UPDATE
// frames but never make a call do not hold the node's maxConnections: the oldest is evicted for each new
// client, which is served, and a connection that made a call is never evicted. A real `raftkv serve`
// process in plaintext, and an in-process TLS node where the pingers hold a client certificate.

import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import http2 from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { RaftKvClient } from "../../src/client/index.ts";
import { freePorts, TestCluster, waitFor } from "../e2e/harness.ts";
import { makeCa, nodeAltNames } from "./certs.ts";
import { startCluster } from "./cluster.ts";

const MAX_CONNECTIONS = 32;

interface Pinger {
  readonly session: http2.ClientHttp2Session;
  /** Ping round trips completed. */
  pongs: number;
  closed: boolean;
  stop(): void;
}

/** An HTTP/2 connection that never makes a call: it changes its settings and window, then pings every
 *  `everyMs`. `options` are http2.connect's (TLS material for https). */
function pinger(url: string, options: http2.SecureClientSessionOptions = {}, everyMs = 100): Pinger {
  const session = http2.connect(url, options);
  const p: Pinger = {
    session,
    pongs: 0,
    closed: false,
    stop: () => {
      clearInterval(timer);
      session.destroy();
    },
  };
  session.on("error", () => {});
  session.on("close", () => {
    p.closed = true;
    clearInterval(timer);
  });
  session.on("connect", () => {
    session.settings({ initialWindowSize: 1 << 20 });
    session.setLocalWindowSize(4 << 20);
  });
  const ping = (): void => {
    if (p.closed || session.destroyed) return;
    session.ping((err) => {
      if (err === null) p.pongs++;
    });
  };
  const timer = setInterval(ping, everyMs);
  for (let i = 0; i < 8; i++) ping(); // well past the 128 bytes that once meant "used"
  return p;
}

async function metric(port: number, name: string, labels: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? 0 : Number(line.split(" ").pop());
}

/** Opens `n` pingers and waits until each has had `pongs` answers (so the node has read their frames). */
async function openPingers(
  n: number,
  url: string,
  options: http2.SecureClientSessionOptions = {},
  pongs = 8,
): Promise<Pinger[]> {
  const all: Pinger[] = [];
  for (let i = 0; i < n; i++) all.push(pinger(url, options));
  await waitFor(`${n} pingers answered ${pongs} times`, () =>
    all.every((p) => p.pongs >= pongs || p.closed) ? true : undefined,
  );
  return all;
}

test("a real node with maxConnections full of pinging connections still serves a new client; pingers are evicted oldest first", {
  timeout: 120_000,
}, async () => {
  const [metricsPort] = await freePorts(1);
  const cluster = await TestCluster.start({
    nodes: 1,
    serveArgs: ["--metrics-port", String(metricsPort), "--set", `maxConnections=${MAX_CONNECTIONS}`],
  });
  const pingers: Pinger[] = [];
  try {
    await cluster.waitForLeader();
    const address = cluster.node(0).address;
    // (The leader check's own connection may still be closing, so one pinger may already be gone.)
    pingers.push(...(await openPingers(MAX_CONNECTIONS, `http://${address}`)));
    const evictedBefore = await metric(
      metricsPort!,
      "raftkv_connections_refused_total",
      'reason="evictedIdle"',
    );
    // The oldest pinger still open (one may be gone already, see above): the new client's connection
    // evicts it.
    const oldest = pingers.find((p) => !p.closed)!;
    const client = cluster.client([address], 10_000);
    await client.put("pings/k", "v");
    assert.equal(await client.getString("pings/k"), "v");
    await waitFor("the oldest pinger to be closed", () => (oldest.closed ? true : undefined));
    assert.ok(
      (await metric(metricsPort!, "raftkv_connections_refused_total", 'reason="evictedIdle"')) >
        evictedBefore,
    );
    // Another full wave of pingers evicts pingers, never the client's connection, which made calls.
    pingers.push(...(await openPingers(MAX_CONNECTIONS, `http://${address}`)));
    await client.put("pings/k", "w");
    assert.equal(await client.getString("pings/k"), "w");
    assert.equal(
      await metric(metricsPort!, "raftkv_connections_refused_total", 'reason="tooManyConnections"'),
      0,
      "nobody was refused: every newcomer found a pinger to evict",
    );
    client.close();
  } finally {
    for (const p of pingers) p.stop();
    await cluster.close();
  }
});

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), "raftkv-pings-"));
});
after(() => rmSync(dir, { recursive: true, force: true }));

test("with TLS required, connections that completed a handshake with a client certificate but only ping are evictable", async () => {
  const ca = makeCa(dir, "ca");
  const node = ca.issue("node-0", nodeAltNames(0));
  const clientCert = ca.issue("client");
  const c = await startCluster({
    size: 1,
    settings: { maxConnections: 8, metricsPort: 0 },
    perNode: () => ({ tlsCaFile: ca.caFile, tlsCertFile: node.cert, tlsKeyFile: node.key }),
  });
  const pingers: Pinger[] = [];
  try {
    await c.leader();
    const tlsOptions = {
      ca: readFileSync(ca.caFile),
      cert: readFileSync(clientCert.cert),
      key: readFileSync(clientCert.key),
      servername: "localhost",
    };
    pingers.push(...(await openPingers(8, `https://${c.addresses[0]}`, tlsOptions)));
    const oldest = pingers.find((p) => !p.closed)!;
    const kv = new RaftKvClient({
      endpoints: [c.addresses[0]!],
      timeoutMs: 10_000,
      tls: { caFile: ca.caFile, certFile: clientCert.cert, keyFile: clientCert.key },
    });
    try {
      await kv.put("pings/tls", "v");
      assert.equal(await kv.getString("pings/tls"), "v");
    } finally {
      kv.close();
    }
    await waitFor("the oldest pinger to be closed", () => (oldest.closed ? true : undefined));
    const line = c
      .log(0)
      .split("\n")
      .find((l) => l.includes('"reason":"evictedIdle"'));
    assert.match(
      line ?? "",
      /closed to make room: 8 connections \(maxConnections\) and this one never made a call/,
    );
  } finally {
    for (const p of pingers) p.stop();
    await c.close();
  }
});
