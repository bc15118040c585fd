// Generic byte mutations: bit flips, inserts, deletes, truncation, splicing, boundary integers
// (little-endian and varint) and length fields pointing past the end.

import type { Prng } from "../../src/lib/prng.ts";

/** Inputs grow no larger than this (a mutation that would is skipped). */
export const MAX_INPUT_BYTES = 1 << 20;

/** Integers that break code: 0, 1, sign and width edges, the safe-integer edge, and -1 as unsigned. */
export const BOUNDARY_VALUES: readonly bigint[] = [
  0n,
  1n,
  2n,
  0x7fn,
  0x80n,
  0xffn,
  0xffffn,
  2n ** 31n - 1n,
  2n ** 31n,
  2n ** 32n - 1n,
  2n ** 32n,
  2n ** 53n - 1n,
  2n ** 53n,
  2n ** 53n + 1n,
  2n ** 63n - 1n,
  2n ** 63n,
  2n ** 64n - 1n, // -1 as a uint64 (and as an int64 varint, ten bytes)
];

const INTERESTING_BYTES = [0x00, 0x01, 0x7f, 0x80, 0xff, 0xfe, 0x0a, 0x22, 0x5c];

export function pickBoundary(prng: Prng): bigint {
  return prng.pick(BOUNDARY_VALUES);
}

/** Varint encoding of a uint64 (values above 2^64 - 1 are truncated to 64 bits). */
export function varint(value: bigint): Uint8Array {
  let v = BigInt.asUintN(64, value);
  const out: number[] = [];
  while (v > 0x7fn) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return Uint8Array.from(out);
}

/** Little-endian bytes of `value` truncated to `width` bytes. */
export function littleEndian(value: bigint, width: number): Uint8Array {
  const out = new Uint8Array(width);
  let v = BigInt.asUintN(width * 8, value);
  for (let i = 0; i < width; i++) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

export function concat(...parts: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const p of parts) total += p.length;
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function replace(b: Uint8Array, start: number, end: number, withBytes: Uint8Array): Uint8Array {
  return concat(b.subarray(0, start), withBytes, b.subarray(end));
}

function randomBytes(prng: Prng, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++)
    out[i] = prng.chance(0.3) ? prng.pick(INTERESTING_BYTES) : prng.int(0, 255);
  return out;
}

/** End of the varint starting at `at` (its last byte + 1), or null when it does not end in `b`. */
function varintEnd(b: Uint8Array, at: number): number | null {
  for (let i = at; i < b.length && i < at + 10; i++) if ((b[i]! & 0x80) === 0) return i + 1;
  return null;
}

type Mutator = (b: Uint8Array, other: Uint8Array, prng: Prng) => Uint8Array;

const flipBits: Mutator = (b, _o, prng) => {
  if (b.length === 0) return b;
  const out = b.slice();
  for (let n = prng.int(1, 4); n > 0; n--) {
    const at = prng.int(0, out.length - 1);
    out[at] = out[at]! ^ (1 << prng.int(0, 7));
  }
  return out;
};

const setByte: Mutator = (b, _o, prng) => {
  if (b.length === 0) return b;
  const out = b.slice();
  out[prng.int(0, out.length - 1)] = prng.chance(0.5) ? prng.pick(INTERESTING_BYTES) : prng.int(0, 255);
  return out;
};

const insertBytes: Mutator = (b, _o, prng) => {
  if (b.length >= MAX_INPUT_BYTES) return b;
  const at = prng.int(0, b.length);
  return replace(b, at, at, randomBytes(prng, prng.int(1, 8)));
};

const deleteRange: Mutator = (b, _o, prng) => {
  if (b.length === 0) return b;
  const at = prng.int(0, b.length - 1);
  return replace(b, at, Math.min(b.length, at + prng.int(1, 16)), new Uint8Array(0));
};

const truncate: Mutator = (b, _o, prng) => b.slice(0, prng.int(0, Math.max(0, b.length - 1)));

const splice: Mutator = (b, other, prng) => {
  const out = concat(b.subarray(0, prng.int(0, b.length)), other.subarray(prng.int(0, other.length)));
  return out.length > MAX_INPUT_BYTES ? b : out;
};

const duplicateRange: Mutator = (b, _o, prng) => {
  if (b.length === 0 || b.length > MAX_INPUT_BYTES / 2) return b;
  const start = prng.int(0, b.length - 1);
  const chunk = b.slice(start, Math.min(b.length, start + prng.int(1, 64)));
  const at = prng.int(0, b.length);
  return replace(b, at, at, chunk);
};

const zeroRange: Mutator = (b, _o, prng) => {
  if (b.length === 0) return b;
  const out = b.slice();
  const start = prng.int(0, b.length - 1);
  out.fill(0, start, prng.chance(0.5) ? b.length : Math.min(b.length, start + prng.int(1, 32)));
  return out;
};

/** A boundary value written as a fixed-width little-endian integer at a random (often aligned) offset. */
const fixedBoundary: Mutator = (b, _o, prng) => {
  const width = prng.pick([1, 2, 4, 8]);
  if (b.length < width) return b;
  let at = prng.int(0, b.length - width);
  if (prng.chance(0.5)) at -= at % width;
  const out = b.slice();
  out.set(littleEndian(pickBoundary(prng), width), at);
  return out;
};

/** The varint at a random position replaced by a boundary value, an over-long or an unterminated one. */
const varintBoundary: Mutator = (b, _o, prng) => {
  if (b.length === 0) return b;
  const at = prng.int(0, b.length - 1);
  const end = varintEnd(b, at) ?? b.length;
  const choice = prng.int(0, 9);
  const bytes =
    choice === 0
      ? Uint8Array.from([...new Array<number>(10).fill(0xff), 0x01]) // eleven bytes: over-long
      : choice === 1
        ? Uint8Array.from([0xff, 0xff, 0xff]) // unterminated if it ends the input
        : varint(pickBoundary(prng));
  return replace(b, at, end, bytes);
};

/** A u32 or varint length that points `delta` bytes past the end of the input. */
const lengthPastEnd: Mutator = (b, _o, prng) => {
  if (b.length === 0) return b;
  const at = prng.int(0, b.length - 1);
  const delta = BigInt(prng.pick([1, 2, 7, 1000, 2 ** 31, 2 ** 32 - 1]));
  if (prng.chance(0.5) && at + 4 <= b.length) {
    const out = b.slice();
    out.set(littleEndian(BigInt(b.length - at - 4) + delta, 4), at);
    return out;
  }
  const end = varintEnd(b, at) ?? b.length;
  return replace(b, at, end, varint(BigInt(b.length - end) + delta));
};

const randomInput: Mutator = (_b, _o, prng) => randomBytes(prng, prng.int(0, 64));

const MUTATORS: readonly (readonly [Mutator, number])[] = [
  [flipBits, 6],
  [setByte, 4],
  [insertBytes, 3],
  [deleteRange, 3],
  [truncate, 2],
  [splice, 2],
  [duplicateRange, 2],
  [zeroRange, 1],
  [fixedBoundary, 4],
  [varintBoundary, 4],
  [lengthPastEnd, 3],
  [randomInput, 1],
];
const TOTAL_WEIGHT = MUTATORS.reduce((s, [, w]) => s + w, 0);

/** One to a few stacked generic mutations of `b`. */
export function mutateBytes(b: Uint8Array, other: Uint8Array, prng: Prng, maxStack = 4): Uint8Array {
  let out = b;
  for (let n = prng.int(1, maxStack); n > 0; n--) {
    let r = prng.int(0, TOTAL_WEIGHT - 1);
    for (const [m, w] of MUTATORS) {
      if (r < w) {
        out = m(out, other, prng);
        break;
      }
      r -= w;
    }
  }
  return out;
}
