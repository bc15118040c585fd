// The way out of one node: a small HTTP CONNECT proxy, which the node's gRPC client uses because its
// process runs with grpc_proxy set to it (grpc-js honours grpc_proxy, as gRPC does everywhere). Each
// tunnel asked for goes to the link proxy of (this node -> the node listening at the port asked for).
//
// Why: since issue 13 a node's peers come from the configuration in its log, the same addresses for
// every node, so a node can no longer be given its own proxy address per peer in --peers (the first
// leader's --peers became everyone's, and most traffic bypassed or crossed the wrong link proxies).
// With the router every node names every peer by its real address, and each directed link still passes
// through its own fault-injecting proxy.

import net from "node:net";
import { type LinkProxy, listenOnLoopback } from "./proxy.ts";

const HOST = "127.0.0.1";
/** A CONNECT request's head is a line and a Host header: far below this. */
const MAX_HEAD_BYTES = 8192;

export interface RouterOptions {
  /** The node whose connections this router carries. */
  readonly from: number;
  /** The link proxy for a tunnel to 127.0.0.1:port, or null when no node of the cluster listens there. */
  readonly route: (port: number) => LinkProxy | null;
}

export class PeerRouter {
  /** Tunnels refused (an address no node listens at, or a malformed request). */
  refused = 0;
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private boundPort = 0;

  private constructor(private readonly o: RouterOptions) {
    this.server = net.createServer({ noDelay: true }, (s) => this.accept(s));
  }

  static async start(o: RouterOptions): Promise<PeerRouter> {
    const r = new PeerRouter(o);
    r.boundPort = await listenOnLoopback(r.server);
    return r;
  }

  /** The proxy URL for the node's grpc_proxy. */
  get url(): string {
    return `http://${HOST}:${this.boundPort}`;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(s: net.Socket): void {
    s.on("error", () => {});
    this.sockets.add(s);
    s.once("close", () => this.sockets.delete(s));
    let head = Buffer.alloc(0);
    const onData = (b: Buffer): void => {
      head = Buffer.concat([head, b]);
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) {
        if (head.length > MAX_HEAD_BYTES) this.refuse(s, "400 Bad Request", onData);
        return;
      }
      const line = head.subarray(0, head.indexOf("\r\n")).toString("latin1");
      const m = /^CONNECT ([^\s:]+):(\d+) HTTP\/1\.[01]$/.exec(line);
      const link = m !== null && isLoopback(m[1]!) ? this.o.route(Number(m[2])) : null;
      if (link === null) {
        this.refuse(s, "502 Bad Gateway", onData);
        return;
      }
      s.removeListener("data", onData);
      s.pause();
      const rest = head.subarray(end + 4);
      if (rest.length > 0) s.unshift(rest);
      this.sockets.delete(s); // the link proxy owns it now
      s.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      link.adopt(s);
    };
    s.on("data", onData);
  }

  private refuse(s: net.Socket, status: string, onData: (b: Buffer) => void): void {
    this.refused++;
    s.removeListener("data", onData);
    s.end(`HTTP/1.1 ${status}\r\n\r\n`);
  }
}

function isLoopback(host: string): boolean {
  return host === "localhost" || /^127\.\d+\.\d+\.\d+$/.test(host);
}
