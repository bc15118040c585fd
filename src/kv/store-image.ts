// The image of a Store (src/store/store.ts) as snapshot bytes: every entry of a consistent view, in the
// store's byte order, so whatever tables the state machine keeps there (keys with their etcd metadata,
// history, sessions, counters) travel with it unchanged. StoreStateMachine's snapshots use it.
//
// Format v4, little-endian (v1/v2 are KvStateMachine's images, snapshot.ts; v3 is the previous format,
// still read):
//   u8 version (=4) | u64 appliedIndex |
//   n x (u32 keyLen, key, u32 valueLen, value), keys non-empty, strictly ascending in unsigned byte order |
//   u64 n | u32 crc32c of everything before it
// The count sits at the end so an image is written in one pass over the store, as it is read: v3 had it
// in the head (u8 3 | u64 appliedIndex | u64 n | entries | u32 crc32c), which took a first pass over the
// whole store to count, in one event-loop turn (at 50k keys 200-400 ms during which the node sent no
// heartbeat). A reader knows where the entries end from the image's size, which the snapshot's meta
// carries. The body depends only on the contents, so replicas with equal stores write identical bytes.

import { AssertionError } from "../lib/assert.ts";
import { crc32c } from "../lib/crc32c.ts";
import { RaftKvError } from "../lib/errors.ts";
import { compareBytes, type StoreEntry, type StoreReader, type StoreView } from "../store/store.ts";
import { ByteReader, ByteWriter } from "./bytes.ts";

export const STORE_IMAGE_VERSION = 4;
/** The previous format, still read (snapshot files and backups written before v4). */
const STORE_IMAGE_VERSION_V3 = 3;
const HEAD_BYTES = 1 + 8;
const TAIL_BYTES = 8 + 4;
const V3_HEAD_BYTES = 1 + 8 + 8;
const V3_TAIL_BYTES = 4;
const CRC_BYTES = 4;
/** The shortest image of either format (no entries). */
const MIN_IMAGE_BYTES = Math.min(HEAD_BYTES + TAIL_BYTES, V3_HEAD_BYTES + V3_TAIL_BYTES);
/** Per entry: its two u32 lengths. */
const ENTRY_OVERHEAD_BYTES = 8;
const EMPTY = new Uint8Array(0);

/** The image's bytes in pieces of about `chunkBytes` (one large entry makes its chunk larger), read from
 *  `reader` as they are taken, in one pass: the reader must not change until the last chunk (a StoreView
 *  does not). Each piece costs about `chunkBytes` of work, so a caller that yields between pieces keeps
 *  its event loop's turns that short. */
export function* storeImageChunks(
  reader: StoreReader,
  appliedIndex: number,
  chunkBytes: number,
): Generator<Uint8Array, void, undefined> {
  const head = new ByteWriter(HEAD_BYTES);
  head.u8(STORE_IMAGE_VERSION);
  head.u64(appliedIndex);
  let crc = crc32c(head.finish());
  yield head.bytes;
  let batch: StoreEntry[] = [];
  let size = 0;
  let count = 0;
  let previous: Uint8Array | null = null;
  const flush = (): Uint8Array => {
    const w = new ByteWriter(size);
    for (const e of batch) {
      w.u32(e.key.length);
      w.raw(e.key);
      w.u32(e.value.length);
      w.raw(e.value);
    }
    batch = [];
    size = 0;
    return w.finish();
  };
  for (const e of reader.scan()) {
    // A plain `if`: an assert's message closure would be allocated for every entry.
    if (previous !== null && compareBytes(previous, e.key) >= 0)
      throw new AssertionError("store scan out of order while writing an image");
    previous = e.key;
    batch.push(e);
    size += ENTRY_OVERHEAD_BYTES + e.key.length + e.value.length;
    count++;
    if (size >= chunkBytes) {
      const chunk = flush();
      crc = crc32c(chunk, crc);
      yield chunk;
    }
  }
  const last = size > 0 ? flush() : EMPTY;
  crc = crc32c(last, crc);
  const tail = new ByteWriter(TAIL_BYTES);
  tail.u64(count);
  crc = crc32c(tail.bytes.subarray(0, 8), crc);
  tail.u32(crc);
  yield last.length === 0 ? tail.finish() : concat(last, tail.finish());
}

/** The image of a store view, chunk by chunk (a SnapshotStream of state-machine.ts); owns the view and
 *  closes it with itself. Its size is known once the last chunk is out (the consumer counts). */
export class StoreImageStream {
  readonly appliedIndex: number;
  readonly sizeBytes = null;
  private readonly chunks: Generator<Uint8Array, void, undefined>;
  private view: StoreView | null;

  constructor(view: StoreView, chunkBytes: number) {
    this.view = view;
    this.appliedIndex = view.appliedIndex;
    this.chunks = storeImageChunks(view, view.appliedIndex, chunkBytes);
  }

  /** The next chunk, or null after the last. */
  next(): Uint8Array | null {
    if (this.view === null) throw new AssertionError("store image stream read after close");
    const r = this.chunks.next();
    return r.done === true ? null : r.value;
  }

  /** Lets go of the view; once. */
  close(): void {
    const view = this.view;
    if (view === null) throw new AssertionError("store image stream closed twice");
    this.view = null;
    this.chunks.return();
    view.close();
  }
}

/** Decodes an image (v4, or v3 of older snapshot files and backups) pushed in chunks of any sizes: the
 *  entries of each chunk go to `sink` as soon as they are complete, as views into the pushed chunks
 *  (handed over: the caller must not change them). Structure is checked as it goes (CORRUPT RaftKvError),
 *  the count and checksum only in finish(): a damaged image may have sent entries to the sink by then,
 *  so the sink must be a store that is thrown away on error. */
export class StoreImageDecoder {
  private pending: Uint8Array = EMPTY;
  private received = 0;
  private crc = 0;
  /** The image's last TAIL_BYTES bytes (v4: count and checksum; v3: the checksum is the last 4). */
  private readonly tail = new Uint8Array(TAIL_BYTES);
  private version = 0;
  /** Where the entries end (known once the version byte is in). */
  private entriesEnd = 0;
  private headRead = false;
  private appliedIndex = 0;
  /** v3: the count its head announces; v4: read from the tail in finish(). */
  private count = Number.POSITIVE_INFINITY;
  private decoded = 0;
  private previous: Uint8Array | null = null;

  constructor(
    private readonly sizeBytes: number,
    private readonly sink: (entries: readonly StoreEntry[]) => void,
  ) {
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes < MIN_IMAGE_BYTES)
      throw corrupt(`${sizeBytes} bytes is too short`);
  }

  push(chunk: Uint8Array): void {
    const from = this.received;
    if (from + chunk.length > this.sizeBytes)
      throw corrupt(`more than the ${this.sizeBytes} bytes announced`);
    if (chunk.length === 0) return;
    if (from === 0) this.readVersion(chunk[0]!);
    const crcEnd = this.sizeBytes - CRC_BYTES;
    if (from < crcEnd) this.crc = crc32c(chunk.subarray(0, crcEnd - from), this.crc);
    const tailStart = this.sizeBytes - TAIL_BYTES;
    for (let i = Math.max(from, tailStart); i < from + chunk.length; i++)
      this.tail[i - tailStart] = chunk[i - from]!;
    this.received += chunk.length;
    const body = chunk.subarray(0, Math.max(0, Math.min(chunk.length, this.entriesEnd - from)));
    this.pending = this.pending.length === 0 ? body : concat(this.pending, body);
    this.parse();
  }

  /** Checks completeness, the count and the checksum; returns the image's applied index. */
  finish(): { appliedIndex: number; entryCount: number } {
    if (this.received !== this.sizeBytes)
      throw corrupt(`truncated: ${this.received} of ${this.sizeBytes} bytes received`);
    const dv = new DataView(this.tail.buffer);
    const stored = dv.getUint32(TAIL_BYTES - CRC_BYTES, true);
    if (stored !== this.crc) throw corrupt(`checksum mismatch (stored ${stored}, computed ${this.crc})`);
    if (this.version === STORE_IMAGE_VERSION) {
      const r = new ByteReader(this.tail.subarray(0, 8), "store image");
      this.count = r.u64("entry count");
    }
    if (!this.headRead || this.decoded !== this.count || this.pending.length > 0)
      throw corrupt(`${this.decoded} of ${this.count} entries, ${this.pending.length} bytes left over`);
    return { appliedIndex: this.appliedIndex, entryCount: this.count };
  }

  private readVersion(version: number): void {
    this.version = version;
    if (version === STORE_IMAGE_VERSION) this.entriesEnd = this.sizeBytes - TAIL_BYTES;
    else if (version === STORE_IMAGE_VERSION_V3) this.entriesEnd = this.sizeBytes - V3_TAIL_BYTES;
    else
      throw corrupt(
        `format version ${version}, this state machine reads ${STORE_IMAGE_VERSION} and ${STORE_IMAGE_VERSION_V3}`,
      );
  }

  private parse(): void {
    const b = this.pending;
    let at = 0;
    if (!this.headRead) {
      const headBytes = this.version === STORE_IMAGE_VERSION ? HEAD_BYTES : V3_HEAD_BYTES;
      if (b.length < headBytes) return;
      const r = new ByteReader(b.subarray(0, headBytes), "store image");
      r.u8("version");
      this.appliedIndex = r.u64("applied index");
      if (this.version === STORE_IMAGE_VERSION_V3) {
        this.count = r.u64("entry count");
        const left = this.entriesEnd - headBytes;
        if (this.count > left / (ENTRY_OVERHEAD_BYTES + 1))
          throw r.corrupt(`entry count ${this.count} exceeds what ${left} bytes hold`);
      }
      this.headRead = true;
      at = headBytes;
    }
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    const out: StoreEntry[] = [];
    while (this.decoded < this.count && b.length - at >= 4) {
      const keyLength = dv.getUint32(at, true);
      if (keyLength === 0) throw corrupt(`entry ${this.decoded} has an empty key`);
      if (b.length - at < 8 + keyLength) break;
      const valueLength = dv.getUint32(at + 4 + keyLength, true);
      const entryBytes = 8 + keyLength + valueLength;
      const bodyReceived = Math.min(this.received, this.entriesEnd);
      const offset = bodyReceived - this.pending.length + at;
      if (offset + entryBytes > this.entriesEnd)
        throw corrupt(`entry ${this.decoded} at byte ${offset} needs ${entryBytes} bytes`);
      if (b.length - at < entryBytes) break;
      const key = b.subarray(at + 4, at + 4 + keyLength);
      if (this.previous !== null && compareBytes(this.previous, key) >= 0)
        throw corrupt(`entry ${this.decoded}: key not above the previous one`);
      this.previous = key;
      out.push({ key, value: b.subarray(at + 8 + keyLength, at + entryBytes) });
      this.decoded++;
      at += entryBytes;
    }
    if (this.decoded === this.count && b.length > at)
      throw corrupt(`${b.length - at} bytes after the last of ${this.count} entries`);
    this.pending = at === b.length ? EMPTY : b.subarray(at);
    if (out.length > 0) this.sink(out);
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

function corrupt(message: string): RaftKvError {
  return new RaftKvError({ code: "CORRUPT", message: `store image: ${message}` });
}
