// Hostile load against one node: oversized requests, malformed bytes (client and peer methods, bad
// UTF-8), raw garbage TCP connections and a crowd of idle connections; counts what it sent and how the
// node answered. Used by scripts/flood/main.ts (figures) and test/security/flood.test.ts.

import net from "node:net";
import * as grpc from "@grpc/grpc-js";
import { ErrorCode, ResponseHeader } from "../../src/gen/raftkv/v1/client.ts";
import { Prng } from "../../src/lib/prng.ts";

export const FLOOD_KINDS = ["oversized", "malformed", "garbageTcp", "idleConnections"] as const;
export type FloodKind = (typeof FLOOD_KINDS)[number];

export interface FloodOptions {
  /** "host:port" of the node. */
  readonly address: string;
  readonly kinds: readonly FloodKind[];
  /** Requests (or connections) in flight per request kind (default 32). */
  readonly concurrency?: number;
  /** Idle connections to hold open (default 2000). */
  readonly idleConnections?: number;
  /** The node's maxValueBytes: oversized values are one byte more (default 1 MiB). */
  readonly maxValueBytes?: number;
  readonly seed?: number;
}

export interface FloodCounts {
  readonly kind: FloodKind;
  /** Requests sent (or connections opened). */
  sent: number;
  /** Outcome -> count: a header error code, a gRPC status name, or a connection fate. */
  readonly outcomes: Map<string, number>;
}

const CLIENT_METHODS = ["Put", "Get", "Delete", "CompareAndSwap", "Range", "Status"].map(
  (m) => `/raftkv.v1.ClientService/${m}`,
);
const PEER_METHODS = ["AppendEntries", "RequestVote", "InstallSnapshot", "TimeoutNow"].map(
  (m) => `/raftkv.v1.PeerService/${m}`,
);
const identity = (b: Buffer): Buffer => b;

export class Flood {
  private readonly o: FloodOptions;
  private readonly prng: Prng;
  private readonly clients: grpc.Client[] = [];
  private readonly sockets = new Set<net.Socket>();
  private readonly loops: Promise<void>[] = [];
  private running = false;
  readonly counts: FloodCounts[];

  constructor(o: FloodOptions) {
    this.o = o;
    this.prng = new Prng(o.seed ?? 1);
    this.counts = o.kinds.map((kind) => ({ kind, sent: 0, outcomes: new Map() }));
  }

  start(): void {
    this.running = true;
    const n = this.o.concurrency ?? 32;
    for (const c of this.counts) {
      switch (c.kind) {
        case "oversized":
        case "malformed": {
          // A few connections of their own, so the flood does not share the good clients' connection.
          const pool = Array.from({ length: 4 }, () => this.client());
          for (let i = 0; i < n; i++) this.loops.push(this.requestLoop(c, pool[i % pool.length]!));
          break;
        }
        case "garbageTcp":
          for (let i = 0; i < Math.max(1, n / 4); i++) this.loops.push(this.garbageLoop(c));
          break;
        case "idleConnections":
          this.loops.push(this.idleLoop(c));
          break;
        default: {
          const never: never = c.kind;
          throw new Error(`unknown flood kind ${String(never)}`);
        }
      }
    }
  }

  /** Stops every loop and closes every connection; resolves with the counts. */
  async stop(): Promise<FloodCounts[]> {
    this.running = false;
    for (const s of this.sockets) s.destroy();
    await Promise.all(this.loops);
    for (const s of this.sockets) s.destroy();
    for (const c of this.clients) c.close();
    return this.counts;
  }

  private client(): grpc.Client {
    const c = new grpc.Client(this.o.address, grpc.credentials.createInsecure(), {
      "grpc.use_local_subchannel_pool": 1,
      "grpc.max_send_message_length": 64 * 1024 * 1024,
    });
    this.clients.push(c);
    return c;
  }

  private async requestLoop(c: FloodCounts, client: grpc.Client): Promise<void> {
    while (this.running) {
      const [path, bytes] = c.kind === "oversized" ? this.oversized() : this.malformed();
      c.sent++;
      const outcome = await new Promise<string>((resolve) =>
        client.makeUnaryRequest(
          path,
          identity,
          identity,
          bytes,
          new grpc.Metadata(),
          { deadline: Date.now() + 5000 },
          (err, res) => resolve(err !== null ? grpc.status[err.code] : headerCode(res)),
        ),
      );
      bump(c, outcome);
    }
  }

  /** A value one byte over maxValueBytes, or a message over any request limit. */
  private oversized(): [string, Buffer] {
    const max = this.o.maxValueBytes ?? 1024 * 1024;
    const huge = this.prng.int(0, 9) === 0;
    const value = Buffer.alloc(huge ? 5 * max : max + 1, 0x61);
    return ["/raftkv.v1.ClientService/Put", Buffer.concat([field(1, Buffer.from("flood")), field(2, value)])];
  }

  /** Random bytes, protobuf-looking bytes with bad UTF-8 or truncated lengths, at client or peer methods. */
  private malformed(): [string, Buffer] {
    const p = this.prng;
    const random = Buffer.from(Array.from({ length: p.int(0, 512) }, () => p.int(0, 255)));
    switch (p.int(0, 3)) {
      case 0:
        return [CLIENT_METHODS[p.int(0, CLIENT_METHODS.length - 1)]!, random];
      case 1:
        return [
          "/raftkv.v1.ClientService/Put",
          Buffer.concat([field(1, Buffer.from([0x6b, 0xff, 0xc0])), random]),
        ];
      case 2:
        return ["/raftkv.v1.ClientService/Get", Buffer.from([0x0a, 0x7f, 0x61, 0x62])];
      default:
        return [PEER_METHODS[p.int(0, PEER_METHODS.length - 1)]!, random];
    }
  }

  /** Connect, write random bytes, and go: the node must shrug each off. */
  private async garbageLoop(c: FloodCounts): Promise<void> {
    while (this.running) {
      const bytes = Buffer.from(Array.from({ length: this.prng.int(1, 2048) }, () => this.prng.int(0, 255)));
      c.sent++;
      bump(c, await this.oneGarbageConnection(bytes));
    }
  }

  private oneGarbageConnection(bytes: Buffer): Promise<string> {
    const [host, port] = split(this.o.address);
    return new Promise((resolve) => {
      const s = net.connect(port, host);
      this.sockets.add(s);
      const done = (outcome: string): void => {
        this.sockets.delete(s);
        s.destroy();
        resolve(outcome);
      };
      const timer = setTimeout(() => done("stillOpenAfter1s"), 1000);
      s.on("connect", () => s.write(bytes));
      s.on("data", () => {}); // a GOAWAY, typically
      s.on("error", (e: Error & { code?: string }) => {
        clearTimeout(timer);
        done(`error:${e.code ?? e.message}`);
      });
      s.on("close", () => {
        clearTimeout(timer);
        done("closedByNode");
      });
    });
  }

  /** Holds `idleConnections` open connections that never send a byte; reopens those the node closes. */
  private async idleLoop(c: FloodCounts): Promise<void> {
    const target = this.o.idleConnections ?? 2000;
    const [host, port] = split(this.o.address);
    const open = (): void => {
      if (!this.running) return;
      c.sent++;
      const s = net.connect(port, host);
      this.sockets.add(s);
      s.resume();
      s.on("error", () => {});
      s.on("close", () => {
        this.sockets.delete(s);
        bump(c, "closedByNode");
        if (this.running) setTimeout(open, 10);
      });
    };
    for (let i = 0; i < target && this.running; i++) {
      open();
      if (i % 50 === 49) await new Promise((r) => setTimeout(r, 5));
    }
    while (this.running) await new Promise((r) => setTimeout(r, 50));
  }
}

function bump(c: FloodCounts, outcome: string): void {
  c.outcomes.set(outcome, (c.outcomes.get(outcome) ?? 0) + 1);
}

/** The answer's header code by name (every response's field 1 is its ResponseHeader). */
function headerCode(res: Buffer | undefined): string {
  if (res === undefined || res[0] !== 0x0a) return "OK (no header)";
  let len = 0;
  let i = 1;
  for (let shift = 0; i < res.length; i++, shift += 7) {
    len |= (res[i]! & 0x7f) << shift;
    if ((res[i]! & 0x80) === 0) break;
  }
  try {
    const h = ResponseHeader.decode(res.subarray(i + 1, i + 1 + len));
    return ErrorCode[h.errorCode] ?? String(h.errorCode);
  } catch {
    return "undecodable answer";
  }
}

function field(no: number, bytes: Buffer): Buffer {
  const len: number[] = [];
  let v = bytes.length;
  while (v >= 0x80) {
    len.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  len.push(v);
  return Buffer.concat([Buffer.from([(no << 3) | 2, ...len]), bytes]);
}

function split(address: string): [string, number] {
  const i = address.lastIndexOf(":");
  return [address.slice(0, i), Number(address.slice(i + 1))];
}

/** Median and 99th percentile of `samples` (ms). */
export function percentiles(samples: readonly number[]): {
  count: number;
  p50: number;
  p99: number;
  max: number;
} {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? Number.NaN;
  return { count: s.length, p50: at(0.5), p99: at(0.99), max: s[s.length - 1] ?? Number.NaN };
}
