// Ticker: delivers tick k no earlier than bootMs + k * tickMs, catching up missed ticks after a stall.
//
// The replica converts the core's tick-based lease into local ms as bootMs + tick * tickMs, so the one
// promise that matters is "never early" (thesis §6.4.1: a late tick only shortens what a node believes,
// an early one would let a lease outlive the followers' election timers). After the event loop stalls,
// every missed tick is delivered at once, at most maxTicksPerTurn per event-loop turn (the rest follow on
// the next turn), so a long stall cannot block the loop either.
//
// An idle node need not wake every tick: given ticksToNextTimeout (the core's count of ticks until one can
// change anything), the ticker sleeps until that tick and delivers the quiet ones with it. The host then
// calls sync() before every input, which delivers every tick already due, so each input still sees the
// true tick count (a heartbeat counted at a stale tick would let a follower's election timer run early),
// and rearm() after it, in case the input brought the next timeout closer (a new leader's heartbeats).
//
// A stall's catch-up is delivered *held* (onTick(true)): what arrived during the stall (the leader's
// heartbeats, a follower's acks) is still unread in the sockets, so the core must not conclude silence
// from counting the missed ticks alone. Once libuv's poll phase has read that input (two setImmediate
// hops: the first runs in this turn's check phase, the second after the next poll), onRelease lets the
// core act on any timeout still due. Without it a node back from a 250 ms stall stepped down or
// campaigned with its peers' answers waiting to be read (seen on a saturated 2-core machine).

import type { MonotonicTime } from "./monotonic-clock.ts";

/** The timer functions the ticker uses; tests pass a fake. */
export interface TimerFunctions {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  setImmediate(fn: () => void): unknown;
  clearImmediate(handle: unknown): void;
}

export const realTimers: TimerFunctions = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
  setImmediate: (fn) => setImmediate(fn),
  clearImmediate: (h) => clearImmediate(h as NodeJS.Immediate),
};

export interface TickerOptions {
  readonly clock: MonotonicTime;
  /** Local time of tick 0 (the replica's bootMs). */
  readonly bootMs: number;
  /** Tick length in ms (> 0). */
  readonly tickMs: number;
  /** Called once per tick, in order; `held` while catching up after a stall, until onRelease. */
  readonly onTick: (held: boolean) => void;
  /** Called once the input that arrived during a stall has been read (after held ticks). */
  readonly onRelease?: () => void;
  /** Called when a wake-up finds more than one tick due: the event loop stalled for `lateMs`. */
  readonly onCatchUp?: (missedTicks: number, lateMs: number) => void;
  /** Ticks until the next one that can change anything (>= 1); default 1: wake on every tick. */
  readonly ticksToNextTimeout?: () => number;
  /** Most ticks delivered in one event-loop turn (default 10,000). */
  readonly maxTicksPerTurn?: number;
  readonly timers?: TimerFunctions;
}

export class Ticker {
  private readonly o: TickerOptions;
  private readonly timers: TimerFunctions;
  private readonly maxTicksPerTurn: number;
  private delivered = 0;
  /** The tick the pending timer is set for. */
  private wakeTick = 0;
  private timer: unknown = null;
  private immediate: unknown = null;
  /** A release is pending: ticks are delivered held until it runs. */
  private release: unknown = null;
  private running = false;

  constructor(o: TickerOptions) {
    if (!(o.tickMs > 0 && Number.isFinite(o.tickMs)))
      throw new RangeError(`tickMs must be > 0, got ${o.tickMs}`);
    const max = o.maxTicksPerTurn ?? 10_000;
    if (!Number.isSafeInteger(max) || max < 1)
      throw new RangeError(`maxTicksPerTurn must be >= 1, got ${max}`);
    this.o = o;
    this.timers = o.timers ?? realTimers;
    this.maxTicksPerTurn = max;
  }

  /** Ticks delivered so far (the core's tick count when every tick goes to one core). */
  get ticks(): number {
    return this.delivered;
  }

  /** Local time at which tick k may be delivered: the same expression the replica uses for leases. */
  dueAtMs(k: number): number {
    return this.o.bootMs + k * this.o.tickMs;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.schedule();
  }

  stop(): void {
    this.running = false;
    if (this.timer !== null) this.timers.clearTimeout(this.timer);
    if (this.immediate !== null) this.timers.clearImmediate(this.immediate);
    if (this.release !== null) this.timers.clearImmediate(this.release);
    this.timer = null;
    this.immediate = null;
    this.release = null;
  }

  /** Delivers every tick whose due time has come, at once (call before each input; see the top). */
  sync(): void {
    if (!this.running) return;
    const now = this.o.clock.nowMs();
    if (now < this.dueAtMs(this.delivered + 1)) return; // the usual case: nothing due yet
    const due = this.dueTicks(now);
    const held = this.release !== null;
    while (this.running && this.delivered < due) {
      this.delivered++;
      this.o.onTick(held);
    }
  }

  /** Wakes earlier if the next timeout moved closer than the pending timer (call after each input). */
  rearm(): void {
    if (!this.running || this.timer === null) return;
    if (this.nextWakeTick() >= this.wakeTick) return;
    this.timers.clearTimeout(this.timer);
    this.timer = null;
    this.schedule();
  }

  private nextWakeTick(): number {
    const hint = this.o.ticksToNextTimeout?.() ?? 1;
    return this.delivered + (Number.isSafeInteger(hint) && hint >= 1 ? hint : 1);
  }

  /** Highest tick number whose due time has come (never one whose due time is still ahead). */
  private dueTicks(now: number): number {
    let k = Math.floor((now - this.o.bootMs) / this.o.tickMs);
    while (k > 0 && this.dueAtMs(k) > now) k--; // floating-point guard: never early
    while (this.dueAtMs(k + 1) <= now) k++;
    return Math.max(k, 0);
  }

  /** Ticks are held until the input waiting in the sockets has been read: after libuv's next poll. */
  private holdUntilInputRead(): void {
    if (this.release !== null || this.o.onRelease === undefined) return;
    this.release = this.timers.setImmediate(() => {
      if (!this.running) return;
      this.release = this.timers.setImmediate(() => {
        this.release = null;
        if (this.running) this.o.onRelease?.();
      });
    });
  }

  private schedule(): void {
    if (!this.running) return;
    this.wakeTick = this.nextWakeTick();
    const waitMs = Math.max(0, Math.ceil(this.dueAtMs(this.wakeTick) - this.o.clock.nowMs()));
    this.timer = this.timers.setTimeout(() => {
      this.timer = null;
      this.fire();
    }, waitMs);
  }

  private fire(continuing = false): void {
    if (!this.running) return;
    const now = this.o.clock.nowMs();
    const due = this.dueTicks(now);
    // Late: more than the tick the timer was set for is due (ticks before it were quiet by design).
    const missed = due - Math.max(this.delivered, this.wakeTick - 1);
    if (missed > 1 && !continuing) {
      this.o.onCatchUp?.(missed, now - this.dueAtMs(this.wakeTick));
      this.holdUntilInputRead();
    }
    const target = Math.min(due, this.delivered + this.maxTicksPerTurn);
    const held = this.release !== null;
    while (this.running && this.delivered < target) {
      this.delivered++;
      this.o.onTick(held);
    }
    if (!this.running) return;
    if (this.delivered < due) {
      // Bounded catch-up: let I/O run, then continue.
      this.immediate = this.timers.setImmediate(() => {
        this.immediate = null;
        this.fire(true);
      });
      return;
    }
    this.schedule();
  }
}
