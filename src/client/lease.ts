// client.lease(): a granted lease kept alive by a LeaseKeepAlive stream to the leader. It renews every
// third of the TTL; a NOT_LEADER answer moves the stream to the leader it names; a broken stream is
// opened again on the next endpoint. The lease is lost when the leader says it is gone (TTL 0: expired
// or revoked elsewhere) or when no renewal succeeded for a whole TTL (it may have expired): `lost`
// resolves with the reason and the "lost" event fires, once. close() stops renewing (the lease then
// expires on its own); revoke() ends it at once, deleting its keys. A lease kept alive keeps the process
// alive (as an open socket does) until one of them is called or the lease is lost.

import { EventEmitter } from "node:events";
import type * as grpc from "@grpc/grpc-js";
import type {
  ClientServiceClient,
  LeaseKeepAliveRequest,
  LeaseKeepAliveResponse,
} from "../gen/raftkv/v1/client.ts";
import { ErrorCode as WireErrorCode } from "../gen/raftkv/v1/client.ts";
import { codeFromWire, fromGrpcError, RaftKvClientError } from "./errors.ts";

export interface LeaseTimeToLive {
  readonly id: bigint;
  /** Seconds left (-1: no such lease). */
  readonly ttlSeconds: number;
  readonly grantedTtlSeconds: number;
  /** With `keys`: the keys attached. */
  readonly keys: readonly string[];
}

/** What a Lease needs of its client. */
export interface LeaseCore {
  readonly closed: boolean;
  endpoint(avoid?: string): string;
  channel(address: string): ClientServiceClient;
  noteLeader(address: string): void;
  backoff(n: number): Promise<void>;
  revoke(id: bigint): Promise<void>;
  timeToLive(id: bigint, keys: boolean): Promise<LeaseTimeToLive>;
  now(): number;
}

export interface LeaseOptions {
  /** Renew automatically (default true). */
  readonly keepAlive?: boolean;
}

export interface LeaseEvents {
  /** A renewal succeeded, with the TTL it renewed. */
  keepalive: [ttlSeconds: number];
  /** The lease is lost (once). */
  lost: [reason: RaftKvClientError];
}

/** A granted lease. Attach keys with put(key, value, { lease: lease.id }) or Op.put(..., { lease }). */
export class Lease extends EventEmitter<LeaseEvents> {
  /** Resolves with why the lease was lost (never rejects); pending while it lives. */
  readonly lost: Promise<RaftKvClientError>;
  private resolveLost: (e: RaftKvClientError) => void = () => undefined;
  private call: grpc.ClientDuplexStream<LeaseKeepAliveRequest, LeaseKeepAliveResponse> | null = null;
  private current: string | null = null;
  private timer: NodeJS.Timeout | null = null;
  private lastRenewedMs: number;
  private failures = 0;
  private stopped = false;
  private isLost = false;
  private awaiting = false;
  private sentAtMs = 0;

  constructor(
    private readonly core: LeaseCore,
    readonly id: bigint,
    /** The TTL granted, in seconds. */
    readonly ttlSeconds: number,
    o: LeaseOptions = {},
  ) {
    super();
    this.lost = new Promise((r) => {
      this.resolveLost = r;
    });
    this.lastRenewedMs = core.now();
    if (o.keepAlive ?? true) this.schedule(0);
  }

  /** Whether the lease is known to be lost. */
  get isLostNow(): boolean {
    return this.isLost;
  }

  /** Stops renewing; the lease expires after its TTL unless revoked. */
  close(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    const call = this.call;
    this.call = null;
    call?.end();
    call?.cancel();
  }

  /** Revokes the lease now (its keys are deleted at one revision) and stops renewing. */
  async revoke(): Promise<void> {
    this.close();
    await this.core.revoke(this.id);
    this.markLost(
      new RaftKvClientError({ code: "INVALID_ARGUMENT", message: `lease ${hex(this.id)} was revoked` }),
    );
  }

  timeToLive(o: { readonly keys?: boolean } = {}): Promise<LeaseTimeToLive> {
    return this.core.timeToLive(this.id, o.keys ?? false);
  }

  private markLost(reason: RaftKvClientError): void {
    if (this.isLost) return;
    this.isLost = true;
    this.close();
    this.resolveLost(reason);
    this.emit("lost", reason);
  }

  private periodMs(): number {
    return Math.max(100, (this.ttlSeconds * 1000) / 3);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    if (this.timer !== null) clearTimeout(this.timer);
    // Not unref'd: a lease being kept alive keeps the process alive, until close() or revoke().
    this.timer = setTimeout(() => this.tick(), ms);
  }

  private tick(): void {
    this.timer = null;
    if (this.stopped) return;
    if (this.core.now() - this.lastRenewedMs > this.ttlSeconds * 1000) {
      this.markLost(
        new RaftKvClientError({
          code: "UNAVAILABLE",
          message: `lease ${hex(this.id)} was not renewed for its TTL of ${this.ttlSeconds} s; it may have expired`,
        }),
      );
      return;
    }
    if (this.awaiting && this.core.now() - this.sentAtMs > Math.max(1000, this.periodMs())) {
      // No answer for a whole period (a node paused or cut off): try the next endpoint.
      const stuck = this.call;
      this.call = null;
      this.awaiting = false;
      stuck?.cancel();
    }
    if (!this.awaiting) {
      const call = this.stream();
      if (call !== null) {
        this.awaiting = true;
        this.sentAtMs = this.core.now();
        call.write({ id: this.id });
      }
    }
    this.schedule(this.awaiting ? Math.min(500, this.periodMs()) : this.periodMs());
  }

  private stream(): grpc.ClientDuplexStream<LeaseKeepAliveRequest, LeaseKeepAliveResponse> | null {
    if (this.call !== null) return this.call;
    if (this.core.closed) {
      this.markLost(new RaftKvClientError({ code: "UNAVAILABLE", message: "the client is closed" }));
      return null;
    }
    const target = this.core.endpoint(this.current ?? undefined);
    this.current = target;
    const call = this.core.channel(target).leaseKeepAlive();
    this.call = call;
    const broken = (moveTo: string | null): void => {
      if (this.call !== call) return;
      this.call = null;
      this.awaiting = false;
      call.cancel();
      if (this.stopped) return;
      if (moveTo !== null) {
        this.current = null;
        this.core.noteLeader(moveTo);
        this.schedule(0);
        return;
      }
      void this.core.backoff(this.failures++).then(() => this.schedule(0));
    };
    call.on("data", (r: LeaseKeepAliveResponse) => {
      if (this.call !== call) return;
      this.awaiting = false;
      const h = r.header;
      const code = h?.errorCode ?? WireErrorCode.ERROR_CODE_UNSPECIFIED;
      if (code === WireErrorCode.ERROR_CODE_UNSPECIFIED) {
        if (r.ttlSeconds <= 0n) {
          this.markLost(
            new RaftKvClientError({
              code: "INVALID_ARGUMENT",
              message: `lease ${hex(this.id)} is gone (expired or revoked)`,
              endpoint: target,
            }),
          );
          return;
        }
        this.failures = 0;
        this.lastRenewedMs = this.core.now();
        this.emit("keepalive", Number(r.ttlSeconds));
        return;
      }
      const c = codeFromWire(code);
      if (c === "INVALID_ARGUMENT") {
        this.markLost(new RaftKvClientError({ code: c, message: h?.errorMessage ?? "", endpoint: target }));
        return;
      }
      broken(c === "NOT_LEADER" && h?.leaderAddress ? h.leaderAddress : null);
    });
    call.on("error", (err: grpc.ServiceError) => {
      void fromGrpcError(err, target);
      broken(null);
    });
    call.on("end", () => broken(null));
    return call;
  }
}

/** A lease id as etcdctl prints it (hex). */
export function hex(id: bigint): string {
  return id.toString(16);
}
