// The deterministic workload of the store crash tests: batch i writes what batchOps(i) says, so the
// state any applied index must show is known (modelAt). Run as a program it is the child process that
// the tests kill: it opens an LmdbStore, writes batches after the store's applied index, flushes every
// few batches and prints "flushed N" once batch N is durable.
//
// Run: npx tsx src/store/crash-workload.ts DIR BATCHES FLUSH_EVERY

import { LmdbStore } from "./lmdb-store.ts";
import type { Store } from "./store.ts";

const enc = new TextEncoder();

export type Op = readonly ["put", string, Uint8Array] | readonly ["delete", string];

/** Batch i: overwrite a hot key, add a new key with a larger value, delete one added before. */
export function batchOps(i: number): Op[] {
  const ops: Op[] = [["put", `hot-${i % 7}`, enc.encode(`v${i}`)]];
  ops.push([
    "put",
    `new-${String(i).padStart(6, "0")}`,
    enc.encode(`${i}:`.padEnd(300 + (i % 5) * 700, "x")),
  ]);
  if (i % 3 === 0 && i > 2) ops.push(["delete", `new-${String(i - 2).padStart(6, "0")}`]);
  return ops;
}

export function writeBatch(store: Store, i: number): void {
  store.write(i, (w) => {
    for (const op of batchOps(i)) {
      if (op[0] === "put") w.put(enc.encode(op[1]), op[2]);
      else w.delete(enc.encode(op[1]));
    }
  });
}

/** The contents after batches 1..index, as key -> value (hex), keys as strings. */
export function modelAt(index: number): Map<string, string> {
  const m = new Map<string, string>();
  for (let i = 1; i <= index; i++) {
    for (const op of batchOps(i)) {
      if (op[0] === "put") m.set(op[1], Buffer.from(op[2]).toString("hex"));
      else m.delete(op[1]);
    }
  }
  return m;
}

/** The store's contents in the same shape as modelAt. */
export function contentsOf(store: Store): Map<string, string> {
  const m = new Map<string, string>();
  const dec = new TextDecoder();
  for (const e of store.scan()) m.set(dec.decode(e.key), Buffer.from(e.value).toString("hex"));
  return m;
}

async function main(): Promise<void> {
  const [dir, batchesArg, everyArg] = process.argv.slice(2);
  if (dir === undefined) throw new Error("usage: crash-workload.ts DIR BATCHES FLUSH_EVERY");
  const store = LmdbStore.open({ dir });
  const from = store.appliedIndex + 1;
  const every = Number(everyArg ?? "4");
  process.stdout.write(`opened ${store.appliedIndex}\n`);
  for (let i = from; i < from + Number(batchesArg ?? "200"); i++) {
    writeBatch(store, i);
    if (i % every === 0) process.stdout.write(`flushed ${await store.flush()}\n`);
    else await new Promise((r) => setImmediate(r));
  }
  await store.close();
  process.stdout.write("done\n");
}

if (process.argv[1]?.endsWith("crash-workload.ts")) await main();
