// Values as the client takes them: strings (UTF-8) or bytes.

export type Bytes = string | Uint8Array;

const encoder = new TextEncoder();

export function toBytes(v: Bytes): Uint8Array {
  return typeof v === "string" ? encoder.encode(v) : v;
}

/** UTF-8 text of `v`, or null when it is not valid UTF-8. */
export function utf8OrNull(v: Uint8Array): string | null {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(v);
  } catch {
    return null;
  }
}

/** A plain Uint8Array view of `v` (protobuf decoding hands out Buffers under Node). */
export function plainBytes(v: Uint8Array): Uint8Array {
  return Object.getPrototypeOf(v) === Uint8Array.prototype
    ? v
    : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}
