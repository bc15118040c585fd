// Prometheus metrics of one node (prom-client, its own registry) and the HTTP /metrics endpoint.

import { createServer, type Server } from "node:http";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { NodeView } from "./node-view.ts";
import { RequestHistogram } from "./request-histogram.ts";

const ROLES = ["follower", "preCandidate", "candidate", "leader"] as const;
const LEASES = ["valid", "notLeader", "noLease", "waitingOldLease", "noopNotApplied"] as const;
const MEMORY_KINDS = ["rss", "heapUsed", "heapTotal", "external", "arrayBuffers"] as const;

/** Client operations timed by requestDuration. */
export type OpName = "put" | "get" | "delete" | "cas" | "range" | "status";

export class NodeMetrics {
  readonly registry = new Registry();
  readonly requestDuration: RequestHistogram;
  readonly proposals: Counter<"result">;
  readonly storageSaveDuration: Histogram<"sync">;
  readonly elections: Counter;
  readonly leaderChanges: Counter;
  readonly peerRefusals: Counter<"reason">;
  readonly clientRefusals: Counter<"reason">;
  readonly connectionRefusals: Counter<"reason">;
  readonly lateTickWakeups: Counter;

  constructor(
    view: () => NodeView,
    transportStats: () => { sent: number; received: number; dropped: number },
  ) {
    const registers = [this.registry];
    this.requestDuration = new RequestHistogram(
      "raftkv_request_duration_seconds",
      "Client request latency by operation and outcome code",
      [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      this.registry,
    );
    this.proposals = new Counter({
      name: "raftkv_proposals_total",
      help: "Writes proposed to the log on this node, by outcome",
      labelNames: ["result"],
      registers,
    });
    this.storageSaveDuration = new Histogram({
      name: "raftkv_storage_save_duration_seconds",
      help: "Time to persist one Ready (hard state and entries); sync=true includes the fsync",
      labelNames: ["sync"],
      buckets: [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    });
    this.elections = new Counter({
      name: "raftkv_elections_total",
      help: "Elections this node started",
      registers,
    });
    this.leaderChanges = new Counter({
      name: "raftkv_leader_changes_total",
      help: "Times this node saw the leader change",
      registers,
    });
    this.peerRefusals = new Counter({
      name: "raftkv_peer_messages_refused_total",
      help: "Inbound peer messages refused by the codec, by reason",
      labelNames: ["reason"],
      registers,
    });
    this.clientRefusals = new Counter({
      name: "raftkv_client_requests_refused_total",
      help: "Client requests refused at the edge, by reason",
      labelNames: ["reason"],
      registers,
    });
    this.connectionRefusals = new Counter({
      name: "raftkv_connections_refused_total",
      help: "Connections and peer calls refused by the listener (limit, TLS), by reason",
      labelNames: ["reason"],
      registers,
    });
    this.lateTickWakeups = new Counter({
      name: "raftkv_late_tick_wakeups_total",
      help: "Ticker wake-ups that found more than one tick due (timer lateness or an event-loop stall)",
      registers,
    });
    const gauge = (name: string, help: string, read: (v: NodeView) => number): void => {
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(read(view()));
        },
      });
    };
    gauge("raftkv_term", "Current term", (v) => v.term);
    gauge("raftkv_commit_index", "Highest index known committed", (v) => v.commitIndex);
    gauge("raftkv_applied_index", "Highest index applied to the state machine", (v) => v.appliedIndex);
    gauge("raftkv_last_log_index", "Last index in the log", (v) => v.lastLogIndex);
    gauge("raftkv_snapshot_index", "Index of the newest snapshot", (v) => v.snapshotIndex);
    gauge("raftkv_leader_id", "Known leader id, -1 when none", (v) => v.leaderId ?? -1);
    gauge(
      "raftkv_lease_remaining_seconds",
      "Time left on this leader's read lease",
      (v) => v.leaseRemainingMs / 1000,
    );
    new Gauge({
      name: "raftkv_role",
      help: "1 for this node's current role",
      labelNames: ["role"],
      registers,
      collect() {
        const role = view().role;
        for (const r of ROLES) this.set({ role: r }, r === role ? 1 : 0);
      },
    });
    new Gauge({
      name: "raftkv_lease_state",
      help: "1 for the leader lease's current state",
      labelNames: ["state"],
      registers,
      collect() {
        const lease = view().lease;
        for (const s of LEASES) this.set({ state: s }, s === lease ? 1 : 0);
      },
    });
    new Gauge({
      name: "raftkv_process_memory_bytes",
      help: "This process's memory by kind, from process.memoryUsage() (rss, heapUsed, heapTotal, external, arrayBuffers)",
      labelNames: ["kind"],
      registers,
      collect() {
        const m = process.memoryUsage();
        for (const kind of MEMORY_KINDS) this.set({ kind }, m[kind]);
      },
    });
    new Gauge({
      name: "raftkv_replication_lag_entries",
      help: "Leader only: entries a peer is behind the leader's last index",
      labelNames: ["peer"],
      registers,
      collect() {
        this.reset();
        const v = view();
        for (const p of v.peers)
          if (p.matchIndex !== null)
            this.set({ peer: String(p.id) }, Math.max(0, v.lastLogIndex - p.matchIndex));
      },
    });
    new Gauge({
      name: "raftkv_peer_connected",
      help: "1 when this node's stream to the peer is up",
      labelNames: ["peer"],
      registers,
      collect() {
        for (const p of view().peers) this.set({ peer: String(p.id) }, p.connected ? 1 : 0);
      },
    });
    new Gauge({
      name: "raftkv_peer_messages",
      help: "Peer messages sent, received and dropped since start",
      labelNames: ["kind"],
      registers,
      collect() {
        const s = transportStats();
        this.set({ kind: "sent" }, s.sent);
        this.set({ kind: "received" }, s.received);
        this.set({ kind: "dropped" }, s.dropped);
      },
    });
  }
}

/** Serves GET /metrics (and /healthz) on host:port; resolves with the bound port. */
export async function startMetricsServer(
  metrics: NodeMetrics,
  host: string,
  port: number,
): Promise<{ readonly server: Server; readonly port: number }> {
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method === "GET" && path === "/metrics") {
      metrics.registry.metrics().then(
        (text) => {
          res.writeHead(200, { "content-type": metrics.registry.contentType });
          res.end(text);
        },
        (err: unknown) => {
          res.writeHead(500, { "content-type": "text/plain" });
          res.end(`metrics failed: ${err instanceof Error ? err.message : String(err)}\n`);
        },
      );
      return;
    }
    if (req.method === "GET" && path === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" });
      res.end("ok\n");
      return;
    }
    res.writeHead(404, { "content-type": "text/plain" });
    res.end("not found: try /metrics\n");
  });
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
