// The real monotonic clock: performance.now(), the only place raftkv reads time (never the wall clock).

import { performance } from "node:perf_hooks";

/** Local monotonic time; structurally the replica's Clock seam. */
export interface MonotonicTime {
  nowMs(): number;
}

/** Milliseconds since an arbitrary origin; never goes backwards, unaffected by wall-clock changes. */
export class MonotonicClock implements MonotonicTime {
  nowMs(): number {
    return performance.now();
  }
}
