// Little-endian byte writer and bounds-checked reader shared by the command and snapshot codecs.

import { AssertionError, assert } from "../lib/assert.ts";
import { RaftKvError } from "../lib/errors.ts";
import { utf8Decode, utf8EncodeInto } from "./utf8.ts";

const TWO_POW_32 = 0x1_0000_0000;
/** High 32 bits of Number.MAX_SAFE_INTEGER: a u64 above this is not a safe integer. */
const MAX_SAFE_HIGH = 0x1f_ffff;

/** Writes into a buffer sized exactly up front; overrunning or underfilling it is our bug. */
export class ByteWriter {
  readonly bytes: Uint8Array;
  private readonly dv: DataView;
  private offset = 0;

  constructor(sizeBytes: number) {
    this.bytes = new Uint8Array(sizeBytes);
    this.dv = new DataView(this.bytes.buffer);
  }

  get position(): number {
    return this.offset;
  }

  u8(v: number): void {
    this.dv.setUint8(this.offset, v);
    this.offset += 1;
  }

  // Hot paths check with a plain `if`: an assert's message closure would be allocated on every call.
  u32(v: number): void {
    if (!(v >= 0 && v < TWO_POW_32 && Number.isInteger(v)))
      throw new AssertionError(`u32 out of range: ${v}`);
    this.dv.setUint32(this.offset, v, true);
    this.offset += 4;
  }

  /** Writes a non-negative safe integer as a u64. */
  u64(v: number): void {
    if (!(v >= 0 && Number.isSafeInteger(v))) throw new AssertionError(`u64 out of range: ${v}`);
    this.dv.setUint32(this.offset, v % TWO_POW_32, true);
    this.dv.setUint32(this.offset + 4, Math.floor(v / TWO_POW_32), true);
    this.offset += 8;
  }

  /** Writes a signed 64-bit integer (etcd's int64 lease ids) as its two's-complement bits. */
  i64(v: bigint): void {
    this.dv.setBigUint64(this.offset, BigInt.asUintN(64, v), true);
    this.offset += 8;
  }

  raw(bytes: Uint8Array): void {
    this.bytes.set(bytes, this.offset);
    this.offset += bytes.length;
  }

  /** Writes a u32 byte length and the UTF-8 of a well-formed string (ASCII is copied in JS: cheaper
   *  than a call into the encoder for short keys). */
  lengthPrefixedUtf8(s: string): void {
    const start = this.offset + 4;
    const b = this.bytes;
    let o = start;
    let i = 0;
    for (; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) break;
      b[o++] = c;
    }
    if (i < s.length) o += utf8EncodeInto(s.slice(i), b.subarray(o));
    this.dv.setUint32(this.offset, o - start, true);
    this.offset = o;
  }

  /** Writes the UTF-8 of a well-formed string whose byte length the caller already knows. */
  utf8(s: string, byteLength: number): void {
    const written = utf8EncodeInto(s, this.bytes.subarray(this.offset, this.offset + byteLength));
    assert(written === byteLength, () => `utf8 length mismatch: ${written} != ${byteLength}`);
    this.offset += byteLength;
  }

  finish(): Uint8Array {
    assert(this.offset === this.bytes.length, () => `wrote ${this.offset} of ${this.bytes.length} bytes`);
    return this.bytes;
  }
}

/** Reads untrusted bytes; every shortfall or bad value is a CORRUPT error naming the thing and field. */
export class ByteReader {
  private readonly dv: DataView;
  private offset = 0;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly what: string,
  ) {
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get remaining(): number {
    return this.bytes.length - this.offset;
  }

  corrupt(message: string): RaftKvError {
    return new RaftKvError({ code: "CORRUPT", message: `${this.what}: ${message}` });
  }

  u8(field: string): number {
    this.need(1, field);
    const v = this.dv.getUint8(this.offset);
    this.offset += 1;
    return v;
  }

  u32(field: string): number {
    this.need(4, field);
    const v = this.dv.getUint32(this.offset, true);
    this.offset += 4;
    return v;
  }

  u64(field: string): number {
    this.need(8, field);
    const low = this.dv.getUint32(this.offset, true);
    const high = this.dv.getUint32(this.offset + 4, true);
    if (high > MAX_SAFE_HIGH) throw this.corrupt(`${field} exceeds the safe integer range`);
    this.offset += 8;
    return high * TWO_POW_32 + low;
  }

  /** A signed 64-bit integer written by ByteWriter.i64. */
  i64(field: string): bigint {
    this.need(8, field);
    const v = BigInt.asIntN(64, this.dv.getBigUint64(this.offset, true));
    this.offset += 8;
    return v;
  }

  boolean(field: string): boolean {
    const v = this.u8(field);
    if (v > 1) throw this.corrupt(`${field} is ${v}, expected 0 or 1`);
    return v === 1;
  }

  /** A private copy of the next `length` bytes, so stored values never alias the caller's buffer. */
  copy(length: number, field: string): Uint8Array {
    this.need(length, field);
    const out = this.bytes.slice(this.offset, this.offset + length);
    this.offset += length;
    return out;
  }

  /** A view of the next `length` bytes, sharing the reader's buffer: only for buffers the caller owns. */
  view(length: number, field: string): Uint8Array {
    this.need(length, field);
    const out = this.bytes.subarray(this.offset, this.offset + length);
    this.offset += length;
    return out;
  }

  utf8(length: number, field: string): string {
    this.need(length, field);
    const s = utf8Decode(this.bytes.subarray(this.offset, this.offset + length), `${this.what}: ${field}`);
    this.offset += length;
    return s;
  }

  /** The remaining bytes must be exactly consumed. */
  end(): void {
    if (this.remaining !== 0) throw this.corrupt(`${this.remaining} trailing bytes`);
  }

  private need(length: number, field: string): void {
    if (length > this.remaining) {
      throw this.corrupt(`truncated: ${field} needs ${length} bytes, ${this.remaining} left`);
    }
  }
}
