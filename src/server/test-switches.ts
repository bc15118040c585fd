// Test-only switches, read from the environment by startNode for the chaos harness (src/chaos). Never set
// them in production: RAFTKV_TEST_POWER_LOSS=1 makes a SIGKILL lose what a power loss would (see
// src/storage/power-loss-file-system.ts), RAFTKV_TEST_CLOCK_RATE=<r> runs the node's monotonic clock at
// r times real time (clock-rate trouble; the cluster's rates must stay within driftBound of each other).

import { performance } from "node:perf_hooks";
import type { MonotonicTime } from "../clock/monotonic-clock.ts";
import { RaftKvError } from "../lib/errors.ts";
import type { FileSystem } from "../storage/file-system.ts";
import { POWER_LOSS_ENV, PowerLossFileSystem } from "../storage/power-loss-file-system.ts";
import { RealFileSystem } from "../storage/real-file-system.ts";
import type { Logger } from "./logging.ts";

export const CLOCK_RATE_ENV = "RAFTKV_TEST_CLOCK_RATE";

type Env = Readonly<Record<string, string | undefined>>;

/** The real file system, or (RAFTKV_TEST_POWER_LOSS=1) the power-loss emulation over it. */
export function fileSystemFor(env: Env, dataDir: string, nodeId: number, log: Logger): FileSystem {
  const v = env[POWER_LOSS_ENV];
  if (v === undefined || v === "" || v === "0") return new RealFileSystem();
  if (v !== "1")
    throw new RaftKvError({
      code: "CONFIG",
      message: `${POWER_LOSS_ENV} must be 1 or 0, got ${JSON.stringify(v)}`,
      nodeId,
      hint: "it is a test-only switch: unset it",
    });
  log.warn({ test: POWER_LOSS_ENV }, "TEST ONLY: power-loss emulation on (a kill loses unsynced writes)");
  return new PowerLossFileSystem(new RealFileSystem(), dataDir, {
    onRecovery: (r) =>
      log.warn(
        {
          test: POWER_LOSS_ENV,
          kind: r.kind,
          files: r.files,
          dirs: r.dirs,
          dropped: r.dropped,
          rolledBack: r.rolledBack,
          restored: r.restored,
        },
        r.kind === "rebuilt"
          ? "TEST ONLY: power loss emulated: the data folder was reset to what was synced"
          : "TEST ONLY: power-loss emulation adopted the data folder as durable",
      ),
  });
}

/** A clock running at `rate` times performance.now() from the moment it is made. */
export class RatedClock implements MonotonicTime {
  private readonly origin = performance.now();
  constructor(readonly rate: number) {}

  nowMs(): number {
    return this.origin + (performance.now() - this.origin) * this.rate;
  }
}

/** null (the real clock), or (RAFTKV_TEST_CLOCK_RATE=r, 0.5 <= r <= 2) a clock at rate r. */
export function clockFor(env: Env, nodeId: number, log: Logger): RatedClock | null {
  const v = env[CLOCK_RATE_ENV];
  if (v === undefined || v === "") return null;
  const rate = Number(v);
  if (!Number.isFinite(rate) || rate < 0.5 || rate > 2)
    throw new RaftKvError({
      code: "CONFIG",
      message: `${CLOCK_RATE_ENV} must be a number in 0.5..2, got ${JSON.stringify(v)}`,
      nodeId,
      hint: "it is a test-only switch: unset it",
    });
  if (rate === 1) return null;
  log.warn({ test: CLOCK_RATE_ENV, rate }, `TEST ONLY: this node's clock runs at ${rate} times real time`);
  return new RatedClock(rate);
}
