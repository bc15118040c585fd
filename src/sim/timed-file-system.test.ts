// The timed disk: operations take effect when they complete, one file's in submission order, different
// files' in any order; a power loss drops what is in flight and everything not durable.

import assert from "node:assert/strict";
import { test } from "node:test";
import { Prng } from "../lib/prng.ts";
import { MemFileSystem } from "../storage/mem-file-system.ts";
import { EventQueue } from "./event-queue.ts";
import { type DiskProfile, drawDiskProfile, TimedFileSystem } from "./timed-file-system.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

const WIDE: DiskProfile = {
  name: "wide",
  latencyUs: {
    write: [1, 5000],
    sync: [1, 5000],
    writeDurable: [1, 5000],
    rename: [1, 5000],
    dirSync: [1, 5000],
    meta: [1, 5000],
    read: [1, 5000],
  },
  outlierRate: 0,
  outlierFactor: [1, 1],
  stallUs: [1000, 2000],
};

function disk(seed: number, profile = WIDE): { q: EventQueue; fs: TimedFileSystem; mem: MemFileSystem } {
  const q = new EventQueue();
  const mem = new MemFileSystem();
  return { q, mem, fs: new TimedFileSystem(mem, q, new Prng(seed), profile) };
}

/** Runs the timeline until `done` or no events are left. */
async function drain(q: EventQueue, done: () => boolean = () => false): Promise<void> {
  for (let i = 0; i < 100_000 && !done(); i++) {
    await new Promise((r) => setImmediate(r));
    const ev = q.pop();
    if (ev === undefined) {
      await new Promise((r) => setImmediate(r));
      if (q.peekTime() === undefined) return;
      continue;
    }
    ev.run();
  }
}

test("an operation takes simulated time and takes effect only when it completes", async () => {
  const { q, fs, mem } = disk(1);
  await mem.mkdir("/d");
  const h = await mem.open("/d/f", "create");
  await h.close();
  const th = fs.open("/d/f", "write");
  let handle: Awaited<typeof th> | null = null;
  void th.then((x) => {
    handle = x;
  });
  await drain(q, () => handle !== null);
  const t0 = q.nowUs;
  let wrote = false;
  void handle!.append(enc.encode("abc")).then(() => {
    wrote = true;
  });
  await new Promise((r) => setImmediate(r));
  assert.equal(mem.peek("/d/f").length, 0, "written before the write completed");
  await drain(q, () => wrote);
  assert.ok(q.nowUs > t0);
  assert.equal(dec.decode(mem.peek("/d/f")), "abc");
});

test("one file's operations complete in order; different files' complete out of order in some seeds", async () => {
  let outOfOrder = 0;
  for (let seed = 1; seed <= 40; seed++) {
    const { q, fs, mem } = disk(seed);
    await mem.mkdir("/d");
    for (const n of ["a", "b"]) await (await mem.open(`/d/${n}`, "create")).close();
    const handles = await Promise.all(["a", "b"].map((n) => mem.open(`/d/${n}`, "write")));
    // Wrap the already-open handles through the timed device by reopening through it.
    const opened: Awaited<ReturnType<typeof fs.open>>[] = [];
    void Promise.all(["a", "b"].map((n) => fs.open(`/d/${n}`, "write"))).then((x) => opened.push(...x));
    await drain(q, () => opened.length === 2);
    for (const h of handles) await h.close();
    const order: string[] = [];
    const [a, b] = opened as [(typeof opened)[0], (typeof opened)[0]];
    void a.append(enc.encode("1")).then(() => order.push("a1"));
    void a.append(enc.encode("2")).then(() => order.push("a2"));
    void b.append(enc.encode("x")).then(() => order.push("b"));
    await drain(q, () => order.length === 3);
    assert.ok(order.indexOf("a1") < order.indexOf("a2"), `seed ${seed}: ${order.join(",")}`);
    assert.equal(dec.decode(mem.peek("/d/a")), "12");
    if (order[0] === "b") outOfOrder++;
  }
  assert.ok(outOfOrder > 0 && outOfOrder < 40, `b completed first in ${outOfOrder} of 40 seeds`);
});

test("a power loss between an fsync's submission and its completion loses the unsynced write", async () => {
  for (let seed = 1; seed <= 20; seed++) {
    const { q, fs, mem } = disk(seed);
    await mem.mkdir("/d");
    const h0 = await mem.open("/d/f", "create");
    await h0.close();
    await mem.syncDir("/d");
    await mem.syncDir("/");
    let h: Awaited<ReturnType<typeof fs.open>> | null = null;
    void fs.open("/d/f", "write").then((x) => {
      h = x;
    });
    await drain(q, () => h !== null);
    let wrote = false;
    void h!.append(enc.encode("payload")).then(() => {
      wrote = true;
    });
    await drain(q, () => wrote);
    let synced = false;
    void h!.sync().then(() => {
      synced = true;
    });
    await new Promise((r) => setImmediate(r));
    assert.equal(fs.inFlight, 1);
    fs.crash(new Prng(seed));
    await drain(q);
    assert.equal(synced, false, "an fsync completed after the power loss");
    // Nothing was durable: empty, or (the tear rule) a strict prefix of the write.
    const left = dec.decode(mem.peek("/d/f"));
    assert.ok("payload".startsWith(left) && left.length < "payload".length, `seed ${seed}: ${left}`);
  }
  assert.equal(disk(1).fs.stats.crashesInIo, 0);
});

test("a stall holds every completion until it ends", async () => {
  const { q, fs, mem } = disk(3);
  await mem.mkdir("/d");
  fs.stall(1_000_000);
  let done = false;
  void fs.mkdir("/d/e").then(() => {
    done = true;
  });
  await drain(q, () => done);
  assert.ok(q.nowUs >= 1_000_000, `completed at ${q.nowUs} µs, inside the stall`);
});

test("disk profiles per seed span fast and slow disks, some with stalls", () => {
  const names = new Set<string>();
  let stalls = 0;
  for (let seed = 0; seed < 200; seed++) {
    const p = drawDiskProfile(new Prng(seed), 300_000);
    names.add(p.name.split("+")[0]!);
    if (p.stallUs !== null) stalls++;
    assert.ok(p.latencyUs.sync[1] <= 30_000);
  }
  assert.deepEqual([...names].sort(), ["nvme", "slow", "ssd"]);
  assert.ok(stalls > 10 && stalls < 100, `${stalls} of 200 seeds stall`);
});
