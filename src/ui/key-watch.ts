// The key browser's live watch (issue 19): GET /ui/api/watch?prefix=P (P repeated for up to
// maxPrefixesPerStream prefixes) is an event stream of the puts and deletes under the prefixes, in
// revision order, as this node applies them. Each stream tails the node's MVCC history (the changesFrom
// that the watch hub's catch-up reads, src/server/mvcc-watch-hub.ts) every pollMs, a bounded slice per
// stream per poll, from the event loop: the apply loop never waits for a page. (The state's change
// listener belongs to the etcd API's watch hub, which a dashboard does not reach and which
// `--no-etcd-api` leaves out.) The history is the buffer: a stream whose socket holds more than
// maxBufferedBytes unsent reads no further, and one blocked for stallLimitMs is dropped with a reason,
// as is one the compaction overtook. Every message carries the revision it covers up to as its SSE id,
// so a browser that reconnects (Last-Event-ID) resumes after it, with no gap. Keys and values are sent
// as text when they are valid UTF-8 without control characters (but tab and newlines), else as hex;
// values as a preview of previewBytes.

import type { IncomingMessage, ServerResponse } from "node:http";
import type { WatchEvent } from "../kv/mvcc-types.ts";
import { RaftKvError } from "../lib/errors.ts";
import type { WatchSource } from "../server/mvcc-watch-hub.ts";
import { sendJson } from "./key-browser.ts";

export interface KeyWatchLimits {
  /** Watch streams open at once on this node; more get 429. */
  readonly maxStreams: number;
  /** Prefixes one stream may watch; more get 400. */
  readonly maxPrefixesPerStream: number;
  /** UTF-8 bytes of one prefix at most (the node's maxKeyBytes); longer gets 400. */
  readonly maxPrefixBytes: number;
  /** How often each stream looks for new revisions. */
  readonly pollMs: number;
  /** History events read per stream per poll at most (a stream behind catches up over several). */
  readonly sliceEvents: number;
  /** Events in one message at most; the rest are counted in its `omitted`. */
  readonly maxEventsPerMessage: number;
  /** A stream whose socket holds more than this unsent reads no more history until it drains. */
  readonly maxBufferedBytes: number;
  /** A stream blocked this long is dropped, with a reason. */
  readonly stallLimitMs: number;
  /** Bytes of a value sent (and of a key: 4x this). */
  readonly previewBytes: number;
}

export const DEFAULT_KEY_WATCH_LIMITS: KeyWatchLimits = {
  maxStreams: 8,
  maxPrefixesPerStream: 4,
  maxPrefixBytes: 1977,
  pollMs: 100,
  sliceEvents: 1000,
  maxEventsPerMessage: 200,
  maxBufferedBytes: 256 * 1024,
  stallLimitMs: 10_000,
  previewBytes: 256,
};

/** Bytes shown as text (valid UTF-8 with no control characters but tab and newlines) or as hex, cut to
 *  maxBytes (text at a character boundary). */
export interface ShownBytes {
  readonly text: string;
  readonly hex: boolean;
  readonly truncated: boolean;
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it finds
const CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/;

/** Where the last character of `b` starts, when it is cut short (b ends inside it); else b.length. */
function cutCharacterStart(b: Uint8Array): number {
  let i = b.length - 1;
  while (i >= 0 && i > b.length - 4 && (b[i]! & 0xc0) === 0x80) i--;
  if (i < 0) return b.length;
  const lead = b[i]!;
  const length = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
  return i + length > b.length ? i : b.length;
}

export function textOrHex(bytes: Uint8Array, maxBytes: number): ShownBytes {
  const truncated = bytes.length > maxBytes;
  let cut = bytes.subarray(0, maxBytes);
  if (truncated) cut = cut.subarray(0, cutCharacterStart(cut));
  try {
    const text = strictUtf8.decode(cut);
    if (!CONTROL.test(text)) return { text, hex: false, truncated };
  } catch {
    // not UTF-8: hex
  }
  return { text: Buffer.from(bytes.subarray(0, maxBytes)).toString("hex"), hex: true, truncated };
}

/** One put or delete as a message carries it. */
export interface ShownEvent {
  readonly type: "put" | "delete";
  readonly key: string;
  readonly keyHex: boolean;
  readonly revision: number;
  readonly version: number;
  readonly valueBytes: number;
  readonly value: string;
  readonly valueHex: boolean;
  readonly truncated: boolean;
}

export function showEvent(e: WatchEvent, revision: number, previewBytes: number): ShownEvent {
  const key = textOrHex(e.kv.key, previewBytes * 4);
  const value = textOrHex(e.kv.value, previewBytes);
  return {
    type: e.type,
    key: key.text,
    keyHex: key.hex,
    revision,
    version: e.kv.version,
    valueBytes: e.kv.value.length,
    value: value.text,
    valueHex: value.hex,
    truncated: value.truncated,
  };
}

export interface WatchQuery {
  readonly prefixes: readonly string[];
  /** The first revision to send; 0: the next one applied. */
  readonly fromRevision: number;
}

function invalid(message: string): RaftKvError {
  return new RaftKvError({ code: "INVALID_ARGUMENT", message });
}

/** The prefixes and start of a watch (`from`, or Last-Event-ID + 1 when a browser reconnects). */
export function parseWatchQuery(
  q: URLSearchParams,
  lastEventId: string | undefined,
  limits: Pick<KeyWatchLimits, "maxPrefixesPerStream" | "maxPrefixBytes">,
): WatchQuery {
  const prefixes = q.getAll("prefix");
  if (prefixes.length === 0) throw invalid('give the prefix to watch as ?prefix=... ("" for every key)');
  if (prefixes.length > limits.maxPrefixesPerStream)
    throw invalid(
      `at most ${limits.maxPrefixesPerStream} prefixes per watch stream, got ${prefixes.length}; open another stream`,
    );
  for (const p of prefixes) {
    const bytes = Buffer.byteLength(p, "utf8");
    if (bytes > limits.maxPrefixBytes)
      throw invalid(`a prefix is at most ${limits.maxPrefixBytes} bytes (maxKeyBytes), got ${bytes}`);
  }
  const revision = (text: string, what: string): number => {
    const n = Number(text);
    if (!/^\d{1,16}$/.test(text) || !Number.isSafeInteger(n))
      throw invalid(`${what} must be a revision (a whole number), got "${text.slice(0, 40)}"`);
    return n;
  };
  const from = q.get("from");
  const fromRevision =
    lastEventId !== undefined && lastEventId !== ""
      ? revision(lastEventId, "Last-Event-ID") + 1
      : from !== null
        ? revision(from, "from")
        : 0;
  return { prefixes, fromRevision };
}

interface Stream {
  readonly res: ServerResponse;
  readonly prefixes: readonly Uint8Array[];
  /** The next revision to read from the history. */
  next: number;
  blockedSinceMs: number | null;
  done: boolean;
}

function under(key: Uint8Array, prefix: Uint8Array): boolean {
  if (key.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (key[i] !== prefix[i]) return false;
  return true;
}

export class KeyWatches {
  private readonly limits: KeyWatchLimits;
  private readonly streams = new Set<Stream>();
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  /** Streams dropped because their page did not read. */
  dropped = 0;

  constructor(
    /** The MVCC state now (a restore may replace it: read it anew each time). */
    private readonly source: () => WatchSource,
    limits: Partial<KeyWatchLimits> = {},
    private readonly nowMs: () => number = () => performance.now(),
  ) {
    this.limits = { ...DEFAULT_KEY_WATCH_LIMITS, ...limits };
  }

  get size(): number {
    return this.streams.size;
  }

  /** Answers GET /ui/api/watch: 400 for a bad query, 429 when full, else the event stream. */
  open(req: IncomingMessage, res: ServerResponse, q: URLSearchParams, cors: Record<string, string>): void {
    let query: WatchQuery;
    try {
      const id = req.headers["last-event-id"];
      query = parseWatchQuery(q, Array.isArray(id) ? id[0] : id, this.limits);
    } catch (err) {
      const e = err as RaftKvError;
      sendJson(res, 400, { code: e.code, error: e.message }, cors);
      return;
    }
    if (this.closed) {
      sendJson(res, 503, { code: "SHUTTING_DOWN", error: "this node is stopping" }, cors);
      return;
    }
    if (this.streams.size >= this.limits.maxStreams) {
      sendJson(
        res,
        429,
        {
          code: "OVERLOADED",
          error: `too many key watches on this node (max ${this.limits.maxStreams}); stop one or watch on another member`,
        },
        cors,
      );
      return;
    }
    let src: WatchSource;
    try {
      src = this.source();
    } catch (err) {
      sendJson(
        res,
        503,
        { code: "UNAVAILABLE", error: `cannot read this node's state: ${String(err)}` },
        cors,
      );
      return;
    }
    const encoder = new TextEncoder();
    const s: Stream = {
      res,
      prefixes: query.prefixes.map((p) => encoder.encode(p)),
      next: query.fromRevision > 0 ? query.fromRevision : src.revision + 1,
      blockedSinceMs: null,
      done: false,
    };
    res.writeHead(200, {
      ...cors,
      "content-type": "text/event-stream",
      "cache-control": "no-store",
      connection: "keep-alive",
      "x-accel-buffering": "no",
    });
    res.write("retry: 2000\n\n");
    res.write(
      `event: watching\ndata: ${JSON.stringify({ prefixes: query.prefixes, fromRevision: s.next, revision: src.revision })}\n\n`,
    );
    this.streams.add(s);
    res.on("close", () => this.forget(s));
    this.startTimer();
    this.read(s);
  }

  /** Reads and sends what each stream has not seen yet (the timer calls it every pollMs). */
  poll(): void {
    for (const s of [...this.streams]) this.read(s);
  }

  close(): void {
    this.closed = true;
    for (const s of [...this.streams]) this.end(s, "the node is stopping");
    this.stopTimer();
  }

  private read(s: Stream): void {
    if (s.done) return;
    const now = this.nowMs();
    if (s.res.writableLength > this.limits.maxBufferedBytes) {
      s.blockedSinceMs ??= now;
      if (now - s.blockedSinceMs > this.limits.stallLimitMs) {
        this.dropped++;
        this.end(
          s,
          `this page did not read its watch stream for ${this.limits.stallLimitMs} ms (over ${this.limits.maxBufferedBytes} bytes unsent); watch again from revision ${s.next}`,
        );
      }
      return;
    }
    s.blockedSinceMs = null;
    let src: WatchSource;
    try {
      src = this.source();
      if (s.next > src.revision) return;
      if (s.next < src.compacted) {
        this.end(
          s,
          `revision ${s.next} is compacted (the history starts at ${src.compacted}); watch again from now`,
        );
        return;
      }
      const changes = src.changesFrom(s.next, this.limits.sliceEvents);
      const events: ShownEvent[] = [];
      let omitted = 0;
      for (const c of changes) {
        if (c.revision > src.revision) break;
        for (const e of c.events) {
          if (!s.prefixes.some((p) => under(e.kv.key, p))) continue;
          if (events.length < this.limits.maxEventsPerMessage)
            events.push(showEvent(e, c.revision, this.limits.previewBytes));
          else omitted++;
        }
        s.next = c.revision + 1;
      }
      // Nothing left in the history up to the revision (a restore replaced it): go on from there.
      if (changes.length === 0) s.next = src.revision + 1;
      if (events.length > 0 || omitted > 0)
        s.res.write(
          `id: ${s.next - 1}\nevent: events\ndata: ${JSON.stringify({ revision: s.next - 1, events, omitted })}\n\n`,
        );
    } catch (err) {
      this.end(s, `cannot read this node's history: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  /** Ends a stream, telling the page why (if its socket still takes it; destroyed after 5 s else). */
  private end(s: Stream, reason: string): void {
    if (s.done) return;
    this.forget(s);
    s.res.end(`event: end\ndata: ${JSON.stringify({ reason })}\n\n`);
    setTimeout(() => {
      if (!s.res.writableFinished) s.res.destroy();
    }, 5000).unref();
  }

  private forget(s: Stream): void {
    s.done = true;
    this.streams.delete(s);
    if (this.streams.size === 0) this.stopTimer();
  }

  private startTimer(): void {
    if (this.timer !== null) return;
    this.timer = setInterval(() => this.poll(), this.limits.pollMs);
    this.timer.unref();
  }

  private stopTimer(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }
}
