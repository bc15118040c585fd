// In-process clusters of real nodes (startNode) on loopback for the security tests: settings per node,
// waiting for a leader, reading a node's log, raw gRPC calls with arbitrary bytes, and a clean stop.

import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { RaftKvClient, type RaftKvClientOptions } from "../../src/client/index.ts";
import { resolveServerConfig, type ServerConfig } from "../../src/server/config.ts";
import { type RaftKvNode, startNode } from "../../src/server/node.ts";
import { freePorts, waitFor } from "../e2e/harness.ts";

export { freePorts, waitFor };

export interface TestCluster {
  readonly dir: string;
  readonly addresses: readonly string[];
  readonly configs: ServerConfig[];
  /** null where a node is stopped (or failed to start). */
  readonly nodes: (RaftKvNode | null)[];
  start(id: number): Promise<RaftKvNode>;
  stopNode(id: number): Promise<void>;
  /** Id of a node that sees itself as leader with a valid lease, waiting up to `timeoutMs`. */
  leader(timeoutMs?: number): Promise<number>;
  client(o?: Partial<RaftKvClientOptions>): RaftKvClient;
  /** The text of node `id`'s raftkv.log. */
  log(id: number): string;
  close(): Promise<void>;
}

export interface ClusterOptions {
  readonly size: number;
  /** Settings for every node, then per node. */
  readonly settings?: Record<string, unknown>;
  readonly perNode?: (id: number) => Record<string, unknown>;
  /** Which nodes to start now (default all). */
  readonly startNow?: readonly number[];
}

export async function startCluster(o: ClusterOptions): Promise<TestCluster> {
  const dir = mkdtempSync(join(tmpdir(), "raftkv-sec-"));
  const ports = await freePorts(o.size);
  const addresses = ports.map((p) => `127.0.0.1:${p}`);
  const peers = addresses.map((a, i) => `${i}=${a}`).join(",");
  const configs = addresses.map((_, id) =>
    resolveServerConfig({
      id,
      peers,
      dataDir: join(dir, `node-${id}`),
      clusterId: "sec",
      logLevel: "info",
      // Slower than the defaults: these tests share the machine with others, and elections must not churn.
      heartbeatMs: 100,
      electionTimeoutMinMs: 1000,
      electionTimeoutMaxMs: 2000,
      ...o.settings,
      ...o.perNode?.(id),
    }),
  );
  const nodes: (RaftKvNode | null)[] = addresses.map(() => null);
  const clients: RaftKvClient[] = [];
  const start = async (id: number): Promise<RaftKvNode> => {
    const n = await startNode(configs[id]!, { logToStderr: false, seed: id + 1 });
    nodes[id] = n;
    return n;
  };
  const cluster: TestCluster = {
    dir,
    addresses,
    configs,
    nodes,
    start,
    stopNode: async (id) => {
      const n = nodes[id];
      nodes[id] = null;
      await n?.stop("test");
    },
    leader: (timeoutMs = 15_000) =>
      waitFor(
        "a leader with a valid lease",
        () => {
          const id = nodes.findIndex(
            (n) => n !== null && n.view().role === "leader" && n.view().lease === "valid",
          );
          return id >= 0 ? id : undefined;
        },
        timeoutMs,
        20,
      ),
    client: (co = {}) => {
      const c = new RaftKvClient({ endpoints: addresses, timeoutMs: 5000, ...co });
      clients.push(c);
      return c;
    },
    log: (id) => readFileSync(join(dir, `node-${id}`, "raftkv.log"), "utf8"),
    close: async () => {
      for (const c of clients) c.close();
      await Promise.all(nodes.map((n) => n?.stop("test over")));
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await Promise.all((o.startNow ?? addresses.map((_, i) => i)).map((id) => start(id)));
  } catch (err) {
    await cluster.close();
    throw err;
  }
  return cluster;
}

export interface RawAnswer {
  readonly status: grpc.status;
  readonly details: string;
  readonly bytes: Buffer | null;
}

/** One unary call of `path` carrying exactly `bytes`, answered as bytes (no decoding either way). */
export function rawUnary(
  address: string,
  path: string,
  bytes: Uint8Array,
  o: { credentials?: grpc.ChannelCredentials; deadlineMs?: number; metadata?: grpc.Metadata } = {},
): Promise<RawAnswer> {
  const client = new grpc.Client(address, o.credentials ?? grpc.credentials.createInsecure(), {
    "grpc.max_send_message_length": 64 * 1024 * 1024,
  });
  const id = (b: Buffer): Buffer => b;
  return new Promise<RawAnswer>((resolve) => {
    client.makeUnaryRequest(
      path,
      id,
      id,
      Buffer.from(bytes),
      o.metadata ?? new grpc.Metadata(),
      { deadline: Date.now() + (o.deadlineMs ?? 5000) },
      (err, res) => {
        client.close();
        resolve(
          err === null
            ? { status: grpc.status.OK, details: "", bytes: res ?? null }
            : { status: err.code, details: err.details, bytes: null },
        );
      },
    );
  });
}
