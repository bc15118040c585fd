// The simulator's default run for a seed, shared by `npm run sim` and the regression tests.

import type { FaultLevel, SimOptions } from "./run.ts";
import { simFileDisk, simMemDisk } from "./sim-disk.ts";

export interface SeedDefaults {
  sizes: readonly number[];
  faults: FaultLevel;
  durationMs: number;
  clients: number;
  keys: number;
  trace: boolean;
}

export const DEFAULTS: SeedDefaults = {
  sizes: [3, 5],
  faults: "heavy",
  durationMs: 60_000,
  clients: 6,
  keys: 5,
  trace: false,
};

export function seedOptions(seed: number, d: SeedDefaults = DEFAULTS): SimOptions {
  return {
    seed,
    nodes: d.sizes[seed % d.sizes.length]!,
    faults: d.faults,
    durationMs: d.durationMs,
    clients: d.clients,
    keys: d.keys,
    snapshotEveryEntries: 50,
    trace: d.trace,
    // Most seeds run the real WAL on the timed in-memory disk; every fourth the simpler twin.
    makeDisk: (id, ctx) => (seed % 4 === 3 ? simMemDisk(id) : simFileDisk(id, ctx)),
  };
}
