// Concurrent clients on a small key space (put, get, delete, cas through the real RaftKvClient), each op
// recorded in the history format of src/sim/history.ts with performance.now() times, never rounded.
//
// Outcomes: ok:true when the client library returned; for writes any error is ok:null (the library may
// have sent an attempt that a leader applied before the error, so no failure is certain); for reads a
// timeout is ok:null and a refusal ok:false (a read never takes effect either way).

import { performance } from "node:perf_hooks";
import { RaftKvClient } from "../client/index.ts";
import { RaftKvError } from "../lib/errors.ts";
import type { Prng } from "../lib/prng.ts";
import type { HistoryOp, OpKind } from "../sim/history.ts";

export interface WorkloadOptions {
  readonly clients: number;
  readonly keys: number;
  readonly endpoints: readonly string[];
  /** Whole-request deadline of the client library (retries included). */
  readonly timeoutMs: number;
  /** Deadline of one attempt. */
  readonly attemptTimeoutMs: number;
  /** Share of reads made with readIndex rather than the lease. */
  readonly readIndexShare: number;
  /** Unique per run: client session ids start with it. */
  readonly runId: string;
}

export interface ErrorTally {
  readonly byCode: Record<string, number>;
  /** A few messages of errors that are not RaftKvErrors (bugs, for the report). */
  readonly unexpected: string[];
}

/** Ops per client: a bound on the loop, far above what any run reaches. */
const MAX_OPS_PER_CLIENT = 10_000_000;
const MAX_UNEXPECTED_KEPT = 20;

export class Workload {
  readonly history: HistoryOp[] = [];
  readonly errors: ErrorTally = { byCode: {}, unexpected: [] };
  private stopped = false;
  private readonly loops: Promise<void>[] = [];
  private writesHeld = false;
  private inFlightWrites = 0;
  private succeeded = 0;

  constructor(
    private readonly o: WorkloadOptions,
    private readonly prng: Prng,
  ) {}

  get keyNames(): string[] {
    return Array.from({ length: this.o.keys }, (_, i) => `k${i}`);
  }

  start(): void {
    for (let i = 0; i < this.o.clients; i++) this.loops.push(this.loop(i, this.prng.fork()));
  }

  /** While held, clients read (lease consistency) instead of writing; writes in hand finish. */
  holdWrites(held: boolean): void {
    this.writesHeld = held;
  }

  /** Operations that returned ok so far. */
  get okCount(): number {
    return this.succeeded;
  }

  /** Writes sent and not yet answered. */
  get writesInFlight(): number {
    return this.inFlightWrites;
  }

  /** Lets every client finish the op in hand (each is bounded by the client deadline). */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
  }

  /**
   * Reads every key with readIndex consistency as client `clientNo`, retrying each up to `attempts`
   * times; every attempt goes into the history. Returns the values read (undefined: never read).
   */
  async finalReads(clientNo: number, attempts: number): Promise<Map<string, string | null | undefined>> {
    const c = this.client(clientNo, this.prng.fork());
    const out = new Map<string, string | null | undefined>();
    try {
      for (const key of this.keyNames) {
        out.set(key, undefined);
        for (let a = 0; a < attempts; a++) {
          const op = await this.get(c, clientNo, key, "readIndex");
          if (op.ok === true) {
            out.set(key, op.result as string | null);
            break;
          }
        }
      }
    } finally {
      c.close();
    }
    return out;
  }

  private client(i: number, prng: Prng): RaftKvClient {
    return new RaftKvClient({
      endpoints: prng.shuffle(this.o.endpoints),
      timeoutMs: this.o.timeoutMs,
      attemptTimeoutMs: this.o.attemptTimeoutMs,
      clientId: `${this.o.runId}-c${i}`,
      seed: prng.nextU32(),
    });
  }

  private async loop(i: number, prng: Prng): Promise<void> {
    const c = this.client(i, prng);
    /** What this client last saw in each key, to make its cas sometimes succeed. */
    const seen = new Map<string, string | null>();
    try {
      for (let n = 0; n < MAX_OPS_PER_CLIENT && !this.stopped; n++) {
        const key = prng.pick(this.keyNames);
        const value = `${i}.${n}`;
        const r = prng.next();
        if (r < 0.45 || this.writesHeld) {
          const readIndex = prng.chance(this.o.readIndexShare) && !this.writesHeld;
          const op = await this.get(c, i, key, readIndex ? "readIndex" : "lease");
          if (op.ok === true) seen.set(key, op.result as string | null);
        } else if (r < 0.7) {
          const op = await this.record(i, "put", key, value, null, async () => {
            await c.put(key, value);
            return null;
          });
          if (op.ok === true) seen.set(key, value);
        } else if (r < 0.9) {
          const expected = prng.chance(0.8) ? (seen.get(key) ?? null) : null;
          let current: string | null = null;
          const op = await this.record(i, "cas", key, value, expected, async () => {
            const res = await c.cas(key, expected, value);
            current = res.current === null ? null : new TextDecoder().decode(res.current);
            return res.swapped;
          });
          if (op.ok === true) seen.set(key, current);
        } else {
          const op = await this.record(i, "delete", key, null, null, async () => {
            await c.delete(key);
            return null;
          });
          if (op.ok === true) seen.set(key, null);
        }
        await sleep(prng.int(0, 10));
      }
    } finally {
      c.close();
    }
  }

  private get(
    c: RaftKvClient,
    i: number,
    key: string,
    consistency: "lease" | "readIndex",
  ): Promise<HistoryOp> {
    return this.record(i, "get", key, null, null, () => c.getString(key, { consistency }));
  }

  /** Runs `f`, appends the op to the history and returns it. */
  private async record(
    client: number,
    op: OpKind,
    key: string,
    value: string | null,
    expected: string | null,
    f: () => Promise<string | boolean | null>,
  ): Promise<HistoryOp> {
    const call = performance.now();
    let rec: HistoryOp;
    const write = op !== "get";
    if (write) this.inFlightWrites++;
    try {
      const result = await f();
      rec = { client, op, key, value, expected, call, return: performance.now(), ok: true, result };
      this.succeeded++;
    } catch (err) {
      const returned = performance.now();
      const code = this.tally(err);
      const certainNoEffect = op === "get" && code !== "DEADLINE_EXCEEDED";
      rec = certainNoEffect
        ? { client, op, key, value, expected, call, return: returned, ok: false, result: null }
        : { client, op, key, value, expected, call, return: null, ok: null, result: null };
    } finally {
      if (write) this.inFlightWrites--;
    }
    this.history.push(rec);
    return rec;
  }

  private tally(err: unknown): string {
    const code = err instanceof RaftKvError ? err.code : "EXCEPTION";
    this.errors.byCode[code] = (this.errors.byCode[code] ?? 0) + 1;
    if ((code === "EXCEPTION" || code === "INTERNAL") && this.errors.unexpected.length < MAX_UNEXPECTED_KEPT)
      this.errors.unexpected.push(err instanceof Error ? err.message : String(err));
    return code;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
