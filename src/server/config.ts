// Server configuration in ms and bytes: defaults, parsing of untrusted input (file, flags), validation
// naming the setting, and conversion to the core's ticks.

import { isIPv4, isIPv6 } from "node:net";
import { type CoreConfig, maxSafeLeaseTicks, validateCoreConfig } from "../core/config.ts";
import type { NodeId } from "../core/types.ts";
import { RaftKvError } from "../lib/errors.ts";
import { MAX_STORE_KEY_BYTES } from "../store/store.ts";

/** The largest KV key the state store holds (whatever stateStore says, so that every node refuses the
 *  same keys): LMDB's key limit less the table byte (src/kv/store-state-machine.ts). */
export const MAX_STATE_KEY_BYTES = MAX_STORE_KEY_BYTES - 1;

/** Every tunable, with units in the names. One place for defaults (STYLE rule 10). */
export interface ServerSettings {
  /** Length of one core tick. */
  readonly tickMs: number;
  readonly heartbeatMs: number;
  readonly electionTimeoutMinMs: number;
  readonly electionTimeoutMaxMs: number;
  /** Bound on the ratio of clock rates across the cluster (thesis §6.4.1), in [1, 2]. */
  readonly driftBound: number;
  /** Leader lease; null means the largest safe lease for the election timeout and drift bound. */
  readonly leaseMs: number | null;
  readonly preVote: boolean;
  readonly checkQuorum: boolean;
  /** Take a snapshot after this many applied entries (0: never). */
  readonly snapshotEveryEntries: number;
  /** Entries kept behind a snapshot so slightly lagging followers need no snapshot (etcd keeps 5000:
   *  at a million keys a snapshot is ~270 MB to send, and a follower a few seconds behind under load
   *  is 1000 entries behind). */
  readonly keepEntriesAfterSnapshot: number;
  /** Also take a snapshot once the in-memory log holds this many bytes of command data (with 1 MiB
   *  values, 10,000 entries would be 10 GB of log in memory). */
  readonly snapshotEveryBytes: number;
  /** Behind a snapshot, keep at most this many bytes of entries (and at most keepEntriesAfterSnapshot). */
  readonly keepBytesAfterSnapshot: number;
  readonly snapshotChunkBytes: number;
  /** Values read by clients kept in memory (values live in a scratch file, src/storage/value-file.ts);
   *  0: every read is a pread. Unused since the state lives in the state store (stateStore). */
  readonly valueCacheBytes: number;
  /** Where the KV state lives (src/server/kv-state.ts): "lmdb", an LMDB store in the data folder's
   *  state/; "memory", in the process (tests; the state is rebuilt from snapshot and log at start). */
  readonly stateStore: StateStoreKind;
  /** Largest key in UTF-8 bytes; larger keys are refused with TOO_LARGE. */
  readonly maxKeyBytes: number;
  /** Largest value; larger values are refused with TOO_LARGE. */
  readonly maxValueBytes: number;
  /** Largest client request message: TOO_LARGE naming this setting beyond it (and gRPC's own
   *  RESOURCE_EXHAUSTED beyond clientReceiveLimitBytes, src/server/client-edge.ts). */
  readonly maxRequestBytes: number;
  /** Max entries in one AppendEntries. */
  readonly maxEntriesPerMessage: number;
  /** Max entry bytes in one AppendEntries (one larger entry still goes alone). */
  readonly maxBytesPerMessage: number;
  /** Max AppendEntries in flight to one follower. */
  readonly maxInflightMessages: number;
  /** Outbound peer messages queued per peer while it is down or slow; the oldest are dropped beyond it. */
  readonly maxQueuedMessagesPerPeer: number;
  /** Largest range answer, in items and in key+value bytes; the rest is signalled by `more`. */
  readonly maxRangeItems: number;
  readonly maxRangeBytes: number;
  /** Uncommitted proposals beyond which writes are refused with OVERLOADED (retryable). */
  readonly maxPendingProposals: number;
  /** Bytes of uncommitted proposals beyond which writes are refused with OVERLOADED (etcd's
   *  MaxUncommittedEntriesSize). */
  readonly maxUncommittedBytes: number;
  /** Bytes of entries in flight to one follower beyond which the leader waits for acknowledgements
   *  (etcd's MaxInflightBytes). */
  readonly maxInflightBytes: number;
  /** Pending ReadIndex reads beyond which reads are refused with OVERLOADED (retryable). */
  readonly maxPendingReads: number;
  /** Client sessions remembered for exactly-once writes; must be equal on every node. */
  readonly maxClientSessions: number;
  /** Concurrent client Session streams per node; more are refused with RESOURCE_EXHAUSTED. */
  readonly maxConcurrentStreams: number;
  /** Requests in flight on one Session stream; more are answered OVERLOADED. */
  readonly maxInflightPerStream: number;
  /** TCP connections (peers and clients) open at once; beyond it the oldest connection that never made
   *  a call is closed to make room, or the new one is refused when every connection is in use. */
  readonly maxConnections: number;
  /** A TLS handshake not finished within this is abandoned (a client that connects and never speaks). */
  readonly tlsHandshakeTimeoutMs: number;
  /** PEM files of the CA that signs every node and client certificate, this node's certificate and its
   *  key; all three or none (none: plaintext). See src/server/tls.ts. */
  readonly tlsCaFile: string | null;
  readonly tlsCertFile: string | null;
  readonly tlsKeyFile: string | null;
  /** With TLS: whether clients must present a certificate signed by the CA (peers always must). */
  readonly tlsClientAuth: TlsClientAuth;
  /** Without TLS a node listens on loopback addresses only, unless this is true: plaintext traffic is
   *  unauthenticated, and anyone who reaches the port can read and write keys and disrupt the cluster
   *  (force elections, forge log entries). Means nothing with TLS on (refused). */
  readonly insecureListen: boolean;
  /** Join an existing cluster (etcd's --initial-cluster-state existing): a node with an empty data
   *  folder waits to be added (`raftkv member add`) instead of bootstrapping a new cluster from peers,
   *  which then only name members to reach. Once the log holds a configuration, it is ignored. */
  readonly join: boolean;
  /** How long the server works on a request without a client deadline. */
  readonly requestTimeoutMs: number;
  /** On SIGTERM/SIGINT: how long in-flight requests may finish before they are failed. */
  readonly shutdownGraceMs: number;
  readonly logLevel: "trace" | "debug" | "info" | "warn" | "error" | "fatal";
}

/** "none": clients need no certificate; "optional": one is checked if presented; "required": refused
 *  without one. Peers always present and check node certificates when TLS is on. */
export type TlsClientAuth = "none" | "optional" | "required";
export const TLS_CLIENT_AUTH: readonly TlsClientAuth[] = ["none", "optional", "required"];

export type StateStoreKind = "lmdb" | "memory";
export const STATE_STORES: readonly StateStoreKind[] = ["lmdb", "memory"];

export const DEFAULT_SETTINGS: ServerSettings = {
  tickMs: 10,
  // 100 ms (etcd's default; 50 until issue 17): an idle node's CPU is mostly the wake-ups of heartbeats
  // and their acks. Lease safety does not depend on it (the lease is bound by electionTimeoutMinMs and
  // driftBound); a round must now be acknowledged within lease - heartbeat (~150 ms) to keep the lease
  // unbroken, and a follower still hears 3 heartbeats within the shortest election timeout.
  heartbeatMs: 100,
  // 1000-2000 ms, etcd's default (its election timeout, randomized up to twice that), derived from what a
  // node's event loop really suffers (issue 16): filling 100k keys at c=256 on 2 cores shared by three
  // nodes, the load generator and other work (load average 6-15), the event loop stalled up to 420 ms
  // (1-2 s before store images were written in one pass) and acknowledgements queued behind appends;
  // at 300-600 ms the leader changed 16-32 times per fill, at 1000-2000 ms never (term 1 -> 1, 0 failed
  // puts, two runs each; scripts/bench-scale.ts prints the stalls). The cost: a failover waits 1-2 s
  // and a new leader waits out its predecessor's lease (~0.9 s) before serving lease reads.
  electionTimeoutMinMs: 1000,
  electionTimeoutMaxMs: 2000,
  driftBound: 1.1,
  leaseMs: null,
  preVote: true,
  checkQuorum: true,
  snapshotEveryEntries: 10_000,
  keepEntriesAfterSnapshot: 5_000,
  snapshotEveryBytes: 64 * 1024 * 1024,
  keepBytesAfterSnapshot: 16 * 1024 * 1024,
  snapshotChunkBytes: 256 * 1024,
  valueCacheBytes: 8 * 1024 * 1024,
  stateStore: "lmdb",
  maxKeyBytes: MAX_STATE_KEY_BYTES,
  maxValueBytes: 1024 * 1024,
  maxRequestBytes: 4 * 1024 * 1024,
  maxEntriesPerMessage: 512,
  maxBytesPerMessage: 1024 * 1024,
  maxInflightMessages: 64,
  maxQueuedMessagesPerPeer: 4096,
  maxRangeItems: 1000,
  maxRangeBytes: 4 * 1024 * 1024,
  maxPendingProposals: 8192,
  maxUncommittedBytes: 64 * 1024 * 1024,
  maxInflightBytes: 16 * 1024 * 1024,
  maxPendingReads: 8192,
  maxClientSessions: 10_000,
  maxConcurrentStreams: 256,
  maxInflightPerStream: 1024,
  maxConnections: 1024,
  tlsHandshakeTimeoutMs: 10_000,
  tlsCaFile: null,
  tlsCertFile: null,
  tlsKeyFile: null,
  tlsClientAuth: "required",
  insecureListen: false,
  join: false,
  requestTimeoutMs: 5000,
  shutdownGraceMs: 3000,
  logLevel: "info",
};

/** Who this node is and where it lives, plus the tunables. */
export interface ServerConfig extends ServerSettings {
  readonly id: NodeId;
  /** Address to bind, "host:port" (peer and client services share it). */
  readonly listen: string;
  /** Every member's address by id, as the others reach it (this node's included). */
  readonly peers: ReadonlyMap<NodeId, string>;
  readonly dataDir: string;
  readonly clusterId: string;
  /** Port of the HTTP /metrics endpoint; null: no metrics server. */
  readonly metricsPort: number | null;
  /** Host the metrics endpoint binds (default: the listen host). */
  readonly metricsHost: string;
}

/** Bytes a command adds around its key and value(s) (format header, session, lengths). */
const COMMAND_OVERHEAD_BYTES = 1024;
const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal"] as const;
const MAX_CLUSTER_ID_BYTES = 256;

export function configError(setting: string, why: string, nodeId?: number): RaftKvError {
  return new RaftKvError({
    code: "CONFIG",
    message: `invalid setting ${setting}: ${why}`,
    ...(nodeId === undefined ? {} : { nodeId }),
    hint: `fix ${setting} in the flags or the config file and start again`,
  });
}

// ---------------------------------------------------------------- parsing untrusted input

type Kind =
  | "posInt"
  | "nonNegInt"
  | "number"
  | "bool"
  | "msOrNull"
  | "logLevel"
  | "fileOrNull"
  | "clientAuth"
  | "stateStore";

const SETTING_KINDS: Record<keyof ServerSettings, Kind> = {
  tickMs: "posInt",
  heartbeatMs: "posInt",
  electionTimeoutMinMs: "posInt",
  electionTimeoutMaxMs: "posInt",
  driftBound: "number",
  leaseMs: "msOrNull",
  preVote: "bool",
  checkQuorum: "bool",
  snapshotEveryEntries: "nonNegInt",
  keepEntriesAfterSnapshot: "nonNegInt",
  snapshotEveryBytes: "nonNegInt",
  keepBytesAfterSnapshot: "nonNegInt",
  snapshotChunkBytes: "posInt",
  valueCacheBytes: "nonNegInt",
  stateStore: "stateStore",
  maxKeyBytes: "posInt",
  maxValueBytes: "posInt",
  maxRequestBytes: "posInt",
  maxEntriesPerMessage: "posInt",
  maxBytesPerMessage: "posInt",
  maxInflightMessages: "posInt",
  maxQueuedMessagesPerPeer: "posInt",
  maxRangeItems: "posInt",
  maxRangeBytes: "posInt",
  maxPendingProposals: "posInt",
  maxUncommittedBytes: "posInt",
  maxInflightBytes: "posInt",
  maxPendingReads: "posInt",
  maxClientSessions: "posInt",
  maxConcurrentStreams: "posInt",
  maxInflightPerStream: "posInt",
  maxConnections: "posInt",
  tlsHandshakeTimeoutMs: "posInt",
  tlsCaFile: "fileOrNull",
  tlsCertFile: "fileOrNull",
  tlsKeyFile: "fileOrNull",
  tlsClientAuth: "clientAuth",
  insecureListen: "bool",
  join: "bool",
  requestTimeoutMs: "posInt",
  shutdownGraceMs: "nonNegInt",
  logLevel: "logLevel",
};

const IDENTITY_KEYS = [
  "id",
  "listen",
  "peers",
  "dataDir",
  "clusterId",
  "metricsPort",
  "metricsHost",
] as const;

/** Names a config file or flag may set. */
export const CONFIG_KEYS: readonly string[] = [...IDENTITY_KEYS, ...Object.keys(SETTING_KINDS)];

function parseSetting(name: string, kind: Kind, v: unknown): unknown {
  const asNumber = (): number => {
    const n = typeof v === "string" && v.trim() !== "" ? Number(v) : v;
    if (typeof n !== "number" || !Number.isFinite(n))
      throw configError(name, `expected a number, got ${show(v)}`);
    return n;
  };
  switch (kind) {
    case "posInt": {
      const n = asNumber();
      if (!Number.isSafeInteger(n) || n <= 0)
        throw configError(name, `must be a positive integer, got ${show(v)}`);
      return n;
    }
    case "nonNegInt": {
      const n = asNumber();
      if (!Number.isSafeInteger(n) || n < 0)
        throw configError(name, `must be a non-negative integer, got ${show(v)}`);
      return n;
    }
    case "number":
      return asNumber();
    case "msOrNull":
      if (v === null || v === "auto") return null;
      return parseSetting(name, "posInt", v);
    case "bool":
      if (v === true || v === "true") return true;
      if (v === false || v === "false") return false;
      throw configError(name, `expected true or false, got ${show(v)}`);
    case "logLevel":
      if (typeof v === "string" && (LOG_LEVELS as readonly string[]).includes(v)) return v;
      throw configError(name, `expected one of ${LOG_LEVELS.join(", ")}, got ${show(v)}`);
    case "fileOrNull":
      if (v === null) return null;
      if (typeof v === "string" && v.trim() !== "") return v;
      throw configError(name, `expected a file path, got ${show(v)}`);
    case "clientAuth":
      if (typeof v === "string" && (TLS_CLIENT_AUTH as readonly string[]).includes(v)) return v;
      throw configError(name, `expected one of ${TLS_CLIENT_AUTH.join(", ")}, got ${show(v)}`);
    case "stateStore":
      if (typeof v === "string" && (STATE_STORES as readonly string[]).includes(v)) return v;
      throw configError(name, `expected one of ${STATE_STORES.join(", ")}, got ${show(v)}`);
    default: {
      const never: never = kind;
      return never;
    }
  }
}

function show(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? `${s.slice(0, 60)}...` : s;
}

/** "host:port" with a port in 1..65535 (IPv6 hosts in brackets); returns [host, port]. */
export function parseAddress(setting: string, s: unknown): [string, number] {
  if (typeof s !== "string") throw configError(setting, `expected "host:port", got ${show(s)}`);
  const colon = s.lastIndexOf(":");
  const host = s.slice(0, colon);
  const portText = s.slice(colon + 1);
  const port = Number(portText);
  if (colon <= 0 || !/^\d+$/.test(portText) || port < 1 || port > 65535 || /\s/.test(host))
    throw configError(setting, `expected "host:port" with a port in 1..65535, got ${show(s)}`);
  return [host, port];
}

/** Peers as "0=host:port,1=host:port" or as an object {"0": "host:port"}. */
export function parsePeers(v: unknown): Map<NodeId, string> {
  let pairs: [string, unknown][];
  if (typeof v === "string") {
    pairs = v
      .split(",")
      .map((p) => p.trim())
      .filter((p) => p !== "")
      .map((p): [string, unknown] => {
        const eq = p.indexOf("=");
        if (eq <= 0) throw configError("peers", `expected "id=host:port", got ${show(p)}`);
        return [p.slice(0, eq), p.slice(eq + 1)];
      });
  } else if (typeof v === "object" && v !== null && !Array.isArray(v)) {
    pairs = Object.entries(v);
  } else {
    throw configError("peers", `expected "0=host:port,1=host:port,..." or an object, got ${show(v)}`);
  }
  const peers = new Map<NodeId, string>();
  for (const [idText, addr] of pairs) {
    const id = Number(idText);
    if (!/^\d+$/.test(idText.trim()) || !Number.isSafeInteger(id))
      throw configError("peers", `node id ${show(idText)} is not a non-negative integer`);
    if (peers.has(id)) throw configError("peers", `node id ${id} appears twice`);
    parseAddress(`peers (node ${id})`, addr);
    peers.set(id, addr as string);
  }
  if (peers.size === 0) throw configError("peers", "no members given");
  const addresses = new Set(peers.values());
  if (addresses.size !== peers.size) throw configError("peers", "two members share an address");
  return peers;
}

/**
 * Builds a ServerConfig from untrusted key/values (a parsed JSON file, then flags over it). Unknown keys
 * are refused (a typo must not silently fall back to a default). Throws a CONFIG RaftKvError naming the
 * setting.
 */
export function resolveServerConfig(input: Readonly<Record<string, unknown>>): ServerConfig {
  for (const key of Object.keys(input)) {
    if (!CONFIG_KEYS.includes(key))
      throw configError(key, `unknown setting; known settings are ${CONFIG_KEYS.join(", ")}`);
  }
  const settings: Record<string, unknown> = { ...DEFAULT_SETTINGS };
  for (const [name, kind] of Object.entries(SETTING_KINDS)) {
    const v = input[name];
    if (v !== undefined) settings[name] = parseSetting(name, kind, v);
  }
  const idRaw = input["id"];
  if (idRaw === undefined) throw configError("id", "missing: give this node's id (--id)");
  const id = parseSetting("id", "nonNegInt", idRaw) as number;
  if (input["peers"] === undefined) throw configError("peers", "missing: list every member (--peers)");
  const peers = parsePeers(input["peers"]);
  const own = peers.get(id);
  if (own === undefined)
    throw configError("peers", `must include this node's id ${id} (members: ${[...peers.keys()].join(",")})`);
  const listen = input["listen"] === undefined ? own : input["listen"];
  const [listenHost] = parseAddress("listen", listen);
  const dataDir = input["dataDir"];
  if (typeof dataDir !== "string" || dataDir.trim() === "")
    throw configError("dataDir", "missing: give the node's data folder (--data-dir)");
  const clusterId = input["clusterId"] ?? "raftkv";
  const clusterIdBytes = typeof clusterId === "string" ? Buffer.byteLength(clusterId) : 0;
  if (typeof clusterId !== "string" || clusterIdBytes === 0 || clusterIdBytes > MAX_CLUSTER_ID_BYTES)
    throw configError("clusterId", `must be 1..${MAX_CLUSTER_ID_BYTES} bytes, got ${show(clusterId)}`);
  let metricsPort: number | null = null;
  const mp = input["metricsPort"];
  if (mp !== undefined && mp !== null) {
    metricsPort = parseSetting("metricsPort", "nonNegInt", mp) as number;
    if (metricsPort > 65535) throw configError("metricsPort", `must be a port number, got ${metricsPort}`);
  }
  const metricsHost = input["metricsHost"] ?? listenHost;
  if (typeof metricsHost !== "string" || metricsHost === "")
    throw configError("metricsHost", `expected a host name or address, got ${show(metricsHost)}`);
  const config = {
    ...(settings as unknown as ServerSettings),
    id,
    listen: listen as string,
    peers,
    dataDir,
    clusterId,
    metricsPort,
    metricsHost,
  };
  checkTlsSettings(config, input["tlsClientAuth"] !== undefined);
  checkPlaintextListen(config, listenHost);
  toCoreConfig(config, 1); // validate everything now, at start
  return config;
}

/** TLS is all three files or none; tlsClientAuth means nothing without them. (The files themselves are
 *  read and checked by loadServerTls when the node starts.) */
function checkTlsSettings(c: ServerSettings, clientAuthGiven: boolean): void {
  const files = { tlsCaFile: c.tlsCaFile, tlsCertFile: c.tlsCertFile, tlsKeyFile: c.tlsKeyFile };
  const given = Object.entries(files).filter(([, v]) => v !== null);
  if (given.length > 0 && given.length < 3) {
    const missing = Object.keys(files).filter((k) => files[k as keyof typeof files] === null);
    throw configError(
      missing[0] ?? "tlsCaFile",
      `TLS needs tlsCaFile, tlsCertFile and tlsKeyFile together; ${missing.join(" and ")} missing (--tls-ca, --tls-cert, --tls-key)`,
    );
  }
  if (given.length === 0 && clientAuthGiven)
    throw configError(
      "tlsClientAuth",
      "client authentication needs TLS: give tlsCaFile, tlsCertFile and tlsKeyFile as well",
    );
}

/** True for a host that only this machine reaches: localhost, 127.0.0.0/8, ::1 (and ::ffff:127.x.y.z). */
export function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  if (bare === "localhost") return true;
  if (isIPv4(bare)) return bare.startsWith("127.");
  if (!isIPv6(bare)) return false;
  const canonical = new URL(`http://[${bare}]/`).hostname; // "[::1]", "[::ffff:7f00:1]"
  return canonical === "[::1]" || /^\[::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}\]$/.test(canonical);
}

/** Plaintext is a choice: without TLS a node binds loopback only, unless insecureListen says otherwise. */
function checkPlaintextListen(c: ServerConfig, listenHost: string): void {
  const tls = c.tlsCaFile !== null;
  if (tls && c.insecureListen)
    throw configError(
      "insecureListen",
      "TLS is on (tlsCaFile, tlsCertFile, tlsKeyFile), so there is no plaintext to allow; drop --insecure-listen",
    );
  if (tls || c.insecureListen || isLoopbackHost(listenHost)) return;
  throw configError(
    "listen",
    `${c.listen} is not a loopback address and TLS is off: without TLS a node listens on loopback only. ` +
      "Give --tls-ca, --tls-cert and --tls-key (README, TLS), or --insecure-listen (insecureListen) to serve " +
      "unauthenticated plaintext there, where anyone who reaches the port can read and write keys and disrupt the cluster",
  );
}

// ---------------------------------------------------------------- ms to ticks, and validation

/** The largest lease that is safe for these settings, in ms. */
export function maxSafeLeaseMs(s: ServerSettings): number {
  const minTicks = Math.floor(s.electionTimeoutMinMs / s.tickMs);
  return Math.max(0, maxSafeLeaseTicks(minTicks, s.driftBound)) * s.tickMs;
}

/** The lease actually used, in ms. */
export function effectiveLeaseMs(s: ServerSettings): number {
  return s.leaseMs ?? maxSafeLeaseMs(s);
}

/** Largest encoded command: what the core must accept as one entry. */
export function maxEntryBytes(s: ServerSettings): number {
  return s.maxKeyBytes + 2 * s.maxValueBytes + COMMAND_OVERHEAD_BYTES;
}

/**
 * Converts ms settings to the core's ticks and validates them, refusing with the ms setting's name.
 * Rounding is toward safety: the election timeout rounds down (shorter), the lease rounds down.
 */
export function toCoreConfig(c: ServerConfig, seed: number): CoreConfig {
  const fail = (setting: string, why: string): never => {
    throw configError(setting, why, c.id);
  };
  const { tickMs } = c;
  if (tickMs > 1000) fail("tickMs", `must be at most 1000 ms, got ${tickMs}`);
  if (c.heartbeatMs < tickMs) fail("heartbeatMs", `must be at least tickMs (${tickMs} ms)`);
  if (c.electionTimeoutMinMs < 4 * tickMs)
    fail("electionTimeoutMinMs", `must be at least 4 ticks (${4 * tickMs} ms with tickMs ${tickMs})`);
  if (c.electionTimeoutMaxMs < c.electionTimeoutMinMs)
    fail("electionTimeoutMaxMs", `must be at least electionTimeoutMinMs (${c.electionTimeoutMinMs} ms)`);
  if (c.heartbeatMs * 2 > c.electionTimeoutMinMs)
    fail(
      "heartbeatMs",
      `must be at most half of electionTimeoutMinMs (${c.electionTimeoutMinMs} ms), got ${c.heartbeatMs}`,
    );
  if (!(c.driftBound >= 1 && c.driftBound <= 2)) fail("driftBound", `must be in [1, 2], got ${c.driftBound}`);
  const heartbeatTicks = Math.max(1, Math.round(c.heartbeatMs / tickMs));
  const electionTimeoutMinTicks = Math.floor(c.electionTimeoutMinMs / tickMs);
  const electionTimeoutMaxTicks = Math.max(
    electionTimeoutMinTicks,
    Math.floor(c.electionTimeoutMaxMs / tickMs),
  );
  const maxLeaseMs = maxSafeLeaseMs(c);
  if (c.leaseMs !== null && c.leaseMs > maxLeaseMs)
    fail(
      "leaseMs",
      `a lease of ${c.leaseMs} ms is unsafe: with electionTimeoutMinMs ${c.electionTimeoutMinMs}, driftBound ` +
        `${c.driftBound} and tickMs ${tickMs} it must be at most ${maxLeaseMs} ms (thesis §6.4.1)`,
    );
  const leaseTicks = Math.floor(effectiveLeaseMs(c) / tickMs);
  if (leaseTicks <= heartbeatTicks)
    fail(
      c.leaseMs === null ? "electionTimeoutMinMs" : "leaseMs",
      `the lease (${leaseTicks * tickMs} ms) must exceed heartbeatMs (${c.heartbeatMs} ms), or it never ` +
        "holds between heartbeat rounds; raise electionTimeoutMinMs or lower heartbeatMs",
    );
  if (c.maxKeyBytes > MAX_STATE_KEY_BYTES)
    fail(
      "maxKeyBytes",
      `must be at most ${MAX_STATE_KEY_BYTES} (the state store's key limit: LMDB's ${MAX_STORE_KEY_BYTES}-byte keys, one byte of which names the table), got ${c.maxKeyBytes}`,
    );
  if (c.maxValueBytes > 64 * 1024 * 1024)
    fail("maxValueBytes", `must be at most 64 MiB, got ${c.maxValueBytes}`);
  const entryBytes = maxEntryBytes(c);
  if (c.maxRequestBytes < c.maxKeyBytes + 2 * c.maxValueBytes + COMMAND_OVERHEAD_BYTES)
    fail(
      "maxRequestBytes",
      `must hold a compare-and-swap of the largest key and two largest values (${entryBytes} bytes), got ${c.maxRequestBytes}`,
    );
  if (c.maxRangeBytes < c.maxKeyBytes + c.maxValueBytes)
    fail(
      "maxRangeBytes",
      `must hold at least one largest key and value (${c.maxKeyBytes + c.maxValueBytes} bytes)`,
    );
  const core: CoreConfig = {
    id: c.id,
    peers: [...c.peers.keys()].sort((a, b) => a - b),
    heartbeatTicks,
    electionTimeoutMinTicks,
    electionTimeoutMaxTicks,
    driftBound: c.driftBound,
    leaseTicks,
    seed,
    preVote: c.preVote,
    checkQuorum: c.checkQuorum,
    maxInflightMessages: c.maxInflightMessages,
    maxEntriesPerMessage: c.maxEntriesPerMessage,
    maxBytesPerMessage: c.maxBytesPerMessage,
    maxPendingProposals: c.maxPendingProposals,
    maxUncommittedBytes: c.maxUncommittedBytes,
    maxInflightBytes: c.maxInflightBytes,
    maxEntryBytes: entryBytes,
    maxPendingReads: c.maxPendingReads,
    snapshotChunkBytes: c.snapshotChunkBytes,
  };
  try {
    validateCoreConfig(core);
  } catch (e) {
    // A backstop: the checks above should have named the ms setting already.
    if (e instanceof RaftKvError)
      throw configError("timing", `${e.message} (after converting ms to ticks of ${tickMs} ms)`, c.id);
    throw e;
  }
  return core;
}

/** Payload bytes the peer transport must carry in one message. */
export function peerMessageBytes(c: ServerSettings): number {
  return Math.max(c.maxBytesPerMessage, maxEntryBytes(c), c.snapshotChunkBytes);
}
