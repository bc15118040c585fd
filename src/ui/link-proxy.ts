// A TCP proxy for one directed peer link of `raftkv local` (node `from` dialing node `to`), which the
// dashboard can cut (every connection reset, new ones refused by a reset) and heal. Smaller than the
// chaos harness's (src/chaos/proxy.ts, which is not in the package): no latency, loss or stalls.

import net from "node:net";

export class LinkProxy {
  private readonly conns = new Set<net.Socket>();
  private cutNow = false;

  private constructor(
    readonly from: number,
    readonly to: number,
    private readonly server: net.Server,
    readonly port: number,
  ) {}

  /** Listens on 127.0.0.1 (port 0: any free one), forwarding to 127.0.0.1:targetPort. */
  static async start(from: number, to: number, targetPort: number, port = 0): Promise<LinkProxy> {
    let proxy: LinkProxy | null = null;
    const server = net.createServer((socket) => proxy?.accept(socket, targetPort));
    const bound = await new Promise<number>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => {
        server.off("error", reject);
        resolve((server.address() as net.AddressInfo).port);
      });
    });
    proxy = new LinkProxy(from, to, server, bound);
    return proxy;
  }

  get cut(): boolean {
    return this.cutNow;
  }

  setCut(cut: boolean): void {
    this.cutNow = cut;
    if (cut) for (const s of this.conns) s.resetAndDestroy();
  }

  close(): Promise<void> {
    for (const s of this.conns) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private accept(socket: net.Socket, targetPort: number): void {
    if (this.cutNow) {
      socket.resetAndDestroy();
      return;
    }
    const target = net.connect(targetPort, "127.0.0.1");
    for (const [a, b] of [
      [socket, target],
      [target, socket],
    ] as const) {
      this.conns.add(a);
      a.pipe(b);
      a.on("error", () => b.destroy());
      a.on("close", () => {
        this.conns.delete(a);
        b.destroy();
      });
    }
  }
}
