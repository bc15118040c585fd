// A fault-injecting TCP proxy for one directed peer link (node i dialing node j) on loopback: pass, cut
// (stall or reset), latency with jitter, and loss modelled as stalls and resets.
//
// A TCP stream cannot lose bytes without corrupting what it carries, so faults are what TCP turns packet
// trouble into: a cut that "stalls" holds every byte in both directions (the sockets are paused, so the
// kernel buffers fill and the senders block, as with a partition where TCP keeps retransmitting) and
// delivers it after the heal, unless a side gives up first (gRPC keepalive); new connections are
// accepted but nothing is forwarded until the heal. A cut that "resets" sends RST on every connection and
// on each new one (what a peer sees when a host is unreachable and says so). Loss is a stall of one
// direction for a retransmission timeout (200-800 ms) with a probability per chunk, plus an optional
// rate of resets. Order within a direction is always kept.

import net from "node:net";
import { performance } from "node:perf_hooks";
import type { Prng } from "../lib/prng.ts";
import { dialedByThisProcess } from "./own-sockets.ts";

export type CutMode = "stall" | "reset";

export interface LinkConditions {
  /** null: the link passes (subject to the rest); otherwise how it is cut. */
  readonly cut: CutMode | null;
  readonly latencyMs: number;
  /** Added to the latency: uniform in [0, jitterMs), never reordering. */
  readonly jitterMs: number;
  /** Per chunk forwarded: probability that its direction stalls for a retransmission timeout. */
  readonly lossRate: number;
  /** Per chunk forwarded: probability that the connection is reset. */
  readonly resetRate: number;
}

export const CLEAN_LINK: LinkConditions = { cut: null, latencyMs: 0, jitterMs: 0, lossRate: 0, resetRate: 0 };

export interface LinkStats {
  connections: number;
  /** Connections of the harness's own clients, let through untouched. */
  clientConnections: number;
  bytesForwarded: number;
  resets: number;
  stalls: number;
}

export interface LinkProxyOptions {
  readonly from: number;
  readonly to: number;
  /** The real port of node `to` on 127.0.0.1 (it may change when the node restarts elsewhere). */
  readonly targetPort: number;
  readonly prng: Prng;
  /** Let connections dialed by this process through without faults (default true). */
  readonly bypassOwnClients?: boolean;
}

const HOST = "127.0.0.1";
/** Bytes held per direction before its source is paused. */
const HIGH_WATER_BYTES = 4 * 1024 * 1024;
const LOSS_STALL_MIN_MS = 200;
const LOSS_STALL_MAX_MS = 800;

export class LinkProxy {
  readonly from: number;
  readonly to: number;
  readonly stats: LinkStats = {
    connections: 0,
    clientConnections: 0,
    bytesForwarded: 0,
    resets: 0,
    stalls: 0,
  };
  targetPort: number;
  private conditions: LinkConditions = CLEAN_LINK;
  private readonly server: net.Server;
  private readonly prng: Prng;
  private readonly bypass: boolean;
  private readonly conns = new Set<Connection>();
  /** Accepted while stalled: waiting for the heal before dialing the target. */
  private readonly held = new Set<net.Socket>();
  private readonly clientSockets = new Set<net.Socket>();
  private closed = false;
  private boundPort = 0;

  private constructor(o: LinkProxyOptions) {
    this.from = o.from;
    this.to = o.to;
    this.targetPort = o.targetPort;
    this.prng = o.prng;
    this.bypass = o.bypassOwnClients ?? true;
    this.server = net.createServer({ noDelay: true }, (s) => this.accept(s));
  }

  /** Listens on an ephemeral port of 127.0.0.1. */
  static async start(o: LinkProxyOptions): Promise<LinkProxy> {
    const p = new LinkProxy(o);
    p.boundPort = await listenOnLoopback(p.server);
    return p;
  }

  get port(): number {
    return this.boundPort;
  }

  get address(): string {
    return `${HOST}:${this.boundPort}`;
  }

  get current(): LinkConditions {
    return this.conditions;
  }

  /** Random numbers for the connections' loss and jitter. */
  get random(): Prng {
    return this.prng;
  }

  /** Applies `c` to open and future connections. */
  set(c: LinkConditions): void {
    const was = this.conditions.cut;
    this.conditions = c;
    if (c.cut === "reset") {
      for (const conn of [...this.conns]) conn.reset();
      for (const s of [...this.held]) resetSocket(s);
      this.held.clear();
      this.stats.resets++;
    }
    for (const conn of this.conns) conn.setHeld(c.cut === "stall");
    if (was === "stall" && c.cut !== "stall") {
      const waiting = [...this.held];
      this.held.clear();
      for (const s of waiting) if (!s.destroyed) this.open(s);
    }
  }

  heal(): void {
    this.set(CLEAN_LINK);
  }

  /** Stops listening and destroys every connection, the harness clients' included. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const conn of this.conns) conn.destroy();
    for (const s of [...this.held, ...this.clientSockets]) s.destroy();
    this.conns.clear();
    this.held.clear();
    this.clientSockets.clear();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** @internal */
  forget(conn: Connection): void {
    this.conns.delete(conn);
  }

  /** Takes a peer connection accepted elsewhere (a node's CONNECT tunnel, src/chaos/router.ts), paused,
   *  as if it had been accepted here. */
  adopt(down: net.Socket): void {
    down.on("error", () => {});
    if (this.closed) {
      down.destroy();
      return;
    }
    this.peer(down);
  }

  private accept(down: net.Socket): void {
    down.on("error", () => {});
    if (this.closed) {
      down.destroy();
      return;
    }
    const dialer = down.remotePort;
    if (this.bypass && dialer !== undefined && dialedByThisProcess(dialer, this.boundPort)) {
      this.passThrough(down);
      return;
    }
    this.peer(down);
  }

  private peer(down: net.Socket): void {
    this.stats.connections++;
    switch (this.conditions.cut) {
      case "reset":
        this.stats.resets++;
        resetSocket(down);
        return;
      case "stall":
        down.pause();
        this.held.add(down);
        down.once("close", () => this.held.delete(down));
        return;
      case null:
        this.open(down);
        return;
    }
  }

  private open(down: net.Socket): void {
    const up = net.connect({ host: HOST, port: this.targetPort, noDelay: true });
    up.on("error", () => {});
    const conn = new Connection(this, down, up);
    this.conns.add(conn);
    if (this.conditions.cut === "stall") conn.setHeld(true);
    else down.resume(); // a connection held since its accept was paused then
  }

  /** A harness client's connection: a plain pipe, no faults (clients are outside the network). */
  private passThrough(down: net.Socket): void {
    this.stats.clientConnections++;
    const up = net.connect({ host: HOST, port: this.targetPort, noDelay: true });
    up.on("error", () => {});
    this.clientSockets.add(down);
    const done = (): void => {
      down.destroy();
      up.destroy();
      this.clientSockets.delete(down);
    };
    down.on("close", done);
    up.on("close", done);
    down.pipe(up);
    up.pipe(down);
  }
}

/** One proxied connection: two directions, each with its own queue. */
class Connection {
  private readonly fwd: Direction;
  private readonly back: Direction;
  private dead = false;

  constructor(
    readonly link: LinkProxy,
    readonly down: net.Socket,
    readonly up: net.Socket,
  ) {
    this.fwd = new Direction(this, down, up);
    this.back = new Direction(this, up, down);
    const onClose = (hadError: boolean): void => {
      if (hadError) this.destroy();
      else if (down.destroyed && up.destroyed) this.finish();
    };
    down.on("close", onClose);
    up.on("close", onClose);
  }

  setHeld(held: boolean): void {
    this.fwd.setHeld(held);
    this.back.setHeld(held);
  }

  reset(): void {
    if (this.dead) return;
    resetSocket(this.down);
    resetSocket(this.up);
    this.finish();
  }

  destroy(): void {
    if (this.dead) return;
    this.down.destroy();
    this.up.destroy();
    this.finish();
  }

  private finish(): void {
    this.dead = true;
    this.fwd.stop();
    this.back.stop();
    this.link.forget(this);
  }
}

interface Chunk {
  readonly at: number;
  readonly data: Buffer;
}

/** Bytes from `src` to `dst`, delayed and held as the link's conditions say, in order. */
class Direction {
  private readonly queue: Chunk[] = [];
  private head = 0;
  private queuedBytes = 0;
  private lastAt = 0;
  private timer: NodeJS.Timeout | null = null;
  private held = false;
  private ended = false;
  private stopped = false;
  private readonly pausedFor = new Set<"held" | "full" | "drain">();

  constructor(
    private readonly conn: Connection,
    private readonly src: net.Socket,
    private readonly dst: net.Socket,
  ) {
    src.on("data", (b: Buffer) => this.onData(b));
    src.on("end", () => {
      this.ended = true;
      this.pump();
    });
    dst.on("drain", () => this.unpause("drain"));
  }

  setHeld(held: boolean): void {
    if (this.held === held || this.stopped) return;
    this.held = held;
    if (held) this.pause("held");
    else {
      this.unpause("held");
      this.pump();
    }
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.queue.length = 0;
    this.head = 0;
  }

  private onData(data: Buffer): void {
    if (this.stopped) return;
    const link = this.conn.link;
    const c = link.current;
    const prng = link.random;
    if (c.resetRate > 0 && prng.chance(c.resetRate)) {
      link.stats.resets++;
      this.conn.reset();
      return;
    }
    const now = performance.now();
    let delay = c.latencyMs + (c.jitterMs > 0 ? prng.next() * c.jitterMs : 0);
    if (c.lossRate > 0 && prng.chance(c.lossRate)) {
      link.stats.stalls++;
      delay += LOSS_STALL_MIN_MS + prng.next() * (LOSS_STALL_MAX_MS - LOSS_STALL_MIN_MS);
    }
    const at = Math.max(this.lastAt, now + delay);
    this.lastAt = at;
    if (this.head === this.queue.length && !this.held && at <= now) {
      this.write(data);
      return;
    }
    this.queue.push({ at, data });
    this.queuedBytes += data.length;
    if (this.queuedBytes > HIGH_WATER_BYTES) this.pause("full");
    this.pump();
  }

  private pump(): void {
    if (this.stopped || this.held) return;
    const now = performance.now();
    while (this.head < this.queue.length) {
      const c = this.queue[this.head]!;
      if (c.at > now) break;
      this.head++;
      this.queuedBytes -= c.data.length;
      this.write(c.data);
    }
    if (this.head === this.queue.length) {
      this.queue.length = 0;
      this.head = 0;
    } else if (this.head > 1024) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
    if (this.queuedBytes <= HIGH_WATER_BYTES / 4) this.unpause("full");
    if (this.head < this.queue.length) {
      const wait = Math.max(1, this.queue[this.head]!.at - now);
      if (this.timer !== null) clearTimeout(this.timer);
      this.timer = setTimeout(() => {
        this.timer = null;
        this.pump();
      }, wait);
    } else if (this.ended && !this.dst.destroyed) this.dst.end();
  }

  private write(data: Buffer): void {
    if (this.dst.destroyed) return;
    this.conn.link.stats.bytesForwarded += data.length;
    if (!this.dst.write(data)) this.pause("drain");
  }

  private pause(why: "held" | "full" | "drain"): void {
    this.pausedFor.add(why);
    this.src.pause();
  }

  private unpause(why: "held" | "full" | "drain"): void {
    this.pausedFor.delete(why);
    if (this.pausedFor.size === 0 && !this.stopped && !this.src.destroyed) this.src.resume();
  }
}

function resetSocket(s: net.Socket): void {
  if (s.destroyed) return;
  try {
    s.resetAndDestroy();
  } catch {
    s.destroy();
  }
}

/** Listens on an ephemeral port of 127.0.0.1; resolves with the port. */
export async function listenOnLoopback(server: net.Server): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, HOST, () => resolve());
  });
  return (server.address() as net.AddressInfo).port;
}
