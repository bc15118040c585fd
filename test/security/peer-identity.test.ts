// Peer identity (issue 12, finding 1): node certificates name their member (URI:raftkv://sec/member/<id>)
// and PeerService, stream and unary alike, accepts a connection only as that member. A client certificate
// of the cluster CA, another node's certificate claiming a different sender, a forged sender id inside a
// batch, and a node certificate of another cluster are each refused PERMISSION_DENIED, logged with the
// peer's address and counted in raftkv_peer_messages_refused_total{reason}; the leader they aim at stays
// leader in its term and serves. The forged message is an AppendEntries in the leader's own term, which
// crashed the leader before (AssertionError: two leaders in term N).

import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import type { AppendEntries } from "../../src/core/types.ts";
import { AppendEntriesRequest } from "../../src/gen/raftkv/v1/peer.ts";
import { RaftKvError } from "../../src/lib/errors.ts";
import { resolveServerConfig } from "../../src/server/config.ts";
import { loadServerTls, memberIdentities, peerIdentity, subjectAltNames } from "../../src/server/tls.ts";
import { encodeBatch, encodeMessage, toWire } from "../../src/transport/codec.ts";
import { type CertFiles, makeCa, nodeAltNames, type TestCa } from "./certs.ts";
import { freePorts, rawUnary, startCluster, type TestCluster, waitFor } from "./cluster.ts";

const STREAM = "/raftkv.v1.PeerService/Stream";
const APPEND = "/raftkv.v1.PeerService/AppendEntries";

let dir: string;
let ca: TestCa;
let nodeCerts: CertFiles[];
let clientCert: CertFiles;

before(() => {
  dir = mkdtempSync(join(tmpdir(), "raftkv-identity-"));
  ca = makeCa(dir, "cluster-ca");
  nodeCerts = [0, 1, 2].map((i) => ca.issue(`node-${i}`, nodeAltNames(i)));
  clientCert = ca.issue("client");
});
after(() => rmSync(dir, { recursive: true, force: true }));

function credentials(files: CertFiles): grpc.ChannelCredentials {
  return grpc.credentials.createSsl(
    readFileSync(ca.caFile),
    readFileSync(files.key),
    readFileSync(files.cert),
  );
}

/** An AppendEntries from `from` to `to` in `term`: a second leader's heartbeat. */
function forged(from: number, to: number, term: number): AppendEntries {
  return {
    type: "append",
    from,
    to,
    term,
    prevLogIndex: 0,
    prevLogTerm: 0,
    entries: [],
    leaderCommit: 0,
    round: 1,
  };
}

function unaryBytes(m: AppendEntries): Buffer {
  const body = toWire(m, "sec").body;
  assert.ok(body?.$case === "appendEntries");
  return Buffer.from(AppendEntriesRequest.encode(body.value).finish());
}

/** Opens PeerService/Stream with `files`, claiming `from` in the metadata, writes `batch`, half-closes;
 *  resolves with the stream's final status. */
async function stream(
  address: string,
  files: CertFiles,
  from: number,
  batch: Uint8Array,
): Promise<grpc.StatusObject> {
  const client = new grpc.Client(address, credentials(files));
  const md = new grpc.Metadata();
  md.set("raftkv-cluster-id", "sec");
  md.set("raftkv-from", String(from));
  const call = client.makeBidiStreamRequest(
    STREAM,
    (b: Buffer) => b,
    (b: Buffer) => b,
    md,
  );
  const status = new Promise<grpc.StatusObject>((resolve) => {
    call.on("status", resolve);
    call.on("error", () => {});
    call.on("data", () => {});
  });
  call.write(Buffer.from(batch));
  call.end();
  try {
    return await status;
  } finally {
    client.close();
  }
}

describe("a TLS cluster whose node certificates name their members", () => {
  let c: TestCluster;
  let leader: number;
  let term: number;
  /** A member other than the leader, whose id the forgeries claim. */
  let victim: number;
  /** The third node, whose (genuine) certificate the forger holds. */
  let holder: number;

  before(async () => {
    c = await startCluster({
      size: 3,
      // Long election timeouts: these tests assert that forged messages moved no leader, which a busy
      // machine's event-loop stalls must not do instead (a CI run beside a simulator run did, at 1-2 s).
      settings: { metricsPort: 0, heartbeatMs: 100, electionTimeoutMinMs: 4000, electionTimeoutMaxMs: 5000 },
      perNode: (id) => ({
        tlsCaFile: ca.caFile,
        tlsCertFile: nodeCerts[id]!.cert,
        tlsKeyFile: nodeCerts[id]!.key,
      }),
    });
    leader = await c.leader();
    term = c.nodes[leader]!.view().term;
    victim = (leader + 1) % 3;
    holder = (leader + 2) % 3;
  });
  after(() => c.close());

  const client = () =>
    c.client({ tls: { caFile: ca.caFile, certFile: clientCert.cert, keyFile: clientCert.key } });

  async function refusedCount(reason: string): Promise<number> {
    const text = await (await fetch(`http://127.0.0.1:${c.nodes[leader]!.metricsPort}/metrics`)).text();
    const line = text
      .split("\n")
      .find((l) => l.startsWith(`raftkv_peer_messages_refused_total{reason="${reason}"}`));
    return line === undefined ? 0 : Number(line.split(" ").pop());
  }

  async function refusalLine(reason: string): Promise<string> {
    return waitFor(`the ${reason} refusal in node ${leader}'s log`, () =>
      c
        .log(leader)
        .split("\n")
        .find((l) => l.includes("refused a peer message") && l.includes(`"reason":"${reason}"`)),
    );
  }

  function assertLeaderUnmoved(): void {
    const v = c.nodes[leader]!.view();
    assert.equal(v.role, "leader", "the leader is still leader");
    assert.equal(v.term, term, "in the same term");
  }

  test("the cluster elects and serves over TLS with member identities", async () => {
    const kv = client();
    await kv.put("identity/k", "v");
    assert.equal(await kv.getString("identity/k"), "v");
    const status = await kv.clusterStatus();
    assert.equal(status.filter((r) => r.ok).length, 3);
  });

  test("a client certificate is refused on PeerService (Stream and unary): PERMISSION_DENIED noPeerIdentity", async () => {
    const before = await refusedCount("noPeerIdentity");
    const address = c.addresses[leader]!;
    const m = forged(victim, leader, term);
    const s = await stream(address, clientCert, victim, encodeBatch([encodeMessage(m, "sec")]));
    assert.equal(s.code, grpc.status.PERMISSION_DENIED, s.details);
    assert.match(
      s.details,
      /^noPeerIdentity: certificate \(subject CN=client, issuer CN=cluster-ca\) names no member identity \(a client certificate\?\): peer calls need a node certificate with subjectAltName URI:raftkv:\/\/sec\/member\/<id>/,
    );
    const u = await rawUnary(address, APPEND, unaryBytes(m), { credentials: credentials(clientCert) });
    assert.equal(u.status, grpc.status.PERMISSION_DENIED, u.details);
    assert.match(u.details, /^noPeerIdentity: certificate \(subject CN=client/);
    assert.equal(await refusedCount("noPeerIdentity"), before + 2);
    const line = await refusalLine("noPeerIdentity");
    assert.match(line, /"peerAddress":"127\.0\.0\.1:\d+"/);
    assert.match(line, new RegExp(`"from":${victim}`), "the sender it claimed");
    assertLeaderUnmoved();
  });

  test("another node's certificate cannot open a stream as a different member: PERMISSION_DENIED senderMismatch", async () => {
    const before = await refusedCount("senderMismatch");
    const m = forged(victim, leader, term);
    const s = await stream(
      c.addresses[leader]!,
      nodeCerts[holder]!,
      victim,
      encodeBatch([encodeMessage(m, "sec")]),
    );
    assert.equal(s.code, grpc.status.PERMISSION_DENIED, s.details);
    assert.equal(
      s.details,
      `senderMismatch: stream claims to come from node "${victim}", the connection is member ${holder}'s`,
    );
    assert.equal(await refusedCount("senderMismatch"), before + 1);
    assert.match(await refusalLine("senderMismatch"), /"peerAddress":"127\.0\.0\.1:\d+"/);
    assertLeaderUnmoved();
  });

  test("a forged sender id in a batch or a unary call is refused: PERMISSION_DENIED senderMismatch", async () => {
    const before = await refusedCount("senderMismatch");
    const address = c.addresses[leader]!;
    const m = forged(victim, leader, term);
    // The stream is opened honestly as the holder; the message inside claims the victim.
    const s = await stream(address, nodeCerts[holder]!, holder, encodeBatch([encodeMessage(m, "sec")]));
    assert.equal(s.code, grpc.status.PERMISSION_DENIED, s.details);
    assert.equal(
      s.details,
      `senderMismatch: message claims to come from node ${victim}, the connection is member ${holder}'s`,
    );
    const u = await rawUnary(address, APPEND, unaryBytes(m), {
      credentials: credentials(nodeCerts[holder]!),
    });
    assert.equal(u.status, grpc.status.PERMISSION_DENIED, u.details);
    assert.equal(
      u.details,
      `senderMismatch: message claims to come from node ${victim}, the connection is member ${holder}'s`,
    );
    assert.equal(await refusedCount("senderMismatch"), before + 2);
    assertLeaderUnmoved();
    const kv = client();
    await kv.put("identity/after", "v");
    assert.equal(await kv.getString("identity/after"), "v");
  });

  test("a node certificate of another cluster, or naming this node, is refused", async () => {
    const address = c.addresses[leader]!;
    const m = forged(victim, leader, term);
    const foreign = ca.issue("node-other", nodeAltNames(victim, "other"));
    const u = await rawUnary(address, APPEND, unaryBytes(m), { credentials: credentials(foreign) });
    assert.equal(u.status, grpc.status.PERMISSION_DENIED);
    assert.match(
      u.details,
      new RegExp(
        `^noPeerIdentity: certificate .* names raftkv://other/member/${victim}, no member of cluster "sec"`,
      ),
    );
    const own = await rawUnary(address, APPEND, unaryBytes(m), {
      credentials: credentials(nodeCerts[leader]!),
    });
    assert.equal(own.status, grpc.status.PERMISSION_DENIED);
    assert.equal(own.details, `fromSelf: the connection's certificate names this node (member ${leader})`);
    assertLeaderUnmoved();
  });

  test("the genuine peers' traffic is never refused", async () => {
    for (const reason of ["noPeerIdentity", "senderMismatch", "fromSelf"]) {
      // Each refusal above came from the test's own connections: the followers' logs have none.
      for (const id of [victim, holder])
        assert.doesNotMatch(c.log(id), new RegExp(`"reason":"${reason}"`), `node ${id}: ${reason}`);
    }
  });
});

describe("a node's own certificate must name its member identity, checked at start", () => {
  async function refusal(certFiles: CertFiles, id = 0): Promise<string> {
    const [port] = await freePorts(1);
    const config = resolveServerConfig({
      id,
      peers: `${id}=127.0.0.1:${port}`,
      dataDir: join(dir, "never"),
      clusterId: "sec",
      tlsCaFile: ca.caFile,
      tlsCertFile: certFiles.cert,
      tlsKeyFile: certFiles.key,
    });
    try {
      loadServerTls(config, id, config.clusterId, `127.0.0.1:${port}`, new Date());
    } catch (e) {
      assert.ok(e instanceof RaftKvError);
      assert.equal(e.code, "CONFIG");
      return e.message;
    }
    assert.fail("expected a refusal");
  }

  test("no identity, another member's, another cluster's, or several: refused naming tlsCertFile and the URI", async () => {
    assert.match(
      await refusal(clientCert),
      /^CONFIG: invalid setting tlsCertFile: the certificate in .*cluster-ca-client\.crt names no member identity, not this node's alone \(raftkv:\/\/sec\/member\/0\); .*Issue it with subjectAltName URI:raftkv:\/\/sec\/member\/0/,
    );
    assert.match(
      await refusal(nodeCerts[1]!),
      /the certificate in .*node-1\.crt names raftkv:\/\/sec\/member\/1, not this node's alone/,
    );
    assert.match(
      await refusal(ca.issue("node-0-other", nodeAltNames(0, "other"))),
      /names raftkv:\/\/other\/member\/0, not this node's alone/,
    );
    const both = ca.issue("node-01", `${nodeAltNames(0)},URI:raftkv://sec/member/1`);
    assert.match(
      await refusal(both),
      /names raftkv:\/\/sec\/member\/0, raftkv:\/\/sec\/member\/1, not this node's alone/,
    );
  });

  test("subjectAltName as Node prints it: quoted values, percent-encoded cluster ids", () => {
    assert.deepEqual(subjectAltNames('DNS:a, URI:"raftkv://x,y/member/1", IP Address:127.0.0.1'), [
      { kind: "DNS", value: "a" },
      { kind: "URI", value: "raftkv://x,y/member/1" },
      { kind: "IP Address", value: "127.0.0.1" },
    ]);
    assert.deepEqual(memberIdentities("URI:raftkv://my%20cluster/member/7, URI:https://example/member/1"), [
      { clusterId: "my cluster", id: 7 },
    ]);
    assert.deepEqual(memberIdentities("URI:raftkv://sec/member/1x, URI:raftkv://sec/members/1"), []);
    assert.deepEqual(peerIdentity(undefined, "sec"), {
      ok: false,
      detail: "no certificate signed by the cluster CA",
    });
  });
});
