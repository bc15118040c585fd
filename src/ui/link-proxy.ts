// A TCP proxy in front of one node of `raftkv local` (every other node dials it there), which the
// dashboard can cut for some of the dialing nodes: each cut link a-b resets the connections between a and
// b and refuses new ones until healed. The dialing node is told by its socket (socket-owner.ts); a
// connection from anything else (a client) always passes. Smaller than the chaos harness's proxy
// (src/chaos/proxy.ts, not in the package): no latency, loss or stalls.

import net from "node:net";

interface Conn {
  readonly from: number | null;
  readonly sockets: readonly net.Socket[];
}

export class LinkProxy {
  private readonly conns = new Set<Conn>();
  /** Nodes whose link to `to` is cut. */
  private readonly cutFrom = new Set<number>();

  private constructor(
    readonly to: number,
    private readonly server: net.Server,
    readonly port: number,
  ) {}

  /** Listens on 127.0.0.1 (port 0: any free one), forwarding to 127.0.0.1:targetPort; `sourceOf` names
   *  the node that dialed a connection (null: not a node), given the dialer's port and the proxy's. */
  static async start(
    to: number,
    targetPort: number,
    sourceOf: (dialerPort: number, proxyPort: number) => number | null,
  ): Promise<LinkProxy> {
    let proxy: LinkProxy | null = null;
    const server = net.createServer((socket) => proxy?.accept(socket, targetPort, sourceOf));
    const bound = await new Promise<number>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => {
        server.off("error", reject);
        resolve((server.address() as net.AddressInfo).port);
      });
    });
    proxy = new LinkProxy(to, server, bound);
    return proxy;
  }

  isCut(from: number): boolean {
    return this.cutFrom.has(from);
  }

  setCut(from: number, cut: boolean): void {
    if (!cut) {
      this.cutFrom.delete(from);
      return;
    }
    this.cutFrom.add(from);
    for (const c of this.conns) if (c.from === from) for (const s of c.sockets) s.resetAndDestroy();
  }

  close(): Promise<void> {
    for (const c of this.conns) for (const s of c.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private accept(
    socket: net.Socket,
    targetPort: number,
    sourceOf: (dialerPort: number, proxyPort: number) => number | null,
  ): void {
    socket.on("error", () => socket.destroy());
    const from = socket.remotePort === undefined ? null : sourceOf(socket.remotePort, this.port);
    if (from !== null && this.cutFrom.has(from)) {
      socket.resetAndDestroy();
      return;
    }
    const target = net.connect(targetPort, "127.0.0.1");
    const conn: Conn = { from, sockets: [socket, target] };
    this.conns.add(conn);
    for (const [a, b] of [
      [socket, target],
      [target, socket],
    ] as const) {
      a.pipe(b);
      a.on("error", () => b.destroy());
      a.on("close", () => {
        this.conns.delete(conn);
        b.destroy();
      });
    }
  }
}
