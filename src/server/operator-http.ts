// The operator endpoints on the metrics port: GET /metrics (Prometheus), /health and /ready (200 or 503
// with a JSON body saying why, see health.ts), /healthz (200 while the process answers at all); and the
// routes others register (the dashboard, src/ui). With TLS material given, the same port also speaks TLS
// (the first byte of a connection tells a TLS ClientHello from plain HTTP), asking for a client
// certificate that a route may require (req.socket is a TLSSocket, authorized when the CA signed it).

import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { Duplex } from "node:stream";
import { createServer as createTlsServer, TLSSocket, type TlsOptions } from "node:tls";
import type { Registry } from "prom-client";
import { checkHealth, checkReady, type HealthSources } from "./health.ts";

export interface OperatorServer {
  readonly server: Server;
  readonly port: number;
}

/** More endpoints on the operator port (any method): handle() answers and returns true when the request
 *  is its own, else returns false; close() runs when the server stops. */
export interface OperatorRoute {
  handle(req: IncomingMessage, res: ServerResponse): boolean;
  close(): void;
}

/** The first byte of a TLS handshake record. */
const TLS_HANDSHAKE = 0x16;

function json(res: ServerResponse, ok: boolean, body: unknown): void {
  res.writeHead(ok ? 200 : 503, { "content-type": "application/json" });
  res.end(`${JSON.stringify(body)}\n`);
}

function failed(res: ServerResponse, what: string, err: unknown): void {
  res.writeHead(500, { "content-type": "text/plain" });
  res.end(`${what} failed: ${err instanceof Error ? err.message : String(err)}\n`);
}

/** Serves the endpoints on host:port; resolves with the bound port. */
export async function startOperatorServer(
  registry: Registry,
  health: HealthSources,
  host: string,
  port: number,
  routes: readonly OperatorRoute[] = [],
  tls: Pick<TlsOptions, "ca" | "cert" | "key"> | null = null,
): Promise<OperatorServer> {
  const server = createServer((req, res) => {
    for (const r of routes) if (r.handle(req, res)) return;
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET") {
      res.writeHead(405, { "content-type": "text/plain", allow: "GET" });
      res.end("only GET\n");
      return;
    }
    switch (path) {
      case "/metrics":
        registry.metrics().then(
          (text) => {
            res.writeHead(200, { "content-type": registry.contentType });
            res.end(text);
          },
          (err: unknown) => failed(res, "metrics", err),
        );
        return;
      case "/health":
        checkHealth(health).then(
          (r) => json(res, r.health, r),
          (err: unknown) => failed(res, "health", err),
        );
        return;
      case "/ready": {
        const r = checkReady(health);
        json(res, r.ready, r);
        return;
      }
      case "/healthz":
        res.writeHead(200, { "content-type": "text/plain" });
        res.end("ok\n");
        return;
      default:
        res.writeHead(404, { "content-type": "text/plain" });
        res.end("not found: try /metrics, /health or /ready\n");
    }
  });
  server.on("close", () => {
    for (const r of routes) r.close();
  });
  if (tls !== null) speakTlsToo(server, tls);
  const bound = await new Promise<number>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      const addr = server.address();
      resolve(typeof addr === "object" && addr !== null ? addr.port : port);
    });
  });
  return { server, port: bound };
}

/** Hands connections that open with a TLS handshake to a TLS layer whose sockets go on to `server`. */
function speakTlsToo(server: Server, tls: Pick<TlsOptions, "ca" | "cert" | "key">): void {
  const secure = createTlsServer({
    ...tls,
    requestCert: true,
    rejectUnauthorized: false, // a route decides (the dashboard refuses without a certificate)
    minVersion: "TLSv1.2",
    ALPNProtocols: ["http/1.1"],
    handshakeTimeout: 10_000,
  });
  secure.on("secureConnection", (socket) => server.emit("connection", socket));
  secure.on("tlsClientError", (_err, socket) => socket.destroy());
  const plain = server.listeners("connection") as ((s: Duplex) => void)[];
  server.removeAllListeners("connection");
  const toPlain = (socket: Duplex): void => {
    for (const l of plain) l.call(server, socket);
  };
  server.on("connection", (socket: Socket | TLSSocket) => {
    if (socket instanceof TLSSocket) return toPlain(socket);
    socket.once("data", (first: Buffer) => {
      socket.pause();
      if (first[0] === TLS_HANDSHAKE) secure.emit("connection", replay(socket, first));
      else {
        socket.unshift(first);
        toPlain(socket);
        socket.resume();
      }
    });
  });
}

/** The socket as a stream that yields `first` again: TLS reads a net.Socket's handle directly and
 *  would miss bytes already read (and unshifted) in JavaScript. */
function replay(socket: Socket, first: Buffer): Duplex {
  const stream = new Duplex({
    read: () => void socket.resume(),
    write: (chunk: Buffer, _enc, cb) => void socket.write(chunk, cb),
    final: (cb) => {
      socket.end();
      cb();
    },
    destroy: (err, cb) => {
      socket.destroy(err ?? undefined);
      cb(err);
    },
  });
  Object.defineProperty(stream, "remoteAddress", { value: socket.remoteAddress });
  stream.push(first);
  socket.on("data", (d: Buffer) => {
    if (!stream.push(d)) socket.pause();
  });
  socket.on("end", () => stream.push(null));
  socket.on("error", (err) => stream.destroy(err));
  socket.on("close", () => stream.destroy());
  return stream;
}
