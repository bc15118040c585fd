// A load-generator thread: keeps one client per target and runs closed-loop load on request (each of
// `concurrency` users sends its next request when the previous one is answered), timing every request.

import { performance } from "node:perf_hooks";
import { parentPort } from "node:worker_threads";
import { Prng } from "../lib/prng.ts";
import { Samples } from "./stats.ts";
import { type Driver, makeDriver, type Target, type Workload } from "./workloads.ts";

export interface WorkerRun {
  readonly target: Target;
  readonly workload: Workload;
  /** This thread's share of the row's concurrent requests. */
  readonly concurrency: number;
  readonly warmupMs: number;
  readonly durationMs: number;
  readonly keySpace: number;
  readonly valueBytes: number;
  readonly seed: number;
  /** For "fill": write keys [from, to) once each, with no time limit. */
  readonly fill?: { readonly from: number; readonly to: number };
}

export interface WorkerResult {
  /** Requests answered without error within the measured window. */
  readonly ops: number;
  readonly errors: number;
  /** Latency of each successful request started in the window, in ms. */
  readonly latencies: Float64Array;
  readonly errorSamples: readonly string[];
}

export type ToWorker = { readonly type: "run"; readonly run: WorkerRun } | { readonly type: "close" };
export type FromWorker =
  | { readonly type: "done"; readonly result: WorkerResult }
  | { readonly type: "failed"; readonly error: string };

const MAX_ERROR_SAMPLES = 5;

const drivers = new Map<string, Driver>();

function driverFor(r: WorkerRun): Driver {
  const id = JSON.stringify(r.target);
  let d = drivers.get(id);
  if (d === undefined) {
    // Enough write sessions for the largest share this thread will run (a driver lives across rows).
    d = makeDriver(r.target, {
      keySpace: r.keySpace,
      valueBytes: r.valueBytes,
      seed: r.seed,
      concurrency: 1024,
    });
    drivers.set(id, d);
  }
  return d;
}

async function run(r: WorkerRun): Promise<WorkerResult> {
  const driver = driverFor(r);
  const prng = new Prng(r.seed);
  const samples = new Samples();
  const errorSamples: string[] = [];
  let ops = 0;
  let errors = 0;
  const started = performance.now();
  const from = r.fill === undefined ? started + r.warmupMs : started;
  const end = r.fill === undefined ? from + r.durationMs : Number.POSITIVE_INFINITY;
  let nextFill = r.fill?.from ?? 0;
  const nextKey = (): number | null => {
    if (r.fill === undefined) return prng.int(0, r.keySpace - 1);
    return nextFill < r.fill.to ? nextFill++ : null;
  };
  const user = async (): Promise<void> => {
    for (;;) {
      const t0 = performance.now();
      if (t0 >= end) return;
      const k = nextKey();
      if (k === null) return;
      try {
        await driver.op(r.workload, k);
      } catch (err) {
        const t1 = performance.now();
        if (t1 >= from && t1 <= end) errors++;
        if (errorSamples.length < MAX_ERROR_SAMPLES)
          errorSamples.push(err instanceof Error ? err.message : String(err));
        continue;
      }
      const t1 = performance.now();
      if (t1 >= from && t1 <= end) ops++;
      if (t0 >= from) samples.push(t1 - t0);
    }
  };
  await Promise.all(Array.from({ length: r.concurrency }, () => user()));
  return { ops, errors, latencies: samples.take(), errorSamples };
}

const port = parentPort;
if (port === null) throw new Error("worker.ts runs as a worker thread (see generator.ts)");
port.on("message", (m: ToWorker) => {
  if (m.type === "close") {
    for (const d of drivers.values()) d.close();
    drivers.clear();
    port.close();
    return;
  }
  run(m.run).then(
    (result) =>
      port.postMessage({ type: "done", result } satisfies FromWorker, [
        result.latencies.buffer as ArrayBuffer,
      ]),
    (err: unknown) => port.postMessage({ type: "failed", error: String(err) } satisfies FromWorker),
  );
});
