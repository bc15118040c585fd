// UTF-8 for keys and client ids: byte length with lone-surrogate detection, strict encode and decode.

import { RaftKvError } from "../lib/errors.ts";

const encoder = new TextEncoder();
// fatal: invalid UTF-8 (including encoded surrogates) throws; ignoreBOM: a leading U+FEFF is data, not a BOM.
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** UTF-8 byte length of `s`, or -1 when `s` holds a lone surrogate (not well-formed UTF-16). */
export function utf8ByteLength(s: string): number {
  let bytes = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c < 0xd800 || c > 0xdfff) bytes += 3;
    else if (c > 0xdbff) return -1;
    else {
      const next = s.charCodeAt(i + 1);
      if (!(next >= 0xdc00 && next <= 0xdfff)) return -1;
      bytes += 4;
      i++;
    }
  }
  return bytes;
}

/** Writes `s` into `dest` and returns the bytes written. The caller has checked well-formedness. */
export function utf8EncodeInto(s: string, dest: Uint8Array): number {
  return encoder.encodeInto(s, dest).written;
}

/** Decodes strict UTF-8; malformed bytes are a CORRUPT error naming `field`. The result is a flat
 *  string (building keys by concatenation would leave rope nodes that cost hundreds of bytes a key). */
export function utf8Decode(bytes: Uint8Array, field: string): string {
  try {
    return decoder.decode(bytes);
  } catch (cause) {
    throw new RaftKvError({ code: "CORRUPT", message: `${field} is not valid UTF-8`, cause });
  }
}
