// A fuzz worker thread: runs one target for a time budget, posting findings and final stats, and
// copying each input into shared memory first so the main thread can save one that never returns.

import { parentPort, workerData } from "node:worker_threads";
import { fuzz } from "./engine.ts";
import { TARGETS } from "./targets/index.ts";
import { SHARED_HEADER_INTS, type WorkerInput, type WorkerMessage } from "./worker-protocol.ts";

async function main(): Promise<void> {
  const port = parentPort;
  if (port === null) throw new Error("fuzz worker started outside a worker thread");
  const w = workerData as WorkerInput;
  const header = new Int32Array(w.shared, 0, SHARED_HEADER_INTS);
  const body = new Uint8Array(w.shared, SHARED_HEADER_INTS * 4);
  const stats = await fuzz(TARGETS[w.target], {
    seed: w.seed,
    durationMs: w.durationMs,
    now: () => performance.now(),
    beforeInput: (input) => {
      if (input.length <= body.length) {
        body.set(input);
        Atomics.store(header, 1, input.length);
      } else Atomics.store(header, 1, -1);
      Atomics.store(header, 2, 1);
      Atomics.add(header, 0, 1);
    },
    afterInput: () => {
      Atomics.store(header, 2, 0);
    },
    onFinding: (f, input) => {
      const message: WorkerMessage = {
        type: "finding",
        invariant: f.invariant,
        signature: f.signature,
        detail: f.detail,
        stack: f.stack ?? null,
        input,
      };
      port.postMessage(message);
    },
  });
  const message: WorkerMessage = {
    type: "stats",
    stats: { ...stats, labels: [...stats.labels], signatures: [...stats.signatures] },
  };
  port.postMessage(message);
}

await main();
