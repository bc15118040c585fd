// A Raft node around any state machine (the embedding API, raftkv/node): our WAL (FileStorage), the
// Raft core and the replica loop, gRPC peer transport on one port (with TLS and connection limits), the
// ticker, logs, metrics with /health and /ready, events, and an orderly stop. The KV server (node.ts) is
// one user of it; it reaches nothing here that another user could not.

import { randomInt } from "node:crypto";
import { resolve } from "node:path";
import * as grpc from "@grpc/grpc-js";
import type { Registry } from "prom-client";
import { MonotonicClock, type MonotonicTime } from "../clock/monotonic-clock.ts";
import { Ticker } from "../clock/ticker.ts";
import type { CoreConfig } from "../core/config.ts";
import type { ConfChange, Membership } from "../core/membership.ts";
import { Raft } from "../core/raft.ts";
import type { NodeId, Role, SnapshotMeta } from "../core/types.ts";
import { AssertionError, assert } from "../lib/assert.ts";
import { RaftKvError } from "../lib/errors.ts";
import { packageVersion } from "../lib/version.ts";
import { type Consistency, NotLeaderError, Replica } from "../replica/replica.ts";
import type { ReplicaStorage } from "../replica/seams.ts";
import { layoutOf } from "../storage/data-dir.ts";
import { FileStorage } from "../storage/file-storage.ts";
import { addPeerService, GrpcPeerTransport, peerGrpcOptions } from "../transport/grpc-transport.ts";
import { clientReceiveLimitBytes } from "./client-edge.ts";
import { addClusterService } from "./cluster-service.ts";
import { effectiveLeaseMs, maxEntryBytes, type ServerConfig, toCoreConfig } from "./config.ts";
import type { HealthSources } from "./health.ts";
import { ConnectionGate } from "./listener.ts";
import { createNodeLog, type Logger, type NodeLog } from "./logging.ts";
import { awaitOtherLeader, bootMembership, ChangeRefusedError, MembershipFollower } from "./membership.ts";
import { NodeMetrics } from "./metrics.ts";
import { type NodeView, type ViewSources, viewNode } from "./node-view.ts";
import { type NodeEvent, NodeObserver } from "./observer.ts";
import { type OperatorRoute, startOperatorServer } from "./operator-http.ts";
import { RefusedFolder } from "./refused-folder.ts";
import { AppliedStateMachine, type StateMachine } from "./state-machine.ts";
import { clockFor, fileSystemFor } from "./test-switches.ts";
import { timedWal } from "./timed-file-system.ts";
import { loadServerTls, peerIdentity, type ServerTls } from "./tls.ts";

/** Snapshot bytes read at a time when a node starts. */
const RESTORE_CHUNK_BYTES = 4 * 1024 * 1024;

/** After a fatal error, how much longer than shutdownGraceMs the shutdown may take before the node
 *  reports itself stopped regardless. */
const FATAL_EXIT_EXTRA_MS = 5000;

/** A node's configuration: what `raftkv serve` takes, validated (resolveNodeConfig). */
export type NodeConfig = ServerConfig;

/** What the state machine S's apply() returns: the result its proposals resolve with. */
export type ResultOf<S> = S extends StateMachine<infer R> ? R : never;

export interface RaftNodeOptions<S extends StateMachine<unknown>> {
  /** From resolveNodeConfig(): the same settings, defaults and checks as `raftkv serve`. */
  readonly config: NodeConfig;
  /** The state machine to replicate; the node calls it and nothing else changes it. */
  readonly stateMachine: S;
  /** Largest command a proposal may carry, in bytes (default: what the KV store needs for its largest
   *  compare-and-swap, maxKeyBytes + 2 x maxValueBytes + 1 KiB). */
  readonly maxCommandBytes?: number;
  /** Adds gRPC services to the node's server before it listens: they share its port, TLS and
   *  connection limits. `node` is usable for proposals and reads once startRaftNode() resolves. */
  readonly services?: (server: grpc.Server, node: RaftNode<S, ResultOf<S>>, context: ServiceContext) => void;
  /** Awaited first when the node stops, before anything else shuts: e.g. let in-flight client
   *  requests finish (within config.shutdownGraceMs). */
  readonly beforeStop?: (reason: string) => Promise<void>;
  /** Local monotonic clock (default performance.now()). */
  readonly clock?: MonotonicTime;
  /** Seed of the core's election jitter (default random). */
  readonly seed?: number;
  /** Log to stderr as well as to the data folder's raftkv.log (default true). */
  readonly logToStderr?: boolean;
  /** More endpoints on the operator port (config.metricsPort), e.g. the dashboard (src/ui), made once
   *  the node exists. With TLS configured the port speaks TLS as well as plain HTTP. */
  readonly operatorRoutes?: (node: RaftNode<S, ResultOf<S>>) => readonly OperatorRoute[];
}

export interface ReadOptions {
  /** "lease" (default): linearizable, from the leader's state while its lease holds, else as readIndex;
   *  "readIndex": linearizable after a heartbeat round to a majority; "stale": this node's state now. */
  readonly consistency?: Consistency;
}

/** A committed proposal: its log index and what the state machine's apply() returned for it. */
export interface Applied<R> {
  readonly index: number;
  readonly result: R;
}

/** The Raft state that changes on elections, as cheap to read as a field. */
export interface SoftState {
  readonly role: Role;
  readonly term: number;
  readonly leaderId: NodeId | null;
}

/** A node's events; listeners run synchronously in the node's loop: keep them short, never throw. */
export type RaftNodeEvent =
  | NodeEvent
  | { readonly type: "stopped"; readonly exitCode: number; readonly reason: string };

export type RaftNodeEventType = RaftNodeEvent["type"];

export interface RaftNode<S, R> {
  readonly id: NodeId;
  /** The address the gRPC server is bound to ("host:port"). */
  readonly listenAddress: string;
  /** Bound port of the operator endpoints (/metrics, /health, /ready), or null when disabled. */
  readonly metricsPort: number | null;
  readonly logFile: string;
  readonly logger: Logger;
  /** Every member's peer address by id, as the configuration in effect names them (live). */
  readonly peers: ReadonlyMap<NodeId, string>;
  /** The node's Prometheus registry: add metrics of your own to it. */
  readonly registry: Registry;
  /** The state machine passed in. */
  readonly stateMachine: S;
  /** The index of the last entry applied to it (0 before any). */
  readonly appliedIndex: number;
  /**
   * Appends `command` to the log; resolves with its index and apply()'s result once it is committed
   * and applied here. Only the leader accepts proposals: elsewhere it rejects with a RaftKvError coded
   * NOT_LEADER (with the leader's id, see NotLeaderError) or NO_LEADER. A rejection coded UNAVAILABLE
   * or a timeout of yours leaves the outcome unknown: the command may still apply (make commands
   * idempotent, e.g. with ids, if that matters).
   */
  propose(command: Uint8Array): Promise<Applied<R>>;
  /**
   * Runs `fn` on the state machine once a read at `consistency` is safe here, and resolves with what
   * it returns (for "lease" and "readIndex", on the leader only). `fn` must only read, synchronously.
   */
  read<T>(fn: (stateMachine: S) => T, options?: ReadOptions): Promise<T>;
  /** Role, term, indexes, lease, peers and process of this node, now. */
  status(): NodeView;
  softState(): SoftState;
  /** Calls `listener` on each event of `type`; returns a function that removes it. */
  on<T extends RaftNodeEventType>(
    type: T,
    listener: (event: Extract<RaftNodeEvent, { type: T }>) => void,
  ): () => void;
  /** Asks the leader (this node) to hand leadership to `to` (thesis §3.10); false if it cannot now. */
  transferLeadership(to: NodeId): boolean;
  /** The configuration in effect here (voters, outgoing voters while joint, learners, addresses) and the
   *  log index it comes from (issue 13). */
  configuration(): { membership: Membership; index: number };
  /**
   * On the leader: proposes a configuration change (joint consensus, one change at a time) and resolves
   * with the configuration once it committed and any joint step was left. Elsewhere it rejects with a
   * NotLeaderError; a change the core refuses (one in flight, a learner behind, a bad id) rejects with a
   * RaftKvError saying why; a timeout leaves the outcome unknown (UNAVAILABLE).
   */
  changeMembership(changes: readonly ConfChange[], timeoutMs?: number): Promise<Membership>;
  /** An id above every id the cluster ever used, for a new member. */
  newMemberId(): NodeId;
  /** On a leader: hands leadership to voter `to` (default: the most up-to-date voter) and waits (up to
   *  timeoutMs) until another node leads; resolves with it, or null (not the leader, no voter to take
   *  over, `to` not a voter, timed out). Before a clean stop, so that clients see no election timeout;
   *  and etcd's MoveLeader. */
  handOverLeadership(timeoutMs: number, to?: NodeId): Promise<NodeId | null>;
  /** Stops: beforeStop, then no more ticks or messages, pending proposals and reads fail, the WAL is
   *  synced and closed, the state machine's close() runs. Resolves when done; idempotent. */
  stop(reason?: string): Promise<void>;
  /** Resolves with the process exit code once the node has stopped (0 after stop(), 1 after a fatal
   *  storage error or a broken Raft invariant, which stop the node by themselves). */
  readonly done: Promise<number>;
}

/** Storage that times each save and knows whether one is waiting for the disk (for /health). */
class TimedStorage implements ReplicaStorage {
  private savingSinceMs: number | null = null;

  constructor(
    private readonly s: FileStorage,
    private readonly clock: MonotonicTime,
    private readonly metrics: () => NodeMetrics | null,
  ) {}

  async save(...args: Parameters<ReplicaStorage["save"]>): Promise<void> {
    const started = this.clock.nowMs();
    this.savingSinceMs = started;
    try {
      await this.s.save(...args);
    } finally {
      this.savingSinceMs = null;
      this.metrics()?.storageSaveDuration.observe(
        { sync: String(args[2]) },
        (this.clock.nowMs() - started) / 1000,
      );
    }
  }

  saveSnapshotStream(...args: Parameters<ReplicaStorage["saveSnapshotStream"]>) {
    return this.s.saveSnapshotStream(...args);
  }

  writeSnapshotChunk(...args: Parameters<ReplicaStorage["writeSnapshotChunk"]>) {
    return this.s.writeSnapshotChunk(...args);
  }

  readIncomingSnapshotChunk(...args: Parameters<ReplicaStorage["readIncomingSnapshotChunk"]>) {
    return this.s.readIncomingSnapshotChunk(...args);
  }

  installIncomingSnapshot(meta: SnapshotMeta) {
    return this.s.installIncomingSnapshot(meta);
  }

  readSnapshotChunk(...args: Parameters<ReplicaStorage["readSnapshotChunk"]>) {
    return this.s.readSnapshotChunk(...args);
  }

  /** How long the save in progress has waited, or null. */
  waitingMs(): number | null {
    return this.savingSinceMs === null ? null : this.clock.nowMs() - this.savingSinceMs;
  }
}

/**
 * Starts a Raft node replicating `options.stateMachine`: opens (or creates) the data folder, restores
 * the newest snapshot into the state machine and replays the log, then listens and joins the cluster.
 * Throws a RaftKvError (CONFIG, STORAGE, CORRUPT, CLUSTER_MISMATCH) naming what is wrong if it cannot.
 */
export function startRaftNode<S extends StateMachine<unknown>>(
  options: RaftNodeOptions<S>,
): Promise<RaftNode<S, ResultOf<S>>> {
  return start<S, ResultOf<S>>(options as Options<S, ResultOf<S>>);
}

/** RaftNodeOptions with the result type spelled out (TypeScript cannot see that S is a StateMachine of
 *  ResultOf<S>). */
type Options<S extends StateMachine<unknown>, R> = Omit<RaftNodeOptions<S>, "services" | "operatorRoutes"> & {
  readonly services?: (server: grpc.Server, node: RaftNode<S, R>, context: ServiceContext) => void;
  readonly operatorRoutes?: (node: RaftNode<S, R>) => readonly OperatorRoute[];
};

/** What the node offers the services it hosts. */
export interface ServiceContext {
  /** Call with call.getPeer() on every call a service handles: the connection counts as in use, so that
   *  at maxConnections it is not closed as an idle one. */
  noteCall(peerAddress: string): void;
}

async function start<S extends StateMachine<unknown>, R>(options: Options<S, R>): Promise<RaftNode<S, R>> {
  const { config } = options;
  const seed = options.seed ?? randomInt(0x7fffffff);
  const coreConfig = withCommandLimit(toCoreConfig(config, seed), config, options.maxCommandBytes);
  const nodeLog = createNodeLog({
    nodeId: config.id,
    dataDir: config.dataDir,
    level: config.logLevel,
    stderr: options.logToStderr ?? true,
  });
  const log = nodeLog.logger;
  const clock = options.clock ?? clockFor(process.env, config.id, log) ?? new MonotonicClock();
  let metrics: NodeMetrics | null = null;
  const layout = layoutOf(config.dataDir);
  const fs = timedWal(
    fileSystemFor(process.env, config.dataDir, config.id, log), // test switches: test-switches.ts
    layout.walDir,
    () => clock.nowMs(),
    (op, seconds) => metrics?.observeFsync(op, seconds),
  );
  const storage = new FileStorage({
    fs,
    dir: config.dataDir,
    clusterId: config.clusterId,
    nodeId: config.id,
    logger: log.child({ component: "storage" }),
  });
  let recovered: Awaited<ReturnType<FileStorage["open"]>>;
  try {
    recovered = await storage.open();
  } catch (err) {
    log.error({ err }, "could not open the data folder");
    nodeLog.flush();
    throw err;
  }
  try {
    const advertised = config.peers.get(config.id) ?? config.listen;
    const tls = loadServerTls(config, config.id, config.clusterId, advertised, new Date());
    const user = options.stateMachine as StateMachine<unknown> as StateMachine<R>;
    const persisted = user.persistedIndex?.() ?? 0;
    const snap = recovered.snapshot;
    const applied =
      snap === null || snap.index <= persisted
        ? new AppliedStateMachine<R>(user, persisted)
        : await restoreAtStart(new AppliedStateMachine<R>(user), storage, snap);
    log.info(
      { persistedIndex: persisted, snapshotIndex: snap?.index ?? 0, appliedIndex: applied.appliedIndex },
      snap !== null && snap.index > persisted
        ? "restored the state from the newest snapshot"
        : "opened the stored state: no snapshot restore",
    );
    const core = new Raft(coreConfig, {
      hardState: recovered.hardState,
      snapshot: recovered.snapshot,
      entries: recovered.entries,
      membership: bootMembership(config.peers, config.join),
    });
    const incarnation = recovered.incarnation ?? "";
    assert(incarnation !== "", () => "FileStorage.open reported no incarnation");
    const parts = { coreConfig, core, tls, storage, applied, nodeLog, clock, incarnation };
    return await assemble(options, parts, (m) => {
      metrics = m;
    });
  } catch (err) {
    log.error({ err }, "could not start the node");
    try {
      await options.stateMachine.close?.();
    } catch (closeErr) {
      log.error({ err: closeErr }, "closing the state machine failed");
    }
    await storage.close().catch(() => undefined);
    nodeLog.flush();
    throw err;
  }
}

/** The core's limit on one entry: the command limit asked for, or the KV store's need. */
function withCommandLimit(
  core: CoreConfig,
  config: NodeConfig,
  maxCommandBytes: number | undefined,
): CoreConfig {
  if (maxCommandBytes === undefined) return core;
  if (!Number.isSafeInteger(maxCommandBytes) || maxCommandBytes < 1 || maxCommandBytes > 64 * 1024 * 1024)
    throw new RaftKvError({
      code: "CONFIG",
      message: `invalid setting maxCommandBytes: must be an integer in 1..67108864, got ${maxCommandBytes}`,
      nodeId: config.id,
      hint: "fix maxCommandBytes in the options of startRaftNode",
    });
  return { ...core, maxEntryBytes: maxCommandBytes };
}

/** Payload bytes the peer transport must carry in one message for these limits. */
function peerPayloadBytes(config: NodeConfig, core: CoreConfig): number {
  return Math.max(config.maxBytesPerMessage, core.maxEntryBytes, config.snapshotChunkBytes);
}

/** Restores the newest snapshot into the state machine, read in chunks: never in memory whole. */
async function restoreAtStart<R>(
  empty: AppliedStateMachine<R>,
  storage: FileStorage,
  meta: SnapshotMeta,
): Promise<AppliedStateMachine<R>> {
  const restoring = empty.restore(meta);
  let next: ReturnType<typeof restoring.finish>;
  try {
    for (let at = 0; at < meta.sizeBytes; ) {
      const chunk = await storage.readSnapshotChunk(meta, at, RESTORE_CHUNK_BYTES);
      if (chunk.length === 0) break; // the state machine's finish() reports the shortfall
      restoring.push(chunk);
      at += chunk.length;
    }
    next = restoring.finish();
  } catch (err) {
    restoring.abort();
    throw err;
  }
  restoring.commit();
  return next as AppliedStateMachine<R>;
}

interface Parts<R> {
  readonly coreConfig: CoreConfig;
  readonly core: Raft;
  readonly tls: ServerTls | null;
  readonly storage: FileStorage;
  readonly applied: AppliedStateMachine<R>;
  readonly nodeLog: NodeLog;
  readonly clock: MonotonicTime;
  /** The data folder's incarnation. */
  readonly incarnation: string;
}

async function assemble<S extends StateMachine<unknown>, R>(
  options: Options<S, R>,
  p: Parts<R>,
  setMetrics: (m: NodeMetrics) => void,
): Promise<RaftNode<S, R>> {
  const { config } = options;
  const { core, tls, clock, storage } = p;
  const log = p.nodeLog.logger;
  const version = packageVersion();
  let metrics: NodeMetrics | null = null;
  const refusedFolder = new RefusedFolder(config.id, p.incarnation, log);
  const transport = new GrpcPeerTransport({
    nodeId: config.id,
    clusterId: config.clusterId,
    peers: config.peers,
    maxQueuedMessagesPerPeer: config.maxQueuedMessagesPerPeer,
    maxBytesPerMessage: peerPayloadBytes(config, p.coreConfig),
    maxEntriesPerMessage: config.maxEntriesPerMessage,
    logger: log.child({ component: "transport" }),
    seed: p.coreConfig.seed,
    onRefusal: (r) => {
      metrics?.peerRefusals.inc({ reason: r.reason });
      refusedFolder.refusedInbound(r);
    },
    incarnation: p.incarnation,
    onRefusedByPeer: (peer, _code, details) => refusedFolder.refusedByPeer(peer, details),
    // An exception out of the replica is our own invariant failing: stop the node, never swallow it.
    onHandlerError: (err) => fatal(err),
    onServerCall: (peerAddress) => gate.noteCall(peerAddress),
    ...(tls === null
      ? {}
      : {
          credentials: { channel: tls.peerChannel },
          authenticatePeer: (call) =>
            peerIdentity(call.getAuthContext().sslPeerCertificate, config.clusterId),
        }),
  });

  // The members' addresses as the configuration in effect names them; shared, changed in place.
  const livePeers = new Map(config.peers);
  const bootMs = clock.nowMs();
  let fatal: (err: unknown) => void = () => {};
  const timedStorage = new TimedStorage(storage, clock, () => metrics);
  /** Started once the listener is up. */
  let ticker: Ticker | null = null;
  const replica = new Replica<R>({
    core,
    storage: timedStorage,
    sender: transport,
    stateMachine: p.applied,
    // Every AppliedStateMachine wraps the same user state machine: any of them can start a restore.
    restore: (_sizeBytes, meta) => p.applied.restore(meta),
    clock,
    bootMs,
    tickMs: config.tickMs,
    snapshotEveryEntries: config.snapshotEveryEntries,
    keepEntriesAfterSnapshot: config.keepEntriesAfterSnapshot,
    snapshotEveryBytes: config.snapshotEveryBytes,
    keepBytesAfterSnapshot: config.keepBytesAfterSnapshot,
    onFatal: (err) => fatal(err),
    onTimeoutSooner: () => ticker?.rearm(),
    onRefused: (r) => {
      metrics?.peerRefusals.inc({ reason: r.reason });
      log.warn(
        {
          peer: r.from,
          claimedSenderAddress: livePeers.get(r.from) ?? "unknown",
          peerAddress: transport.lastAddressOf(r.from) ?? "unknown",
          messageType: r.type,
          messageTerm: r.term,
          term: core.softState().term,
          reason: r.reason,
        },
        `refused a peer message: ${r.detail}`,
      );
      transport.answerRefused(r); // a unary call waiting for the reply gets the refusal at once
    },
  });
  const follower = new MembershipFollower({
    id: config.id,
    core,
    flagPeers: config.peers,
    livePeers,
    setTransportPeers: (peers) => transport.setPeers(peers),
    incarnation: p.incarnation,
    setTransportBindings: (bindings) => transport.setBindings(bindings),
    seenIncarnations: () => transport.seenIncarnations(),
    coreCall: (fn) => replica.coreCall(fn),
    log: log.child({ component: "membership" }),
    nowMs: () => clock.nowMs(),
  });
  const sources: ViewSources = {
    clusterId: config.clusterId,
    peers: livePeers,
    core,
    replica,
    nowMs: () => clock.nowMs(),
    links: () => transport.peerStatus(),
    version,
    startedMs: bootMs,
    dataDir: resolve(config.dataDir),
  };
  const view = (): NodeView => viewNode(sources);
  metrics = new NodeMetrics(
    view,
    () => {
      const s = transport.stats();
      const dropped = Object.values(s.dropped).reduce((a, b) => a + b, 0);
      return { sent: s.sentMessages, received: s.receivedMessages, dropped };
    },
    { version },
  );
  setMetrics(metrics);
  const listeners = new Map<RaftNodeEventType, Set<(e: RaftNodeEvent) => void>>();
  const emit = (e: RaftNodeEvent): void => {
    for (const l of listeners.get(e.type) ?? []) {
      try {
        l(e);
      } catch (err) {
        log.warn({ err, event: e.type }, "an event listener threw; the node carries on");
      }
    }
  };
  const observer = new NodeObserver(sources, log, metrics, emit);
  // The ticker sleeps through quiet ticks (ticker.ts): every input first gets the ticks already due.
  // Only a change of role, term or configuration can bring the next timeout closer (a new leader's
  // heartbeats, a follower's election timer drawn again, another quorum), so only then is it re-armed.
  const input = <T>(fn: () => T): T => {
    ticker?.sync();
    const before = core.softState();
    const config0 = core.configuration().index;
    const out = fn();
    observer.check(false);
    follower.check();
    const after = core.softState();
    if (after.role !== before.role || after.term !== before.term || core.configuration().index !== config0)
      ticker?.rearm();
    return out;
  };
  transport.onMessage((m) => input(() => replica.receive(m)));

  let listenAddress = config.listen;
  let metricsPort: number | null = null;
  let stopping: Promise<void> | null = null;
  let resolveDone: (code: number) => void = () => {};
  const done = new Promise<number>((r) => (resolveDone = r));
  const stateMachine = options.stateMachine;

  const node: RaftNode<S, R> = {
    id: config.id,
    get listenAddress() {
      return listenAddress;
    },
    get metricsPort() {
      return metricsPort;
    },
    logFile: p.nodeLog.file,
    logger: log,
    peers: livePeers,
    registry: metrics.registry,
    stateMachine,
    get appliedIndex() {
      return replica.stateMachine.appliedIndex;
    },
    propose: (command) => input(() => replica.propose(command)),
    read: async (fn, o = {}) => {
      let consistency: Consistency = o.consistency ?? "lease";
      for (;;) {
        const c = consistency;
        const ticket = await input(() => replica.readBarrier(c));
        const value = fn(stateMachine);
        if (replica.stillValid(ticket)) return value;
        consistency = "readIndex"; // the lease ran out meanwhile (the event loop stalled)
      }
    },
    status: view,
    softState: () => core.softState(),
    on: (type, listener) => {
      let set = listeners.get(type);
      if (set === undefined) listeners.set(type, (set = new Set()));
      const l = listener as (e: RaftNodeEvent) => void;
      set.add(l);
      return () => set.delete(l);
    },
    transferLeadership: (to) => input(() => replica.transferLeadership(to)),
    configuration: () => follower.configuration(),
    changeMembership: async (changes, timeoutMs) => {
      try {
        return await follower.change(
          changes,
          timeoutMs ?? Math.max(config.requestTimeoutMs, 4 * config.electionTimeoutMaxMs),
        );
      } catch (err) {
        if (
          err instanceof ChangeRefusedError &&
          (err.reason === "notLeader" || err.reason === "transferring")
        )
          throw new NotLeaderError(config.id, err.leaderId);
        throw err;
      }
    },
    newMemberId: () => follower.newMemberId(),
    handOverLeadership: async (timeoutMs, target) => {
      const to = core.softState().role !== "leader" ? null : (target ?? follower.bestTransferee());
      if (to === null || !node.transferLeadership(to)) return null;
      return awaitOtherLeader(core, config.id, () => clock.nowMs(), clock.nowMs() + timeoutMs);
    },
    stop: (reason) => stop(reason),
    done,
  };

  const gate = new ConnectionGate({
    nodeId: config.id,
    listen: config.listen,
    tls,
    maxConnections: config.maxConnections,
    tlsHandshakeTimeoutMs: config.tlsHandshakeTimeoutMs,
    log: log.child({ component: "listener" }),
    onRefusal: (reason) => metrics?.connectionRefusals.inc({ reason }),
  });
  const server = new grpc.Server({ ...serverOptions(config, p.coreConfig), interceptors: gate.interceptors });
  addPeerService(server, transport);
  addClusterService(server, {
    nodeId: config.id,
    core,
    follower,
    livePeers,
    refused: () => refusedFolder.text(),
    transferLeadership: (to) => node.transferLeadership(to),
    changeTimeoutMs: Math.max(config.requestTimeoutMs, 4 * config.electionTimeoutMaxMs),
    transferTimeoutMs: 4 * config.electionTimeoutMaxMs,
    onCall: (peerAddress) => gate.noteCall(peerAddress),
    backup: {
      clusterId: config.clusterId,
      take: async () => {
        // The image's view is taken in the read's own turn, after a ReadIndex round confirmed leadership.
        const image = await node.read(() => replica.stateMachine.snapshotStream(), {
          consistency: "readIndex",
        });
        return {
          index: image.appliedIndex,
          term: core.log.term(image.appliedIndex) ?? 0,
          sizeBytes: image.sizeBytes,
          next: () => image.next(),
          close: () => image.close(),
        };
      },
    },
  });
  options.services?.(server, node, { noteCall: (peerAddress) => gate.noteCall(peerAddress) });
  const listener = await gate.open(server).catch(async (err: unknown) => {
    await transport.close();
    server.forceShutdown();
    throw err;
  });
  listenAddress = `${config.listen.slice(0, config.listen.lastIndexOf(":"))}:${listener.port}`;

  const health: HealthSources = {
    view,
    readBarrier: async () => (await input(() => replica.readBarrier("lease"))).consistency,
    storageFailure: () => replica.failure,
    writeWaitingMs: () => timedStorage.waitingMs(),
    dataDir: sources.dataDir,
    stopping: () => stopping !== null,
    recoveredCommitIndex: core.log.committed,
  };
  let operator: Awaited<ReturnType<typeof startOperatorServer>> | null = null;
  if (config.metricsPort !== null) {
    try {
      operator = await startOperatorServer(
        metrics.registry,
        health,
        config.metricsHost,
        config.metricsPort,
        options.operatorRoutes?.(node) ?? [],
        tls,
      );
      metricsPort = operator.port;
    } catch (err) {
      await transport.close();
      await listener.close();
      server.forceShutdown();
      throw new RaftKvError({
        code: "CONFIG",
        message: `cannot serve metrics on ${config.metricsHost}:${config.metricsPort}: ${(err as Error).message}`,
        nodeId: config.id,
        hint: "pick a free --metrics-port, or leave it out to disable metrics",
        cause: err,
      });
    }
  }

  const stallWarnMs = config.electionTimeoutMinMs / 2;
  ticker = new Ticker({
    clock,
    bootMs,
    tickMs: config.tickMs,
    ticksToNextTimeout: () => replica.ticksToNextTimeout(),
    onTick: (held) => {
      replica.tick(held);
      observer.check();
      follower.check();
    },
    onRelease: () => {
      replica.releaseTimeouts();
      observer.check();
      follower.check();
    },
    onCatchUp: (missed, lateMs) => {
      metrics?.lateTickWakeups.inc();
      const fields = { missedTicks: missed, lateMs: Math.round(lateMs), term: core.softState().term };
      if (lateMs >= stallWarnMs) log.warn(fields, "event loop stalled; delivering missed ticks at once");
      else log.debug(fields, "caught up missed ticks");
    },
  });
  ticker.start();

  const stop = (reason = "stop requested", exitCode = 0): Promise<void> => {
    if (stopping !== null) return stopping;
    stopping = (async () => {
      const at = { term: core.softState().term, commit: core.log.committed, reason };
      log.info(at, "shutting down");
      try {
        await options.beforeStop?.(reason);
      } catch (err) {
        log.error({ err }, "beforeStop failed; stopping anyway");
      }
      ticker?.stop();
      follower.close();
      replica.stop(`node ${config.id} is shutting down (${reason})`);
      await replica.idle();
      await transport.close();
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 1000);
        server.tryShutdown(() => {
          clearTimeout(t);
          resolve();
        });
      });
      await listener.close();
      if (operator !== null) {
        const http = operator.server;
        http.closeAllConnections();
        await new Promise<void>((resolve) => http.close(() => resolve()));
      }
      await storage.close().catch((err: unknown) => log.error({ err }, "closing storage failed"));
      try {
        await stateMachine.close?.();
      } catch (err) {
        log.error({ err }, "closing the state machine failed");
      }
      log.info({ ...at, applied: replica.stateMachine.appliedIndex }, "stopped");
      p.nodeLog.flush();
      emit({ type: "stopped", exitCode, reason });
      resolveDone(exitCode);
    })();
    return stopping;
  };
  fatal = (err) => {
    const invariant = err instanceof AssertionError;
    log.fatal(
      { err, term: core.softState().term },
      invariant
        ? "a Raft invariant failed (a bug): this node stops and shuts down; keep its data folder and log for the report"
        : "storage failed: this node stops acknowledging and shuts down",
    );
    // Exit within a bound even if some part of the shutdown hangs (a dying disk), so that a
    // supervisor can restart the node: `done` resolves and `raftkv serve` exits with 1.
    const boundMs = config.shutdownGraceMs + FATAL_EXIT_EXTRA_MS;
    const bound = setTimeout(() => {
      log.error({ boundMs }, "shutdown after the failure did not finish in time; exiting anyway");
      p.nodeLog.flush();
      resolveDone(1);
    }, boundMs);
    void stop(invariant ? "invariant failure" : "storage failure", 1).finally(() => clearTimeout(bound));
  };

  const soft = core.softState();
  log.info(
    {
      listen: listenAddress,
      peers: Object.fromEntries(config.peers),
      clusterId: config.clusterId,
      term: soft.term,
      commit: core.log.committed,
      lastIndex: core.log.lastIndex(),
      snapshotIndex: core.snapshotMeta()?.index ?? 0,
      metricsPort,
      tickMs: config.tickMs,
      heartbeatMs: config.heartbeatMs,
      electionTimeoutMs: [config.electionTimeoutMinMs, config.electionTimeoutMaxMs],
      leaseMs: effectiveLeaseMs(config),
      driftBound: config.driftBound,
      tls:
        tls === null ? "off" : { certificate: tls.subject, validTo: tls.validTo, clientAuth: tls.clientAuth },
      maxConnections: config.maxConnections,
      version,
    },
    `node ${config.id} started`,
  );
  if (tls === null && config.insecureListen)
    log.warn(
      { listen: listenAddress, tls: "off", insecureListen: true },
      `TLS is off and insecureListen is set: traffic on ${listenAddress} is unauthenticated; anyone who reaches the port can read and write keys and disrupt the cluster (force elections, forge log entries). Use TLS (README, TLS) off loopback`,
    );
  return node;
}

/** gRPC options fitting both peer traffic and client requests (the larger limit wins). */
function serverOptions(config: NodeConfig, core: CoreConfig): grpc.ChannelOptions {
  const peer = peerGrpcOptions(peerPayloadBytes(config, core), config.maxEntriesPerMessage);
  const peerLimit = Number(peer["grpc.max_receive_message_length"]);
  return {
    ...peer,
    "grpc.max_receive_message_length": Math.max(peerLimit, clientReceiveLimitBytes(config.maxRequestBytes)),
    "grpc.max_send_message_length": Math.max(peerLimit, config.maxRangeBytes + 64 * 1024),
  };
}

/** The default command limit: what the KV store's largest compare-and-swap needs. */
export function defaultMaxCommandBytes(config: NodeConfig): number {
  return maxEntryBytes(config);
}
