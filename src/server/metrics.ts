// Prometheus metrics of one node (prom-client, one registry per node): NodeMetrics for every Raft node
// (embedded or the KV server: Raft state, storage, peers, connections, the process and Node.js defaults),
// ClientMetrics for the KV client service on top. Counters are prom-client Counters named _total.
// Per-request paths only touch prebound children or RequestHistogram (request-histogram.ts); everything
// read from the node's state is computed when /metrics is scraped.

import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { NodeView } from "./node-view.ts";
import { RequestHistogram } from "./request-histogram.ts";

const ROLES = ["follower", "preCandidate", "candidate", "leader"] as const;
const LEASES = ["valid", "notLeader", "noLease", "waitingOldLease", "noopNotApplied"] as const;
const MEMORY_KINDS = ["rss", "heapUsed", "heapTotal", "external", "arrayBuffers"] as const;

/** Sampling interval of nodejs_eventloop_lag_* (prom-client's eventLoopMonitoringPrecision). */
const EVENT_LOOP_SAMPLE_MS = 100;

/** Client operations timed by requestDuration. */
export type OpName = "put" | "get" | "delete" | "cas" | "range" | "status" | "txn" | "lease";

/** Totals the peer transport keeps since start. */
export interface TransportTotals {
  readonly sent: number;
  readonly received: number;
  readonly dropped: number;
}

/** How the WAL made a write durable: an fdatasync, or a write with O_DSYNC. */
export type FsyncOp = "fdatasync" | "dsyncWrite";

/** A Counter exported from a total kept elsewhere: each scrape adds what the total grew by. */
function totalCounter<L extends string>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: readonly L[],
  read: () => Iterable<readonly [Record<L, string>, number]>,
): void {
  const last = new Map<string, number>();
  new Counter<L>({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      for (const [labels, total] of read()) {
        const key = JSON.stringify(labels);
        const grown = total - (last.get(key) ?? 0);
        if (grown > 0) this.inc(labels, grown);
        last.set(key, total);
      }
    },
  });
}

export class NodeMetrics {
  readonly registry: Registry;
  readonly storageSaveDuration: Histogram<"sync">;
  private readonly fsync: Record<FsyncOp, { observe(seconds: number): void }>;
  readonly elections: Counter;
  readonly leaderChanges: Counter;
  readonly peerRefusals: Counter<"reason">;
  readonly connectionRefusals: Counter<"reason">;
  readonly lateTickWakeups: Counter;

  constructor(
    view: () => NodeView,
    transportTotals: () => TransportTotals,
    build: { readonly version: string },
    registry: Registry = new Registry(),
  ) {
    this.registry = registry;
    const registers = [registry];
    // process_* and nodejs_*. The event-loop delay histogram samples every eventLoopMonitoringPrecision ms:
    // prom-client's default (10 ms) is a timer waking the process 100 times a second when it is idle;
    // at 100 ms a stall still shows in full (the late sample measures it), only short jitter goes unseen.
    collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
    new Gauge({
      name: "raftkv_build_info",
      help: "Always 1: the raftkv version and the Node.js version this node runs",
      labelNames: ["version", "node_version"],
      registers,
    }).set({ version: build.version, node_version: process.version }, 1);
    this.storageSaveDuration = new Histogram({
      name: "raftkv_storage_save_duration_seconds",
      help: "Time to persist one Ready (hard state and entries); sync=true includes the fsync",
      labelNames: ["sync"],
      buckets: [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    });
    const fsync = new Histogram({
      name: "raftkv_wal_fsync_duration_seconds",
      help: "Time the WAL waited for the disk to make a write durable: an fdatasync, or a write with O_DSYNC (dsyncWrite)",
      labelNames: ["op"],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    });
    this.fsync = { fdatasync: fsync.labels("fdatasync"), dsyncWrite: fsync.labels("dsyncWrite") };
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
    gauge("raftkv_has_leader", "1 when this node knows a leader (itself included), else 0", (v) =>
      v.leaderId === null ? 0 : 1,
    );
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
    totalCounter(
      registry,
      "raftkv_peer_messages_total",
      "Peer messages sent, received (validated) and dropped (queue full, peer unknown, closing)",
      ["kind"],
      () => {
        const t = transportTotals();
        return [
          [{ kind: "sent" }, t.sent],
          [{ kind: "received" }, t.received],
          [{ kind: "dropped" }, t.dropped],
        ];
      },
    );
    totalCounter(
      registry,
      "raftkv_peer_sent_bytes_total",
      "Bytes this node wrote to its stream to each peer",
      ["peer"],
      () => view().peers.map((p) => [{ peer: String(p.id) }, p.sentBytes] as const),
    );
    totalCounter(
      registry,
      "raftkv_peer_received_bytes_total",
      "Bytes this node received on streams from each peer",
      ["peer"],
      () => view().peers.map((p) => [{ peer: String(p.id) }, p.receivedBytes] as const),
    );
  }

  /** One WAL wait for durability (a few per batch of writes, never per request). */
  observeFsync(op: FsyncOp, seconds: number): void {
    this.fsync[op].observe(seconds);
  }
}

/** What the KV client service adds on the node's registry. */
export class ClientMetrics {
  readonly requestDuration: RequestHistogram;
  readonly proposals: Counter<"result">;
  /** proposals{result="ok"}, bound once: it is counted on every write. */
  readonly proposalsOk: { inc(): void };
  readonly clientRefusals: Counter<"reason">;

  constructor(registry: Registry) {
    const registers = [registry];
    this.requestDuration = new RequestHistogram(
      "raftkv_request_duration_seconds",
      "Client request latency by operation and outcome code",
      [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registry,
    );
    this.proposals = new Counter({
      name: "raftkv_proposals_total",
      help: "Writes proposed to the log on this node, by outcome",
      labelNames: ["result"],
      registers,
    });
    this.proposalsOk = this.proposals.labels("ok");
    this.clientRefusals = new Counter({
      name: "raftkv_client_requests_refused_total",
      help: "Client requests refused at the edge, by reason",
      labelNames: ["reason"],
      registers,
    });
  }
}
