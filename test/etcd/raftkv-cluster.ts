// Three raftkv nodes serving etcd's v3 API (src/etcd/etcd-node.ts) on free loopback ports, in a temp
// folder: what the etcdctl and etcd3 tests run against.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type EtcdNode, startEtcdNode } from "../../src/etcd/etcd-node.ts";
import { resolveNodeConfig } from "../../src/server/embed.ts";
import { freePort } from "./etcd-cluster.ts";

export interface RaftkvEtcdCluster {
  readonly nodes: readonly EtcdNode[];
  /** Client endpoints ("127.0.0.1:port"), node 0 first. */
  readonly endpoints: readonly string[];
  /** The endpoint of the node that leads now (waits for one with a valid lease). */
  leaderEndpoint(): Promise<string>;
  stop(): Promise<void>;
}

export async function startRaftkvEtcdCluster(size = 3): Promise<RaftkvEtcdCluster> {
  const dir = mkdtempSync(join(tmpdir(), "raftkv-etcd-api-"));
  const ports: number[] = [];
  for (let i = 0; i < size; i++) ports.push(await freePort());
  const peers = ports.map((p, i) => `${i}=127.0.0.1:${p}`).join(",");
  const nodes = await Promise.all(
    ports.map((_, id) =>
      startEtcdNode(
        resolveNodeConfig({
          id,
          peers,
          dataDir: join(dir, `n${id}`),
          clusterId: "etcd-api-test",
          logLevel: "warn",
        }),
        { seed: id + 11, logToStderr: false },
      ),
    ),
  );
  const endpoints = ports.map((p) => `127.0.0.1:${p}`);
  const leaderEndpoint = async (): Promise<string> => {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const i = nodes.findIndex(
        (n) => n.raft.status().role === "leader" && n.raft.status().lease === "valid",
      );
      if (i >= 0) return endpoints[i]!;
      if (Date.now() > deadline) throw new Error("no raftkv leader with a valid lease within 30 s");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  await leaderEndpoint();
  return {
    nodes,
    endpoints,
    leaderEndpoint,
    stop: async () => {
      await Promise.all(nodes.map((n) => n.stop("test over")));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
