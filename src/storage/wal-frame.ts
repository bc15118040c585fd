// WAL record framing: a 16-byte header (length, type, payload CRC32C, header CRC32C), the payload, and
// a one-byte trailer.
//
// Layout, little-endian:
//   0  u32  payload length in bytes
//   4  u8   record type
//   5  3 bytes reserved, zero
//   8  u32  CRC32C over the type byte then the payload
//  12  u32  CRC32C over bytes 0..11 (so a damaged length is caught before it is trusted)
//  16  payload
//  16+length  u8 trailer 0xA5
// The header check tells a torn tail (a valid header whose frame runs past the written bytes) from a
// damaged length. The non-zero trailer makes every complete frame end in a non-zero byte, so in a
// zero-preallocated segment the written extent (up to the last non-zero byte) ends exactly at the end
// of the last complete frame, and a write that stopped early leaves its frame cut short.

import { crc32c } from "../lib/crc32c.ts";
import type { ByteWriter } from "./bytes.ts";

export const FRAME_HEADER_BYTES = 16;
export const FRAME_TRAILER = 0xa5;
/** Header and trailer bytes around each payload. */
export const FRAME_OVERHEAD_BYTES = FRAME_HEADER_BYTES + 1;
/** Larger payloads are refused by the reader (and never written). */
export const MAX_FRAME_PAYLOAD_BYTES = 256 * 1024 * 1024;

export type FrameResult =
  | { readonly kind: "ok"; readonly type: number; readonly payload: Uint8Array; readonly end: number }
  /** The bytes end inside this frame: fewer than a header, or a valid header whose frame is cut. */
  | { readonly kind: "partial"; readonly reason: string }
  /** A damaged frame: the header check, reserved bytes, length limit or payload CRC failed. */
  | { readonly kind: "bad"; readonly reason: string };

function payloadCrc(type: number, payload: Uint8Array): number {
  return crc32c(payload, crc32c(Uint8Array.of(type)));
}

/** Appends one frame to `w`, with the payload produced by `writePayload`. */
export function writeFrame(w: ByteWriter, type: number, writePayload: (w: ByteWriter) => void): void {
  const start = w.reserve(FRAME_HEADER_BYTES);
  writePayload(w);
  const length = w.length - start - FRAME_HEADER_BYTES;
  if (length > MAX_FRAME_PAYLOAD_BYTES) throw new RangeError(`WAL record of ${length} bytes is too large`);
  w.patchU32(start, length);
  w.written(start + 4, start + 5)[0] = type;
  w.patchU32(start + 8, payloadCrc(type, w.written(start + FRAME_HEADER_BYTES, w.length)));
  w.patchU32(start + 12, crc32c(w.written(start, start + 12)));
  w.u8(FRAME_TRAILER);
}

/** Decodes the frame at `offset` of `buf` (which ends where the file ends). */
export function readFrame(buf: Uint8Array, offset: number): FrameResult {
  const available = buf.length - offset;
  if (available < FRAME_HEADER_BYTES)
    return { kind: "partial", reason: `only ${available} bytes left, a record header needs 16` };
  const view = new DataView(buf.buffer, buf.byteOffset + offset, FRAME_HEADER_BYTES);
  const length = view.getUint32(0, true);
  const type = view.getUint8(4);
  if (crc32c(buf.subarray(offset, offset + 12)) !== view.getUint32(12, true))
    return { kind: "bad", reason: "record header checksum mismatch" };
  if (view.getUint8(5) !== 0 || view.getUint8(6) !== 0 || view.getUint8(7) !== 0)
    return { kind: "bad", reason: "reserved header bytes are not zero" };
  if (length > MAX_FRAME_PAYLOAD_BYTES)
    return { kind: "bad", reason: `record length ${length} exceeds the limit` };
  const end = offset + FRAME_OVERHEAD_BYTES + length;
  if (end > buf.length)
    return {
      kind: "partial",
      reason: `record of ${length} bytes is cut after ${available - FRAME_HEADER_BYTES} of its bytes`,
    };
  const payload = buf.subarray(offset + FRAME_HEADER_BYTES, end - 1);
  if (payloadCrc(type, payload) !== view.getUint32(8, true))
    return { kind: "bad", reason: "record checksum mismatch" };
  if (buf[end - 1] !== FRAME_TRAILER) return { kind: "bad", reason: "record trailer damaged" };
  return { kind: "ok", type, payload, end };
}
