// The chaos link proxy against an echo server: pass, latency, stall and heal, reset, loss as stalls, and
// the harness's own client connections let through a cut while another process's are held.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import net from "node:net";
import { performance } from "node:perf_hooks";
import { after, before, test } from "node:test";
import { CLEAN_LINK, LinkProxy } from "../../src/chaos/proxy.ts";
import { Prng } from "../../src/lib/prng.ts";

let echo: net.Server;
let echoPort = 0;
const proxies: LinkProxy[] = [];
const sockets: net.Socket[] = [];

before(async () => {
  echo = net.createServer((s) => {
    sockets.push(s);
    s.on("error", () => {});
    s.pipe(s);
  });
  await new Promise<void>((r) => echo.listen(0, "127.0.0.1", () => r()));
  echoPort = (echo.address() as net.AddressInfo).port;
});

after(async () => {
  for (const s of sockets) s.destroy();
  await Promise.all(proxies.map((p) => p.close()));
  await new Promise<void>((r) => echo.close(() => r()));
});

async function proxy(bypassOwnClients = false): Promise<LinkProxy> {
  const p = await LinkProxy.start({
    from: 0,
    to: 1,
    targetPort: echoPort,
    prng: new Prng(7),
    bypassOwnClients,
  });
  proxies.push(p);
  return p;
}

/** A connected socket with everything it receives gathered in `received()`. */
async function dial(port: number): Promise<{ s: net.Socket; received: () => string; closed: Promise<void> }> {
  const s = net.connect({ host: "127.0.0.1", port });
  sockets.push(s);
  s.on("error", () => {});
  let buf = "";
  s.on("data", (d: Buffer) => (buf += d.toString()));
  const closed = new Promise<void>((r) => s.once("close", () => r()));
  await new Promise<void>((resolve, reject) => {
    s.once("connect", () => resolve());
    s.once("error", reject);
  });
  return { s, received: () => buf, closed };
}

/** Polls `cond` every 5 ms; false if it is still not true after `ms`. */
async function within(ms: number, cond: () => boolean): Promise<boolean> {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 5));
  }
  return cond();
}

test("pass: bytes go through both ways", async () => {
  const p = await proxy();
  const c = await dial(p.port);
  c.s.write("hello");
  assert.ok(await within(2000, () => c.received() === "hello"));
});

test("latency: a round trip takes at least twice the link latency", async () => {
  const p = await proxy();
  p.set({ ...CLEAN_LINK, latencyMs: 60, jitterMs: 10 });
  const c = await dial(p.port);
  const t0 = performance.now();
  c.s.write("ping");
  assert.ok(await within(3000, () => c.received() === "ping"));
  assert.ok(performance.now() - t0 >= 119, `round trip ${performance.now() - t0} ms`);
});

test("stall: nothing passes while cut, everything arrives in order after the heal", async () => {
  const p = await proxy();
  const c = await dial(p.port);
  c.s.write("a");
  assert.ok(await within(2000, () => c.received() === "a"));
  p.set({ ...CLEAN_LINK, cut: "stall" });
  c.s.write("b");
  c.s.write("c");
  assert.equal(await within(300, () => c.received() !== "a"), false, "held while cut");
  // A connection made during the cut is accepted but goes nowhere until the heal.
  const late = await dial(p.port);
  late.s.write("late");
  assert.equal(await within(200, () => late.received() !== ""), false);
  p.heal();
  assert.ok(await within(2000, () => c.received() === "abc"), c.received());
  assert.ok(await within(2000, () => late.received() === "late"));
});

test("reset: open connections are reset and new ones refused until the heal", async () => {
  const p = await proxy();
  const c = await dial(p.port);
  p.set({ ...CLEAN_LINK, cut: "reset" });
  await Promise.race([
    c.closed,
    new Promise((_, rej) => setTimeout(() => rej(new Error("not reset")), 2000)),
  ]);
  // Reset right after the handshake: the dialer sees ECONNRESET at connect or just after it.
  const refused = net.connect({ host: "127.0.0.1", port: p.port });
  sockets.push(refused);
  refused.on("error", () => {});
  await Promise.race([
    new Promise((r) => refused.once("close", r)),
    new Promise((_, rej) => setTimeout(() => rej(new Error("not refused")), 2000)),
  ]);
  p.heal();
  const ok = await dial(p.port);
  ok.s.write("back");
  assert.ok(await within(2000, () => ok.received() === "back"));
});

test("loss: a lost chunk stalls its direction for a retransmission timeout", async () => {
  const p = await proxy();
  p.set({ ...CLEAN_LINK, lossRate: 1 });
  const c = await dial(p.port);
  const t0 = performance.now();
  c.s.write("x");
  assert.ok(await within(5000, () => c.received() === "x"));
  assert.ok(performance.now() - t0 >= 400, `round trip ${performance.now() - t0} ms (two stalls >= 200 ms)`);
  assert.ok(p.stats.stalls >= 2);
});

test("the harness's own connections pass a cut; another process's do not", async () => {
  const p = await proxy(true);
  p.set({ ...CLEAN_LINK, cut: "reset" });
  const own = await dial(p.port);
  own.s.write("mine");
  assert.ok(await within(2000, () => own.received() === "mine"));
  assert.equal(p.stats.clientConnections, 1);
  // A child process dials the same proxy: it is peer traffic, so it is reset.
  const script = `const s=require("net").connect(${p.port},"127.0.0.1");let got="";s.on("data",d=>got+=d);s.on("connect",()=>s.write("peer"));s.on("error",()=>{});s.on("close",()=>{process.stdout.write("closed:"+got);process.exit(0)});setTimeout(()=>{process.stdout.write("open:"+got);process.exit(0)},3000);`;
  const child = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  await new Promise<void>((r) => child.once("exit", () => r()));
  assert.equal(out, "closed:");
});
