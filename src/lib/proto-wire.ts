// Protobuf wire types checked against a message's shape. The generated decoders skip a known field that
// arrives with the wrong wire type as if it were unknown, and stop silently at a zero tag or a stray
// end-group, so a malformed field becomes its default (a Range whose prefix is malformed reads every
// key). The edges (client-edge.ts, the peer codec) run this first and refuse such input, naming the field.

/** Wire types: 0 varint, 1 fixed 64-bit, 2 length-delimited, 5 fixed 32-bit (3 and 4 are groups). */
export type WireType = 0 | 1 | 2 | 5;

export interface FieldShape {
  readonly name: string;
  readonly wire: WireType;
  /** For a message field: its shape, checked inside it. */
  readonly message?: MessageShape;
}

export interface MessageShape {
  readonly name: string;
  /** Known fields by number; others are unknown and skipped, as proto3 wants. */
  readonly fields: Readonly<Record<number, FieldShape>>;
}

const WIRE_NAMES = ["varint", "fixed64", "length-delimited", "start-group", "end-group", "fixed32"];
/** Nesting (messages and unknown groups) beyond which input is refused: ours nest 3 deep. */
const MAX_DEPTH = 32;

/** Thrown inside the walk only. */
class Stop {
  constructor(readonly problem: string | null) {}
}

/**
 * The first problem the generated decoder would hide: a known field (of `shape` or a message nested in
 * it) sent with another wire type than its own, a zero tag, an end-group outside a group, or nesting
 * beyond MAX_DEPTH; as a sentence naming the field. null when there is none, and also where the bytes
 * cannot be read on (truncated, a bad varint, wire type 6 or 7): the decoder refuses those itself.
 */
export function wireTypeProblem(bytes: Uint8Array, shape: MessageShape): string | null {
  try {
    walk(bytes, 0, bytes.length, shape, shape.name, 0);
    return null;
  } catch (e) {
    if (e instanceof Stop) return e.problem;
    throw e;
  }
}

function walk(
  b: Uint8Array,
  start: number,
  end: number,
  shape: MessageShape | null,
  path: string,
  depth: number,
): void {
  if (depth > MAX_DEPTH) throw new Stop(`${path}: messages nested more than ${MAX_DEPTH} deep`);
  let pos = start;
  while (pos < end) {
    const at = pos;
    const tag = varint(b, pos, end);
    pos = tag.next;
    const fieldNo = Math.floor(tag.value / 8);
    const wire = tag.value % 8;
    if (fieldNo === 0) throw new Stop(`${path}: field number 0 at byte ${at} (not a protobuf field)`);
    const field = shape?.fields[fieldNo];
    if (field !== undefined && field.wire !== wire)
      throw new Stop(
        `${path}.${field.name} (field ${fieldNo}) was sent as ${WIRE_NAMES[wire] ?? `wire type ${wire}`}, but it is ${WIRE_NAMES[field.wire]}`,
      );
    switch (wire) {
      case 0:
        pos = varint(b, pos, end).next;
        break;
      case 1:
        pos = fixed(pos, 8, end);
        break;
      case 2: {
        const len = varint(b, pos, end);
        const bodyEnd = fixed(len.next, len.value, end);
        if (field?.message !== undefined)
          walk(b, len.next, bodyEnd, field.message, `${path}.${field.name}`, depth + 1);
        pos = bodyEnd;
        break;
      }
      case 3:
        pos = skipGroup(b, pos, end, fieldNo, `${path}.(group ${fieldNo})`, depth + 1);
        break;
      case 4:
        throw new Stop(`${path}: end-group (field ${fieldNo}) at byte ${at} outside any group`);
      case 5:
        pos = fixed(pos, 4, end);
        break;
      default:
        throw new Stop(null); // wire type 6 or 7: the decoder refuses it
    }
  }
}

/** Skips an unknown group up to its end-group; returns the position after it. */
function skipGroup(
  b: Uint8Array,
  start: number,
  end: number,
  fieldNo: number,
  path: string,
  depth: number,
): number {
  if (depth > MAX_DEPTH) throw new Stop(`${path}: groups nested more than ${MAX_DEPTH} deep`);
  let pos = start;
  while (pos < end) {
    const tag = varint(b, pos, end);
    pos = tag.next;
    const no = Math.floor(tag.value / 8);
    const wire = tag.value % 8;
    if (no === 0) throw new Stop(`${path}: field number 0 inside a group`);
    if (wire === 4) {
      if (no !== fieldNo) throw new Stop(`${path}: end-group ${no} closes group ${fieldNo}`);
      return pos;
    }
    if (wire === 0) pos = varint(b, pos, end).next;
    else if (wire === 1) pos = fixed(pos, 8, end);
    else if (wire === 2) {
      const len = varint(b, pos, end);
      pos = fixed(len.next, len.value, end);
    } else if (wire === 3) pos = skipGroup(b, pos, end, no, `${path}.(group ${no})`, depth + 1);
    else if (wire === 5) pos = fixed(pos, 4, end);
    else throw new Stop(null);
  }
  throw new Stop(null); // unterminated: the decoder refuses it
}

/** A varint of up to 10 bytes as a number (exact up to 2^53; tags and lengths are far below). */
function varint(b: Uint8Array, pos: number, end: number): { value: number; next: number } {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    if (pos + i >= end) throw new Stop(null);
    const byte = b[pos + i]!;
    value += (byte & 0x7f) * scale;
    scale *= 128;
    if ((byte & 0x80) === 0) return { value, next: pos + i + 1 };
  }
  throw new Stop(null);
}

function fixed(pos: number, length: number, end: number): number {
  if (length > end - pos) throw new Stop(null);
  return pos + length;
}
