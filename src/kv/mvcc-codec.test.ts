// The MVCC command codec on untrusted bytes: mutated or random bytes after the MVCC prefix throw only a
// CORRUPT RaftKvError (apply turns it into an "invalid" result on every replica), and nesting is bounded.

import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { RaftKvError } from "../lib/errors.ts";
import { decodeMvccCommand, encodeMvccCommand, isMvccCommand, MAX_TXN_DEPTH } from "./mvcc-codec.ts";
import type { TxnOp } from "./mvcc-types.ts";

const SEED = Number(process.env.SEED ?? Math.floor(Math.random() * 1e9));

function onlyCorrupt(bytes: Uint8Array): void {
  try {
    decodeMvccCommand(bytes);
  } catch (err) {
    assert.ok(err instanceof RaftKvError && err.code === "CORRUPT", String(err));
  }
}

test("decodeMvccCommand: random and mutated bytes throw only CORRUPT", () => {
  console.log(`fast-check seed ${SEED} (replay: SEED=${SEED})`);
  const sample = encodeMvccCommand({
    op: "txn",
    compare: [
      {
        result: "equal",
        key: new Uint8Array([1]),
        rangeEnd: new Uint8Array(0),
        against: { target: "lease", lease: -3n },
      },
    ],
    success: [
      {
        op: "put",
        key: new Uint8Array([2]),
        value: new Uint8Array([3]),
        lease: 5n,
        prevKv: true,
        ignoreValue: false,
        ignoreLease: false,
      },
    ],
    failure: [{ op: "deleteRange", key: new Uint8Array([4]), rangeEnd: new Uint8Array([0]), prevKv: false }],
  });
  assert.ok(isMvccCommand(sample));
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 64 }),
      fc.nat(sample.length - 1),
      fc.nat(255),
      (tail, at, byte) => {
        onlyCorrupt(new Uint8Array([1, 16, ...tail]));
        const mutated = sample.slice();
        mutated[at] = byte;
        onlyCorrupt(mutated);
        onlyCorrupt(sample.subarray(0, at));
      },
    ),
    { numRuns: 2000, seed: SEED },
  );
});

test(`decodeMvccCommand refuses txns nested deeper than ${MAX_TXN_DEPTH}`, () => {
  let txn: TxnOp = { op: "txn", compare: [], success: [], failure: [] };
  for (let i = 0; i < MAX_TXN_DEPTH; i++) txn = { op: "txn", compare: [], success: [txn], failure: [] };
  assert.throws(() => decodeMvccCommand(encodeMvccCommand(txn)), /nested deeper/);
});
