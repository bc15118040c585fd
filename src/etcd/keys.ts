// Byte-string keys and etcd's key ranges: ordering, [key, rangeEnd) membership, prefix ends.

import { compareBytes, equalBytes } from "../store/store.ts";

export type Bytes = Uint8Array;

/** Lexicographic byte order (etcd's key order) and equality: the Store's. */
export { compareBytes, equalBytes as bytesEqual };

/** rangeEnd = [0]: every key from `key` on. */
export function isFromKey(rangeEnd: Bytes): boolean {
  return rangeEnd.length === 1 && rangeEnd[0] === 0;
}

/** Whether `k` lies in etcd's range (key, rangeEnd): the single key when rangeEnd is empty. */
export function inRange(k: Bytes, key: Bytes, rangeEnd: Bytes): boolean {
  if (rangeEnd.length === 0) return equalBytes(k, key);
  if (compareBytes(k, key) < 0) return false;
  return isFromKey(rangeEnd) || compareBytes(k, rangeEnd) < 0;
}

/** The smallest key above every key with this prefix (etcd's GetPrefixRangeEnd); [0] when none is. */
export function prefixEnd(prefix: Bytes): Bytes {
  const end = Uint8Array.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i] = end[i]! + 1;
      return end.subarray(0, i + 1);
    }
  }
  return Uint8Array.of(0);
}
