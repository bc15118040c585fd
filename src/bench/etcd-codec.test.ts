// Round trips of the hand-encoded etcd messages, checked byte for byte against known encodings.

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  decodePut,
  decodeRange,
  encodePut,
  encodePutResponse,
  encodeRange,
  encodeRangeResponse,
} from "./etcd-codec.ts";

const te = new TextEncoder();

test("PutRequest and RangeRequest encode as protoc would", () => {
  assert.deepEqual([...encodePut(te.encode("k"), te.encode("v"))], [0x0a, 1, 0x6b, 0x12, 1, 0x76]);
  assert.deepEqual([...encodeRange(te.encode("k"), false)], [0x0a, 1, 0x6b]);
  assert.deepEqual([...encodeRange(te.encode("k"), true)], [0x0a, 1, 0x6b, 0x38, 1]);
});

test("responses decode to header, first value and count", () => {
  assert.deepEqual(decodePut(encodePutResponse(7n, 42n)), { memberId: 7n, revision: 42n });
  const value = new Uint8Array(256).fill(9);
  const r = decodeRange(encodeRangeResponse(3n, 5n, te.encode("key"), value));
  assert.deepEqual(r.header, { memberId: 3n, revision: 5n });
  assert.deepEqual(r.value === null ? null : [...r.value], [...value]);
  assert.equal(r.count, 1);
  assert.deepEqual(decodeRange(new Uint8Array(0)), { header: null, value: null, count: 0 });
});
