// The chaos CONNECT router against an echo server: a tunnel to a known port goes through that link's
// proxy (a cut there resets it), an unknown port or a non-loopback host is refused with 502, and grpc-js
// really routes a channel through it when grpc_proxy names it.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import net from "node:net";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { CLEAN_LINK, LinkProxy } from "../../src/chaos/proxy.ts";
import { PeerRouter } from "../../src/chaos/router.ts";
import { Prng } from "../../src/lib/prng.ts";

const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));
/** The port a tunnel asks for: any number the router maps to the link (nothing listens there). */
const ASKED_PORT = 1;

let echo: net.Server;
let link: LinkProxy;
let router: PeerRouter;

before(async () => {
  echo = net.createServer((s) => {
    s.on("error", () => {});
    s.pipe(s);
  });
  await new Promise<void>((r) => echo.listen(0, "127.0.0.1", () => r()));
  const echoPort = (echo.address() as net.AddressInfo).port;
  link = await LinkProxy.start({ from: 0, to: 1, targetPort: echoPort, prng: new Prng(3) });
  router = await PeerRouter.start({ from: 0, route: (port) => (port === ASKED_PORT ? link : null) });
});

after(async () => {
  await router.close();
  await link.close();
  await new Promise<void>((r) => echo.close(() => r()));
});

/** Opens a tunnel to host:port; resolves with the reply's status line and the socket. */
function tunnel(target: string): Promise<{ status: string; socket: net.Socket }> {
  return new Promise((resolve, reject) => {
    const port = Number(new URL(router.url).port);
    const s = net.connect(port, "127.0.0.1", () =>
      s.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`),
    );
    s.once("error", reject);
    let got = Buffer.alloc(0);
    const onData = (b: Buffer): void => {
      got = Buffer.concat([got, b]);
      const end = got.indexOf("\r\n\r\n");
      if (end < 0) return;
      s.removeListener("data", onData);
      const rest = got.subarray(end + 4);
      if (rest.length > 0) s.unshift(rest);
      resolve({ status: got.subarray(0, got.indexOf("\r\n")).toString(), socket: s });
    };
    s.on("data", onData);
  });
}

function echoOnce(s: net.Socket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    s.once("data", (b: Buffer) => resolve(b.toString()));
    s.once("error", reject);
    s.write(text);
  });
}

test("a tunnel to a mapped port passes through the link proxy, and a cut there resets it", async () => {
  const { status, socket } = await tunnel(`127.0.0.1:${ASKED_PORT}`);
  assert.match(status, /^HTTP\/1\.1 200 /);
  assert.equal(await echoOnce(socket, "ping"), "ping");
  assert.equal(link.stats.connections, 1, "counted as peer traffic of the link");
  const closed = new Promise<void>((r) => socket.once("close", () => r()));
  socket.on("error", () => {});
  link.set({ ...CLEAN_LINK, cut: "reset" });
  await closed;
  link.set(CLEAN_LINK);
});

test("an unknown port or a host off loopback is refused with 502", async () => {
  for (const target of ["127.0.0.1:2", "10.0.0.1:1"]) {
    const { status, socket } = await tunnel(target);
    assert.match(status, /^HTTP\/1\.1 502 /, target);
    socket.destroy();
  }
  assert.equal(router.refused, 2);
});

test("grpc-js sends a channel through the router named by grpc_proxy", async () => {
  // A child process (grpc_proxy is read per channel from its environment): a call to 127.0.0.1:2 that
  // can only fail, but reaches the router first, which counts the refused tunnel.
  const before = router.refused;
  const script = `
    const grpc = require("@grpc/grpc-js");
    const c = new grpc.Client("127.0.0.1:2", grpc.credentials.createInsecure());
    c.waitForReady(Date.now() + 3000, () => { c.close(); });`;
  const child = spawn(process.execPath, ["-e", script], {
    cwd: REPO_ROOT,
    env: { ...process.env, grpc_proxy: router.url, no_grpc_proxy: "none.invalid" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (b: Buffer) => {
    stderr += b.toString();
  });
  const code = await new Promise<number | null>((r) => child.once("exit", (c) => r(c)));
  assert.equal(code, 0, stderr);
  assert.ok(router.refused > before, "the channel asked the router for a tunnel");
});
