// The KV store as a state machine of the embedding API (state-machine.ts): a KvStateMachine whose values
// live in the node's scratch value file (src/storage/value-file.ts). A restore builds the new state in a
// value store of its own while the current one keeps serving reads, then swaps them.

import type { KvResult } from "../kv/result.ts";
import { KvStateMachine } from "../kv/state-machine.ts";
import { RaftKvError } from "../lib/errors.ts";
import { FileValueStore } from "../storage/value-file.ts";
import type { SnapshotInfo, SnapshotReader, SnapshotWriter, StateMachine } from "./embed.ts";

export interface KvStateOptions {
  /** The scratch file of the values (the data folder's values.scratch). */
  readonly valuesFile: string;
  /** Values kept in memory after a read. */
  readonly valueCacheBytes: number;
  /** Client sessions remembered for exactly-once writes; must be equal on every node. */
  readonly maxSessions: number;
}

export class KvState implements StateMachine<KvResult> {
  // Opened on first use: the value file lives in the data folder, which the node creates when it starts.
  private values: FileValueStore | null = null;
  private sm: KvStateMachine | null = null;

  constructor(private readonly o: KvStateOptions) {}

  /** The state to read from (replaced by a restore: do not keep it across awaits). */
  get current(): KvStateMachine {
    if (this.sm === null) {
      this.values = this.openValues();
      this.sm = new KvStateMachine({ maxSessions: this.o.maxSessions, values: this.values });
    }
    return this.sm;
  }

  apply(command: Uint8Array, index: number): KvResult {
    return this.current.apply(index, command);
  }

  applyNoop(index: number): void {
    this.current.applyNoop(index);
  }

  snapshot(): SnapshotReader {
    return this.current.snapshotStream();
  }

  restore(snapshot: SnapshotInfo): SnapshotWriter {
    const fresh = this.openValues();
    const restoring = KvStateMachine.restoring(snapshot.sizeBytes, {
      maxSessions: this.o.maxSessions,
      values: fresh,
    });
    let next: KvStateMachine | null = null;
    return {
      push: (chunk) => restoring.push(chunk),
      finish: () => {
        const built = restoring.finish();
        if (built.appliedIndex !== snapshot.index)
          throw new RaftKvError({
            code: "CORRUPT",
            message: `snapshot file says index ${snapshot.index} but its image is at ${built.appliedIndex}`,
            hint: "move the newest file in snap/ aside; the node falls back to an older snapshot and the log",
          });
        next = built;
      },
      commit: () => {
        if (next === null) throw new Error("KvState: commit() before finish()");
        this.values?.close();
        this.values = fresh;
        this.sm = next;
      },
      abort: () => fresh.close(),
    };
  }

  close(): void {
    this.values?.close();
    this.values = null;
    this.sm = null;
  }

  private openValues(): FileValueStore {
    return new FileValueStore(this.o.valuesFile, { readCacheBytes: this.o.valueCacheBytes });
  }
}
