// Puts etcd's v3 services on a gRPC server (the node's client port, beside raftkv.v1): every request's
// bytes are bounded by maxRequestBytes and decoded before a handler sees them, so an oversize or
// malformed request gets etcd's INVALID_ARGUMENT status, never an INTERNAL one.

import type * as grpc from "@grpc/grpc-js";
import {
  ClusterService,
  KVService,
  LeaseService,
  MaintenanceService,
  WatchService,
} from "../gen/etcd/etcdserverpb/rpc.ts";
import { EtcdCalls, type EtcdServiceDeps, Refused } from "./context.ts";
import { ErrRequestTooLarge, EtcdError, grpcStatus } from "./errors.ts";
import { EtcdKv } from "./kv-service.ts";
import { EtcdLease } from "./lease-service.ts";
import { EtcdMaintenance } from "./maintenance-service.ts";
import { EtcdWatch } from "./watch-service.ts";

/** The etcd services of one node, for drain at shutdown. */
export interface EtcdServices {
  /** Refuse new calls; resolve when in-flight ones finished or after graceMs. */
  drain(graceMs: number): Promise<void>;
}

export function addEtcdServices(server: grpc.Server, d: EtcdServiceDeps): EtcdServices {
  const calls = new EtcdCalls(d);
  const max = d.limits.maxRequestBytes;
  server.addService(guarded(KVService, max), new EtcdKv(calls).handlers());
  server.addService(guarded(WatchService, max), new EtcdWatch(calls).handlers());
  server.addService(guarded(LeaseService, max), new EtcdLease(calls).handlers());
  const maintenance = new EtcdMaintenance(calls).handlers();
  server.addService(guarded(ClusterService, max), maintenance);
  server.addService(guarded(MaintenanceService, max), maintenance);
  return { drain: (graceMs) => calls.drain(graceMs) };
}

/** The service with every request's decoding bounded and made total (a Refused instead of a throw). */
export function guarded(definition: grpc.ServiceDefinition, maxRequestBytes: number): grpc.ServiceDefinition {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, m] of Object.entries(definition)) {
    out[name] = {
      ...m,
      requestDeserialize: (bytes: Buffer): unknown => {
        if (bytes.length > maxRequestBytes) return new Refused(ErrRequestTooLarge());
        try {
          return m.requestDeserialize(bytes);
        } catch (err) {
          return new Refused(
            new EtcdError(
              grpcStatus.INVALID_ARGUMENT,
              `etcdserver: the request is not a well-formed ${m.path} message: ${err instanceof Error ? err.message : String(err)}`,
            ),
          );
        }
      },
    };
  }
  return out;
}
