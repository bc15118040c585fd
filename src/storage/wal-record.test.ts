// WAL record codec properties: every record round-trips, and any damage is detected or harmless.

import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import type { Entry } from "../core/types.ts";
import { DecodeError } from "./bytes.ts";
import { readFrame } from "./wal-frame.ts";
import type { WalRecord } from "./wal-record.ts";
import { decodeRecord, encodeRecords } from "./wal-record.ts";

/** Records with ordinary prototypes, so deepEqual compares them with decoded ones. */
const NORMAL = { noNullPrototype: true } as const;
const index = fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER - 100 });
const term = fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER });
const small = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });

const entriesArb: fc.Arbitrary<Entry[]> = fc
  .tuple(
    index,
    fc.array(
      fc.record({
        term,
        kind: fc.constantFrom("noop" as const, "command" as const),
        data: fc.uint8Array({ maxLength: 64 }),
      }),
      { minLength: 1, maxLength: 8 },
    ),
  )
  .map(([first, es]) => es.map((e, i) => ({ index: first + i, term: e.term, kind: e.kind, data: e.data })));

const recordArb: fc.Arbitrary<WalRecord> = fc.oneof(
  fc.record(
    {
      type: fc.constant("segmentHeader" as const),
      formatVersion: fc.integer({ min: 0, max: 0xffffffff }),
      clusterId: fc.string({ maxLength: 40 }),
      nodeId: small,
      seq: index,
      firstIndex: index,
      snapshotIndex: small,
      snapshotTerm: small,
    },
    NORMAL,
  ),
  entriesArb.map((entries) => ({ type: "entries" as const, entries })),
  fc
    .record({ term: small, votedFor: fc.option(small, { nil: null }), commitIndex: small }, NORMAL)
    .map((hardState) => ({ type: "hardState" as const, hardState })),
  index.map((fromIndex) => ({ type: "truncate" as const, fromIndex })),
  fc.record(
    { type: fc.constant("snapshot" as const), index: small, term: small, reset: fc.boolean() },
    NORMAL,
  ),
);

/** Decodes one framed record, or says why not. */
function decodeOne(bytes: Uint8Array): WalRecord | string {
  const f = readFrame(bytes, 0);
  if (f.kind !== "ok") return f.kind;
  if (f.end !== bytes.length) return "trailing bytes";
  try {
    return decodeRecord(f.type, f.payload);
  } catch (e) {
    if (e instanceof DecodeError) return "malformed";
    throw e;
  }
}

test("property: every record round-trips through encode and decode", () => {
  fc.assert(
    fc.property(recordArb, (r) => {
      assert.deepEqual(decodeOne(encodeRecords([r])), r);
    }),
    { numRuns: 2000 },
  );
});

test("property: consecutive records decode in order from one buffer", () => {
  fc.assert(
    fc.property(fc.array(recordArb, { maxLength: 6 }), (rs) => {
      const buf = encodeRecords(rs);
      const out: WalRecord[] = [];
      for (let off = 0; off < buf.length; ) {
        const f = readFrame(buf, off);
        assert.equal(f.kind, "ok");
        if (f.kind !== "ok") return;
        out.push(decodeRecord(f.type, f.payload));
        off = f.end;
      }
      assert.deepEqual(out, rs);
    }),
  );
});

const mutationArb = fc.oneof(
  fc.record({ kind: fc.constant("flip" as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant("set" as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant("cut" as const), at: fc.nat() }),
  fc.record({ kind: fc.constant("insert" as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant("delete" as const), at: fc.nat() }),
);

test("property: a mutated record is detected, or decodes to exactly the original", () => {
  fc.assert(
    fc.property(recordArb, fc.array(mutationArb, { minLength: 1, maxLength: 3 }), (r, mutations) => {
      let bytes = encodeRecords([r]).slice();
      for (const m of mutations) {
        const at = m.at % Math.max(1, bytes.length);
        if (m.kind === "flip") bytes[at] = (bytes[at] ?? 0) ^ (1 << m.bit);
        else if (m.kind === "set") bytes[at] = m.value;
        else if (m.kind === "cut") bytes = bytes.slice(0, at);
        else if (m.kind === "insert")
          bytes = new Uint8Array([...bytes.subarray(0, at), m.value, ...bytes.subarray(at)]);
        else bytes = new Uint8Array([...bytes.subarray(0, at), ...bytes.subarray(at + 1)]);
      }
      const out = decodeOne(bytes);
      if (typeof out !== "string") assert.deepEqual(out, r);
    }),
    { numRuns: 3000 },
  );
});

test("a truncated frame is partial (a torn write), a damaged one is bad", () => {
  const bytes = encodeRecords([{ type: "truncate", fromIndex: 7 }]);
  assert.equal(readFrame(bytes.subarray(0, 10), 0).kind, "partial");
  assert.equal(readFrame(bytes.subarray(0, bytes.length - 1), 0).kind, "partial");
  const damaged = bytes.slice();
  damaged[0] = (damaged[0] ?? 0) ^ 1;
  assert.equal(readFrame(damaged, 0).kind, "bad");
  assert.equal(readFrame(new Uint8Array(32), 0).kind, "bad");
});
