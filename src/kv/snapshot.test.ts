import assert from "node:assert/strict";
import { test } from "node:test";
import { AssertionError } from "../lib/assert.ts";
import { crc32c } from "../lib/crc32c.ts";
import { RaftKvError } from "../lib/errors.ts";
import type { KvResult } from "./result.ts";
import type { Session } from "./session-table.ts";
import {
  decodeSnapshot,
  encodeSnapshot,
  hashImage,
  type KvImage,
  SNAPSHOT_FORMAT_VERSION,
} from "./snapshot.ts";
import { SortedKeys } from "./sorted-keys.ts";
import { utf8ByteLength } from "./utf8.ts";
import { MemValueStore } from "./value-store.ts";

const te = new TextEncoder();

/** A KvImage of `data` in the order of `sortedKeys` (which the tests may get wrong on purpose). */
function imageOf(
  data: ReadonlyMap<string, Uint8Array>,
  sortedKeys: readonly string[],
  sessions: readonly (readonly [string, Session])[],
  appliedIndex: number,
): KvImage & { readonly sortedKeys: readonly string[] } {
  let valueBytes = 0;
  for (const v of data.values()) valueBytes += v.length;
  return {
    appliedIndex,
    sortedKeys,
    keyCount: sortedKeys.length,
    keyBytes: sortedKeys.reduce((n, k) => n + utf8ByteLength(k), 0),
    key: (i) => sortedKeys[i]!,
    value: (i) => data.get(sortedKeys[i]!)!,
    valueBytes,
    sessions,
  };
}

function image(keys: string[], sessions: [string, Session][] = [], appliedIndex = 10) {
  return imageOf(new Map(keys.map((k) => [k, te.encode(`v-${k}`)])), keys, sessions, appliedIndex);
}

/** Decodes into a fresh MemValueStore; the contents as a plain map. */
function decode(bytes: Uint8Array) {
  const values = new MemValueStore();
  const d = decodeSnapshot(bytes, values);
  const ids = [...new SortedKeys(d.keys).current()];
  const data = new Map(ids.map((id) => [d.keys.key(id), values.read(d.keys.handleOf(id))]));
  return { image: imageOf(data, [...data.keys()], d.sessions, d.appliedIndex), data };
}

const session = (index: number, result: KvResult = { type: "put", revision: index }, seq = 1): Session => ({
  writes: [{ seq, index, result }],
  index,
});

/** Recomputes the trailing checksum so that only the structural checks can catch the damage. */
function reseal(bytes: Uint8Array): Uint8Array {
  const out = bytes.slice();
  new DataView(out.buffer).setUint32(out.length - 4, crc32c(out.subarray(0, out.length - 4)), true);
  return out;
}

function rejects(bytes: Uint8Array, pattern: RegExp): void {
  assert.throws(
    () => decode(bytes),
    (e: unknown) => e instanceof RaftKvError && e.code === "CORRUPT" && pattern.test(e.message),
  );
}

test("snapshot round-trips every result kind in the session table", () => {
  const sessions: [string, Session][] = [
    ["p", session(2)],
    ["d", session(3, { type: "delete", revision: 3, existed: true })],
    ["c", session(4, { type: "cas", revision: 4, succeeded: false, current: te.encode("cur") })],
    ["n", session(5, { type: "cas", revision: 5, succeeded: true, current: null })],
    ["e", session(6, { type: "error", message: "why \u00e9" }, 2 ** 53 - 1)],
  ];
  const img = image(["a", "b\u{1f600}", "\u00e9"], sessions, 6);
  const bytes = encodeSnapshot(img);
  assert.equal(bytes[0], SNAPSHOT_FORMAT_VERSION);
  const { image: back, data } = decode(bytes);
  assert.equal(back.appliedIndex, 6);
  assert.deepEqual(back.sortedKeys, img.sortedKeys);
  assert.deepEqual(data, new Map(img.sortedKeys.map((k, i) => [k, img.value(i)])));
  assert.equal(back.valueBytes, img.valueBytes);
  assert.deepEqual(back.sessions, sessions);
  assert.equal(hashImage(back), hashImage(img));
  assert.equal(hashImage({ ...img, appliedIndex: 99 }), hashImage(img), "hash ignores the applied index");
});

test("restore validates structure even when the checksum is right", () => {
  const ok = encodeSnapshot(image(["a", "b"]));
  const bumpVersion = ok.slice();
  bumpVersion[0] = 3;
  rejects(reseal(bumpVersion), /unsupported format version 3/);
  rejects(encodeSnapshot(image(["b", "a"])), /not above the previous key/);
  assert.throws(
    () => encodeSnapshot(image(["a", "a"])),
    AssertionError,
    "encode trusts but checks its input",
  );
  const duplicate = encodeSnapshot(image(["a", "b"]));
  duplicate[1 + 8 + 4 + (4 + 1 + 4 + 3) + 4] = 0x61; // second key "b" becomes "a"
  rejects(reseal(duplicate), /key 1 is not above the previous key/);
  rejects(encodeSnapshot(image([""])), /key 0 is empty/);
  const badUtf8 = ok.slice();
  badUtf8[1 + 8 + 4 + 4] = 0xff; // first byte of key "a"
  rejects(reseal(badUtf8), /not valid UTF-8/);
  const hugeCount = ok.slice();
  new DataView(hugeCount.buffer).setUint32(1 + 8, 0xffff_ffff, true);
  rejects(reseal(hugeCount), /key count 4294967295 exceeds/);
  const trailing = reseal(Uint8Array.from([...ok.subarray(0, ok.length - 4), 0, 0, 0, 0, 0]));
  rejects(trailing, /trailing bytes/);
  rejects(new Uint8Array(8), /too short/);
});

test("restore validates the session table", () => {
  rejects(encodeSnapshot(image([], [["a", session(11)]])), /index 11 not a distinct index in \[1, 10\]/);
  rejects(encodeSnapshot(image([], [["a", session(0)]])), /index 0 not a distinct index/);
  rejects(
    encodeSnapshot(
      image(
        [],
        [
          ["a", session(5)],
          ["b", session(4)],
        ],
      ),
    ),
    /index 4 not in \(5, 10\]/,
  );
  rejects(
    encodeSnapshot(
      image(
        [],
        [
          ["a", session(4)],
          ["a", session(5)],
        ],
      ),
    ),
    /appears twice/,
  );
  rejects(encodeSnapshot(image([], [["a", session(4, { type: "put", revision: 4 }, 0)]])), /seq 0/);
  const tagged = encodeSnapshot(image([], [["a", session(4)]]));
  tagged[tagged.length - 4 - 9] = 9; // the result tag
  rejects(reseal(tagged), /unknown result tag 9/);
});

const windowed = (writes: [seq: number, index: number][]): Session => ({
  writes: writes.map(([seq, index]) => ({ seq, index, result: { type: "put", revision: index } })),
  index: Math.max(...writes.map(([, index]) => index)),
});

test("format v2: a session keeps the writes of its window, ascending by seq; validated on restore", () => {
  const sessions: [string, Session][] = [
    [
      "a",
      windowed([
        [3, 2],
        [4, 5],
        [7, 3],
      ]),
    ], // seq 7 applied before 4 (a pipelining client)
    ["b", windowed([[1, 6]])],
  ];
  const { image: back } = decode(encodeSnapshot(image(["k"], sessions)));
  assert.deepEqual(back.sessions, sessions);
  rejects(
    encodeSnapshot(
      image(
        [],
        [
          [
            "a",
            windowed([
              [4, 2],
              [3, 3],
            ]),
          ],
        ],
      ),
    ),
    /seqs not ascending/,
  );
  rejects(
    encodeSnapshot(
      image(
        [],
        [
          [
            "a",
            windowed([
              [2, 2],
              [7, 3],
            ]),
          ],
        ],
      ),
    ),
    /seqs span more than 5/,
  );
  rejects(
    encodeSnapshot(
      image(
        [],
        [
          [
            "a",
            windowed([
              [2, 3],
              [3, 3],
            ]),
          ],
        ],
      ),
    ),
    /index 3 not a distinct index/,
  );
  const six = windowed([
    [1, 1],
    [2, 2],
    [3, 3],
    [4, 4],
    [5, 5],
  ]);
  const tooMany = encodeSnapshot(image([], [["a", six]]));
  tooMany[1 + 8 + 4 + 4 + 1 + 1] = 6; // the write count
  rejects(reseal(tooMany), /has 6 writes/);
});

test("format v1 images (one write per session) still restore", () => {
  const id = te.encode("cli");
  const bytes = new Uint8Array(1 + 8 + 4 + 4 + 1 + id.length + 8 + 8 + 9 + 4);
  const v = new DataView(bytes.buffer);
  let at = 0;
  v.setUint8(at, 1);
  v.setBigUint64((at += 1), 9n, true);
  v.setUint32((at += 8), 0, true); // no keys
  v.setUint32((at += 4), 1, true); // one session
  v.setUint8((at += 4), id.length);
  bytes.set(id, (at += 1));
  v.setBigUint64((at += id.length), 4n, true); // seq
  v.setBigUint64((at += 8), 7n, true); // index
  const put = encodeSnapshot(image([], [["x", session(7, { type: "put", revision: 7 }, 4)]], 9));
  bytes.set(put.subarray(put.length - 4 - 9, put.length - 4), (at += 8)); // a put result's bytes
  const { image: back } = decode(reseal(bytes));
  assert.equal(back.appliedIndex, 9);
  assert.deepEqual(back.sessions, [["cli", session(7, { type: "put", revision: 7 }, 4)]]);
});
