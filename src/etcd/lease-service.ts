// etcd's Lease service over the node's MvccApi: grants and revokes go through the log (a revoke deletes
// the attached keys at one revision), keepalives renew at the leader on a bidirectional stream, and
// TimeToLive and Leases read the leases the node knows. TTLs as etcd bounds them (a minimum from the
// election timeout, at most etcd's MaxLeaseTTL).

import type * as grpc from "@grpc/grpc-js";
import {
  type LeaseGrantRequest,
  type LeaseGrantResponse,
  type LeaseKeepAliveRequest,
  type LeaseKeepAliveResponse,
  type LeaseLeasesResponse,
  type LeaseRevokeRequest,
  type LeaseRevokeResponse,
  LeaseService,
  type LeaseTimeToLiveRequest,
  type LeaseTimeToLiveResponse,
} from "../gen/etcd/etcdserverpb/rpc.ts";
import { type EtcdCalls, Refused } from "./context.ts";
import { ErrLeaseTtlTooLarge, EtcdError, grpcStatus, resultOf, toEtcdError } from "./errors.ts";
import type { ForwardedStream } from "./forward.ts";

/** etcd's MaxLeaseTTL (seconds). */
export const MAX_LEASE_TTL_SECONDS = 9_000_000_000;

/** Keepalives waiting on one stream before it is refused (a client that floods without reading). */
const MAX_QUEUED_KEEPALIVES = 1024;

export class EtcdLease {
  private readonly c: EtcdCalls;

  constructor(calls: EtcdCalls) {
    this.c = calls;
  }

  async grant(r: LeaseGrantRequest, budgetMs: number): Promise<LeaseGrantResponse> {
    if (r.TTL > BigInt(MAX_LEASE_TTL_SECONDS)) throw ErrLeaseTtlTooLarge();
    const ttl = Math.max(Number(r.TTL), this.c.d.limits.minLeaseTtlSeconds);
    const { header, result } = await this.c.d.mvcc.leaseGrant(r.ID, ttl, budgetMs);
    const g = resultOf(result, "leaseGrant");
    return {
      header: this.c.header({ ...header, revision: g.revision }),
      ID: g.id,
      TTL: BigInt(g.ttlSeconds),
      error: "",
    };
  }

  async revoke(r: LeaseRevokeRequest, budgetMs: number): Promise<LeaseRevokeResponse> {
    const { header, result } = await this.c.d.mvcc.leaseRevoke(r.ID, budgetMs);
    const done = resultOf(result, "leaseRevoke");
    return { header: this.c.header({ ...header, revision: done.revision }) };
  }

  async timeToLive(r: LeaseTimeToLiveRequest): Promise<LeaseTimeToLiveResponse> {
    const { header, info } = await this.c.d.mvcc.leaseTimeToLive(r.ID, r.keys);
    // etcd answers a lease it does not know with TTL -1, not an error.
    if (info === null) return { header: this.c.header(header), ID: r.ID, TTL: -1n, grantedTTL: 0n, keys: [] };
    return {
      header: this.c.header(header),
      ID: r.ID,
      TTL: BigInt(info.ttlSeconds),
      grantedTTL: BigInt(info.grantedTtlSeconds),
      keys: [...info.keys],
    };
  }

  async leases(): Promise<LeaseLeasesResponse> {
    const { header, ids } = await this.c.d.mvcc.leases();
    return { header: this.c.header(header), leases: ids.map((ID) => ({ ID })) };
  }

  handlers(): Record<
    "leaseGrant" | "leaseRevoke" | "leaseTimeToLive" | "leaseLeases" | "leaseKeepAlive",
    grpc.UntypedHandleCall
  > {
    const u = this.c;
    return {
      leaseGrant: u.unary((r: LeaseGrantRequest, b) => this.grant(r, b), LeaseService.leaseGrant),
      leaseRevoke: u.unary((r: LeaseRevokeRequest, b) => this.revoke(r, b), LeaseService.leaseRevoke),
      leaseTimeToLive: u.unary(
        (r: LeaseTimeToLiveRequest) => this.timeToLive(r),
        LeaseService.leaseTimeToLive,
      ),
      leaseLeases: u.unary(() => this.leases(), LeaseService.leaseLeases),
      leaseKeepAlive: (
        call: grpc.ServerDuplexStream<LeaseKeepAliveRequest | Refused, LeaseKeepAliveResponse>,
      ) => this.keepAlive(call),
    };
  }

  /** One keepalive, here at the leader or on a stream forwarded to it (kept for the next ones). */
  private async keepAliveOnce(
    req: LeaseKeepAliveRequest,
    metadata: grpc.Metadata,
    forwarded: ForwardedStream<LeaseKeepAliveRequest, LeaseKeepAliveResponse> | null,
    keep: (f: ForwardedStream<LeaseKeepAliveRequest, LeaseKeepAliveResponse> | null) => void,
  ): Promise<LeaseKeepAliveResponse> {
    const f = this.c.forwarder;
    if (forwarded?.open) {
      try {
        return await forwarded.send(req);
      } catch {
        forwarded.close(); // the leader may have changed: ask here again
        keep(null);
      }
    }
    try {
      const { header, ttlSeconds } = await this.c.d.mvcc.leaseKeepAlive(req.ID);
      // etcd answers a lease it does not know with TTL 0.
      return { header: this.c.header(header), ID: req.ID, TTL: BigInt(ttlSeconds ?? 0) };
    } catch (err) {
      const leader = f?.target(err, metadata) ?? null;
      if (f === null || leader === null) throw err;
      const stream = f.stream(leader, LeaseService.leaseKeepAlive);
      keep(stream);
      return stream.send(req);
    }
  }

  /** One keepalive stream: requests answered in order, one at a time (as etcd does), the queue bounded. */
  private keepAlive(
    call: grpc.ServerDuplexStream<LeaseKeepAliveRequest | Refused, LeaseKeepAliveResponse>,
  ): void {
    this.c.d.onCall?.(call.getPeer());
    const close = this.c.openStream();
    if (close instanceof EtcdError) {
      call.emit("error", close.toStatus());
      return;
    }
    let open = true;
    let queued = 0;
    let chain: Promise<void> = Promise.resolve();
    let forwarded: ForwardedStream<LeaseKeepAliveRequest, LeaseKeepAliveResponse> | null = null;
    const finish = (error: EtcdError | null): void => {
      if (!open) return;
      open = false;
      forwarded?.close();
      close();
      if (error !== null) call.emit("error", error.toStatus());
    };
    call.on("data", (req: LeaseKeepAliveRequest | Refused) => {
      if (!open) return;
      if (req instanceof Refused) return finish(req.error);
      if (queued >= MAX_QUEUED_KEEPALIVES)
        return finish(
          new EtcdError(
            grpcStatus.RESOURCE_EXHAUSTED,
            `etcdserver: more than ${MAX_QUEUED_KEEPALIVES} keepalives wait on one stream at raftkv node ${this.c.d.nodeId}; read the answers`,
          ),
        );
      queued++;
      chain = chain.then(async () => {
        try {
          const res = await this.keepAliveOnce(req, call.metadata, forwarded, (f) => {
            forwarded = f;
          });
          if (open && !call.cancelled) call.write(res);
        } catch (err) {
          finish(toEtcdError(err, this.c.d.nodeId));
        } finally {
          queued--;
        }
      });
    });
    call.on("end", () => {
      void chain.then(() => {
        const wasOpen = open;
        finish(null);
        if (wasOpen) call.end();
      });
    });
    call.on("cancelled", () => finish(null));
    call.on("error", () => finish(null));
    call.on("close", () => finish(null));
  }
}
