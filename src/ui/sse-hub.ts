// Server-sent events to a bounded number of dashboard pages: one frame per interval (and at once when
// poked), built once per push with a part of its own per client. A client whose socket does not drain
// (more than maxBufferedBytes waiting) misses frames, which are whole states, not deltas; one that stays
// blocked for stallLimitMs is disconnected. Beyond maxClients a new page is refused with 503.

import type { IncomingMessage, ServerResponse } from "node:http";

export interface SseClient {
  readonly res: ServerResponse;
  /** Free for the frame builder: e.g. the last timeline entry this client has. */
  cursor: number;
  /** Frames not sent because its socket had not drained. */
  skipped: number;
  blockedSinceMs: number | null;
}

export interface SseHubOptions {
  readonly maxClients: number;
  readonly maxBufferedBytes: number;
  readonly intervalMs: number;
  readonly stallLimitMs: number;
  readonly nowMs: () => number;
  /** The frame for one push: `shared` is built once and passed to `perClient` for each client. */
  readonly build: () => unknown;
  readonly perClient: (shared: unknown, client: SseClient) => string;
  /** The first message a client gets (event "hello"), or null. */
  readonly hello: () => string | null;
}

export class SseHub {
  private readonly clients = new Set<SseClient>();
  private timer: NodeJS.Timeout | null = null;
  private poked = false;
  private closed = false;
  framesSent = 0;

  constructor(private readonly o: SseHubOptions) {}

  get size(): number {
    return this.clients.size;
  }

  /** Takes the request over as an event stream; false when full (the caller answers). */
  attach(req: IncomingMessage, res: ServerResponse, headers: Record<string, string>): boolean {
    if (this.closed || this.clients.size >= this.o.maxClients) return false;
    res.writeHead(200, {
      ...headers,
      "content-type": "text/event-stream",
      "cache-control": "no-store",
      connection: "keep-alive",
      "x-accel-buffering": "no",
    });
    const client: SseClient = { res, cursor: 0, skipped: 0, blockedSinceMs: null };
    this.clients.add(client);
    res.write("retry: 1000\n\n");
    const hello = this.o.hello();
    if (hello !== null) res.write(`event: hello\ndata: ${hello}\n\n`);
    const drop = (): void => {
      this.clients.delete(client);
      if (this.clients.size === 0) this.stopTimer();
    };
    req.on("close", drop);
    res.on("error", drop);
    this.startTimer();
    this.push();
    return true;
  }

  /** Push soon (coalesced): something worth showing at once happened. */
  poke(): void {
    if (this.poked || this.clients.size === 0) return;
    this.poked = true;
    setImmediate(() => {
      this.poked = false;
      this.push();
    });
  }

  close(): void {
    this.closed = true;
    this.stopTimer();
    for (const c of this.clients) c.res.end();
    this.clients.clear();
  }

  private push(): void {
    if (this.clients.size === 0) return;
    const shared = this.o.build();
    const now = this.o.nowMs();
    for (const c of this.clients) {
      if (c.res.writableLength > this.o.maxBufferedBytes) {
        c.skipped++;
        c.blockedSinceMs ??= now;
        if (now - c.blockedSinceMs > this.o.stallLimitMs) {
          this.clients.delete(c);
          c.res.destroy();
        }
        continue;
      }
      c.blockedSinceMs = null;
      c.res.write(`event: state\ndata: ${this.o.perClient(shared, c)}\n\n`);
      this.framesSent++;
    }
  }

  private startTimer(): void {
    if (this.timer !== null) return;
    this.timer = setInterval(() => this.push(), this.o.intervalMs);
    this.timer.unref();
  }

  private stopTimer(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }
}
