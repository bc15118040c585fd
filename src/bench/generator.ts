// The load generator: a pool of worker threads (worker.ts) that split a row's concurrent requests between
// them and whose timings are merged here; also the generator's own CPU time, so its ceiling is visible.

import { Worker } from "node:worker_threads";
import { concat } from "./stats.ts";
import type { FromWorker, ToWorker, WorkerResult, WorkerRun } from "./worker.ts";

export type RowRun = Omit<WorkerRun, "concurrency" | "seed" | "fill"> & {
  /** Concurrent requests in all, split between the threads. */
  readonly concurrency: number;
  readonly seed: number;
};

export interface MergedResult {
  readonly ops: number;
  readonly errors: number;
  readonly latencies: Float64Array;
  readonly errorSamples: readonly string[];
}

export class LoadGenerator {
  private constructor(private readonly workers: readonly Worker[]) {}

  /** Starts `threads` worker threads; each registers the tsx loader, then loads worker.ts. */
  static start(threads: number): LoadGenerator {
    const worker = JSON.stringify(new URL("./worker.ts", import.meta.url).href);
    const tsx = JSON.stringify(import.meta.resolve("tsx/esm/api"));
    const boot = `import(${tsx}).then((m) => { m.register(); return import(${worker}); });`;
    const workers = Array.from({ length: threads }, () => new Worker(boot, { eval: true }));
    for (const w of workers) w.unref();
    return new LoadGenerator(workers);
  }

  get threads(): number {
    return this.workers.length;
  }

  /** Runs one row: each thread gets an equal share of the concurrency (threads with none sit out). */
  async run(row: RowRun): Promise<MergedResult> {
    const n = this.workers.length;
    const shares = this.workers.map(
      (_, i) => Math.floor(row.concurrency / n) + (i < row.concurrency % n ? 1 : 0),
    );
    const parts = await Promise.all(
      this.workers.map((w, i) =>
        shares[i] === 0 ? null : this.ask(w, { ...row, concurrency: shares[i]!, seed: row.seed * 977 + i }),
      ),
    );
    return merge(parts.filter((p): p is WorkerResult => p !== null));
  }

  /** Writes keys [0, count) once each, `concurrency` at a time, split between the threads. */
  /** Puts keys [offset, offset + count) once each (offset: a fill in parts, scripts/bench-scale.ts). */
  async fill(
    row: Omit<RowRun, "workload" | "warmupMs" | "durationMs">,
    count: number,
    offset = 0,
  ): Promise<MergedResult> {
    const n = this.workers.length;
    const per = Math.ceil(count / n);
    const parts = await Promise.all(
      this.workers.map((w, i) =>
        this.ask(w, {
          ...row,
          workload: "fill",
          warmupMs: 0,
          durationMs: 0,
          concurrency: Math.max(1, Math.ceil(row.concurrency / n)),
          seed: row.seed * 977 + i,
          fill: { from: offset + i * per, to: offset + Math.min(count, (i + 1) * per) },
        }),
      ),
    );
    return merge(parts);
  }

  async close(): Promise<void> {
    await Promise.all(
      this.workers.map(
        (w) =>
          new Promise<void>((resolve) => {
            w.once("exit", () => resolve());
            w.postMessage({ type: "close" } satisfies ToWorker);
            setTimeout(() => void w.terminate().then(() => resolve()), 2000).unref();
          }),
      ),
    );
  }

  private ask(w: Worker, run: WorkerRun): Promise<WorkerResult> {
    return new Promise<WorkerResult>((resolve, reject) => {
      const onMessage = (m: FromWorker): void => {
        w.off("message", onMessage);
        w.off("error", onError);
        if (m.type === "done") resolve(m.result);
        else reject(new Error(`load worker failed: ${m.error}`));
      };
      const onError = (err: Error): void => {
        w.off("message", onMessage);
        reject(err);
      };
      w.on("message", onMessage);
      w.once("error", onError);
      w.postMessage({ type: "run", run } satisfies ToWorker);
    });
  }
}

function merge(parts: readonly WorkerResult[]): MergedResult {
  return {
    ops: parts.reduce((n, p) => n + p.ops, 0),
    errors: parts.reduce((n, p) => n + p.errors, 0),
    latencies: concat(parts.map((p) => p.latencies)),
    errorSamples: parts.flatMap((p) => p.errorSamples).slice(0, 5),
  };
}
