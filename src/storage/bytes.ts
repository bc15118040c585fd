// Little-endian byte writer and bounds-checked reader, shared by the WAL and snapshot file formats.

const TWO_32 = 2 ** 32;
const MAX_HIGH_WORD = Math.floor(Number.MAX_SAFE_INTEGER / TWO_32);

/** Malformed bytes: the reader turns them into this, and callers into a CORRUPT error with a place. */
export class DecodeError extends Error {
  override name = "DecodeError";
}

export class ByteWriter {
  private buf: Uint8Array;
  private view: DataView;
  private pos = 0;

  constructor(initialBytes = 256) {
    this.buf = new Uint8Array(Math.max(16, initialBytes));
    this.view = new DataView(this.buf.buffer);
  }

  get length(): number {
    return this.pos;
  }

  u8(v: number): void {
    this.ensure(1);
    this.buf[this.pos++] = v;
  }

  u32(v: number): void {
    this.ensure(4);
    this.view.setUint32(this.pos, v >>> 0, true);
    this.pos += 4;
  }

  /** A non-negative safe integer as a uint64. */
  u64(v: number): void {
    this.ensure(8);
    this.view.setUint32(this.pos, (v % TWO_32) >>> 0, true);
    this.view.setUint32(this.pos + 4, Math.floor(v / TWO_32) >>> 0, true);
    this.pos += 8;
  }

  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  /** A u32 byte length followed by UTF-8. */
  string(s: string): void {
    const b = new TextEncoder().encode(s);
    this.u32(b.length);
    this.bytes(b);
  }

  /** Reserves `n` zero bytes to patch later; returns their position. */
  reserve(n: number): number {
    this.ensure(n);
    const at = this.pos;
    this.buf.fill(0, at, at + n);
    this.pos += n;
    return at;
  }

  patchU32(at: number, v: number): void {
    this.view.setUint32(at, v >>> 0, true);
  }

  /** A view of bytes written so far in [start, end). */
  written(start: number, end: number): Uint8Array {
    return this.buf.subarray(start, end);
  }

  /** The bytes written (a view; the writer must not be used afterwards). */
  finish(): Uint8Array {
    return this.buf.subarray(0, this.pos);
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.pos + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
}

export class ByteReader {
  private pos = 0;
  private readonly view: DataView;

  constructor(private readonly buf: Uint8Array) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  get offset(): number {
    return this.pos;
  }

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  u8(): number {
    this.need(1, "u8");
    return this.buf[this.pos++]!;
  }

  u32(): number {
    this.need(4, "u32");
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }

  /** A uint64 that must be a safe integer. */
  u64(): number {
    this.need(8, "u64");
    const lo = this.view.getUint32(this.pos, true);
    const hi = this.view.getUint32(this.pos + 4, true);
    if (hi > MAX_HIGH_WORD) throw new DecodeError(`integer at byte ${this.pos} exceeds 2^53-1`);
    this.pos += 8;
    const v = hi * TWO_32 + lo;
    if (!Number.isSafeInteger(v)) throw new DecodeError(`integer at byte ${this.pos - 8} exceeds 2^53-1`);
    return v;
  }

  /** `n` bytes, copied (so a large read buffer is not kept alive by small pieces). */
  bytes(n: number): Uint8Array {
    this.need(n, `${n} bytes`);
    const out = this.buf.slice(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  string(maxBytes: number): string {
    const n = this.u32();
    if (n > maxBytes) throw new DecodeError(`string of ${n} bytes exceeds the limit of ${maxBytes}`);
    this.need(n, "string");
    let s: string;
    try {
      s = new TextDecoder("utf-8", { fatal: true }).decode(this.buf.subarray(this.pos, this.pos + n));
    } catch {
      throw new DecodeError(`string at byte ${this.pos} is not valid UTF-8`);
    }
    this.pos += n;
    return s;
  }

  /** Fails unless every byte was consumed. */
  end(what: string): void {
    if (this.pos !== this.buf.length)
      throw new DecodeError(`${this.buf.length - this.pos} trailing bytes after ${what}`);
  }

  private need(n: number, what: string): void {
    if (this.pos + n > this.buf.length)
      throw new DecodeError(`${what} at byte ${this.pos} runs past the end (${this.buf.length} bytes)`);
  }
}
