// The image of a Store (src/store/store.ts) as snapshot bytes: every entry of a consistent view, in the
// store's byte order, so whatever tables the state machine keeps there (keys with their etcd metadata,
// history, sessions, counters) travel with it unchanged. StoreStateMachine's snapshots use it.
//
// Format v3, little-endian (v1/v2 are KvStateMachine's images, snapshot.ts; a v2 reader refuses v3 by
// its version byte):
//   u8 version (=3) | u64 appliedIndex | u64 entryCount |
//   entryCount x (u32 keyLen, key, u32 valueLen, value), keys non-empty, strictly ascending in unsigned
//   byte order | u32 crc32c of everything before it
// The body depends only on the contents, so replicas with equal stores write identical bytes.

import { AssertionError } from "../lib/assert.ts";
import { crc32c } from "../lib/crc32c.ts";
import { RaftKvError } from "../lib/errors.ts";
import { compareBytes, type StoreEntry, type StoreReader, type StoreView } from "../store/store.ts";
import { ByteReader, ByteWriter } from "./bytes.ts";

export const STORE_IMAGE_VERSION = 3;
const HEAD_BYTES = 1 + 8 + 8;
const TAIL_BYTES = 4;
/** Per entry: its two u32 lengths. */
const ENTRY_OVERHEAD_BYTES = 8;
const EMPTY = new Uint8Array(0);

/** The size of the image of `reader`'s entries: one pass over them (no value is copied). */
export function storeImageSize(reader: StoreReader): { sizeBytes: number; entryCount: number } {
  let bytes = HEAD_BYTES + TAIL_BYTES;
  let entryCount = 0;
  for (const e of reader.scan()) {
    bytes += ENTRY_OVERHEAD_BYTES + e.key.length + e.value.length;
    entryCount++;
  }
  return { sizeBytes: bytes, entryCount };
}

/** The image's bytes in pieces of about `chunkBytes` (one large entry makes its chunk larger), read from
 *  `reader` as they are taken: the reader must not change until the last chunk (a StoreView does not).
 *  `entryCount` is storeImageSize's; a reader that yields another count is our bug (asserted). */
export function* storeImageChunks(
  reader: StoreReader,
  appliedIndex: number,
  entryCount: number,
  chunkBytes: number,
): Generator<Uint8Array, void, undefined> {
  const head = new ByteWriter(HEAD_BYTES);
  head.u8(STORE_IMAGE_VERSION);
  head.u64(appliedIndex);
  head.u64(entryCount);
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
  if (count !== entryCount)
    throw new AssertionError(`store image: ${count} entries scanned, ${entryCount} announced`);
  if (size > 0) {
    const chunk = flush();
    crc = crc32c(chunk, crc);
    yield chunk;
  }
  const tail = new ByteWriter(TAIL_BYTES);
  tail.u32(crc);
  yield tail.finish();
}

/** The image of a store view, chunk by chunk (a SnapshotStream of state-machine.ts); owns the view and
 *  closes it with itself. Sizing it is one pass over the view. */
export class StoreImageStream {
  readonly appliedIndex: number;
  readonly sizeBytes: number;
  private readonly chunks: Generator<Uint8Array, void, undefined>;
  private view: StoreView | null;

  constructor(view: StoreView, chunkBytes: number) {
    this.view = view;
    this.appliedIndex = view.appliedIndex;
    try {
      const { sizeBytes, entryCount } = storeImageSize(view);
      this.sizeBytes = sizeBytes;
      this.chunks = storeImageChunks(view, view.appliedIndex, entryCount, chunkBytes);
    } catch (err) {
      view.close();
      throw err;
    }
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

/** Decodes an image pushed in chunks of any sizes: the entries of each chunk go to `sink` as soon as
 *  they are complete, as views into the pushed chunks (handed over: the caller must not change them).
 *  Structure is checked as it goes (CORRUPT RaftKvError), the checksum only in finish(): a damaged image
 *  may have sent entries to the sink by then, so the sink must be a store that is thrown away on error. */
export class StoreImageDecoder {
  private pending: Uint8Array = EMPTY;
  private received = 0;
  private crc = 0;
  private readonly tail = new Uint8Array(TAIL_BYTES);
  private headRead = false;
  private appliedIndex = 0;
  private count = 0;
  private decoded = 0;
  private previous: Uint8Array | null = null;

  constructor(
    private readonly sizeBytes: number,
    private readonly sink: (entries: readonly StoreEntry[]) => void,
  ) {
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes < HEAD_BYTES + TAIL_BYTES)
      throw corrupt(`${sizeBytes} bytes is too short`);
  }

  push(chunk: Uint8Array): void {
    const from = this.received;
    if (from + chunk.length > this.sizeBytes)
      throw corrupt(`more than the ${this.sizeBytes} bytes announced`);
    const crcEnd = this.sizeBytes - TAIL_BYTES;
    if (from < crcEnd) this.crc = crc32c(chunk.subarray(0, crcEnd - from), this.crc);
    for (let i = Math.max(from, crcEnd); i < from + chunk.length; i++)
      this.tail[i - crcEnd] = chunk[i - from]!;
    this.received += chunk.length;
    const body = chunk.subarray(0, Math.max(0, Math.min(chunk.length, crcEnd - from)));
    this.pending = this.pending.length === 0 ? body : concat(this.pending, body);
    this.parse();
  }

  /** Checks completeness and the checksum; returns the image's applied index. */
  finish(): { appliedIndex: number; entryCount: number } {
    if (this.received !== this.sizeBytes)
      throw corrupt(`truncated: ${this.received} of ${this.sizeBytes} bytes received`);
    const stored = new DataView(this.tail.buffer).getUint32(0, true);
    if (stored !== this.crc) throw corrupt(`checksum mismatch (stored ${stored}, computed ${this.crc})`);
    if (!this.headRead || this.decoded !== this.count || this.pending.length > 0)
      throw corrupt(`${this.decoded} of ${this.count} entries, ${this.pending.length} bytes left over`);
    return { appliedIndex: this.appliedIndex, entryCount: this.count };
  }

  private parse(): void {
    const b = this.pending;
    let at = 0;
    if (!this.headRead) {
      if (b.length < HEAD_BYTES) return;
      const r = new ByteReader(b.subarray(0, HEAD_BYTES), "store image");
      const version = r.u8("version");
      if (version !== STORE_IMAGE_VERSION)
        throw r.corrupt(`format version ${version}, this state machine reads ${STORE_IMAGE_VERSION}`);
      this.appliedIndex = r.u64("applied index");
      this.count = r.u64("entry count");
      const left = this.sizeBytes - HEAD_BYTES - TAIL_BYTES;
      if (this.count > left / (ENTRY_OVERHEAD_BYTES + 1))
        throw r.corrupt(`entry count ${this.count} exceeds what ${left} bytes hold`);
      this.headRead = true;
      at = HEAD_BYTES;
    }
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    const out: StoreEntry[] = [];
    while (this.decoded < this.count && b.length - at >= 4) {
      const keyLength = dv.getUint32(at, true);
      if (keyLength === 0) throw corrupt(`entry ${this.decoded} has an empty key`);
      if (b.length - at < 8 + keyLength) break;
      const valueLength = dv.getUint32(at + 4 + keyLength, true);
      const entryBytes = 8 + keyLength + valueLength;
      const bodyReceived = Math.min(this.received, this.sizeBytes - TAIL_BYTES);
      const offset = bodyReceived - this.pending.length + at;
      if (offset + entryBytes > this.sizeBytes - TAIL_BYTES)
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
