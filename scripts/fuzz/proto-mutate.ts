// Protobuf-aware mutations: parse the wire format into a field tree, change it (drop, duplicate, swap,
// renumber, retype, boundary values, unknown fields, nested byte damage) and re-encode it with
// consistent lengths, so the damage reaches the validator behind the decoder.

import type { Prng } from "../../src/lib/prng.ts";
import { concat, mutateBytes, pickBoundary, varint } from "./mutate.ts";

type Field =
  | { fieldNo: number; wire: 0; value: bigint }
  | { fieldNo: number; wire: 1 | 5; raw: Uint8Array }
  | { fieldNo: number; wire: 2; bytes: Uint8Array; children: Field[] | null };

const MAX_DEPTH = 4;
/** Larger inputs get generic mutations only (most of which shrink them). */
const MAX_TREE_INPUT_BYTES = 64 * 1024;
/** Bytes a "grow a repeated field" mutation may add. */
const MAX_GROWTH_BYTES = 32 * 1024;

function readVarint(b: Uint8Array, pos: number): { value: bigint; end: number } | null {
  let value = 0n;
  for (let i = 0; i < 10; i++) {
    const byte = b[pos + i];
    if (byte === undefined) return null;
    value |= BigInt(byte & 0x7f) << BigInt(7 * i);
    if ((byte & 0x80) === 0) return { value, end: pos + i + 1 };
  }
  return null;
}

/** The fields of `b`, or null when it does not parse completely as a message. */
function parse(b: Uint8Array, depth: number): Field[] | null {
  const fields: Field[] = [];
  let pos = 0;
  while (pos < b.length) {
    const tag = readVarint(b, pos);
    if (tag === null || tag.value > 0xffffffffn) return null;
    const fieldNo = Number(tag.value >> 3n);
    const wire = Number(tag.value & 7n);
    if (fieldNo === 0) return null;
    pos = tag.end;
    if (wire === 0) {
      const v = readVarint(b, pos);
      if (v === null) return null;
      fields.push({ fieldNo, wire, value: v.value });
      pos = v.end;
    } else if (wire === 1 || wire === 5) {
      const n = wire === 1 ? 8 : 4;
      if (pos + n > b.length) return null;
      fields.push({ fieldNo, wire, raw: b.slice(pos, pos + n) });
      pos += n;
    } else if (wire === 2) {
      const len = readVarint(b, pos);
      if (len === null || len.end + Number(len.value) > b.length) return null;
      const bytes = b.slice(len.end, len.end + Number(len.value));
      const children = depth < MAX_DEPTH && bytes.length > 0 ? parse(bytes, depth + 1) : null;
      fields.push({ fieldNo, wire, bytes, children });
      pos = len.end + bytes.length;
    } else {
      return null;
    }
  }
  return fields;
}

function encode(fields: readonly Field[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const f of fields) {
    parts.push(varint(BigInt(f.fieldNo) * 8n + BigInt(f.wire)));
    if (f.wire === 0) parts.push(varint(f.value));
    else if (f.wire !== 2) parts.push(f.raw);
    else {
      const body = f.children === null ? f.bytes : encode(f.children);
      parts.push(varint(BigInt(body.length)), body);
    }
  }
  return concat(...parts);
}

/** Every field list in the tree (the root and each parsed sub-message). */
function lists(fields: Field[], out: Field[][] = []): Field[][] {
  out.push(fields);
  for (const f of fields) if (f.wire === 2 && f.children !== null) lists(f.children, out);
  return out;
}

function randomField(prng: Prng, fieldNo: number): Field {
  switch (prng.int(0, 3)) {
    case 0:
      return { fieldNo, wire: 0, value: pickBoundary(prng) };
    case 1:
      return { fieldNo, wire: 5, raw: Uint8Array.of(prng.int(0, 255), 0, 0, prng.int(0, 255)) };
    case 2:
      return { fieldNo, wire: 1, raw: new Uint8Array(8).fill(prng.int(0, 255)) };
    default:
      return { fieldNo, wire: 2, bytes: Uint8Array.of(prng.int(0, 255), 0x80, 0x01), children: null };
  }
}

/** Applies one tree mutation in place. */
function mutateTree(root: Field[], prng: Prng): void {
  const all = lists(root);
  const list = prng.pick(all);
  const i = list.length === 0 ? -1 : prng.int(0, list.length - 1);
  const f = list[i];
  switch (prng.int(0, 9)) {
    case 0: // drop a field (a missing header, body or meta)
      if (i >= 0) list.splice(i, 1);
      return;
    case 1: // duplicate a field (a repeated scalar, two oneof bodies, two headers)
      if (f !== undefined) list.splice(prng.int(0, list.length), 0, structuredClone(f));
      return;
    case 2: // swap two fields
      if (list.length > 1) {
        const j = prng.int(0, list.length - 1);
        [list[i], list[j]] = [list[j]!, list[i]!];
      }
      return;
    case 3: // renumber a field (unknown fields, a valid message of the wrong type)
      if (f !== undefined)
        f.fieldNo = prng.chance(0.5) ? prng.int(1, 8) : prng.pick([15, 16, 2047, 536870911]);
      return;
    case 4: // an unknown field
      list.splice(prng.int(0, list.length), 0, randomField(prng, prng.int(1, 40)));
      return;
    case 5: // retype a field, keeping its number
      if (i >= 0 && f !== undefined) list[i] = randomField(prng, f.fieldNo);
      return;
    case 6:
    case 7: // a boundary value in a varint field (terms of 0 or 2^63-1, indexes past the safe range)
      for (const g of list) {
        if (g.wire === 0 && prng.chance(0.5)) {
          g.value = prng.chance(0.2) ? g.value + BigInt(prng.int(-2, 2)) : pickBoundary(prng);
          if (g.value < 0n) g.value = BigInt.asUintN(64, g.value);
        }
      }
      return;
    case 8: // damage the bytes of a length-delimited field, unparsed
      if (f?.wire === 2) {
        const bytes = f.children === null ? f.bytes : encode(f.children);
        list[i] = { fieldNo: f.fieldNo, wire: 2, bytes: mutateBytes(bytes, bytes, prng, 2), children: null };
      }
      return;
    default: // grow a repeated field: copy one element many times
      if (f !== undefined) {
        const size = encode([f]).length;
        const n = Math.min(prng.int(2, prng.chance(0.1) ? 2000 : 20), Math.floor(MAX_GROWTH_BYTES / size));
        if (n > 0) list.splice(i, 0, ...Array.from({ length: n }, () => structuredClone(f)));
      }
  }
}

/** A protobuf-aware mutation of `b` when it parses as a message; otherwise a generic one. */
export function mutateProto(b: Uint8Array, other: Uint8Array, prng: Prng): Uint8Array {
  if (b.length > MAX_TREE_INPUT_BYTES) return mutateBytes(b, other, prng);
  const root = parse(b, 0);
  if (root === null || prng.chance(0.25)) return mutateBytes(b, other, prng);
  for (let n = prng.int(1, 3); n > 0; n--) mutateTree(root, prng);
  const out = encode(root);
  // Sometimes break the framing after fixing the structure: a length past the end, a cut tail.
  return prng.chance(0.15) ? mutateBytes(out, other, prng, 1) : out;
}
