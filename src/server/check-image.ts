// Decodes a KV snapshot image the way a start restores it, keeping nothing (only value sizes), so that
// `raftkv wal verify` refuses what a start would refuse (issue 12: a follower holding a snapshot whose
// checksum was right but whose image was garbage was reported "ok" and then refused to start).

import type { SnapshotMeta } from "../core/types.ts";
import { KvStateMachine } from "../kv/state-machine.ts";
import type { ValueStore } from "../kv/value-store.ts";
import { RaftKvError } from "../lib/errors.ts";
import type { ImageReader } from "../storage/wal-dump.ts";

const CHECK_CHUNK_BYTES = 4 * 1024 * 1024;

/** Remembers each value's size and nothing else: enough to decode and check an image of any size. */
class SizesOnly implements ValueStore {
  private sizes: number[] = [];
  add(bytes: Uint8Array): number {
    this.sizes.push(bytes.length);
    return this.sizes.length - 1;
  }
  read(): Uint8Array {
    throw new Error("SizesOnly keeps no values");
  }
  size(handle: number): number {
    return this.sizes[handle] ?? 0;
  }
  release(): void {}
  clear(): void {
    this.sizes = [];
  }
}

/** Throws a CORRUPT RaftKvError when the image would not restore, or restores to another index. */
export async function checkKvImage(meta: SnapshotMeta, read: ImageReader): Promise<void> {
  const restoring = KvStateMachine.restoring(meta.sizeBytes, { values: new SizesOnly() });
  for (let at = 0; at < meta.sizeBytes; ) {
    const chunk = await read(at, CHECK_CHUNK_BYTES);
    if (chunk.length === 0) break; // finish() reports the shortfall
    restoring.push(chunk);
    at += chunk.length;
  }
  const sm = restoring.finish();
  if (sm.appliedIndex !== meta.index)
    throw new RaftKvError({
      code: "CORRUPT",
      message: `snapshot image is at index ${sm.appliedIndex}, its file says ${meta.index}`,
    });
}
