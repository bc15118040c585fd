// The node's TCP listener, plain or TLS, in front of its gRPC server: bounds the open connections
// (evicting the oldest one that never made a call, whatever HTTP/2 control frames it sends), enforces
// mutual TLS (handshake, per connection, and per PeerService call), and logs and counts every refusal with
// the remote address and why.

import net from "node:net";
import tls, { type TLSSocket } from "node:tls";
import * as grpc from "@grpc/grpc-js";
import type { NodeId } from "../core/types.ts";
import { RaftKvError } from "../lib/errors.ts";
import type { TlsClientAuth } from "./config.ts";
import type { Logger } from "./logging.ts";
import { listenerTlsOptions, type ServerTls } from "./tls.ts";

/** Why a connection or a peer call was refused (the metrics label). */
export type ConnectionRefusalReason =
  /** maxConnections reached and every connection in use: the new one was closed. */
  | "tooManyConnections"
  /** maxConnections reached: the oldest connection that never made a call (whatever control frames it
   *  sent: PING, SETTINGS, WINDOW_UPDATE) was closed for a new one. */
  | "evictedIdle"
  /** The TLS handshake failed: not TLS at all, no common protocol, or not finished in time. */
  | "tlsHandshake"
  /** tlsClientAuth "required": no certificate presented. */
  | "noCertificate"
  /** tlsClientAuth "required" or "optional": a certificate the cluster CA did not sign, or expired. */
  | "untrustedCertificate"
  /** A PeerService call on a connection without a trusted certificate. */
  | "peerNotAuthenticated";

export interface ListenerOptions {
  readonly nodeId: NodeId;
  /** "host:port" to bind (port 0: any free port). */
  readonly listen: string;
  readonly tls: ServerTls | null;
  readonly maxConnections: number;
  readonly tlsHandshakeTimeoutMs: number;
  readonly log: Logger;
  /** Counts a refusal (metrics). */
  readonly onRefusal?: (reason: ConnectionRefusalReason) => void;
}

const PEER_SERVICE_PREFIX = "/raftkv.v1.PeerService/";
const FROM_METADATA = "raftkv-from";

interface Connection {
  readonly socket: net.Socket;
  /** Made a call (noteCall, from the services' handlers): never evicted for a newcomer. Bytes, pings,
   *  settings and a finished TLS handshake do not count: they cost a client nothing. */
  used: boolean;
  /** TLS: why not, in words ("no certificate", the OpenSSL reason). */
  authError: string;
}

/**
 * Tracks the node's connections and gates calls on them. Create it first and pass `interceptors` to the
 * grpc.Server's constructor, have every service call `noteCall` with its call's peer, then `open` the
 * listener with the server.
 */
export class ConnectionGate {
  private readonly o: ListenerOptions;
  private readonly conns = new Map<string, Connection>();
  private readonly refused = new Map<ConnectionRefusalReason, number>();
  /** Remote address of each accepted TCP socket, kept past its close for the log line of a failed handshake. */
  private readonly addresses = new WeakMap<net.Socket, string>();

  constructor(o: ListenerOptions) {
    this.o = o;
  }

  /** Open connections right now. */
  get openConnections(): number {
    return this.conns.size;
  }

  /** For the grpc.Server's constructor: with TLS and tlsClientAuth "none" or "optional", the check of
   *  every PeerService call; otherwise none (an interceptor costs every unary call about 10%). */
  get interceptors(): grpc.ServerInterceptor[] {
    return this.o.tls !== null && this.o.tls.clientAuth !== "required" ? [this.interceptor] : [];
  }

  /** A call arrived on the connection from `peerAddress` (grpc's call.getPeer()): it is in use, and is
   *  never evicted for a newcomer. Every service handler calls it (cheaper than an interceptor). */
  noteCall(peerAddress: string): void {
    const conn = this.conns.get(peerAddress);
    if (conn !== undefined) conn.used = true;
  }

  /** Refuses PeerService calls without a trusted certificate (tlsClientAuth "none" and "optional"; with
   *  "required" the handshake already did). A refused call does not mark its connection used. */
  private readonly interceptor: grpc.ServerInterceptor = (method, call) => {
    const conn = this.conns.get(call.getPeer());
    const mustAuthenticate = method.path.startsWith(PEER_SERVICE_PREFIX);
    if (!mustAuthenticate || call.getAuthContext().transportSecurityType === "ssl")
      return new grpc.ServerInterceptingCall(call);
    return new grpc.ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMetadata: (metadata) => {
            const from = metadata.get(FROM_METADATA)[0];
            const why = conn?.authError || "no certificate signed by the cluster CA";
            this.refuse("peerNotAuthenticated", call.getPeer(), `${method.path} refused: ${why}`, {
              claimedNode: typeof from === "string" ? from.slice(0, 20) : null,
            });
            call.sendStatus({
              code: grpc.status.UNAUTHENTICATED,
              details: `node ${this.o.nodeId} accepts peer traffic only from nodes with a certificate signed by the cluster CA (${why})`,
            });
          },
        }),
    });
  };

  /** Binds `listen` and hands every accepted (and, with TLS, authenticated) connection to `server`. */
  async open(server: grpc.Server): Promise<Listener> {
    const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
    const t = this.o.tls;
    const tcp =
      t === null
        ? net.createServer((socket) => injector.injectConnection(socket))
        : tls.createServer(listenerTlsOptions(t, this.o.tlsHandshakeTimeoutMs), (socket) =>
            this.secureConnection(socket, t.clientAuth, (s) => injector.injectConnection(s)),
          );
    tcp.prependListener("connection", (socket: net.Socket) => this.accept(socket));
    if (tcp instanceof tls.Server)
      tcp.on("tlsClientError", (err: Error & { code?: string }, socket: TLSSocket) => {
        this.refuse("tlsHandshake", this.addressOfTls(socket), handshakeWhy(err), { code: err.code ?? null });
        socket.destroy(); // Node leaves a timed-out handshake's socket open
      });
    const port = await bindTcp(tcp, this.o.listen, this.o.nodeId);
    return {
      port,
      close: async () => {
        const closed = new Promise<void>((resolve) => tcp.close(() => resolve()));
        for (const c of this.conns.values()) c.socket.destroy();
        this.conns.clear();
        injector.destroy();
        await closed;
      },
    };
  }

  private accept(socket: net.Socket): void {
    socket.on("error", (err) =>
      this.o.log.debug({ peerAddress: addressOf(socket), err: err.message }, "connection error"),
    );
    const key = addressOf(socket);
    this.addresses.set(socket, key);
    if (socket.remoteAddress === undefined) {
      socket.destroy();
      return;
    }
    if (this.conns.size >= this.o.maxConnections && !this.evictOneIdle()) {
      this.refuse("tooManyConnections", key, `already ${this.conns.size} connections (maxConnections)`, {});
      socket.destroy();
      return;
    }
    const conn: Connection = { socket, used: false, authError: "" };
    this.conns.set(key, conn);
    socket.once("close", () => {
      if (this.conns.get(key) === conn) this.conns.delete(key);
    });
  }

  /** Closes the oldest connection that never made a call; false when every connection is in use. */
  private evictOneIdle(): boolean {
    for (const [key, c] of this.conns) {
      if (c.used) continue;
      this.conns.delete(key);
      c.socket.destroy();
      this.refuse(
        "evictedIdle",
        key,
        `closed to make room: ${this.o.maxConnections} connections (maxConnections) and this one never made a call`,
        {},
      );
      return true;
    }
    return false;
  }

  private secureConnection(
    socket: TLSSocket,
    clientAuth: TlsClientAuth,
    inject: (s: TLSSocket) => void,
  ): void {
    const key = addressOf(socket);
    const conn = this.conns.get(key);
    const presented = Object.keys(socket.getPeerCertificate()).length > 0;
    const authError = socket.authorized
      ? ""
      : presented
        ? `certificate not trusted (${certSubject(socket)}): ${verifyWhy(String(socket.authorizationError))}`
        : "no client certificate";
    if (conn !== undefined) conn.authError = authError;
    const refuse =
      !socket.authorized && (clientAuth === "required" || (clientAuth === "optional" && presented));
    if (refuse) {
      this.refuse(
        presented ? "untrustedCertificate" : "noCertificate",
        key,
        `${authError} (tlsClientAuth ${clientAuth})`,
        {},
      );
      socket.destroy();
      return;
    }
    inject(socket);
  }

  /** A TLS socket's remote address, also once it is closed (from the TCP socket under it). */
  private addressOfTls(socket: TLSSocket): string {
    const raw = (socket as TLSSocket & { _parent?: unknown })._parent;
    return (raw instanceof net.Socket ? this.addresses.get(raw) : undefined) ?? addressOf(socket);
  }

  private refuse(reason: ConnectionRefusalReason, peerAddress: string, why: string, extra: object): void {
    const n = (this.refused.get(reason) ?? 0) + 1;
    this.refused.set(reason, n);
    this.o.onRefusal?.(reason);
    // The 1st, 2nd, 4th, 8th... of each reason: a misconfigured peer is seen at once, a flood cannot flood the log.
    if (Number.isInteger(Math.log2(n)))
      this.o.log.warn(
        { reason, peerAddress, why, refused: n, ...extra },
        `refused a connection from ${peerAddress}: ${why}`,
      );
  }
}

export interface Listener {
  readonly port: number;
  /** Stop accepting and close every connection. */
  close(): Promise<void>;
}

function addressOf(socket: net.Socket): string {
  return `${socket.remoteAddress ?? "unknown"}:${socket.remotePort ?? 0}`;
}

function certSubject(socket: TLSSocket): string {
  const c = socket.getPeerCertificate();
  const subject =
    c.subject === undefined
      ? "?"
      : Object.entries(c.subject)
          .map(([k, v]) => `${k}=${String(v)}`)
          .join(", ");
  const issuer =
    c.issuer === undefined
      ? "?"
      : Object.entries(c.issuer)
          .map(([k, v]) => `${k}=${String(v)}`)
          .join(", ");
  return `subject ${subject}, issuer ${issuer}`;
}

/** OpenSSL's words for the usual handshake failures, made plain. */
function handshakeWhy(err: Error & { code?: string }): string {
  if (err.code === "ERR_TLS_HANDSHAKE_TIMEOUT")
    return "TLS handshake not finished in time (tlsHandshakeTimeoutMs)";
  if (err.code === "ECONNRESET")
    return "the other side hung up during the TLS handshake: does it trust this node's certificate (its CA file)?";
  return `TLS handshake failed: ${err.message.trim()}`;
}

/** Certificate verification codes, made plain. */
function verifyWhy(code: string): string {
  switch (code) {
    case "UNABLE_TO_VERIFY_LEAF_SIGNATURE":
    case "UNABLE_TO_GET_ISSUER_CERT":
    case "UNABLE_TO_GET_ISSUER_CERT_LOCALLY":
    case "SELF_SIGNED_CERT_IN_CHAIN":
    case "DEPTH_ZERO_SELF_SIGNED_CERT":
    case "CERT_SIGNATURE_FAILURE":
      return `not signed by the cluster CA (${code})`;
    case "CERT_HAS_EXPIRED":
      return `expired (${code})`;
    case "CERT_NOT_YET_VALID":
      return `not yet valid (${code})`;
    default:
      return code;
  }
}

/**
 * How long a port found in use is tried again. Ports such as `npm start`'s 60000-60002 lie inside
 * Linux's ephemeral range (32768-60999): an outgoing connection of another process (or of this cluster's
 * own link proxies, dialing a node not yet up) can hold one as its local port for an instant, and the
 * node then failed to start with EADDRINUSE (seen on a fresh clone's `npm start`). A real squatter is
 * still reported, this much later.
 */
export const ADDRESS_IN_USE_RETRY_MS = 2000;

async function bindTcp(server: net.Server, listen: string, nodeId: NodeId): Promise<number> {
  const colon = listen.lastIndexOf(":");
  const host = listen.slice(0, colon).replace(/^\[(.*)\]$/, "$1");
  const port = Number(listen.slice(colon + 1));
  const deadline = performance.now() + ADDRESS_IN_USE_RETRY_MS;
  for (;;) {
    try {
      return await bindOnce(server, host, port);
    } catch (err) {
      const inUse = (err as NodeJS.ErrnoException).code === "EADDRINUSE";
      if (inUse && performance.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      throw new RaftKvError({
        code: "CONFIG",
        message: `cannot listen on ${listen}: ${(err as Error).message}${inUse ? ` (still in use after ${ADDRESS_IN_USE_RETRY_MS} ms)` : ""}`,
        nodeId,
        hint: "is another process using the port? pick a free --listen address",
        cause: err,
      });
    }
  }
}

function bindOnce(server: net.Server, host: string, port: number): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const failed = (err: Error): void => {
      server.off("listening", listening);
      reject(err);
    };
    const listening = (): void => {
      server.off("error", failed);
      const a = server.address();
      resolve(typeof a === "object" && a !== null ? a.port : port);
    };
    server.once("error", failed);
    server.once("listening", listening);
    server.listen(port, host);
  });
}
