// The event stream's bounds: a client whose socket does not drain skips frames and is closed once it
// stays blocked; beyond maxClients a stream is refused. And who may use the dashboard without TLS.

import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import type { IncomingMessage, ServerResponse } from "node:http";
import { test } from "node:test";
import { refusal } from "../../src/ui/access.ts";
import { SseHub } from "../../src/ui/sse-hub.ts";

class FakeResponse extends EventEmitter {
  writableLength = 0;
  written: string[] = [];
  destroyed = false;
  writeHead(): this {
    return this;
  }
  write(s: string): boolean {
    this.written.push(s);
    return true;
  }
  end(): void {}
  destroy(): void {
    this.destroyed = true;
  }
}

test("a client that does not drain misses frames, and is closed once blocked past stallLimitMs", () => {
  let now = 0;
  let built = 0;
  const hub = new SseHub({
    maxClients: 2,
    maxBufferedBytes: 100,
    intervalMs: 1_000_000,
    stallLimitMs: 5000,
    nowMs: () => now,
    build: () => ++built,
    perClient: (shared) => `{"n":${String(shared)}}`,
    hello: () => '{"hi":1}',
  });
  const fast = new FakeResponse();
  const slow = new FakeResponse();
  const req = () => new EventEmitter() as unknown as IncomingMessage;
  assert.ok(hub.attach(req(), fast as unknown as ServerResponse, {}));
  assert.ok(hub.attach(req(), slow as unknown as ServerResponse, {}));
  assert.equal(
    hub.attach(req(), new FakeResponse() as unknown as ServerResponse, {}),
    false,
    "max 2 clients",
  );
  slow.writableLength = 1000; // its socket stopped draining
  const framesOf = (r: FakeResponse) => r.written.filter((w) => w.startsWith("event: state")).length;
  const before = framesOf(slow);
  (hub as unknown as { push(): void }).push();
  now = 4000;
  (hub as unknown as { push(): void }).push();
  assert.equal(framesOf(slow), before, "no frame is queued behind a blocked socket");
  assert.equal(slow.destroyed, false);
  now = 6000;
  (hub as unknown as { push(): void }).push();
  assert.equal(slow.destroyed, true, "blocked for more than 5 s: closed");
  assert.equal(hub.size, 1);
  assert.ok(framesOf(fast) >= 4, "the other client got every frame");
  assert.match(fast.written.find((w) => w.startsWith("event: hello")) ?? "", /\{"hi":1\}/);
  hub.close();
});

test("without TLS only loopback clients naming a loopback or member host are served", () => {
  const policy = { tls: false, allowedOrigins: new Set<string>(), allowedHosts: new Set(["node1.lan"]) };
  const req = (remoteAddress: string, host: string) =>
    ({ socket: { remoteAddress }, headers: { host } }) as unknown as IncomingMessage;
  assert.equal(refusal(req("127.0.0.1", "127.0.0.1:60100"), policy), null);
  assert.equal(refusal(req("::ffff:127.0.0.1", "localhost:60100"), policy), null);
  assert.equal(refusal(req("::1", "[::1]:60100"), policy), null);
  assert.equal(refusal(req("127.0.0.1", "node1.lan:60100"), policy), null);
  const remote = refusal(req("10.0.0.7", "127.0.0.1:60100"), policy);
  assert.equal(remote?.status, 403);
  assert.match(remote?.message ?? "", /loopback clients only \(this request came from 10\.0\.0\.7\)/);
  assert.equal(refusal(req("127.0.0.1", "rebound.example:60100"), policy)?.status, 403);
});
