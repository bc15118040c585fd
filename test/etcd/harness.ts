// One in-process gRPC server serving the etcd v3 services over an MvccTwin, on a free loopback port,
// and typed clients for it (the generated etcdserverpb clients).

import { performance } from "node:perf_hooks";
import * as grpc from "@grpc/grpc-js";
import pino from "pino";
import { DEFAULT_LIMITS, type EtcdLimits } from "../../src/etcd/context.ts";
import { addEtcdServices } from "../../src/etcd/register.ts";
import {
  ClusterClient,
  KVClient,
  LeaseClient,
  MaintenanceClient,
  WatchClient,
} from "../../src/gen/etcd/etcdserverpb/rpc.ts";
import { MvccTwin } from "./mvcc-twin.ts";

export interface TwinServer {
  readonly address: string;
  readonly twin: MvccTwin;
  readonly kv: KVClient;
  readonly watch: WatchClient;
  readonly lease: LeaseClient;
  readonly cluster: ClusterClient;
  readonly maintenance: MaintenanceClient;
  close(): Promise<void>;
}

export async function startTwinServer(limits: Partial<EtcdLimits> = {}): Promise<TwinServer> {
  const twin = new MvccTwin({ nowMs: () => performance.now() });
  const expiry = setInterval(() => twin.expireLeases(), 100);
  const server = new grpc.Server();
  const services = addEtcdServices(server, {
    mvcc: twin,
    nodeId: 0,
    clusterId: "raftkv",
    limits: { ...DEFAULT_LIMITS, ...limits },
    requestTimeoutMs: 5000,
    members: () => [
      { id: 0, name: "node0", peerUrls: ["http://127.0.0.1:1"], clientUrls: [`http://${address}`] },
    ],
    status: () => ({
      leaderId: 0,
      term: 1,
      commitIndex: twin.revisions().current,
      appliedIndex: twin.revisions().current,
      dbSizeBytes: 0,
      version: "3.4.0",
    }),
    log: pino({ level: "silent" }),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
      err === null ? resolve(p) : reject(err),
    ),
  );
  const address = `127.0.0.1:${port}`;
  const creds = grpc.credentials.createInsecure();
  const clients = {
    kv: new KVClient(address, creds),
    watch: new WatchClient(address, creds),
    lease: new LeaseClient(address, creds),
    cluster: new ClusterClient(address, creds),
    maintenance: new MaintenanceClient(address, creds),
  };
  return {
    address,
    twin,
    ...clients,
    close: async () => {
      clearInterval(expiry);
      for (const c of Object.values(clients)) c.close();
      await services.drain(100);
      twin.close();
      server.forceShutdown();
    },
  };
}

/** A unary call as a promise. */
export function call<Req, Res>(
  fn: (req: Req, cb: (err: grpc.ServiceError | null, res: Res) => void) => unknown,
  req: Req,
): Promise<Res> {
  return new Promise((resolve, reject) => fn(req, (err, res) => (err === null ? resolve(res) : reject(err))));
}

export const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
export const text = (b: Uint8Array): string => new TextDecoder().decode(b);
