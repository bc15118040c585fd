// `raftkv local`'s fault controls: the link proxy forwards, a cut resets the connections of the node it
// names and refuses its new ones until healed; the control server acts only with its token, and answers CORS for the nodes' pages.

import assert from "node:assert/strict";
import net from "node:net";
import { test } from "node:test";
import { LinkProxy } from "../../src/ui/link-proxy.ts";
import { type LocalControlHooks, startLocalControl } from "../../src/ui/local-control.ts";
import { ownerOf, socketInode } from "../../src/ui/socket-owner.ts";

/** Sends `text` through the proxy to an echo server; resolves with the echo, or the error's code. */
function roundTrip(port: number, text: string): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    let got = "";
    s.on("connect", () => s.write(text));
    s.on("data", (d: Buffer) => {
      got += d.toString();
      if (got.length >= text.length) {
        s.destroy();
        resolve(got);
      }
    });
    s.on("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? "error"));
    s.on("close", () => resolve(got === "" ? "closed" : got));
  });
}

test("a link proxy tells the dialing process by its socket: a cut resets that node's connections and refuses new ones until healed", {
  skip: process.platform === "linux" ? false : "the dialing node is found through /proc (Linux only)",
}, async () => {
  const echo = net.createServer((s) => {
    s.on("error", () => {}); // reset by the cut
    s.pipe(s);
  });
  await new Promise<void>((r) => echo.listen(0, "127.0.0.1", r));
  const target = (echo.address() as net.AddressInfo).port;
  // This process plays node 7: the proxy finds the dialing socket among its open files.
  let pids = new Map([[process.pid, 7]]);
  const seen: (number | null)[] = [];
  const proxy = await LinkProxy.start(1, target, (dialerPort, proxyPort) => {
    const inode = socketInode(dialerPort, proxyPort);
    const who = inode === null ? null : ownerOf(inode, pids);
    seen.push(who);
    return who;
  });
  try {
    assert.equal(await roundTrip(proxy.port, "ping"), "ping");
    assert.deepEqual(seen, [7], "the connection is node 7's");
    const open = net.connect(proxy.port, "127.0.0.1");
    await new Promise((r) => open.on("connect", r));
    await new Promise((r) => setTimeout(r, 50)); // let the proxy dial the target
    const reset = new Promise<string>((r) => {
      open.on("error", (err: NodeJS.ErrnoException) => r(err.code ?? "error"));
      open.on("close", () => r("closed"));
    });
    proxy.setCut(7, true);
    assert.ok(proxy.isCut(7));
    assert.ok(["ECONNRESET", "closed"].includes(await reset), "the open connection is reset");
    assert.ok(["ECONNRESET", "closed"].includes(await roundTrip(proxy.port, "ping")), "a new one is refused");
    pids = new Map(); // not a node: never cut
    assert.equal(await roundTrip(proxy.port, "client"), "client");
    pids = new Map([[process.pid, 7]]);
    proxy.setCut(7, false);
    assert.equal(await roundTrip(proxy.port, "pong"), "pong");
  } finally {
    await proxy.close();
    echo.close();
  }
});

test("the control server acts only with its token, and answers CORS for the nodes' dashboards only", async () => {
  const did: string[] = [];
  const hooks: LocalControlHooks = {
    state: () => ({
      nodes: [0, 1].map((id) => ({ id, running: true, paused: false, pid: null })),
      cuts: [],
    }),
    kill: (id) => {
      did.push(`kill ${id}`);
      return `node ${id} killed`;
    },
    restart: (id) => {
      did.push(`restart ${id}`);
      return "ok";
    },
    pause: (id) => {
      did.push(`pause ${id}`);
      return "ok";
    },
    resume: (id) => {
      did.push(`resume ${id}`);
      return "ok";
    },
    cut: (a, b) => {
      did.push(`cut ${a} ${b}`);
      return "ok";
    },
    heal: (a, b) => {
      did.push(`heal ${a} ${b}`);
      return "ok";
    },
  };
  const page = "http://127.0.0.1:60100";
  const control = await startLocalControl(hooks, () => new Set([page]));
  try {
    const post = (path: string, headers: Record<string, string> = {}) =>
      fetch(`${control.url}${path}`, { method: "POST", headers });
    assert.equal((await post("/control/kill?node=1")).status, 403, "no token");
    assert.deepEqual(did, []);
    const auth = { "x-raftkv-control": control.token };
    const killed = await post("/control/kill?node=1", auth);
    assert.equal(killed.status, 200);
    assert.equal(((await killed.json()) as { message: string }).message, "node 1 killed");
    assert.equal((await post("/control/cut?a=1&b=0", auth)).status, 200);
    assert.equal((await post("/control/pause?node=9", auth)).status, 400, "no node 9");
    assert.equal((await post("/control/cut?a=1&b=1", auth)).status, 400);
    assert.deepEqual(did, ["kill 1", "cut 0 1"], "a link is named low id first");
    const preflight = await fetch(`${control.url}/control/kill?node=0`, {
      method: "OPTIONS",
      headers: { origin: page },
    });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get("access-control-allow-origin"), page);
    const foreign = await fetch(`${control.url}/control/kill?node=0`, {
      method: "OPTIONS",
      headers: { origin: "http://evil.example" },
    });
    assert.equal(foreign.status, 403);
    const state = (await (await fetch(`${control.url}/control/state`, { headers: auth })).json()) as {
      nodes: unknown[];
    };
    assert.equal(state.nodes.length, 2);
  } finally {
    await control.close();
  }
});
