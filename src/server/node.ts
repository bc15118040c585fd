// The composition root of a real node: FileStorage, KV state machine, Raft core, Replica, gRPC peer and
// client services on one port, the ticker, logs, metrics, and an orderly stop.

import { randomInt } from "node:crypto";
import { readFileSync } from "node:fs";
import type { Server as HttpServer } from "node:http";
import * as grpc from "@grpc/grpc-js";
import { MonotonicClock, type MonotonicTime } from "../clock/monotonic-clock.ts";
import { Ticker } from "../clock/ticker.ts";
import { Raft } from "../core/raft.ts";
import type { NodeId, SnapshotMeta } from "../core/types.ts";
import type { KvResult } from "../kv/result.ts";
import { KvStateMachine, type KvStateMachineOptions } from "../kv/state-machine.ts";
import { AssertionError } from "../lib/assert.ts";
import { RaftKvError } from "../lib/errors.ts";
import { KvService } from "../replica/kv-service.ts";
import { Replica } from "../replica/replica.ts";
import type { ReplicaStorage } from "../replica/seams.ts";
import { layoutOf } from "../storage/data-dir.ts";
import { FileStorage } from "../storage/file-storage.ts";
import { FileValueStore } from "../storage/value-file.ts";
import { addPeerService, GrpcPeerTransport, peerGrpcOptions } from "../transport/grpc-transport.ts";
import { addClientService, clientReceiveLimitBytes } from "./client-edge.ts";
import { ClientApi } from "./client-service.ts";
import { effectiveLeaseMs, peerMessageBytes, type ServerConfig, toCoreConfig } from "./config.ts";
import { ConnectionGate } from "./listener.ts";
import { createNodeLog, type Logger } from "./logging.ts";
import { NodeMetrics, startMetricsServer } from "./metrics.ts";
import { type NodeView, type ViewSources, viewNode } from "./node-view.ts";
import { NodeObserver } from "./observer.ts";
import { clockFor, fileSystemFor } from "./test-switches.ts";
import { loadServerTls, peerIdentity } from "./tls.ts";

/** Snapshot bytes read at a time when a node starts. */
const RESTORE_CHUNK_BYTES = 4 * 1024 * 1024;

export interface StartNodeOptions {
  /** Local monotonic clock (default performance.now()). */
  readonly clock?: MonotonicTime;
  /** Seed of the core's election jitter (default random). */
  readonly seed?: number;
  /** Log to stderr as well as to the data folder's raftkv.log (default true). */
  readonly logToStderr?: boolean;
}

export interface RaftKvNode {
  readonly id: NodeId;
  /** The address the gRPC server is bound to ("host:port"). */
  readonly listenAddress: string;
  /** Bound port of /metrics, or null when disabled. */
  readonly metricsPort: number | null;
  readonly logFile: string;
  readonly logger: Logger;
  view(): NodeView;
  /** Stop accepting, let in-flight requests finish (up to shutdownGraceMs), fail the rest, sync, close. */
  stop(reason?: string): Promise<void>;
  /** Resolves with the process exit code once the node has stopped (by stop() or a fatal error). */
  readonly done: Promise<number>;
}

/** Starts a node; throws a RaftKvError (CONFIG, STORAGE, CORRUPT, CLUSTER_MISMATCH) if it cannot. */
export async function startNode(config: ServerConfig, options: StartNodeOptions = {}): Promise<RaftKvNode> {
  const seed = options.seed ?? randomInt(0x7fffffff);
  const coreConfig = toCoreConfig(config, seed); // refuses bad settings before touching anything
  const nodeLog = createNodeLog({
    nodeId: config.id,
    dataDir: config.dataDir,
    level: config.logLevel,
    stderr: options.logToStderr ?? true,
  });
  const log = nodeLog.logger;
  const storage = new FileStorage({
    fs: fileSystemFor(process.env, config.dataDir, config.id, log), // test switches: test-switches.ts
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
  // The values live in a scratch file (value-file.ts), refilled from the snapshot and log at every start.
  const values = new FileValueStore(layoutOf(config.dataDir).valuesFile, {
    readCacheBytes: config.valueCacheBytes,
  });
  try {
    return await assemble(config, coreConfig, recovered, storage, values, nodeLog, options);
  } catch (err) {
    log.error({ err }, "could not start the node");
    values.close();
    await storage.close().catch(() => undefined);
    nodeLog.flush();
    throw err;
  }
}

async function assemble(
  config: ServerConfig,
  coreConfig: ReturnType<typeof toCoreConfig>,
  recovered: Awaited<ReturnType<FileStorage["open"]>>,
  storage: FileStorage,
  values: FileValueStore,
  nodeLog: ReturnType<typeof createNodeLog>,
  options: StartNodeOptions,
): Promise<RaftKvNode> {
  const log = nodeLog.logger;
  const advertised = config.peers.get(config.id) ?? config.listen;
  const tls = loadServerTls(config, config.id, config.clusterId, advertised, new Date());
  const clock = options.clock ?? clockFor(process.env, config.id, log) ?? new MonotonicClock();
  const smOptions = { maxSessions: config.maxClientSessions, values };
  let currentValues = values;
  const snap = recovered.snapshot;
  const sm = snap === null ? new KvStateMachine(smOptions) : await restoreFrom(storage, snap, smOptions);
  if (snap !== null && sm.appliedIndex !== snap.index)
    throw new RaftKvError({
      code: "CORRUPT",
      message: `snapshot file says index ${snap.index} but its image is at ${sm.appliedIndex}`,
      nodeId: config.id,
      hint: "move the newest file in snap/ aside; the node falls back to an older snapshot and the log",
    });
  const core = new Raft(coreConfig, {
    hardState: recovered.hardState,
    snapshot: recovered.snapshot,
    entries: recovered.entries,
  });

  let metrics: NodeMetrics | null = null;
  const transport = new GrpcPeerTransport({
    nodeId: config.id,
    clusterId: config.clusterId,
    peers: config.peers,
    maxQueuedMessagesPerPeer: config.maxQueuedMessagesPerPeer,
    maxBytesPerMessage: peerMessageBytes(config),
    maxEntriesPerMessage: config.maxEntriesPerMessage,
    logger: log.child({ component: "transport" }),
    seed: coreConfig.seed,
    onRefusal: (r) => metrics?.peerRefusals.inc({ reason: r.reason }),
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

  const bootMs = clock.nowMs();
  let fatal: (err: unknown) => void = () => {};
  const replica = new Replica<KvResult>({
    core,
    storage: timedStorage(storage, clock, () => metrics),
    sender: transport,
    stateMachine: sm,
    restore: (sizeBytes) => {
      // Into a store of its own: the state machine it replaces serves reads until it is done.
      const fresh = new FileValueStore(layoutOf(config.dataDir).valuesFile, {
        readCacheBytes: config.valueCacheBytes,
      });
      const restoring = KvStateMachine.restoring(sizeBytes, { ...smOptions, values: fresh });
      return {
        push: (chunk) => restoring.push(chunk),
        finish: () => restoring.finish(),
        commit: () => {
          currentValues.close();
          currentValues = fresh;
        },
        abort: () => fresh.close(),
      };
    },
    clock,
    bootMs,
    tickMs: config.tickMs,
    snapshotEveryEntries: config.snapshotEveryEntries,
    keepEntriesAfterSnapshot: config.keepEntriesAfterSnapshot,
    snapshotEveryBytes: config.snapshotEveryBytes,
    keepBytesAfterSnapshot: config.keepBytesAfterSnapshot,
    onFatal: (err) => fatal(err),
    onRefused: (r) => {
      metrics?.peerRefusals.inc({ reason: r.reason });
      log.warn(
        {
          peer: r.from,
          claimedSenderAddress: config.peers.get(r.from) ?? "unknown",
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
  const sources: ViewSources = {
    clusterId: config.clusterId,
    peers: config.peers,
    core,
    replica,
    nowMs: () => clock.nowMs(),
    links: () => transport.peerStatus(),
  };
  const view = (): NodeView => viewNode(sources);
  metrics = new NodeMetrics(view, () => {
    const s = transport.stats();
    const dropped = Object.values(s.dropped).reduce((a, b) => a + b, 0);
    return { sent: s.sentMessages, received: s.receivedMessages, dropped };
  });
  const observer = new NodeObserver(sources, log, metrics);
  transport.onMessage((m) => {
    replica.receive(m);
    observer.check();
  });
  const api = new ClientApi({
    nodeId: config.id,
    clusterId: config.clusterId,
    version: packageVersion(),
    kv: new KvService(replica, { maxKeyBytes: config.maxKeyBytes, maxValueBytes: config.maxValueBytes }),
    core,
    peers: config.peers,
    settings: config,
    view,
    appliedIndex: () => replica.stateMachine.appliedIndex,
    nowMs: () => clock.nowMs(),
    log: log.child({ component: "client" }),
    metrics,
    afterInput: () => observer.check(),
  });

  const gate = new ConnectionGate({
    nodeId: config.id,
    listen: config.listen,
    tls,
    maxConnections: config.maxConnections,
    tlsHandshakeTimeoutMs: config.tlsHandshakeTimeoutMs,
    log: log.child({ component: "listener" }),
    onRefusal: (reason) => metrics?.connectionRefusals.inc({ reason }),
  });
  const server = new grpc.Server({ ...serverOptions(config), interceptors: gate.interceptors });
  addPeerService(server, transport);
  addClientService(server, api.handlers(), {
    nodeId: config.id,
    maxRequestBytes: config.maxRequestBytes,
    softState: () => core.softState(),
    metrics,
    onCall: (peerAddress) => gate.noteCall(peerAddress),
  });
  const listener = await gate.open(server).catch(async (err: unknown) => {
    await transport.close();
    server.forceShutdown();
    throw err;
  });
  const listenAddress = `${config.listen.slice(0, config.listen.lastIndexOf(":"))}:${listener.port}`;

  let metricsServer: HttpServer | null = null;
  let metricsPort: number | null = null;
  if (config.metricsPort !== null) {
    try {
      const m = await startMetricsServer(metrics, config.metricsHost, config.metricsPort);
      metricsServer = m.server;
      metricsPort = m.port;
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
  const ticker = new Ticker({
    clock,
    bootMs,
    tickMs: config.tickMs,
    onTick: () => {
      replica.tick();
      observer.check();
    },
    onCatchUp: (missed, lateMs) => {
      metrics?.lateTickWakeups.inc();
      const fields = { missedTicks: missed, lateMs: Math.round(lateMs), term: core.softState().term };
      if (lateMs >= stallWarnMs) log.warn(fields, "event loop stalled; delivering missed ticks at once");
      else log.debug(fields, "caught up missed ticks");
    },
  });
  ticker.start();

  let resolveDone: (code: number) => void = () => {};
  const done = new Promise<number>((r) => (resolveDone = r));
  let stopping: Promise<void> | null = null;
  const stop = (reason = "stop requested", exitCode = 0): Promise<void> => {
    if (stopping !== null) return stopping;
    stopping = (async () => {
      const at = { term: core.softState().term, commit: core.log.committed, reason };
      log.info(at, "shutting down: refusing new requests, finishing in-flight ones");
      await api.drain(config.shutdownGraceMs);
      if (api.inflightRequests > 0)
        log.warn(
          { ...at, inflight: api.inflightRequests },
          "in-flight requests did not finish in time; failing them",
        );
      ticker.stop();
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
      if (metricsServer !== null) {
        metricsServer.closeAllConnections();
        await new Promise<void>((resolve) => metricsServer?.close(() => resolve()));
      }
      await storage.close().catch((err: unknown) => log.error({ err }, "closing storage failed"));
      try {
        currentValues.close();
      } catch (err) {
        log.error({ err }, "closing the value file failed");
      }
      log.info({ ...at, applied: replica.stateMachine.appliedIndex }, "stopped");
      nodeLog.flush();
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
      nodeLog.flush();
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
      snapshotIndex: snap?.index ?? 0,
      metricsPort,
      tickMs: config.tickMs,
      heartbeatMs: config.heartbeatMs,
      electionTimeoutMs: [config.electionTimeoutMinMs, config.electionTimeoutMaxMs],
      leaseMs: effectiveLeaseMs(config),
      driftBound: config.driftBound,
      tls:
        tls === null ? "off" : { certificate: tls.subject, validTo: tls.validTo, clientAuth: tls.clientAuth },
      maxConnections: config.maxConnections,
    },
    `node ${config.id} started`,
  );
  if (tls === null && config.insecureListen)
    log.warn(
      { listen: listenAddress, tls: "off", insecureListen: true },
      `TLS is off and insecureListen is set: traffic on ${listenAddress} is unauthenticated; anyone who reaches the port can read and write keys and disrupt the cluster (force elections, forge log entries). Use TLS (README, TLS) off loopback`,
    );

  return {
    id: config.id,
    listenAddress,
    metricsPort,
    logFile: nodeLog.file,
    logger: log,
    view,
    stop: (reason) => stop(reason),
    done,
  };
}

/** After a fatal error, how much longer than shutdownGraceMs the shutdown may take before the node
 *  reports itself stopped regardless. */
const FATAL_EXIT_EXTRA_MS = 5000;

/** The state machine from the newest snapshot, read in chunks: the image is never in memory whole. */
export async function restoreFrom(
  storage: FileStorage,
  meta: SnapshotMeta,
  options: KvStateMachineOptions,
): Promise<KvStateMachine> {
  const restoring = KvStateMachine.restoring(meta.sizeBytes, options);
  for (let at = 0; at < meta.sizeBytes; ) {
    const chunk = await storage.readSnapshotChunk(meta, at, RESTORE_CHUNK_BYTES);
    if (chunk.length === 0) break; // restoring.finish() reports the shortfall
    restoring.push(chunk);
    at += chunk.length;
  }
  return restoring.finish();
}

/** gRPC options fitting both peer traffic and client requests (the larger limit wins). */
function serverOptions(config: ServerConfig): grpc.ChannelOptions {
  const peer = peerGrpcOptions(peerMessageBytes(config), config.maxEntriesPerMessage);
  const peerLimit = Number(peer["grpc.max_receive_message_length"]);
  return {
    ...peer,
    "grpc.max_receive_message_length": Math.max(peerLimit, clientReceiveLimitBytes(config.maxRequestBytes)),
    "grpc.max_send_message_length": Math.max(peerLimit, config.maxRangeBytes + 64 * 1024),
  };
}

/** Storage with the time of each save observed (sync=true includes the fsync). */
function timedStorage(
  s: FileStorage,
  clock: MonotonicTime,
  metrics: () => NodeMetrics | null,
): ReplicaStorage {
  return {
    save: async (hardState, entries, sync) => {
      const started = clock.nowMs();
      try {
        await s.save(hardState, entries, sync);
      } finally {
        metrics()?.storageSaveDuration.observe({ sync: String(sync) }, (clock.nowMs() - started) / 1000);
      }
    },
    saveSnapshotStream: (meta, nextChunk) => s.saveSnapshotStream(meta, nextChunk),
    writeSnapshotChunk: (meta, offset, data) => s.writeSnapshotChunk(meta, offset, data),
    readIncomingSnapshotChunk: (meta, offset, length) => s.readIncomingSnapshotChunk(meta, offset, length),
    installIncomingSnapshot: (meta) => s.installIncomingSnapshot(meta),
    readSnapshotChunk: (meta, offset, length) => s.readSnapshotChunk(meta, offset, length),
  };
}

/** The version in raftkv's package.json: two folders up from src/server, three from the compiled
 *  dist/src/server. A missing one only loses the version in Status. */
function packageVersion(): string {
  for (const up of ["../../package.json", "../../../package.json"]) {
    try {
      const pkg: unknown = JSON.parse(readFileSync(new URL(up, import.meta.url), "utf8"));
      if (typeof pkg === "object" && pkg !== null && "name" in pkg && pkg.name === "raftkv")
        return "version" in pkg && typeof pkg.version === "string" ? pkg.version : "unknown";
    } catch {
      // Not there: try the next folder up.
    }
  }
  return "unknown";
}
