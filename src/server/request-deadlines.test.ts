import assert from "node:assert/strict";
import { performance } from "node:perf_hooks";
import { test } from "node:test";
import { RequestDeadlines } from "./request-deadlines.ts";

const timeout = (): Error => new Error("timed out");
const never = new Promise<number>(() => {});
// The deadline timer is unref'd (in a node the sockets keep the process alive): keep these tests alive.
const keepAlive = setInterval(() => {}, 1000);
test.after(() => clearInterval(keepAlive));

test("RequestDeadlines settles with the work when it finishes in time, and with a timeout when not", async () => {
  const d = new RequestDeadlines(() => performance.now());
  assert.equal(await d.race(Promise.resolve(7), 1000, timeout), 7);
  await assert.rejects(d.race(Promise.reject(new Error("boom")), 1000, timeout), /boom/);
  const started = performance.now();
  await assert.rejects(d.race(never, 30, timeout), /timed out/);
  assert.ok(performance.now() - started >= 29, "expired no earlier than its deadline");
  assert.equal(d.size, 0, "nothing is left pending");
  d.close();
});

test("RequestDeadlines expires each request at its own deadline, earlier ones first, with one timer", async () => {
  const d = new RequestDeadlines(() => performance.now());
  const order: string[] = [];
  const watch = (name: string, p: Promise<number>): Promise<void> =>
    p.then(
      () => void order.push(`${name} ok`),
      () => void order.push(`${name} expired`),
    );
  let finish!: (v: number) => void;
  const late = new Promise<number>((r) => {
    finish = r;
  });
  const all = Promise.all([
    watch("a 80 ms", d.race(never, 80, timeout)),
    watch("b 20 ms", d.race(never, 20, timeout)), // earlier than the armed timer: re-arms it
    watch("c 50 ms", d.race(never, 50, timeout)),
    watch("d finishes", d.race(late, 40, timeout)),
    watch("e no deadline", d.race(Promise.resolve(1), Number.POSITIVE_INFINITY, timeout)),
  ]);
  setTimeout(() => finish(1), 5);
  await all;
  assert.deepEqual(order, [
    "e no deadline ok",
    "d finishes ok",
    "b 20 ms expired",
    "c 50 ms expired",
    "a 80 ms expired",
  ]);
  assert.equal(d.size, 0);
  d.close();
});

test("RequestDeadlines ignores a late outcome once the request expired", async () => {
  const d = new RequestDeadlines(() => performance.now());
  let fail!: (e: Error) => void;
  const work = new Promise<number>((_, reject) => {
    fail = reject;
  });
  await assert.rejects(d.race(work, 10, timeout), /timed out/);
  fail(new Error("late")); // must not become an unhandled rejection
  await new Promise((r) => setTimeout(r, 10));
  d.close();
});
