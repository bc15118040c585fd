// Ticker: delivers tick k no earlier than bootMs + k * tickMs, catching up missed ticks after a stall.
//
// The replica converts the core's tick-based lease into local ms as bootMs + tick * tickMs, so the one
// promise that matters is "never early" (thesis §6.4.1: a late tick only shortens what a node believes,
// an early one would let a lease outlive the followers' election timers). After the event loop stalls,
// every missed tick is delivered at once, at most maxTicksPerTurn per event-loop turn (the rest follow on
// the next turn), so a long stall cannot block the loop either.

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
  /** Called once per tick, in order. */
  readonly onTick: () => void;
  /** Called when a wake-up finds more than one tick due: the event loop stalled for `lateMs`. */
  readonly onCatchUp?: (missedTicks: number, lateMs: number) => void;
  /** Most ticks delivered in one event-loop turn (default 10,000). */
  readonly maxTicksPerTurn?: number;
  readonly timers?: TimerFunctions;
}

export class Ticker {
  private readonly o: TickerOptions;
  private readonly timers: TimerFunctions;
  private readonly maxTicksPerTurn: number;
  private delivered = 0;
  private timer: unknown = null;
  private immediate: unknown = null;
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
    this.timer = null;
    this.immediate = null;
  }

  /** Highest tick number whose due time has come (never one whose due time is still ahead). */
  private dueTicks(now: number): number {
    let k = Math.floor((now - this.o.bootMs) / this.o.tickMs);
    while (k > 0 && this.dueAtMs(k) > now) k--; // floating-point guard: never early
    while (this.dueAtMs(k + 1) <= now) k++;
    return Math.max(k, 0);
  }

  private schedule(): void {
    if (!this.running) return;
    const waitMs = Math.max(0, Math.ceil(this.dueAtMs(this.delivered + 1) - this.o.clock.nowMs()));
    this.timer = this.timers.setTimeout(() => {
      this.timer = null;
      this.fire();
    }, waitMs);
  }

  private fire(continuing = false): void {
    if (!this.running) return;
    const now = this.o.clock.nowMs();
    const due = this.dueTicks(now);
    const missed = due - this.delivered;
    if (missed > 1 && !continuing) this.o.onCatchUp?.(missed, now - this.dueAtMs(this.delivered + 1));
    const target = Math.min(due, this.delivered + this.maxTicksPerTurn);
    while (this.running && this.delivered < target) {
      this.delivered++;
      this.o.onTick();
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
