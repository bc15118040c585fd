// Mutual TLS: certificates made with openssl at test time; a TLS cluster serves a client with a good
// certificate, refuses one without a certificate, with another CA's or in plaintext (logging the address
// and why), keeps a peer with a foreign certificate out while the good nodes elect, and the CLI flags work.

import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import { RaftKvClient } from "../../src/client/index.ts";
import { RaftKvError } from "../../src/lib/errors.ts";
import { resolveServerConfig } from "../../src/server/config.ts";
import { startNode } from "../../src/server/node.ts";
import { loadServerTls } from "../../src/server/tls.ts";
import { runCli } from "../e2e/harness.ts";
import { type CertFiles, makeCa, nodeAltNames, type TestCa } from "./certs.ts";
import { freePorts, rawUnary, startCluster, type TestCluster, waitFor } from "./cluster.ts";

let dir: string;
let ca: TestCa;
let other: TestCa;
let nodeCerts: CertFiles[];
let clientCert: CertFiles;
let foreignClient: CertFiles;

before(() => {
  dir = mkdtempSync(join(tmpdir(), "raftkv-certs-"));
  ca = makeCa(dir, "cluster-ca");
  other = makeCa(dir, "other-ca");
  nodeCerts = [0, 1, 2].map((i) => ca.issue(`node-${i}`, nodeAltNames(i)));
  clientCert = ca.issue("client");
  foreignClient = other.issue("client");
});

after(() => rmSync(dir, { recursive: true, force: true }));

/** One attempt at one node, long enough for the connection to fail rather than time out. */
const ONE_ATTEMPT = { maxAttempts: 1, timeoutMs: 5000, attemptTimeoutMs: 5000 } as const;
/** What such a client sees: the node closed the connection (its log says why). */
const REFUSED = { code: "UNAVAILABLE", message: /failed: no node could be reached/ } as const;

function tlsSettings(id: number, files: CertFiles[] = nodeCerts): Record<string, unknown> {
  return { tlsCaFile: ca.caFile, tlsCertFile: files[id]!.cert, tlsKeyFile: files[id]!.key };
}

/** The first line of `log` about a refused connection whose text matches `re`. */
function refusalLine(log: string, re: RegExp): string | undefined {
  return log.split("\n").find((l) => l.includes("refused a connection") && re.test(l));
}

async function metricValue(port: number | null, name: string, labels: string): Promise<number> {
  assert.ok(port !== null, "metrics are enabled");
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? 0 : Number(line.split(" ").pop());
}

describe("a TLS cluster with tlsClientAuth required", () => {
  let c: TestCluster;

  before(async () => {
    c = await startCluster({ size: 3, settings: { metricsPort: 0 }, perNode: (id) => tlsSettings(id) });
    await c.leader();
  });
  after(() => c.close());

  test("a client with a certificate from the cluster CA reads and writes", async () => {
    const good = c.client({ tls: { caFile: ca.caFile, certFile: clientCert.cert, keyFile: clientCert.key } });
    await good.put("tls/k", "v");
    assert.equal(await good.getString("tls/k"), "v");
    const status = await good.clusterStatus();
    assert.equal(status.filter((r) => r.ok).length, 3, "every node answers over TLS");
  });

  test("a client without a certificate is refused, and the node logs its address and why", async () => {
    const anon = c.client({ endpoints: [c.addresses[0]!], tls: { caFile: ca.caFile }, ...ONE_ATTEMPT });
    await assert.rejects(anon.put("tls/anon", "v"), REFUSED);
    const line = await waitFor("the refusal in node 0's log", () =>
      refusalLine(c.log(0), /no client certificate \(tlsClientAuth required\)/),
    );
    assert.match(line, /"reason":"noCertificate","peerAddress":"127\.0\.0\.1:\d+"/);
    assert.ok(
      (await metricValue(
        c.nodes[0]!.metricsPort,
        "raftkv_connections_refused_total",
        'reason="noCertificate"',
      )) >= 1,
    );
  });

  test("a client with a certificate from another CA is refused: not signed by the cluster CA", async () => {
    const foreign = c.client({
      endpoints: [c.addresses[1]!],
      tls: { caFile: ca.caFile, certFile: foreignClient.cert, keyFile: foreignClient.key },
      ...ONE_ATTEMPT,
    });
    await assert.rejects(foreign.get("tls/k"), REFUSED);
    const line = await waitFor("the refusal in node 1's log", () =>
      refusalLine(c.log(1), /issuer CN=other-ca.*not signed by the cluster CA/),
    );
    assert.match(line, /"reason":"untrustedCertificate","peerAddress":"127\.0\.0\.1:\d+"/);
  });

  test("a plaintext client is refused at the handshake", async () => {
    const plain = c.client({ endpoints: [c.addresses[2]!], ...ONE_ATTEMPT });
    await assert.rejects(plain.get("tls/k"), REFUSED);
    await waitFor("the refusal in node 2's log", () => refusalLine(c.log(2), /"reason":"tlsHandshake"/));
  });

  test("a client that trusts another CA does not accept the nodes' certificates", async () => {
    const wrongCa = c.client({
      tls: { caFile: other.caFile, certFile: clientCert.cert, keyFile: clientCert.key },
      ...ONE_ATTEMPT,
    });
    await assert.rejects(wrongCa.get("tls/k"), REFUSED);
  });
});

test("a peer with a foreign certificate cannot join; the good nodes elect and serve without it", async () => {
  // The rogue trusts the cluster CA too (a bundle of both), so it completes handshakes and presents its
  // own certificate, which the good nodes must refuse.
  const rogue = other.issue("node-2", nodeAltNames(2));
  const bundle = join(dir, "both-cas.crt");
  writeFileSync(bundle, Buffer.concat([readFileSync(other.caFile), readFileSync(ca.caFile)]));
  const c = await startCluster({
    size: 3,
    settings: { metricsPort: 0 },
    perNode: (id) =>
      id === 2 ? { tlsCaFile: bundle, tlsCertFile: rogue.cert, tlsKeyFile: rogue.key } : tlsSettings(id),
  });
  try {
    const leader = await c.leader();
    assert.notEqual(leader, 2);
    const good = c.client({
      endpoints: [c.addresses[0]!, c.addresses[1]!],
      tls: { caFile: ca.caFile, certFile: clientCert.cert, keyFile: clientCert.key },
    });
    const w = await good.put("peer/k", "v");
    assert.ok(w.index > 0);
    for (const id of [0, 1]) {
      const line = await waitFor(`node ${id} refusing node 2`, () =>
        refusalLine(c.log(id), /subject CN=node-2, issuer CN=other-ca\): not signed by the cluster CA/),
      );
      assert.match(line, /"reason":"untrustedCertificate","peerAddress":"127\.0\.0\.1:\d+"/);
    }
    const rogueView = c.nodes[2]!.view();
    assert.equal(rogueView.appliedIndex, 0, "nothing replicated to the rogue node");
    assert.notEqual(rogueView.role, "leader");
    assert.equal(c.nodes[leader]!.view().peers.find((p) => p.id === 2)?.connected, false);
    const refusals = await metricValue(
      c.nodes[0]!.metricsPort,
      "raftkv_connections_refused_total",
      'reason="untrustedCertificate"',
    );
    assert.ok(refusals >= 1);
  } finally {
    await c.close();
  }
});

test("a peer that trusts only another CA aborts its own handshakes; the good nodes log them", async () => {
  const rogue = other.issue("node-2-only", nodeAltNames(2));
  const c = await startCluster({
    size: 3,
    perNode: (id) =>
      id === 2
        ? { tlsCaFile: other.caFile, tlsCertFile: rogue.cert, tlsKeyFile: rogue.key }
        : tlsSettings(id),
  });
  try {
    assert.notEqual(await c.leader(), 2);
    const line = await waitFor("node 0 logging node 2's failed handshake", () =>
      refusalLine(
        c.log(0),
        /"reason":"tlsHandshake".*hung up during the TLS handshake: does it trust this node's certificate/,
      ),
    );
    assert.match(line, /"peerAddress":"127\.0\.0\.1:\d+"/);
    assert.equal(c.nodes[2]!.view().appliedIndex, 0);
  } finally {
    await c.close();
  }
});

test("tlsClientAuth none: clients need no certificate, PeerService still does (UNAUTHENTICATED, logged)", async () => {
  const c = await startCluster({
    size: 3,
    settings: { tlsClientAuth: "none" },
    perNode: (id) => tlsSettings(id),
  });
  try {
    await c.leader();
    const anon = c.client({ tls: { caFile: ca.caFile } });
    await anon.put("none/k", "v");
    assert.equal(await anon.getString("none/k"), "v");
    const md = new grpc.Metadata();
    md.set("raftkv-from", "1");
    const r = await rawUnary(c.addresses[0]!, "/raftkv.v1.PeerService/RequestVote", new Uint8Array([8, 1]), {
      credentials: grpc.credentials.createSsl(readFileSync(ca.caFile)),
      metadata: md,
    });
    assert.equal(r.status, grpc.status.UNAUTHENTICATED);
    assert.match(
      r.details,
      /accepts peer traffic only from nodes with a certificate signed by the cluster CA/,
    );
    const line = await waitFor("the peer-call refusal in node 0's log", () =>
      refusalLine(c.log(0), /"reason":"peerNotAuthenticated"/),
    );
    assert.match(line, /PeerService\/RequestVote refused: no client certificate/);
    assert.match(line, /"claimedNode":"1"/);
  } finally {
    await c.close();
  }
});

test("tlsClientAuth optional: no certificate is fine, a foreign one is refused", async () => {
  const c = await startCluster({
    size: 1,
    settings: { tlsClientAuth: "optional" },
    perNode: (id) => tlsSettings(id),
  });
  try {
    await c.leader();
    const anon = c.client({ tls: { caFile: ca.caFile } });
    await anon.put("opt/k", "v");
    const withCert = c.client({
      tls: { caFile: ca.caFile, certFile: clientCert.cert, keyFile: clientCert.key },
    });
    assert.equal(await withCert.getString("opt/k"), "v");
    const foreign = c.client({
      tls: { caFile: ca.caFile, certFile: foreignClient.cert, keyFile: foreignClient.key },
      ...ONE_ATTEMPT,
    });
    await assert.rejects(foreign.get("opt/k"), REFUSED);
    await waitFor("the refusal", () => refusalLine(c.log(0), /untrustedCertificate.*tlsClientAuth optional/));
  } finally {
    await c.close();
  }
});

test("a connection that never finishes its TLS handshake is dropped after tlsHandshakeTimeoutMs, and logged", async () => {
  const c = await startCluster({
    size: 1,
    settings: { tlsHandshakeTimeoutMs: 300 },
    perNode: (id) => tlsSettings(id),
  });
  try {
    const [host, port] = c.addresses[0]!.split(":");
    const started = performance.now();
    const socket = net.connect(Number(port), host!);
    socket.resume();
    socket.on("error", () => {});
    await new Promise<void>((r) => socket.once("close", () => r()));
    const ms = performance.now() - started;
    assert.ok(ms >= 250 && ms < 5000, `closed after ${Math.round(ms)} ms`);
    const line = await waitFor("the log line", () =>
      refusalLine(c.log(0), /TLS handshake not finished in time/),
    );
    assert.match(line, /"reason":"tlsHandshake","peerAddress":"127\.0\.0\.1:\d+"/);
    await c.leader();
    const kv = c.client({ tls: { caFile: ca.caFile, certFile: clientCert.cert, keyFile: clientCert.key } });
    await kv.put("after/idle", "v");
  } finally {
    await c.close();
  }
});

describe("TLS settings are checked at start, naming the setting and the file", () => {
  async function refusal(over: Record<string, unknown>): Promise<string> {
    const [port] = await freePorts(1);
    const settings = { id: 0, peers: `0=127.0.0.1:${port}`, dataDir: join(dir, "never"), ...over };
    try {
      const config = resolveServerConfig(settings);
      loadServerTls(config, 0, config.clusterId, `127.0.0.1:${port}`, new Date());
    } catch (e) {
      assert.ok(e instanceof RaftKvError);
      assert.equal(e.code, "CONFIG");
      return e.message;
    }
    assert.fail("expected a refusal");
  }

  test("all three files or none; tlsClientAuth needs TLS", async () => {
    assert.match(
      await refusal({ tlsCaFile: ca.caFile, tlsCertFile: nodeCerts[0]!.cert }),
      /invalid setting tlsKeyFile: TLS needs tlsCaFile, tlsCertFile and tlsKeyFile together; tlsKeyFile missing/,
    );
    assert.match(
      await refusal({ tlsClientAuth: "optional" }),
      /invalid setting tlsClientAuth: client authentication needs TLS/,
    );
    assert.match(
      await refusal({ ...tlsSettings(0), tlsClientAuth: "maybe" }),
      /invalid setting tlsClientAuth: expected one of none, optional, required, got "maybe"/,
    );
  });

  test("unreadable or non-PEM files", async () => {
    assert.match(
      await refusal({ ...tlsSettings(0), tlsKeyFile: join(dir, "missing.key") }),
      /invalid setting tlsKeyFile: cannot read .*missing\.key: ENOENT/,
    );
    assert.match(
      await refusal({ ...tlsSettings(0), tlsCaFile: join(dir, "cluster-ca-node-0.ext") }),
      /invalid setting tlsCaFile: .*cluster-ca-node-0\.ext is not a PEM file \(no "-----BEGIN" line\)/,
    );
  });

  test("a key that is not the certificate's, and a certificate the CA did not sign", async () => {
    assert.match(
      await refusal({ ...tlsSettings(0), tlsKeyFile: nodeCerts[1]!.key }),
      /invalid setting tlsKeyFile: the key in .* does not belong to the certificate in .*node-0\.crt/,
    );
    const rogue = other.issue("node-0b", nodeAltNames(0));
    assert.match(
      await refusal({ ...tlsSettings(0), tlsCertFile: rogue.cert, tlsKeyFile: rogue.key }),
      /invalid setting tlsCertFile: .*node-0b\.crt \(CN=node-0b\) is not signed by the CA in .*cluster-ca\.crt \(CN=cluster-ca\)/,
    );
  });

  test("a certificate that does not name the host the node is reached at", async () => {
    const dnsOnly = ca.issue("node-dns", "DNS:node0.example");
    assert.match(
      await refusal({ ...tlsSettings(0), tlsCertFile: dnsOnly.cert, tlsKeyFile: dnsOnly.key }),
      /invalid setting tlsCertFile: the certificate in .* does not name 127\.0\.0\.1 \(its subjectAltName: DNS:node0\.example\).*subjectAltName IP:127\.0\.0\.1/,
    );
  });

  test("startNode refuses before it opens the data folder's listener", async () => {
    const [port] = await freePorts(1);
    const config = resolveServerConfig({
      id: 0,
      peers: `0=127.0.0.1:${port}`,
      dataDir: join(dir, "refused-node"),
      ...tlsSettings(0),
      tlsKeyFile: nodeCerts[2]!.key,
    });
    await assert.rejects(startNode(config, { logToStderr: false }), {
      code: "CONFIG",
      message: /tlsKeyFile/,
    });
  });
});

test("the CLI: serve --tls-* and put/get --tls-* against a TLS node", { timeout: 60_000 }, async () => {
  const [port] = await freePorts(1);
  const address = `127.0.0.1:${port}`;
  const root = fileURLToPath(new URL("../../", import.meta.url));
  const serve: ChildProcess = spawn(
    process.execPath,
    [
      ...["--import", import.meta.resolve("tsx"), join(root, "src/cli/main.ts"), "serve", "--id", "0"],
      ...["--peers", `0=${address}`, "--cluster-id", "sec", "--data-dir", join(dir, "cli-node")],
      ...["--tls-ca", ca.caFile],
      ...["--tls-cert", nodeCerts[0]!.cert, "--tls-key", nodeCerts[0]!.key, "--tls-client-auth", "required"],
    ],
    { cwd: root, stdio: "ignore" },
  );
  try {
    const tlsArgs = ["--tls-ca", ca.caFile, "--tls-cert", clientCert.cert, "--tls-key", clientCert.key];
    await waitFor(
      "the TLS node to take a write",
      async () =>
        (await runCli(["put", "cli/k", "v", "--endpoints", address, ...tlsArgs])).code === 0
          ? true
          : undefined,
      30_000,
      300,
    );
    const got = await runCli(["get", "cli/k", "--endpoints", address, ...tlsArgs]);
    assert.equal(got.code, 0);
    assert.equal(got.stdout, "v\n");
    assert.doesNotMatch(got.stderr, /DeprecationWarning/, "the CLI keeps gRPC's IP-servername warning quiet");
    const refused = await runCli([
      "get",
      "cli/k",
      "--endpoints",
      address,
      "--tls-ca",
      ca.caFile,
      "--timeout",
      "1s",
    ]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /raftkv get: UNAVAILABLE: get failed: no node could be reached/);
    const usage = await runCli(["get", "cli/k", "--endpoints", address, "--tls-cert", clientCert.cert]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /--tls-cert and --tls-key need --tls-ca/);
  } finally {
    if (serve.exitCode === null && serve.signalCode === null) {
      serve.kill("SIGTERM");
      await new Promise((r) => serve.once("exit", r));
    }
  }
});

test("RaftKvClient refuses half a TLS configuration, naming the option", () => {
  assert.throws(
    () =>
      new RaftKvClient({ endpoints: ["127.0.0.1:1"], tls: { caFile: ca.caFile, certFile: clientCert.cert } }),
    {
      code: "INVALID_ARGUMENT",
      message: /invalid client option tls\.key: a client certificate and its key go together/,
    },
  );
  assert.throws(
    () => new RaftKvClient({ endpoints: ["127.0.0.1:1"], tls: { caFile: join(dir, "nope.pem") } }),
    {
      code: "INVALID_ARGUMENT",
      message: /invalid client option tls\.caFile: cannot read .*nope\.pem/,
    },
  );
});
