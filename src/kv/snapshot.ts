// The state-machine image: binary snapshot format (checksummed, validated on read) and the state hash.
//
// Format v2, little-endian:
//   u8 version (=2) | u64 appliedIndex | body | u32 crc32c of everything before it
//   body = u32 keyCount, keyCount x (u32 keyLen, key UTF-8, u32 valueLen, value), strictly ascending
//          by key in UTF-16 code-unit order |
//          u32 sessionCount, sessionCount x (u8 clientIdLen, clientId, u8 writeCount,
//          writeCount x (u64 seq, u64 index, result)), sessions strictly ascending by their highest write
//          index (oldest first, the eviction order), each session's writes strictly ascending by seq and
//          within WRITES_IN_FLIGHT_PER_CLIENT of the highest (session-table.ts)
// v1 (still read) had one write per session: u8 clientIdLen, clientId, u64 seq, u64 index, result.
// The body depends only on the contents, so replicas with equal contents write identical bytes.

import { AssertionError, assert } from "../lib/assert.ts";
import { crc32c } from "../lib/crc32c.ts";
import { RaftKvError } from "../lib/errors.ts";
import { ByteReader, ByteWriter } from "./bytes.ts";
import { KeyIndex } from "./key-index.ts";
import { MAX_CLIENT_ID_BYTES } from "./limits.ts";
import { readResult, resultSize, writeResult } from "./result.ts";
import { type Session, type SessionWrite, WRITES_IN_FLIGHT_PER_CLIENT } from "./session-table.ts";
import { utf8ByteLength } from "./utf8.ts";
import type { ValueStore } from "./value-store.ts";

export const SNAPSHOT_FORMAT_VERSION = 2;
/** Older formats this decoder still reads. */
const READABLE_VERSIONS: readonly number[] = [1, 2];

export interface KvImage {
  readonly appliedIndex: number;
  readonly keyCount: number;
  /** The sum of the keys' UTF-8 byte lengths. */
  readonly keyBytes: number;
  /** The i-th key in ascending order, for i in [0, keyCount). */
  key(i: number): string;
  /** The value of key(i). */
  value(i: number): Uint8Array;
  /** The sum of the values' byte lengths. */
  readonly valueBytes: number;
  /** Sessions, oldest index first. */
  readonly sessions: readonly (readonly [string, Session])[];
}

export interface DecodedImage {
  readonly appliedIndex: number;
  /** Key to its value's handle in the ValueStore passed to decodeSnapshot; ids in ascending key order. */
  readonly keys: KeyIndex;
  readonly valueBytes: number;
  readonly sessions: [string, Session][];
}

/** Chunks of about this many bytes by default (one large value makes its chunk larger). */
export const DEFAULT_SNAPSHOT_CHUNK_BYTES = 1024 * 1024;

/** Byte length of encodeSnapshot(image). */
export function snapshotSize(image: KvImage): number {
  return 1 + 8 + bodySize(image) + 4;
}

export function encodeSnapshot(image: KvImage): Uint8Array {
  const out = new Uint8Array(snapshotSize(image));
  let offset = 0;
  for (const chunk of snapshotChunks(image)) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  assert(offset === out.length, () => `snapshot chunks gave ${offset} of ${out.length} bytes`);
  return out;
}

/** encodeSnapshot's bytes in pieces of about `chunkBytes`, reading values as it goes, so the whole
 *  image is never in memory at once: the version and applied index, body chunks, then the checksum.
 *  The image must not change until the last chunk is taken. */
export function* snapshotChunks(
  image: KvImage,
  chunkBytes = DEFAULT_SNAPSHOT_CHUNK_BYTES,
): Generator<Uint8Array, void, undefined> {
  const head = new ByteWriter(1 + 8);
  head.u8(SNAPSHOT_FORMAT_VERSION);
  head.u64(image.appliedIndex);
  let crc = crc32c(head.finish());
  yield head.bytes;
  for (const chunk of bodyChunks(image, chunkBytes)) {
    crc = crc32c(chunk, crc);
    yield chunk;
  }
  const tail = new ByteWriter(4);
  tail.u32(crc);
  yield tail.finish();
}

/** CRC32C of the body: equal for replicas with equal data and sessions, whatever their applied index. */
export function hashImage(image: KvImage): number {
  let crc = 0;
  for (const chunk of bodyChunks(image, DEFAULT_SNAPSHOT_CHUNK_BYTES)) crc = crc32c(chunk, crc);
  return crc;
}

/** Checks the checksum and every field; throws a CORRUPT RaftKvError on anything wrong. Values go
 *  into `values` as views into `bytes` (no copy here: a store that keeps them, like MemValueStore,
 *  keeps `bytes` alive while any of them lives), so the caller hands `bytes` over and must not change
 *  them. On a CORRUPT error, values may already have been added. */
export function decodeSnapshot(bytes: Uint8Array, values: ValueStore): DecodedImage {
  const d = new SnapshotDecoder(values, bytes.length);
  d.push(bytes);
  return d.finish();
}

const HEAD_BYTES = 1 + 8 + 4;
const EMPTY = new Uint8Array(0);

/** Decodes an image pushed in chunks of any sizes, so that it need never be in memory whole: each
 *  value goes to the ValueStore as soon as its entry is complete (as a view into a pushed chunk, which
 *  the caller hands over). The checks are decodeSnapshot's, but the checksum can only be compared in
 *  finish(): a damaged image may fail on its structure first, and may have added values by then. */
export class SnapshotDecoder {
  /** Bytes pushed and not yet parsed (at most one entry's worth while in the entries). */
  private pending: Uint8Array = EMPTY;
  private received = 0;
  private crc = 0;
  private readonly tail = new Uint8Array(4);
  private stage: "head" | "entries" | "rest" = "head";
  private version = SNAPSHOT_FORMAT_VERSION;
  private appliedIndex = 0;
  private count = 0;
  private keys = new KeyIndex();
  /** The last key decoded, to check the order. */
  private previousKey = "";
  private valueBytes = 0;
  /** The sessions and the checksum, kept until finish() (they are small). */
  private readonly rest: Uint8Array[] = [];

  constructor(
    private readonly values: ValueStore,
    private readonly sizeBytes: number,
  ) {
    if (sizeBytes < HEAD_BYTES + 4 + 4) throw corrupt(`${sizeBytes} bytes is too short`);
  }

  push(chunk: Uint8Array): void {
    const from = this.received;
    if (from + chunk.length > this.sizeBytes)
      throw corrupt(`more than the ${this.sizeBytes} bytes announced`);
    const crcEnd = this.sizeBytes - 4;
    if (from < crcEnd) this.crc = crc32c(chunk.subarray(0, crcEnd - from), this.crc);
    for (let i = Math.max(from, crcEnd); i < from + chunk.length; i++)
      this.tail[i - crcEnd] = chunk[i - from]!;
    this.received += chunk.length;
    if (this.stage === "rest") {
      this.rest.push(chunk);
      return;
    }
    this.pending = this.pending.length === 0 ? chunk : concat([this.pending, chunk]);
    this.parse();
  }

  finish(): DecodedImage {
    if (this.received !== this.sizeBytes)
      throw corrupt(`truncated: ${this.received} of ${this.sizeBytes} bytes received`);
    const stored = new DataView(this.tail.buffer).getUint32(0, true);
    if (stored !== this.crc) throw corrupt(`checksum mismatch (stored ${stored}, computed ${this.crc})`);
    if (this.stage !== "rest") throw corrupt(`truncated: ${this.keys.size} of ${this.count} keys`);
    const rest = concat(this.rest);
    const r = new ByteReader(rest.subarray(0, Math.max(0, rest.length - 4)), "kv snapshot");
    const sessions = readSessions(r, this.appliedIndex, this.version);
    r.end();
    const { appliedIndex, keys, valueBytes } = this;
    return { appliedIndex, keys, valueBytes, sessions };
  }

  private parse(): void {
    const b = this.pending;
    let at = 0;
    if (this.stage === "head") {
      if (b.length < HEAD_BYTES) return;
      const r = new ByteReader(b.subarray(0, HEAD_BYTES), "kv snapshot");
      const version = r.u8("version");
      if (!READABLE_VERSIONS.includes(version)) throw r.corrupt(`unsupported format version ${version}`);
      this.version = version;
      this.appliedIndex = r.u64("applied index");
      this.count = r.u32("key count");
      // Each entry takes at least 9 bytes: refuse a count the bytes cannot hold before allocating for it.
      const left = this.sizeBytes - HEAD_BYTES;
      if (this.count > left / 9) throw r.corrupt(`key count ${this.count} exceeds what ${left} bytes hold`);
      this.keys = new KeyIndex({ expectedKeys: this.count });
      this.stage = "entries";
      at = HEAD_BYTES;
    }
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    while (this.stage === "entries" && this.keys.size < this.count) {
      // An entry is parsed once all of it is here: u32 key length, key, u32 value length, value.
      if (b.length - at < 4) break;
      const keyLength = dv.getUint32(at, true);
      if (b.length - at < 8 + keyLength) {
        this.mustFit(at, 8 + keyLength);
        break;
      }
      const entryBytes = 8 + keyLength + dv.getUint32(at + 4 + keyLength, true);
      if (b.length - at < entryBytes) {
        this.mustFit(at, entryBytes);
        break;
      }
      this.entry(new ByteReader(b.subarray(at, at + entryBytes), "kv snapshot"));
      at += entryBytes;
    }
    if (this.stage === "entries" && this.keys.size === this.count) {
      this.stage = "rest";
      this.rest.push(b.subarray(at));
      at = b.length;
    }
    this.pending = at === b.length ? EMPTY : b.subarray(at);
  }

  /** An entry of `bytes` starting at `at` of pending must end within the image, before its checksum. */
  private mustFit(at: number, bytes: number): void {
    const offset = this.received - this.pending.length + at;
    if (offset + bytes > this.sizeBytes - 4)
      throw corrupt(`truncated: key ${this.keys.size} at byte ${offset} needs ${bytes} bytes`);
  }

  private entry(r: ByteReader): void {
    const i = this.keys.size;
    const keyLength = r.u32("key length");
    if (keyLength === 0) throw r.corrupt(`key ${i} is empty`);
    const key = r.utf8(keyLength, "key");
    if (i > 0 && !(this.previousKey < key)) throw r.corrupt(`key ${i} is not above the previous key`);
    const value = r.view(r.u32("value length"), "value");
    r.end();
    // Ascending and new: the index hands out ids 0, 1, ... in key order, which SortedKeys notices.
    const replaced = this.keys.set(key, this.values.add(value));
    if (replaced !== -1) throw new AssertionError(`key ${i} was already in the index`);
    this.valueBytes += value.length;
    this.previousKey = key;
  }
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function bodySize(image: KvImage): number {
  return 4 + 8 * image.keyCount + image.keyBytes + image.valueBytes + sessionsSize(image.sessions);
}

/** The body: the key count and keys with values in chunks of about `chunkBytes`, then the sessions. */
function* bodyChunks(image: KvImage, chunkBytes: number): Generator<Uint8Array, void, undefined> {
  const count = image.keyCount;
  const keys: string[] = [];
  const values: Uint8Array[] = [];
  let previous: string | null = null;
  let i = 0;
  do {
    // Gather entries for one chunk (the first also carries the key count), then write them.
    const from = i;
    let size = from === 0 ? 4 : 0;
    keys.length = 0;
    values.length = 0;
    for (; i < count && (i === from || size < chunkBytes); i++) {
      const key = image.key(i);
      const value = image.value(i);
      keys.push(key);
      values.push(value);
      size += 8 + utf8ByteLength(key) + value.length;
    }
    const w = new ByteWriter(size);
    if (from === 0) w.u32(count);
    for (let j = from; j < i; j++) {
      const key = keys[j - from]!;
      // Order is the caller's to keep (decode checks it); a repeated key means the image is out of step.
      // A plain `if`: an assert's message closure would be allocated for every key.
      if (key === previous) throw new AssertionError(`key ${JSON.stringify(key)} twice in the image`);
      previous = key;
      const value = values[j - from]!;
      w.lengthPrefixedUtf8(key);
      w.u32(value.length);
      w.raw(value);
    }
    yield w.finish();
  } while (i < count);
  const w = new ByteWriter(sessionsSize(image.sessions));
  writeSessions(w, image.sessions);
  yield w.finish();
}

function sessionsSize(sessions: KvImage["sessions"]): number {
  let size = 4;
  for (const [clientId, s] of sessions) {
    size += 1 + utf8ByteLength(clientId) + 1;
    for (const w of s.writes) size += 8 + 8 + resultSize(w.result);
  }
  return size;
}

function writeSessions(w: ByteWriter, sessions: KvImage["sessions"]): void {
  w.u32(sessions.length);
  for (const [clientId, s] of sessions) {
    const idBytes = utf8ByteLength(clientId);
    w.u8(idBytes);
    w.utf8(clientId, idBytes);
    w.u8(s.writes.length);
    for (const write of s.writes) {
      w.u64(write.seq);
      w.u64(write.index);
      writeResult(w, write.result);
    }
  }
}

function readSessions(r: ByteReader, appliedIndex: number, version: number): [string, Session][] {
  const count = r.u32("session count");
  const seen = new Set<string>();
  const sessions: [string, Session][] = [];
  let previousIndex = 0;
  for (let i = 0; i < count; i++) {
    const idLength = r.u8("client id length");
    if (idLength === 0 || idLength > MAX_CLIENT_ID_BYTES) throw r.corrupt(`client id length ${idLength}`);
    const clientId = r.utf8(idLength, "client id");
    if (seen.has(clientId)) throw r.corrupt(`client ${JSON.stringify(clientId)} appears twice`);
    const writeCount = version === 1 ? 1 : r.u8("session write count");
    if (writeCount < 1 || writeCount > WRITES_IN_FLIGHT_PER_CLIENT)
      throw r.corrupt(`session ${i} has ${writeCount} writes (1..${WRITES_IN_FLIGHT_PER_CLIENT})`);
    const writes: SessionWrite[] = [];
    let index = 0;
    const indexes = new Set<number>();
    for (let k = 0; k < writeCount; k++) {
      const seq = r.u64("seq");
      const at = r.u64("session index");
      if (seq < 1) throw r.corrupt(`session ${i} has seq 0`);
      if (k > 0 && seq <= writes[k - 1]!.seq) throw r.corrupt(`session ${i}: seqs not ascending`);
      if (at < 1 || at > appliedIndex || indexes.has(at))
        throw r.corrupt(`session ${i} index ${at} not a distinct index in [1, ${appliedIndex}]`);
      indexes.add(at);
      index = Math.max(index, at);
      writes.push({ seq, index: at, result: readResult(r) });
    }
    if (writes[writeCount - 1]!.seq - writes[0]!.seq >= WRITES_IN_FLIGHT_PER_CLIENT)
      throw r.corrupt(`session ${i}: seqs span more than ${WRITES_IN_FLIGHT_PER_CLIENT}`);
    if (index <= previousIndex)
      throw r.corrupt(`session ${i} index ${index} not in (${previousIndex}, ${appliedIndex}]`);
    seen.add(clientId);
    sessions.push([clientId, { writes, index }]);
    previousIndex = index;
  }
  return sessions;
}

function corrupt(message: string): RaftKvError {
  return new RaftKvError({ code: "CORRUPT", message: `kv snapshot: ${message}` });
}
