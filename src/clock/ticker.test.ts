// Tests of the Ticker's contract: tick k never before bootMs + k * tickMs, missed ticks caught up, bounded.

import assert from "node:assert/strict";
import { test } from "node:test";
import { MonotonicClock } from "./monotonic-clock.ts";
import { Ticker, type TimerFunctions } from "./ticker.ts";

/** A fake clock and timer queue: time moves only when the test says so. */
class FakeTime implements TimerFunctions {
  now = 0;
  private seq = 0;
  private readonly timers = new Map<number, { at: number; ms: number; fn: () => void }>();
  private immediates = new Map<number, () => void>();

  nowMs(): number {
    return this.now;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.timers.set(id, { at: this.now + ms, ms, fn });
    return id;
  }
  clearTimeout(h: unknown): void {
    this.timers.delete(h as number);
  }
  setImmediate(fn: () => void): unknown {
    const id = ++this.seq;
    this.immediates.set(id, fn);
    return id;
  }
  clearImmediate(h: unknown): void {
    this.immediates.delete(h as number);
  }
  /** Advance to `to`, firing due timers in order; a timer longer than `earlyMs` may fire up to
   *  `earlyMs` early (libuv's cached loop time can make a timer look early to performance.now()). */
  advance(to: number, earlyMs = 0): void {
    for (;;) {
      this.runImmediates();
      let next: [number, { at: number; ms: number; fn: () => void }] | undefined;
      for (const e of this.timers) if (next === undefined || e[1].at < next[1].at) next = e;
      if (next === undefined) break;
      const fireAt = next[1].ms > earlyMs ? next[1].at - earlyMs : next[1].at;
      if (fireAt > to) break;
      this.timers.delete(next[0]);
      this.now = Math.max(this.now, fireAt);
      next[1].fn();
    }
    this.now = to;
    this.runImmediates();
  }
  /** Jump without firing anything (an event-loop stall). */
  stall(to: number): void {
    this.now = to;
  }
  runImmediates(): void {
    while (this.immediates.size > 0) {
      const batch = [...this.immediates.values()];
      this.immediates.clear();
      for (const fn of batch) fn();
    }
  }
  /** Fire every pending timer now, leaving immediates queued (one event-loop turn). */
  fireTimersOnly(): void {
    const due = [...this.timers.values()];
    this.timers.clear();
    for (const t of due) t.fn();
  }
  /** Run the immediates queued now, not those they queue (one check phase). */
  runImmediatesOnce(): void {
    const batch = [...this.immediates.values()];
    this.immediates.clear();
    for (const fn of batch) fn();
  }
  pendingImmediates(): number {
    return this.immediates.size;
  }
}

function record(time: FakeTime, bootMs: number, tickMs: number, maxTicksPerTurn?: number) {
  const deliveredAt: number[] = [];
  const catchUps: { missed: number; lateMs: number }[] = [];
  const ticker = new Ticker({
    clock: time,
    bootMs,
    tickMs,
    timers: time,
    onTick: () => deliveredAt.push(time.now),
    onCatchUp: (missed, lateMs) => catchUps.push({ missed, lateMs }),
    ...(maxTicksPerTurn === undefined ? {} : { maxTicksPerTurn }),
  });
  return { ticker, deliveredAt, catchUps };
}

test("tick k is delivered no earlier than bootMs + k * tickMs, even when timers fire early", () => {
  const time = new FakeTime();
  time.now = 1000.3;
  const { ticker, deliveredAt } = record(time, 1000.3, 10);
  ticker.start();
  time.advance(1500, 1);
  assert.equal(deliveredAt.length, 49);
  deliveredAt.forEach((at, i) => {
    assert.ok(at >= 1000.3 + (i + 1) * 10, `tick ${i + 1} at ${at}`);
  });
  ticker.stop();
});

test("missed ticks after a stall are delivered at once, and reported", () => {
  const time = new FakeTime();
  const { ticker, deliveredAt, catchUps } = record(time, 0, 10);
  ticker.start();
  time.advance(50);
  assert.equal(deliveredAt.length, 5);
  time.stall(555);
  time.advance(556);
  assert.equal(deliveredAt.length, 55);
  assert.deepEqual(catchUps, [{ missed: 50, lateMs: 495 }]);
  assert.ok(deliveredAt.slice(5).every((at) => at === 555));
  ticker.stop();
});

test("catch-up is bounded per event-loop turn; the rest follows on the next turn", () => {
  const time = new FakeTime();
  const { ticker, deliveredAt } = record(time, 0, 1, 100);
  ticker.start();
  time.stall(1000);
  time.advance(1000); // fires the first timer
  assert.equal(deliveredAt.length, 1000);
  ticker.stop();

  const t2 = new FakeTime();
  const r2 = record(t2, 0, 1, 100);
  r2.ticker.start();
  t2.stall(1000);
  t2.fireTimersOnly();
  assert.equal(r2.deliveredAt.length, 100);
  assert.equal(t2.pendingImmediates(), 1);
  t2.runImmediates();
  assert.equal(r2.deliveredAt.length, 1000);
  r2.ticker.stop();
});

test("stop() stops delivery; start() resumes from the same count", () => {
  const time = new FakeTime();
  const { ticker, deliveredAt } = record(time, 0, 10);
  ticker.start();
  time.advance(30);
  ticker.stop();
  time.advance(100);
  assert.equal(deliveredAt.length, 3);
  ticker.start();
  time.advance(101);
  assert.equal(ticker.ticks, 10);
  ticker.stop();
});

test("the real clock is monotonic and the real ticker ticks", async () => {
  const clock = new MonotonicClock();
  const a = clock.nowMs();
  const boot = clock.nowMs();
  let n = 0;
  let lastTooEarly = false;
  await new Promise<void>((resolve) => {
    const ticker = new Ticker({
      clock,
      bootMs: boot,
      tickMs: 2,
      onTick: () => {
        n++;
        if (clock.nowMs() < boot + n * 2) lastTooEarly = true;
        if (n === 10) {
          ticker.stop();
          resolve();
        }
      },
    });
    ticker.start();
  });
  assert.ok(clock.nowMs() >= a);
  assert.equal(lastTooEarly, false);
});

/** A ticker told that only ticks `every()` apart can change anything (a core's timeouts: the next one
 *  is the next multiple of every(), counted from the ticks delivered); counts its timer wake-ups. */
function sleepy(time: FakeTime, every: () => number) {
  const deliveredAt: number[] = [];
  const catchUps: number[] = [];
  let wakeups = 0;
  const timers: TimerFunctions = {
    setTimeout: (fn, ms) =>
      time.setTimeout(() => {
        wakeups++;
        fn();
      }, ms),
    clearTimeout: (h) => time.clearTimeout(h),
    setImmediate: (fn) => time.setImmediate(fn),
    clearImmediate: (h) => time.clearImmediate(h),
  };
  const ticker: Ticker = new Ticker({
    clock: time,
    bootMs: 0,
    tickMs: 10,
    timers,
    ticksToNextTimeout: () => every() - (ticker.ticks % every()),
    onTick: () => deliveredAt.push(time.now),
    onCatchUp: (missed) => catchUps.push(missed),
  });
  return { ticker, deliveredAt, catchUps, wakeups: () => wakeups };
}

test("with ticksToNextTimeout the ticker wakes only at timeouts, delivering the quiet ticks with them", () => {
  // (Early timers, as in the first test, cost an extra wake-up each: the ticker then waits for the tick.)
  const time = new FakeTime();
  const { ticker, deliveredAt, catchUps, wakeups } = sleepy(time, () => 5);
  ticker.start();
  time.advance(1000);
  assert.equal(ticker.ticks, 100);
  assert.ok(wakeups() <= 21, `${wakeups()} wake-ups for 20 timeouts`);
  for (const [i, at] of deliveredAt.entries()) assert.ok(at >= (i + 1) * 10, `tick ${i + 1} at ${at}`);
  assert.deepEqual(catchUps, [], "quiet ticks delivered together are not late");
  ticker.stop();
});

test("sync() delivers every due tick before an input, never one that is not due", () => {
  const time = new FakeTime();
  const { ticker, deliveredAt } = sleepy(time, () => 50);
  ticker.start();
  time.stall(237);
  ticker.sync();
  assert.equal(ticker.ticks, 23);
  time.stall(239.9);
  ticker.sync();
  assert.equal(ticker.ticks, 23);
  time.advance(1000);
  assert.equal(ticker.ticks, 100);
  for (const [i, at] of deliveredAt.entries()) assert.ok(at >= (i + 1) * 10, `tick ${i + 1} at ${at}`);
  ticker.stop();
});

test("rearm() brings the wake-up forward when an input made the next timeout closer", () => {
  const time = new FakeTime();
  let every = 100;
  const { ticker, wakeups } = sleepy(time, () => every);
  ticker.start();
  time.advance(55);
  every = 2; // e.g. this node just became leader: heartbeats every 2 ticks
  ticker.sync();
  ticker.rearm();
  time.advance(75);
  assert.equal(ticker.ticks, 6);
  assert.equal(wakeups(), 1, "woke at tick 6 (the next multiple of 2), not at tick 100");
  every = 1000;
  ticker.rearm(); // further away: the pending timer (tick 8) stays
  time.advance(95);
  assert.equal(ticker.ticks, 8);
  assert.equal(wakeups(), 2);
  ticker.stop();
});

test("a wake-up later than the timeout it was set for is reported as a stall", () => {
  const time = new FakeTime();
  const { ticker, catchUps } = sleepy(time, () => 5);
  ticker.start();
  time.stall(500); // the timer for tick 5 fires at 500 ms: 46 ticks late
  time.advance(500);
  assert.deepEqual(catchUps, [46]);
  assert.equal(ticker.ticks, 50);
  ticker.stop();
});

test("a stall's catch-up is delivered held until the input that arrived meanwhile has been read", () => {
  const time = new FakeTime();
  const ticks: boolean[] = [];
  let released = 0;
  const ticker = new Ticker({
    clock: time,
    bootMs: 0,
    tickMs: 10,
    timers: time,
    onTick: (held) => ticks.push(held),
    onRelease: () => {
      released++;
      ticks.push(false); // marks the release in the sequence
    },
  });
  ticker.start();
  time.advance(50);
  assert.deepEqual(ticks, [false, false, false, false, false], "on time: plain ticks");
  time.stall(300);
  time.fireTimersOnly(); // the late timer's turn: the 25 missed ticks, held
  assert.equal(ticks.length, 30);
  assert.ok(
    ticks.slice(5).every((h) => h),
    "the catch-up is held",
  );
  // Input read in this turn's poll phase sees the true tick count, still held.
  time.now = 315;
  ticker.sync();
  assert.equal(ticks.length, 31);
  assert.equal(ticks[30], true);
  time.runImmediatesOnce(); // this turn's check phase: not yet (input queued by poll may follow)
  assert.equal(released, 0);
  time.runImmediatesOnce(); // after the next poll phase
  assert.equal(released, 1);
  time.advance(400);
  assert.ok(
    ticks.slice(32).every((h) => !h),
    "after the release: plain ticks again",
  );
  assert.equal(released, 1);
  ticker.stop();
});

test("without onRelease nothing is held (hosts that do not read input between ticks)", () => {
  const time = new FakeTime();
  const ticks: boolean[] = [];
  const ticker = new Ticker({
    clock: time,
    bootMs: 0,
    tickMs: 10,
    timers: time,
    onTick: (h) => ticks.push(h),
  });
  ticker.start();
  time.stall(300);
  time.advance(301);
  assert.equal(ticks.length, 30);
  assert.ok(ticks.every((h) => !h));
  ticker.stop();
});
