// The dashboard's server side on a real operator port, over a node of the test's own (state, events,
// a registry, transfers) and an in-memory key store: the page and its files, the event stream and its
// bounds, the key browser, who may use it (loopback and Host without TLS; TLS with a client
// certificate), cross-origin rules, and leadership transfer behind `raftkv local`'s token.

import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { votersOnly } from "../../src/core/membership.ts";
import { encodeMvccCommand } from "../../src/kv/mvcc-codec.ts";
import type { KvRange } from "../../src/kv/state-machine.ts";
import { StoreStateMachine } from "../../src/kv/store-state-machine.ts";
import { RaftKvError } from "../../src/lib/errors.ts";
import type { NodeView } from "../../src/server/node-view.ts";
import { type OperatorServer, startOperatorServer } from "../../src/server/operator-http.ts";
import { MemStore } from "../../src/store/mem-store.ts";
import { Dashboard, type DashboardOptions, loadAssets } from "../../src/ui/dashboard.ts";
import type { KeyOps } from "../../src/ui/key-browser.ts";
import { makeCa } from "../security/certs.ts";
import { FakeNode } from "./fake-node.ts";

/** Keys in a sorted in-memory map; writes refused as NOT_LEADER when `leader` is false. */
class MemKeys implements KeyOps {
  readonly data = new Map<string, Uint8Array>();
  leader = true;
  private revision = 0;

  async range(prefix: string, limit: number, _c: unknown, startAfter?: string): Promise<KvRange> {
    const keys = [...this.data.keys()]
      .filter((k) => k.startsWith(prefix) && (startAfter === undefined || k > startAfter))
      .sort();
    return {
      entries: keys.slice(0, limit).map((key) => ({ key, value: this.data.get(key)! })),
      more: keys.length > limit,
    };
  }

  async get(key: string): Promise<Uint8Array | null> {
    return this.data.get(key) ?? null;
  }

  async put(key: string, value: Uint8Array) {
    this.check();
    this.data.set(key, value);
    return { revision: ++this.revision, result: { type: "put" } } as never;
  }

  async delete(key: string) {
    this.check();
    this.data.delete(key);
    return { revision: ++this.revision, result: { type: "delete" } } as never;
  }

  private check(): void {
    if (!this.leader)
      throw new RaftKvError({
        code: "NOT_LEADER",
        message: "node 0 is not the leader; node 1 is",
        nodeId: 0,
      });
  }
}

interface Answer {
  readonly status: number;
  readonly headers: IncomingMessage["headers"];
  readonly body: string;
}

function call(
  port: number,
  path: string,
  o: { method?: string; headers?: Record<string, string>; body?: string; tls?: Record<string, Buffer> } = {},
): Promise<Answer> {
  const request = o.tls === undefined ? httpRequest : httpsRequest;
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        path,
        method: o.method ?? "GET",
        headers: o.headers ?? {},
        ...(o.tls ?? {}),
      },
      (res) => {
        let body = "";
        res.on("data", (c: Buffer) => (body += c.toString()));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on("error", reject);
    req.end(o.body);
  });
}

/** The first `count` SSE messages of /ui/api/events, then the stream is closed. */
function events(
  port: number,
  count: number,
  onOpen: () => void = () => {},
): Promise<{ event: string; data: unknown }[]> {
  return new Promise((resolve, reject) => {
    const out: { event: string; data: unknown }[] = [];
    const req = httpRequest({ host: "127.0.0.1", port, path: "/ui/api/events" }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`events answered ${res.statusCode}`));
      onOpen();
      let buf = "";
      res.on("data", (c: Buffer) => {
        buf += c.toString();
        let end: number;
        while ((end = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event !== undefined && data !== undefined) out.push({ event, data: JSON.parse(data) });
          if (out.length >= count) {
            req.destroy();
            resolve(out);
            return;
          }
        }
      });
    });
    req.on("error", (err) => (out.length >= count ? undefined : reject(err)));
    req.end();
  });
}

const MEMBER = "http://127.0.0.1:60101";
const CONTROL = { url: "http://127.0.0.1:60199", token: "a-token-of-some-length" };

async function serve(
  options: Partial<DashboardOptions> = {},
  tls: Record<string, Buffer> | null = null,
): Promise<{
  node: FakeNode;
  keys: MemKeys;
  mvcc: StoreStateMachine;
  server: OperatorServer;
  close: () => Promise<void>;
}> {
  const node = new FakeNode();
  const mvcc = new StoreStateMachine({ store: new MemStore() });
  const keys = new MemKeys();
  const dashboard = new Dashboard({
    node,
    keys,
    watchSource: () => mvcc,
    watchLimits: { pollMs: 10 },
    maxValueBytes: 1024,
    leaseMs: 250,
    members: new Map([
      [0, "http://127.0.0.1:60100"],
      [1, MEMBER],
    ]),
    tls: tls !== null,
    control: null,
    ...options,
  });
  const server = await startOperatorServer(
    node.registry,
    {} as never,
    "127.0.0.1",
    0,
    [dashboard],
    tls as never,
  );
  return {
    node,
    keys,
    mvcc,
    server,
    close: () =>
      new Promise((r) => {
        server.server.closeAllConnections();
        server.server.close(() => r());
      }),
  };
}

test("the page and its files are served at /ui/, with the node's state as JSON", async () => {
  const s = await serve();
  try {
    const redirect = await call(s.server.port, "/ui");
    assert.equal(redirect.status, 302);
    assert.equal(redirect.headers.location, "/ui/");
    const page = await call(s.server.port, "/ui/");
    assert.equal(page.status, 200);
    assert.match(String(page.headers["content-type"]), /text\/html/);
    assert.match(page.body, /<script src="app.js">/);
    for (const f of ["app.js", "style.css"])
      assert.equal((await call(s.server.port, `/ui/${f}`)).status, 200, f);
    const state = JSON.parse((await call(s.server.port, "/ui/api/state")).body);
    assert.equal(state.hello.node, 0);
    assert.deepEqual(
      state.hello.members.map((m: { id: number; dashboard: string | null }) => [m.id, m.dashboard]),
      [
        [0, "http://127.0.0.1:60100"],
        [1, MEMBER],
        [2, null],
      ],
    );
    assert.equal(state.hello.control, null, "no fault controls outside raftkv local");
    assert.equal(state.state.view.role, "follower");
    assert.deepEqual(
      state.state.config,
      { index: 4, voters: [0, 1, 2], outgoing: [], learners: [3], joint: false },
      "the configuration in effect, with its learner",
    );
    assert.equal(
      (await call(s.server.port, "/metrics")).status,
      200,
      "the operator endpoints are still there",
    );
    assert.equal((await call(s.server.port, "/ui/nothing")).status, 404);
  } finally {
    await s.close();
  }
});

test("a missing page file stops the node from starting, naming the file and --no-ui", () => {
  assert.throws(
    () => loadAssets("/nonexistent/assets"),
    (err: Error) =>
      err instanceof RaftKvError &&
      err.code === "CONFIG" &&
      err.message.includes("/nonexistent/assets/index.html") &&
      err.message.includes("--no-ui"),
  );
});

test("the event stream: hello, then state frames; a leader change is pushed with its timeline entry", async () => {
  const s = await serve();
  try {
    s.node.requests.observe("put", "OK", 0.002);
    const got = await events(s.server.port, 4, () => {
      setTimeout(() => {
        s.node.role = "leader";
        s.node.term = 2;
        s.node.leaderId = 0;
        s.node.membership = { ...votersOnly([0, 1, 3]), outgoing: [0, 1, 2] };
        s.node.configIndex = 9;
        s.node.emit({ type: "role", role: "leader", term: 2, leaderId: 0 });
      }, 50);
    });
    assert.equal(got[0]!.event, "hello");
    const frames = got
      .slice(1)
      .map(
        (g) => g.data as { s: { view: NodeView; stats: unknown; config: unknown }; t: { text: string }[] },
      );
    assert.ok(got.slice(1).every((g) => g.event === "state"));
    const led = frames.find((f) => f.s.view.role === "leader");
    assert.ok(led !== undefined, "a frame shows the node as leader");
    assert.deepEqual(led.s.config, {
      index: 9,
      voters: [0, 1, 3],
      outgoing: [0, 1, 2],
      learners: [],
      joint: true,
    });
    assert.deepEqual(
      frames.flatMap((f) => f.t.map((t) => t.text)),
      ["became leader for term 2"],
      "the timeline entry arrives once",
    );
  } finally {
    await s.close();
  }
});

test("beyond maxClients a new stream is refused with 503, naming the limit", async () => {
  const s = await serve({ limits: { maxClients: 1 } });
  try {
    const first = httpRequest({ host: "127.0.0.1", port: s.server.port, path: "/ui/api/events" });
    const opened = new Promise<IncomingMessage>((r) => first.on("response", r));
    first.end();
    const res = await opened;
    assert.equal(res.statusCode, 200);
    const second = await call(s.server.port, "/ui/api/events");
    assert.equal(second.status, 503);
    assert.match(JSON.parse(second.body).error, /too many dashboard streams on node 0 \(max 1\)/);
    first.destroy();
  } finally {
    await s.close();
  }
});

test("the key browser: paging by prefix, a value, put and delete with the dashboard's header only", async () => {
  const s = await serve();
  const p = s.server.port;
  try {
    for (const k of ["a/1", "a/2", "a/3", "b/1"])
      s.keys.data.set(k, new TextEncoder().encode(`{"k":"${k}"}`));
    const page1 = JSON.parse((await call(p, "/ui/api/keys?prefix=a/&limit=2")).body);
    assert.deepEqual(
      page1.entries.map((e: { key: string }) => e.key),
      ["a/1", "a/2"],
    );
    assert.equal(page1.next, "a/2");
    const page2 = JSON.parse((await call(p, `/ui/api/keys?prefix=a/&limit=2&after=${page1.next}`)).body);
    assert.deepEqual(
      page2.entries.map((e: { key: string }) => e.key),
      ["a/3"],
    );
    assert.equal(page2.more, false);
    const one = JSON.parse((await call(p, "/ui/api/key?key=b/1")).body);
    assert.equal(Buffer.from(one.value, "base64").toString(), '{"k":"b/1"}');
    assert.equal(JSON.parse((await call(p, "/ui/api/key?key=zz")).body).found, false);
    assert.equal((await call(p, "/ui/api/keys?limit=100000")).status, 400);

    const refused = await call(p, "/ui/api/key?key=c", { method: "PUT", body: "x" });
    assert.equal(refused.status, 403, "a write without the dashboard's header is refused");
    assert.equal(s.keys.data.has("c"), false);
    const put = await call(p, "/ui/api/key?key=c", {
      method: "PUT",
      body: "hello",
      headers: { "x-raftkv-ui": "1" },
    });
    assert.equal(put.status, 200, put.body);
    assert.equal(new TextDecoder().decode(s.keys.data.get("c")), "hello");
    const big = await call(p, "/ui/api/key?key=d", {
      method: "PUT",
      body: "x".repeat(2000),
      headers: { "x-raftkv-ui": "1" },
    });
    assert.equal(big.status, 400);
    assert.match(JSON.parse(big.body).error, /maxValueBytes \(1024 bytes\)/);
    const del = await call(p, "/ui/api/key?key=c", { method: "DELETE", headers: { "x-raftkv-ui": "1" } });
    assert.equal(del.status, 200);
    assert.equal(s.keys.data.has("c"), false);
    s.keys.leader = false;
    const follower = await call(p, "/ui/api/key?key=c", {
      method: "DELETE",
      headers: { "x-raftkv-ui": "1" },
    });
    assert.equal(follower.status, 409);
    assert.equal(JSON.parse(follower.body).code, "NOT_LEADER");
  } finally {
    await s.close();
  }
});

test("the key watch at /ui/api/watch: a put under the prefix arrives; the access rules of /ui apply", async () => {
  const s = await serve();
  const p = s.server.port;
  try {
    const rebinding = await call(p, "/ui/api/watch?prefix=a/", { headers: { host: "evil.example:80" } });
    assert.equal(rebinding.status, 403, "a foreign Host is refused as on every /ui route");
    assert.equal((await call(p, "/ui/api/watch")).status, 400, "no prefix");
    const got = new Promise<{ cors: unknown; body: string }>((resolve, reject) => {
      const req = httpRequest(
        { host: "127.0.0.1", port: p, path: "/ui/api/watch?prefix=a/", headers: { origin: MEMBER } },
        (res) => {
          let body = "";
          let put = false;
          res.on("data", (c: Buffer) => {
            body += c.toString();
            if (body.includes("event: watching") && !put) {
              put = true;
              s.mvcc.applyAny(
                1,
                encodeMvccCommand({
                  op: "put",
                  key: new TextEncoder().encode("a/1"),
                  value: new TextEncoder().encode("one"),
                  lease: 0n,
                  prevKv: false,
                  ignoreValue: false,
                  ignoreLease: false,
                }),
              );
            }
            if (body.includes("event: events")) {
              req.destroy();
              resolve({ cors: res.headers["access-control-allow-origin"], body });
            }
          });
        },
      );
      req.on("error", reject);
      req.end();
    });
    const { cors, body } = await got;
    assert.equal(cors, MEMBER, "another member's dashboard may open it");
    assert.match(body, /"type":"put","key":"a\/1","keyHex":false,"revision":2,.*"value":"one"/);
  } finally {
    await s.close();
  }
  const none = await serve({ watchSource: null });
  try {
    assert.equal((await call(none.server.port, "/ui/api/watch?prefix=a")).status, 404);
  } finally {
    await none.close();
  }
});

test("cross-origin: other members' dashboards get CORS headers, foreign pages neither those nor writes", async () => {
  const s = await serve();
  const p = s.server.port;
  try {
    const member = await call(p, "/ui/api/state", { headers: { origin: MEMBER } });
    assert.equal(member.headers["access-control-allow-origin"], MEMBER);
    const foreign = await call(p, "/ui/api/state", { headers: { origin: "http://evil.example" } });
    assert.equal(foreign.headers["access-control-allow-origin"], undefined);
    const preflight = await call(p, "/ui/api/key?key=x", {
      method: "OPTIONS",
      headers: { origin: "http://evil.example" },
    });
    assert.equal(preflight.status, 403);
    const forged = await call(p, "/ui/api/key?key=x", {
      method: "PUT",
      body: "v",
      headers: { origin: "http://evil.example", "x-raftkv-ui": "1" },
    });
    assert.equal(forged.status, 403);
    const rebinding = await call(p, "/ui/", { headers: { host: "evil.example:80" } });
    assert.equal(rebinding.status, 403);
    assert.match(rebinding.body, /DNS rebinding/);
  } finally {
    await s.close();
  }
});

test("leadership transfer needs raftkv local's token and a leader", async () => {
  const s = await serve({ control: CONTROL });
  const p = s.server.port;
  try {
    const hello = JSON.parse((await call(p, "/ui/api/state")).body).hello;
    assert.deepEqual(hello.control, CONTROL);
    const noToken = await call(p, "/ui/api/transfer?to=1", {
      method: "POST",
      headers: { "x-raftkv-ui": "1" },
    });
    assert.equal(noToken.status, 403);
    const headers = { "x-raftkv-control": CONTROL.token };
    assert.equal(
      (await call(p, "/ui/api/transfer?to=1", { method: "POST", headers })).status,
      409,
      "not the leader",
    );
    s.node.role = "leader";
    assert.equal((await call(p, "/ui/api/transfer?to=7", { method: "POST", headers })).status, 400);
    const ok = await call(p, "/ui/api/transfer?to=2", { method: "POST", headers });
    assert.equal(ok.status, 200, ok.body);
    assert.deepEqual(s.node.transfers, [2]);
  } finally {
    await s.close();
  }
  const plain = await serve();
  try {
    const r = await call(plain.server.port, "/ui/api/transfer?to=1", {
      method: "POST",
      headers: { "x-raftkv-control": CONTROL.token },
    });
    assert.equal(r.status, 403);
    assert.match(r.body, /raftkv local/);
  } finally {
    await plain.close();
  }
});

let certDir = "";
let tlsFiles: { ca: Buffer; cert: Buffer; key: Buffer; clientCert: Buffer; clientKey: Buffer } | null = null;
before(() => {
  certDir = mkdtempSync(join(tmpdir(), "raftkv-ui-tls-"));
  const ca = makeCa(certDir, "ca");
  const node = ca.issue("node", "IP:127.0.0.1");
  const client = ca.issue("client");
  tlsFiles = {
    ca: readFileSync(ca.caFile),
    cert: readFileSync(node.cert),
    key: readFileSync(node.key),
    clientCert: readFileSync(client.cert),
    clientKey: readFileSync(client.key),
  };
});
after(() => rmSync(certDir, { recursive: true, force: true }));

test("with TLS the port speaks TLS and plain HTTP; /ui only over TLS with a CA-signed client certificate", async () => {
  const f = tlsFiles!;
  const s = await serve({}, { ca: f.ca, cert: f.cert, key: f.key });
  const p = s.server.port;
  try {
    const plain = await call(p, "/ui/");
    assert.equal(plain.status, 403);
    assert.match(plain.body, /TLS configured: open https:\/\//);
    assert.equal((await call(p, "/metrics")).status, 200, "plain /metrics stays");
    const noCert = await call(p, "/ui/", { tls: { ca: f.ca } });
    assert.equal(noCert.status, 403);
    assert.match(noCert.body, /client certificate signed by the cluster CA/);
    const withCert = await call(p, "/ui/", { tls: { ca: f.ca, cert: f.clientCert, key: f.clientKey } });
    assert.equal(withCert.status, 200);
    assert.match(withCert.body, /raftkv dashboard/);
    assert.equal((await call(p, "/metrics", { tls: { ca: f.ca } })).status, 200, "/metrics over TLS too");
  } finally {
    await s.close();
  }
});
