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
    new Walk(bytes, shape.name).message(bytes.length, shape, 0);
    return null;
  } catch (e) {
    if (e instanceof Stop) return e.problem;
    throw e;
  }
}

/** A cursor over the bytes (one object per check: no allocation per field, this runs on every message). */
class Walk {
  private pos = 0;
  /** Names from the root message to the current one, joined only for a problem's sentence. */
  private readonly names: string[];

  constructor(
    private readonly b: Uint8Array,
    root: string,
  ) {
    this.names = [root];
  }

  private get path(): string {
    return this.names.join(".");
  }

  /** The fields from here to `end`, checked against `shape`. */
  message(end: number, shape: MessageShape, depth: number): void {
    if (depth > MAX_DEPTH) throw new Stop(`${this.path}: messages nested more than ${MAX_DEPTH} deep`);
    while (this.pos < end) {
      const at = this.pos;
      const tag = this.varint(end);
      const fieldNo = Math.floor(tag / 8);
      const wire = tag % 8;
      if (fieldNo === 0) throw new Stop(`${this.path}: field number 0 at byte ${at} (not a protobuf field)`);
      const field = shape.fields[fieldNo];
      if (field !== undefined && field.wire !== wire)
        throw new Stop(
          `${this.path}.${field.name} (field ${fieldNo}) was sent as ${WIRE_NAMES[wire] ?? `wire type ${wire}`}, but it is ${WIRE_NAMES[field.wire]}`,
        );
      switch (wire) {
        case 0:
          this.varint(end);
          break;
        case 1:
          this.skip(8, end);
          break;
        case 2: {
          const len = this.varint(end);
          const start = this.pos;
          this.skip(len, end);
          if (field?.message !== undefined) {
            const after = this.pos;
            this.pos = start;
            this.names.push(field.name);
            this.message(after, field.message, depth + 1);
            this.names.pop();
          }
          break;
        }
        case 3:
          this.group(end, fieldNo, depth + 1);
          break;
        case 4:
          throw new Stop(`${this.path}: end-group (field ${fieldNo}) at byte ${at} outside any group`);
        case 5:
          this.skip(4, end);
          break;
        default:
          throw new Stop(null); // wire type 6 or 7: the decoder refuses it
      }
    }
  }

  /** Skips an unknown group up to its end-group (nested groups included). */
  private group(end: number, fieldNo: number, depth: number): void {
    const path = (): string => `${this.path}.(group ${fieldNo})`;
    if (depth > MAX_DEPTH) throw new Stop(`${path()}: groups nested more than ${MAX_DEPTH} deep`);
    while (this.pos < end) {
      const tag = this.varint(end);
      const no = Math.floor(tag / 8);
      const wire = tag % 8;
      if (no === 0) throw new Stop(`${path()}: field number 0 inside a group`);
      if (wire === 4) {
        if (no !== fieldNo) throw new Stop(`${path()}: end-group ${no} closes group ${fieldNo}`);
        return;
      }
      if (wire === 0) this.varint(end);
      else if (wire === 1) this.skip(8, end);
      else if (wire === 2) this.skip(this.varint(end), end);
      else if (wire === 3) this.group(end, no, depth + 1);
      else if (wire === 5) this.skip(4, end);
      else throw new Stop(null);
    }
    throw new Stop(null); // unterminated: the decoder refuses it
  }

  /** A varint of up to 10 bytes as a number (exact up to 2^53; tags and lengths are far below). */
  private varint(end: number): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10 && this.pos < end; i++) {
      const byte = this.b[this.pos++]!;
      value += (byte & 0x7f) * scale;
      if ((byte & 0x80) === 0) return value;
      scale *= 128;
    }
    throw new Stop(null);
  }

  private skip(length: number, end: number): void {
    if (length > end - this.pos) throw new Stop(null);
    this.pos += length;
  }
}
