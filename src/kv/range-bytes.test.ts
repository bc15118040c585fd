// A range stops at its byte budget while it reads (issue 12, finding 6: a Range over ~84 keys of 1 MiB
// read every value before trimming the answer to maxRangeBytes, and the leader lost its lease).

import assert from "node:assert/strict";
import { test } from "node:test";
import { encodeCommand } from "./command.ts";
import { KvStateMachine } from "./state-machine.ts";
import { MemValueStore } from "./value-store.ts";

/** A value store that counts the values read. */
class CountingStore extends MemValueStore {
  reads = 0;
  override read(handle: number): Uint8Array {
    this.reads++;
    return super.read(handle);
  }
  /** A size is not a read (the file store keeps sizes beside the offsets). */
  override size(handle: number): number {
    const reads = this.reads;
    const n = super.size(handle);
    this.reads = reads;
    return n;
  }
}

function filled(values: CountingStore, n: number, valueBytes: number): KvStateMachine {
  const sm = new KvStateMachine({ values });
  for (let i = 0; i < n; i++)
    sm.apply(
      i + 1,
      encodeCommand(
        { op: "put", key: `k${String(i).padStart(3, "0")}`, value: new Uint8Array(valueBytes) },
        { maxKeyBytes: 64, maxValueBytes: 1 << 20 },
      ),
    );
  return sm;
}

test("range reads no value past its byte budget, and says more follow", () => {
  const values = new CountingStore();
  const sm = filled(values, 84, 1 << 20);
  values.reads = 0;
  const r = sm.range("k", 1000, undefined, 4 * (1 << 20));
  // Each entry is a 4-byte key and 1 MiB: three fit in 4 MiB, the fourth would not.
  assert.equal(r.entries.length, 3);
  assert.equal(r.more, true);
  assert.equal(values.reads, 3, "values past the budget were never read");
});

test("range returns at least one entry however large, and all of them within the budget", () => {
  const values = new CountingStore();
  const sm = filled(values, 5, 1000);
  const one = sm.range("k", 1000, undefined, 10);
  assert.equal(one.entries.length, 1);
  assert.equal(one.more, true);
  const all = sm.range("k", 1000, undefined, 1 << 20);
  assert.equal(all.entries.length, 5);
  assert.equal(all.more, false);
  const paged = sm.range("k", 1000, "k001", 2 * 1004);
  assert.deepEqual(
    paged.entries.map((e) => e.key),
    ["k002", "k003"],
  );
  assert.equal(paged.more, true);
});
