// A state machine of the embedding API serving raftkv.v1 and MVCC commands on one StoreStateMachine
// over an in-memory store (MemStore), with the MVCC results (applyAny). For tests and for embedding
// until the node's KV state (kv-state.ts, on LMDB) returns MVCC results too; then MvccNode runs on that.
// Its snapshot image is the store's entries: u64 applied index, then (u32 key length, key, u32 value
// length, value) per entry; a restore gathers the image and loads it into a new store at commit().

import { ByteReader, ByteWriter } from "../kv/bytes.ts";
import type { RevisionChanges } from "../kv/mvcc-types.ts";
import { type StoreResult, StoreStateMachine } from "../kv/store-state-machine.ts";
import { RaftKvError } from "../lib/errors.ts";
import { MemStore } from "../store/mem-store.ts";
import type { SnapshotInfo, SnapshotReader, SnapshotWriter, StateMachine } from "./state-machine.ts";

const CHUNK_BYTES = 1024 * 1024;

export class MvccState implements StateMachine<StoreResult> {
  private store = new MemStore();
  private sm: StoreStateMachine;
  private listener: ((changes: readonly RevisionChanges[]) => void) | null = null;

  constructor(private readonly maxSessions?: number) {
    this.sm = this.open(this.store);
  }

  /** The state machine now (replaced by a restore: do not keep it across awaits). */
  get current(): StoreStateMachine {
    return this.sm;
  }

  /** Where the changes of each applied batch go (the watch hub). */
  setChangeListener(listener: ((changes: readonly RevisionChanges[]) => void) | null): void {
    this.listener = listener;
    this.sm.setChangeListener(listener);
  }

  apply(command: Uint8Array, index: number): StoreResult {
    return this.sm.applyAny(index, command);
  }

  applyNoop(index: number): void {
    this.sm.applyNoop(index);
  }

  snapshot(): SnapshotReader {
    const view = this.store.view();
    let size = 8;
    for (const e of view.scan()) size += 8 + e.key.length + e.value.length;
    const entries = view.scan();
    let header = true;
    return {
      sizeBytes: size,
      next: () => {
        const parts: Uint8Array[] = [];
        let bytes = 0;
        if (header) {
          header = false;
          const w = new ByteWriter(8);
          w.u64(view.appliedIndex);
          parts.push(w.finish());
          bytes = 8;
        }
        while (bytes < CHUNK_BYTES) {
          const r = entries.next();
          if (r.done === true) break;
          const w = new ByteWriter(8 + r.value.key.length + r.value.value.length);
          w.u32(r.value.key.length);
          w.raw(r.value.key);
          w.u32(r.value.value.length);
          w.raw(r.value.value);
          parts.push(w.finish());
          bytes += 8 + r.value.key.length + r.value.value.length;
        }
        if (bytes === 0) return null;
        const out = new Uint8Array(bytes);
        let at = 0;
        for (const p of parts) {
          out.set(p, at);
          at += p.length;
        }
        return out;
      },
      close: () => view.close(),
    };
  }

  restore(info: SnapshotInfo): SnapshotWriter {
    const chunks: Uint8Array[] = [];
    let next: { sm: StoreStateMachine; store: MemStore } | null = null;
    return {
      push: (chunk) => {
        chunks.push(chunk);
      },
      finish: () => {
        const image = Buffer.concat(chunks);
        const r = new ByteReader(image, "mvcc state image");
        const index = r.u64("applied index");
        if (index !== info.index)
          throw new RaftKvError({ code: "CORRUPT", message: `image at ${index}, snapshot at ${info.index}` });
        const store = new MemStore();
        store.write(index, (w) => {
          while (r.remaining > 0) {
            const key = r.copy(r.u32("key length"), "key");
            w.put(key, r.copy(r.u32("value length"), "value"));
          }
        });
        next = { sm: this.open(store), store };
      },
      commit: () => {
        if (next === null) throw new Error("MvccState: commit() before finish()");
        this.sm.setChangeListener(null);
        this.sm = next.sm;
        this.store = next.store;
        this.sm.setChangeListener(this.listener);
      },
      abort: () => {},
    };
  }

  private open(store: MemStore): StoreStateMachine {
    return new StoreStateMachine({
      store,
      ...(this.maxSessions === undefined ? {} : { maxSessions: this.maxSessions }),
    });
  }
}
