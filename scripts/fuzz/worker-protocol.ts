// What the campaign's main thread and its fuzz workers share: the start data, the messages, and the
// layout of the shared memory the hang watchdog reads.

import type { TargetName } from "./target.ts";

export const SHARED_HEADER_INTS = 4;

export interface WorkerInput {
  readonly target: TargetName;
  readonly seed: number;
  readonly durationMs: number;
  /** Int32 [0]: inputs started, [1]: byte length of the current input (-1: too large to keep),
   *  [2]: 1 while the target runs it, 0 while the harness mutates; then the input's bytes. */
  readonly shared: SharedArrayBuffer;
}

export type WorkerMessage =
  | {
      readonly type: "finding";
      readonly invariant: string;
      readonly signature: string;
      readonly detail: string;
      readonly stack: string | null;
      readonly input: Uint8Array;
    }
  | { readonly type: "stats"; readonly stats: SerializedStats };

export interface SerializedStats {
  readonly target: string;
  readonly seed: number;
  readonly inputs: number;
  readonly accepted: number;
  readonly refused: number;
  readonly findings: number;
  readonly slowInputs: number;
  readonly elapsedMs: number;
  readonly maxInputMs: number;
  readonly labels: [string, number][];
  readonly signatures: [string, number][];
}
