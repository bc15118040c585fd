// RaftKvClient: any endpoints as entry points, leader discovery and caching, redirects, bounded retries
// with backoff and jitter, per-request deadlines, client sessions so retried writes apply once, and the
// choice of path: requests multiplexed on a Session stream per node (default) or one unary call each.

import { randomBytes } from "node:crypto";
import { performance } from "node:perf_hooks";
import * as grpc from "@grpc/grpc-js";
import { deadlineIn } from "../clock/deadline.ts";
import {
  ClientServiceClient,
  CompareAndSwapResponse,
  DeleteResponse,
  GetResponse,
  LeaseState,
  PutResponse,
  RangeResponse,
  type ResponseHeader,
  StatusResponse,
  type TxnRequest,
  Consistency as WireConsistency,
  ErrorCode as WireErrorCode,
  Role as WireRole,
} from "../gen/raftkv/v1/client.ts";
import { Prng } from "../lib/prng.ts";
import { codeFromWire, fromGrpcError, isRetryable, RaftKvClientError } from "./errors.ts";
import { Lease, type LeaseCore, type LeaseOptions, type LeaseTimeToLive } from "./lease.ts";
import { SessionStream, type StreamOp, type StreamResult } from "./session-stream.ts";
import { type ClientTlsOptions, clientTlsCredentials } from "./tls.ts";
import { recordOf, TxnBuilder, type TxnResult, txnOpResultOf } from "./txn.ts";
import { type Bytes, plainBytes, toBytes } from "./values.ts";
import { type WatchCore, Watcher, type WatchOptions } from "./watch.ts";

export type Consistency = "lease" | "readIndex" | "stale";

export const CONSISTENCIES: readonly Consistency[] = ["lease", "readIndex", "stale"];

/** How requests travel: multiplexed on one Session stream per node, or one unary gRPC call each. */
export type ClientPath = "stream" | "unary";

export interface RaftKvClientOptions {
  /** Nodes to start from ("host:port"); any node will do, the leader is discovered. */
  readonly endpoints: readonly string[];
  /** Whole-request deadline, retries included (default 5000 ms). */
  readonly timeoutMs?: number;
  /** Deadline of one attempt (default 2000 ms, at most what is left of timeoutMs). */
  readonly attemptTimeoutMs?: number;
  /** Attempts per request before giving up (default: no count limit, the request retries until its
   *  timeoutMs runs out). Redirects count as attempts. */
  readonly maxAttempts?: number;
  /** Retry backoff: doubles from min to max, with full jitter (default 20 and 1000 ms). */
  readonly backoffMinMs?: number;
  readonly backoffMaxMs?: number;
  /** Default read consistency (default "lease"). */
  readonly consistency?: Consistency;
  /** Base of this client's session ids (default random); writes carry `${clientId}-${n}` and a seq. */
  readonly clientId?: string;
  /** Writes in flight at once; each uses its own session (default 16). More wait their turn. */
  readonly maxConcurrentWrites?: number;
  /** TLS from PEM text or files: the nodes' CA and, for mutual TLS, this client's certificate and key. */
  readonly tls?: ClientTlsOptions;
  /** gRPC channel credentials, instead of `tls`; plaintext when both are absent. */
  readonly credentials?: grpc.ChannelCredentials;
  /** Seed of the backoff jitter (default random). */
  readonly seed?: number;
  /** "stream" (default): requests share one Session stream per node, several times cheaper per request
   *  than unary calls; falls back to unary for a node that refuses sessions. "unary": one call each. */
  readonly path?: ClientPath;
}

export interface RequestOptions {
  /** Overrides the client's timeoutMs for this request. */
  readonly timeoutMs?: number;
}

export interface ReadOptions extends RequestOptions {
  readonly consistency?: Consistency;
}

export interface WriteResult {
  /** Log index at which the write was applied (0 for a put with a lease). */
  readonly index: number;
  /** The store revision after the write (etcd's header.revision; 0 from older nodes). For a retried
   *  write answered from its session, the store revision at the retry. */
  readonly revision: number;
}

export interface PutOptions extends RequestOptions {
  /** Attach the key to this lease (a Lease or its id): it is deleted when the lease ends. A put with
   *  a lease is not exactly-once: it is retried only when the answer says it did not apply. */
  readonly lease?: bigint | { readonly id: bigint };
}

export interface DeleteResult extends WriteResult {
  /** Whether the key existed. */
  readonly deleted: boolean;
}

export interface CasResult extends WriteResult {
  readonly swapped: boolean;
  /** When not swapped: the key's current value (null: absent). When swapped: the new value. */
  readonly current: Uint8Array | null;
}

export interface KeyValue {
  readonly key: string;
  readonly value: Uint8Array;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly version: number;
  /** 0n: none. */
  readonly lease: bigint;
}

/** getKv(): the key with its revisions, and the store revision the read was served at. */
export interface GetKvResult {
  readonly kv: KeyValue | null;
  readonly revision: number;
}

/** Options of range(). */
export interface RangeOptions extends ReadOptions {
  /** At most this many items (0 or absent: the server's maximum, maxRangeItems). */
  readonly limit?: number;
  /** Start after this key (exclusive): the last key of the previous page. */
  readonly startAfter?: string;
}

/** Options of rangeAll(). */
export interface RangeAllOptions extends ReadOptions {
  /** Items asked for per request (0 or absent: the server's maximum). */
  readonly pageSize?: number;
  /** Start after this key (exclusive). */
  readonly startAfter?: string;
}

export interface RangeResult {
  readonly items: readonly KeyValue[];
  /** More keys match than were returned. */
  readonly more: boolean;
  /** Applied index the range was served at. */
  readonly index: number;
  /** Store revision the range was served at (0 from older nodes). */
  readonly revision: number;
}

export type RoleName = "follower" | "preCandidate" | "candidate" | "leader" | "unknown";
export type LeaseName = "valid" | "notLeader" | "noLease" | "waitingOldLease" | "noopNotApplied" | "unknown";

export interface NodeStatus {
  readonly endpoint: string;
  readonly nodeId: number;
  readonly clusterId: string;
  readonly role: RoleName;
  readonly term: number;
  readonly leaderId: number | null;
  readonly leaderAddress: string;
  readonly commitIndex: number;
  readonly appliedIndex: number;
  readonly lastLogIndex: number;
  readonly snapshotIndex: number;
  readonly lease: LeaseName;
  readonly leaseRemainingMs: number;
  readonly peers: readonly { nodeId: number; address: string; matchIndex: number; connected: boolean }[];
  readonly version: string;
  /** The node's process id (null from a node that does not report it). */
  readonly pid: number | null;
  /** Milliseconds since the node started (null from a node that does not report it). */
  readonly uptimeMs: number | null;
  /** The node's data folder on its host (null from a node that does not report it). */
  readonly dataDir: string | null;
}

/** A row of clusterStatus(): the node's status or why it could not be had. */
export type NodeStatusRow =
  | { readonly ok: true; readonly status: NodeStatus }
  | {
      readonly ok: false;
      readonly endpoint: string;
      readonly nodeId: number | null;
      readonly error: RaftKvClientError;
    };

/** What the attempts of one request ran into. */
interface Tally {
  last: RaftKvClientError | null;
  /** Why each endpoint could not be reached, when one could not. */
  unreachableWhy: Map<string, string>;
  /** Some node answered with a response header. */
  answered: boolean;
  /** Some attempt could not connect (refused, unreachable). */
  unreachable: boolean;
}

interface Session {
  readonly clientId: string;
  nextSeq: number;
}

type Unary<Req, Res> = (
  req: Req,
  md: grpc.Metadata,
  opts: Partial<grpc.CallOptions>,
  cb: (err: grpc.ServiceError | null, res: Res) => void,
) => grpc.ClientUnaryCall;

type OpKind = StreamOp["$case"];
type ReqOf<K extends OpKind> = Extract<StreamOp, { $case: K }>["value"];
type ResOf<K extends OpKind> = Extract<StreamResult, { $case: K }>["value"];

/** The unary method of each operation. */
const UNARY: { readonly [K in OpKind]: (c: ClientServiceClient) => Unary<ReqOf<K>, ResOf<K>> } = {
  put: (c) => c.put.bind(c),
  get: (c) => c.get.bind(c),
  delete: (c) => c.delete.bind(c),
  compareAndSwap: (c) => c.compareAndSwap.bind(c),
  range: (c) => c.range.bind(c),
  status: (c) => c.status.bind(c),
};

/** A session request the node refused before running it, as the operation's response (header only). */
const REFUSED: { readonly [K in OpKind]: (header: ResponseHeader) => ResOf<K> } = {
  put: (header) => PutResponse.create({ header }),
  get: (header) => GetResponse.create({ header }),
  delete: (header) => DeleteResponse.create({ header }),
  compareAndSwap: (header) => CompareAndSwapResponse.create({ header }),
  range: (header) => RangeResponse.create({ header }),
  status: (header) => StatusResponse.create({ header }),
};

/** Values larger than this go by unary call: an oversize message would end the whole shared stream. */
const STREAM_MAX_VALUE_BYTES = 512 * 1024;

const WRITE_OPS = new Set(["put", "delete", "cas"]);

const ROLE_NAMES: Record<number, RoleName> = {
  [WireRole.ROLE_FOLLOWER]: "follower",
  [WireRole.ROLE_PRE_CANDIDATE]: "preCandidate",
  [WireRole.ROLE_CANDIDATE]: "candidate",
  [WireRole.ROLE_LEADER]: "leader",
};

const LEASE_NAMES: Record<number, LeaseName> = {
  [LeaseState.LEASE_STATE_VALID]: "valid",
  [LeaseState.LEASE_STATE_NOT_LEADER]: "notLeader",
  [LeaseState.LEASE_STATE_NO_LEASE]: "noLease",
  [LeaseState.LEASE_STATE_WAITING_OLD_LEASE]: "waitingOldLease",
  [LeaseState.LEASE_STATE_NOOP_NOT_APPLIED]: "noopNotApplied",
};

const WIRE_CONSISTENCY: Record<Consistency, WireConsistency> = {
  lease: WireConsistency.CONSISTENCY_LEASE,
  readIndex: WireConsistency.CONSISTENCY_READ_INDEX,
  stale: WireConsistency.CONSISTENCY_STALE,
};

export class RaftKvClient {
  private readonly endpoints: string[];
  private readonly timeoutMs: number;
  private readonly attemptTimeoutMs: number;
  private readonly maxAttempts: number;
  private readonly backoffMinMs: number;
  private readonly backoffMaxMs: number;
  private readonly consistency: Consistency;
  private readonly credentials: grpc.ChannelCredentials;
  private readonly prng: Prng;
  private readonly clientIdBase: string;
  private readonly maxConcurrentWrites: number;
  private readonly path: ClientPath;
  private readonly channels = new Map<string, ClientServiceClient>();
  private readonly streams = new Map<string, SessionStream>();
  private readonly freeSessions: Session[] = [];
  private readonly sessionWaiters: ((s: Session) => void)[] = [];
  private sessionsMade = 0;
  private leader: string | null = null;
  private rotation = 0;
  private closed = false;

  constructor(o: RaftKvClientOptions) {
    const endpoints = [...new Set(o.endpoints.map((e) => e.trim()).filter((e) => e !== ""))];
    if (endpoints.length === 0)
      throw invalidOption("endpoints", "give at least one node address (host:port)");
    for (const e of endpoints)
      if (!/^.+:\d{1,5}$/.test(e)) throw invalidOption("endpoints", `"${e}" is not host:port`);
    this.endpoints = endpoints;
    this.timeoutMs = positive("timeoutMs", o.timeoutMs ?? 5000);
    this.attemptTimeoutMs = positive("attemptTimeoutMs", o.attemptTimeoutMs ?? 2000);
    this.maxAttempts =
      o.maxAttempts === undefined ? Number.POSITIVE_INFINITY : positive("maxAttempts", o.maxAttempts);
    this.backoffMinMs = positive("backoffMinMs", o.backoffMinMs ?? 20);
    this.backoffMaxMs = Math.max(this.backoffMinMs, positive("backoffMaxMs", o.backoffMaxMs ?? 1000));
    this.consistency = o.consistency ?? "lease";
    if (!CONSISTENCIES.includes(this.consistency))
      throw invalidOption("consistency", `"${String(this.consistency)}" is not lease, readIndex or stale`);
    if (o.tls !== undefined && o.credentials !== undefined)
      throw invalidOption("tls", "give either tls or credentials, not both");
    this.credentials =
      o.credentials ??
      (o.tls === undefined ? grpc.credentials.createInsecure() : clientTlsCredentials(o.tls));
    this.prng = new Prng(o.seed ?? randomBytes(4).readUInt32LE(0));
    this.clientIdBase = o.clientId ?? randomBytes(12).toString("hex");
    if (this.clientIdBase === "" || Buffer.byteLength(this.clientIdBase) > 48)
      throw invalidOption("clientId", "must be 1..48 bytes (a session number is appended)");
    this.maxConcurrentWrites = positive("maxConcurrentWrites", o.maxConcurrentWrites ?? 16);
    this.rotation = this.prng.int(0, endpoints.length - 1);
    this.path = o.path ?? "stream";
    if (this.path !== "stream" && this.path !== "unary")
      throw invalidOption("path", `"${String(this.path)}" is not stream or unary`);
  }

  /** How this client sends requests ("stream" or "unary"). */
  get requestPath(): ClientPath {
    return this.path;
  }

  /** The leader this client currently believes in, if any. */
  get knownLeader(): string | null {
    return this.leader;
  }

  // ---------------------------------------------------------------- writes

  async put(key: string, value: Bytes, o: PutOptions = {}): Promise<WriteResult> {
    const bytes = toBytes(value);
    const lease = o.lease === undefined ? 0n : typeof o.lease === "bigint" ? o.lease : o.lease.id;
    if (lease !== 0n) {
      const res = await this.run(
        "put",
        o,
        "lease",
        (target, ms) =>
          this.call(
            this.channel(target).put.bind(this.channel(target)),
            { key, value: bytes, clientId: "", seq: 0n, lease },
            deadlineIn(ms),
          ),
        false,
      );
      return { index: Number(res.index), revision: revisionOf(res.header) };
    }
    const res = await this.write("put", o, (target, clientId, seq, ms) =>
      this.send(target, "put", { key, value: bytes, clientId, seq, lease: 0n }, ms, bytes.length),
    );
    return { index: Number(res.index), revision: revisionOf(res.header) };
  }

  async delete(key: string, o: RequestOptions = {}): Promise<DeleteResult> {
    const res = await this.write("delete", o, (target, clientId, seq, ms) =>
      this.send(target, "delete", { key, clientId, seq }, ms),
    );
    return { index: Number(res.index), revision: revisionOf(res.header), deleted: res.deleted };
  }

  /** Sets `key` to `value` only if its current value equals `expected` (null: only if absent). */
  async cas(key: string, expected: Bytes | null, value: Bytes, o: RequestOptions = {}): Promise<CasResult> {
    const exp = expected === null ? undefined : toBytes(expected);
    const val = toBytes(value);
    const req = { key, ...(exp === undefined ? {} : { expectedValue: exp }), newValue: val };
    const size = val.length + (exp?.length ?? 0);
    const res = await this.write("cas", o, (target, clientId, seq, ms) =>
      this.send(target, "compareAndSwap", { ...req, clientId, seq }, ms, size),
    );
    return {
      index: Number(res.index),
      revision: revisionOf(res.header),
      swapped: res.swapped,
      current: res.swapped ? val : res.found ? plainBytes(res.currentValue) : null,
    };
  }

  // ---------------------------------------------------------------- reads

  /** The value's bytes, or null when the key is absent. */
  async get(key: string, o: ReadOptions = {}): Promise<Uint8Array | null> {
    const consistency = this.readConsistency(o.consistency);
    const res = await this.run("get", o, consistency, (target, ms) =>
      this.send(target, "get", { key, consistency: WIRE_CONSISTENCY[consistency] }, ms),
    );
    return res.found ? plainBytes(res.value) : null;
  }

  /** The key with its revisions and lease (null: absent), and the store revision of the read. */
  async getKv(key: string, o: ReadOptions = {}): Promise<GetKvResult> {
    const consistency = this.readConsistency(o.consistency);
    const res = await this.run("get", o, consistency, (target, ms) =>
      this.send(target, "get", { key, consistency: WIRE_CONSISTENCY[consistency] }, ms),
    );
    const kv = res.found
      ? {
          key,
          value: plainBytes(res.value),
          createRevision: Number(res.createRevision),
          modRevision: Number(res.modRevision),
          version: Number(res.version),
          lease: res.lease,
        }
      : null;
    return { kv, revision: revisionOf(res.header) };
  }

  /** The value decoded as UTF-8, or null when the key is absent. */
  async getString(key: string, o: ReadOptions = {}): Promise<string | null> {
    const v = await this.get(key, o);
    return v === null ? null : new TextDecoder().decode(v);
  }

  /** Keys starting with `prefix` in ascending order, after `startAfter` when given, at most `limit`
   *  (0 or absent: the server's maximum); `more` says whether more follow (ask again with
   *  startAfter set to the last key). */
  async range(prefix: string, o: RangeOptions = {}): Promise<RangeResult> {
    const consistency = this.readConsistency(o.consistency);
    const limit = o.limit ?? 0;
    if (!Number.isSafeInteger(limit) || limit < 0 || limit > 0xffffffff)
      throw invalidOption("limit", `${limit} is not a non-negative integer`);
    const startAfter = o.startAfter ?? "";
    const res = await this.run("range", o, consistency, (target, ms) =>
      this.send(
        target,
        "range",
        { prefix, limit, consistency: WIRE_CONSISTENCY[consistency], startAfter },
        ms,
      ),
    );
    return {
      items: res.items.map(recordOf),
      more: res.more,
      index: Number(res.index),
      revision: revisionOf(res.header),
    };
  }

  /**
   * Every key starting with `prefix`, in ascending order, fetched a page at a time as the loop asks
   * for more. Each page is a read at `consistency` of its own: a key written meanwhile shows up or
   * not depending on which page it falls in (no snapshot across pages).
   */
  async *rangeAll(prefix: string, o: RangeAllOptions = {}): AsyncGenerator<KeyValue, void, undefined> {
    let after = o.startAfter;
    const base = {
      limit: o.pageSize ?? 0,
      ...(o.consistency === undefined ? {} : { consistency: o.consistency }),
      ...(o.timeoutMs === undefined ? {} : { timeoutMs: o.timeoutMs }),
    };
    for (;;) {
      const page = await this.range(prefix, after === undefined ? base : { ...base, startAfter: after });
      yield* page.items;
      const last = page.items[page.items.length - 1];
      if (!page.more || last === undefined) return;
      after = last.key;
    }
  }

  // ---------------------------------------------------------------- txn, watch, leases

  /** A transaction: client.txn().if(Compare...).then(Op...).else(Op...).commit() (txn.ts). */
  txn(o: RequestOptions = {}): TxnBuilder {
    return new TxnBuilder((req) => this.commitTxn(req, o));
  }

  private async commitTxn(req: TxnRequest, o: RequestOptions): Promise<TxnResult> {
    const res = await this.run(
      "txn",
      o,
      "lease",
      (target, ms) => this.call(this.channel(target).txn.bind(this.channel(target)), req, deadlineIn(ms)),
      false,
    );
    return {
      succeeded: res.succeeded,
      revision: revisionOf(res.header),
      results: res.results.map(txnOpResultOf),
    };
  }

  /**
   * Changes of `key` (or, with `prefix`, of every key starting with it) as an async iterator, from
   * `startRevision` (default: after now). It survives node failures and leader changes, resuming on
   * another node from the revision after the last one it took in: no gaps, no duplicates.
   * `for await (const e of client.watch("jobs/", { prefix: true })) ...`; close() ends it.
   */
  watch(key: string, o: WatchOptions = {}): Watcher {
    return new Watcher(this.streamCore(), key, o);
  }

  /** Grants a lease of `ttlSeconds` (the node may raise it to its minimum) and keeps it alive until
   *  close() or revoke() (keepAlive: false to renew by hand). */
  async lease(
    ttlSeconds: number,
    o: LeaseOptions & RequestOptions & { readonly id?: bigint } = {},
  ): Promise<Lease> {
    const { id, ttlSeconds: granted } = await this.leaseGrant(ttlSeconds, o);
    return new Lease(this.streamCore(), id, granted, o);
  }

  /** Keeps an existing lease alive (as lease() does for one it grants); rejects when there is no
   *  such lease. */
  async keepAlive(id: bigint, o: RequestOptions = {}): Promise<Lease> {
    const t = await this.leaseTimeToLive(id, o);
    if (t.ttlSeconds < 0)
      throw new RaftKvClientError({
        code: "INVALID_ARGUMENT",
        message: `lease ${id.toString(16)} not found (expired or revoked)`,
        hint: "grant a new lease",
      });
    return new Lease(this.streamCore(), id, t.grantedTtlSeconds);
  }

  async leaseGrant(
    ttlSeconds: number,
    o: RequestOptions & { readonly id?: bigint } = {},
  ): Promise<{ id: bigint; ttlSeconds: number }> {
    if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds < 1)
      throw invalidOption("ttlSeconds", `${ttlSeconds} is not a whole number of seconds >= 1`);
    const req = { ttlSeconds: BigInt(ttlSeconds), id: o.id ?? 0n };
    const res = await this.run(
      "lease grant",
      o,
      "lease",
      (target, ms) =>
        this.call(this.channel(target).leaseGrant.bind(this.channel(target)), req, deadlineIn(ms)),
      false,
    );
    return { id: res.id, ttlSeconds: Number(res.ttlSeconds) };
  }

  /** Revokes a lease, deleting its keys at one revision. */
  async leaseRevoke(id: bigint, o: RequestOptions = {}): Promise<{ revision: number }> {
    const res = await this.run("lease revoke", o, "lease", (target, ms) =>
      this.call(this.channel(target).leaseRevoke.bind(this.channel(target)), { id }, deadlineIn(ms)),
    );
    return { revision: revisionOf(res.header) };
  }

  async leaseTimeToLive(
    id: bigint,
    o: RequestOptions & { readonly keys?: boolean } = {},
  ): Promise<LeaseTimeToLive> {
    const req = { id, keys: o.keys ?? false };
    const res = await this.run("lease timetolive", o, "lease", (target, ms) =>
      this.call(this.channel(target).leaseTimeToLive.bind(this.channel(target)), req, deadlineIn(ms)),
    );
    return {
      id: res.id,
      ttlSeconds: Number(res.ttlSeconds),
      grantedTtlSeconds: Number(res.grantedTtlSeconds),
      keys: res.keys,
    };
  }

  /** The ids of the leases that exist. */
  async leases(o: RequestOptions = {}): Promise<bigint[]> {
    const res = await this.run("lease list", o, "lease", (target, ms) =>
      this.call(this.channel(target).leaseList.bind(this.channel(target)), {}, deadlineIn(ms)),
    );
    return res.ids;
  }

  /** What watchers and leases use of the client. */
  private streamCore(): WatchCore & LeaseCore {
    const self = this;
    return {
      get closed() {
        return self.closed;
      },
      endpoint: (avoid) => {
        if (self.leader !== null && self.leader !== avoid) return self.leader;
        if (self.leader === avoid) self.leader = null;
        return self.pickEndpoint(avoid);
      },
      channel: (address) => self.channel(address),
      noteLeader: (address) => {
        self.leader = address;
      },
      backoff: (n) => {
        const cap = Math.min(self.backoffMaxMs, self.backoffMinMs * 2 ** Math.min(n, 20));
        return new Promise((r) => setTimeout(r, self.prng.next() * cap + 10));
      },
      revoke: async (id) => {
        await self.leaseRevoke(id);
      },
      timeToLive: (id, keys) => self.leaseTimeToLive(id, { keys }),
      now: () => performance.now(),
    };
  }

  // ---------------------------------------------------------------- status

  /** Status of the node at `endpoint` (no redirects, one attempt). */
  async status(endpoint: string, o: RequestOptions = {}): Promise<NodeStatus> {
    const timeoutMs = o.timeoutMs ?? Math.min(this.timeoutMs, this.attemptTimeoutMs);
    const c = this.channel(endpoint);
    let res: StatusResponse;
    try {
      res = await this.call(UNARY.status(c), {}, deadlineIn(timeoutMs));
    } catch (err) {
      throw toClientError(err, endpoint);
    }
    const h = requireHeader(res.header, endpoint);
    if (h.errorCode !== WireErrorCode.ERROR_CODE_UNSPECIFIED) throw headerError(h, endpoint, 1);
    return {
      endpoint,
      nodeId: Number(h.nodeId),
      clusterId: res.clusterId,
      role: ROLE_NAMES[res.role] ?? "unknown",
      term: Number(h.term),
      leaderId: h.leaderId === undefined ? null : Number(h.leaderId),
      leaderAddress: h.leaderAddress,
      commitIndex: Number(res.commitIndex),
      appliedIndex: Number(res.appliedIndex),
      lastLogIndex: Number(res.lastLogIndex),
      snapshotIndex: Number(res.snapshotIndex),
      lease: LEASE_NAMES[res.leaseState] ?? "unknown",
      leaseRemainingMs: Number(res.leaseRemainingMs),
      peers: res.peers.map((p) => ({
        nodeId: Number(p.nodeId),
        address: p.address,
        matchIndex: Number(p.matchIndex),
        connected: p.connected,
      })),
      version: res.version,
      pid: res.pid === 0 ? null : res.pid,
      uptimeMs: res.pid === 0 ? null : Number(res.uptimeMs),
      dataDir: res.dataDir === "" ? null : res.dataDir,
    };
  }

  /** Status of every node: the endpoints, and the members they report. Unreachable ones carry an error. */
  async clusterStatus(o: RequestOptions = {}): Promise<NodeStatusRow[]> {
    const rows = new Map<string, NodeStatusRow>();
    const ask = async (endpoint: string, nodeId: number | null): Promise<void> => {
      if (rows.has(endpoint)) return;
      rows.set(endpoint, { ok: false, endpoint, nodeId, error: pendingError(endpoint) });
      try {
        rows.set(endpoint, { ok: true, status: await this.status(endpoint, o) });
      } catch (err) {
        rows.set(endpoint, { ok: false, endpoint, nodeId, error: toClientError(err, endpoint) });
      }
    };
    await Promise.all(this.endpoints.map((e) => ask(e, null)));
    const members = new Map<string, number>();
    for (const r of rows.values()) if (r.ok) for (const p of r.status.peers) members.set(p.address, p.nodeId);
    await Promise.all([...members].map(([address, id]) => ask(address, id)));
    const seen = new Set<number>();
    const out: NodeStatusRow[] = [];
    for (const r of rows.values()) {
      const id = r.ok ? r.status.nodeId : (r.nodeId ?? members.get(r.endpoint) ?? null);
      if (id !== null && seen.has(id)) continue;
      if (id !== null) seen.add(id);
      out.push(r.ok ? r : { ...r, nodeId: id });
    }
    return out.sort((a, b) => rowId(a) - rowId(b));
  }

  /** Closes every channel; later calls fail. */
  close(): void {
    this.closed = true;
    for (const s of this.streams.values()) s.close();
    this.streams.clear();
    for (const c of this.channels.values()) c.close();
    this.channels.clear();
  }

  // ---------------------------------------------------------------- the retry loop

  private async write<Res extends { header: ResponseHeader | undefined }>(
    op: "put" | "delete" | "cas",
    o: RequestOptions,
    send: (target: string, clientId: string, seq: bigint, timeoutMs: number) => Promise<Res>,
  ): Promise<Res> {
    const session = await this.acquireSession();
    const seq = BigInt(session.nextSeq++);
    try {
      return await this.run(op, o, "lease", (target, ms) => send(target, session.clientId, seq, ms));
    } finally {
      this.releaseSession(session);
    }
  }

  /** `idempotent` false (a txn, a put with a lease, a lease grant): retried only where the request
   *  surely did not apply (refused before it ran: not leader, no leader, overloaded, shutting down;
   *  or no connection); an unknown outcome is thrown at once, saying so. */
  private async run<Res extends { header: ResponseHeader | undefined }>(
    op: string,
    o: RequestOptions,
    consistency: Consistency,
    attempt: (target: string, timeoutMs: number) => Promise<Res>,
    idempotent = true,
  ): Promise<Res> {
    if (this.closed) throw new RaftKvClientError({ code: "UNAVAILABLE", message: "the client is closed" });
    const timeoutMs = positive("timeoutMs", o.timeoutMs ?? this.timeoutMs);
    const started = performance.now();
    const anyNode = consistency === "stale";
    let target = anyNode ? this.pickEndpoint() : (this.leader ?? this.pickEndpoint());
    const t: Tally = { last: null, unreachableWhy: new Map(), answered: false, unreachable: false };
    let backoffs = 0;
    let redirectsInRow = 0;
    for (let n = 1; n <= this.maxAttempts; n++) {
      const left = timeoutMs - (performance.now() - started);
      if (left <= 0) break;
      let res: Res;
      try {
        res = await attempt(target, Math.min(left, this.attemptTimeoutMs));
      } catch (err) {
        const e = toClientError(err, target, n);
        // An attempt cut short because the request's own deadline ran out says less than the answer
        // before it (NO_LEADER, say): keep that one as the reason.
        const cutShort = e.code === "DEADLINE_EXCEEDED" && performance.now() - started >= timeoutMs;
        if (!(cutShort && t.last !== null)) t.last = e;
        if (e.code === "UNAVAILABLE") {
          t.unreachable = true;
          t.unreachableWhy.set(target, e.detail.replace(`cannot reach ${target}: `, ""));
        }
        if (!isRetryable(e.code)) throw e;
        if (!idempotent && !notConnected(e)) throw maybeApplied(op, e);
        if (this.leader === target) this.leader = null;
        target = this.pickEndpoint(target);
        redirectsInRow = 0;
        if (e.code === "UNAVAILABLE") await this.backoff(backoffs++, started, timeoutMs);
        continue;
      }
      t.answered = true;
      const h = requireHeader(res.header, target);
      if (h.errorCode === WireErrorCode.ERROR_CODE_UNSPECIFIED) {
        if (!anyNode) this.leader = target;
        return res;
      }
      const e = headerError(h, target, n);
      t.last = e;
      if (!isRetryable(e.code)) throw e;
      if (!idempotent && !REFUSED_BEFORE_RUNNING.has(e.code)) throw maybeApplied(op, e);
      switch (e.code) {
        case "NOT_LEADER":
          if (h.leaderAddress !== "" && h.leaderAddress !== target) {
            target = h.leaderAddress;
            this.leader = target;
            // Follow a redirect at once; nodes pointing at each other (stale views) get a pause.
            if (++redirectsInRow < 3) continue;
          } else {
            this.leader = null;
            target = this.pickEndpoint(target);
          }
          break;
        case "OVERLOADED":
          break; // same node, after a pause
        default:
          // NO_LEADER, UNAVAILABLE (leadership lost), SHUTTING_DOWN, STORAGE, DEADLINE_EXCEEDED
          if (this.leader === target) this.leader = null;
          target = this.pickEndpoint(target);
      }
      redirectsInRow = 0;
      await this.backoff(backoffs++, started, timeoutMs);
    }
    throw this.gaveUp(op, timeoutMs, started, t);
  }

  /** The error after the last attempt: no node reachable, no leader, out of time, or the last refusal. */
  private gaveUp(op: string, timeoutMs: number, started: number, t: Tally): RaftKvClientError {
    const write = WRITE_OPS.has(op);
    const last = t.last;
    const outOfTime = performance.now() - started >= timeoutMs;
    const attempts = last?.attempts ?? 0;
    const lastText = last === null ? "" : `; last error: ${last.detail}`;
    const maybeApplied = write ? "; the write may or may not have been applied (retrying it is safe)" : "";
    const common = {
      attempts,
      ...(last === null ? {} : { cause: last }),
      ...(last?.endpoint === undefined ? {} : { endpoint: last.endpoint }),
    };
    if (!t.answered && t.unreachable) {
      const whys = this.endpoints.map((e) => t.unreachableWhy.get(e) ?? "not tried");
      const why = whys.every((w) => w === whys[0])
        ? `${this.endpoints.join(", ")}: ${whys[0]}`
        : this.endpoints.map((e, i) => `${e}: ${whys[i]}`).join(", ");
      return new RaftKvClientError({
        code: "UNAVAILABLE",
        message: `${op} failed: no node could be reached (${why}; ${attempts} attempt${attempts === 1 ? "" : "s"})`,
        hint: "start the cluster (npm start runs one on this machine) or list running nodes in the endpoints (--endpoints)",
        ...common,
      });
    }
    if (last?.code === "NO_LEADER")
      return new RaftKvClientError({
        code: "NO_LEADER",
        message: `${op} failed: the cluster has no leader (${attempts} attempts${outOfTime ? ` in ${timeoutMs} ms` : ""})${lastText}`,
        hint: `a leader needs a majority of nodes up and connected; check \`raftkv status\`${maybeApplied}`,
        ...common,
      });
    if (outOfTime)
      return new RaftKvClientError({
        code: "DEADLINE_EXCEEDED",
        message: `${op} did not complete within ${timeoutMs} ms (${attempts} attempts)${lastText}`,
        hint: `retry, or raise --timeout; check that a majority of nodes is up${maybeApplied}`,
        ...common,
      });
    return new RaftKvClientError({
      code: last?.code ?? "UNAVAILABLE",
      message: `${op} gave up after ${attempts} attempts${lastText}`,
      hint: `retry later${maybeApplied}`,
      ...common,
    });
  }

  private async backoff(n: number, started: number, timeoutMs: number): Promise<void> {
    const cap = Math.min(this.backoffMaxMs, this.backoffMinMs * 2 ** Math.min(n, 20));
    const left = timeoutMs - (performance.now() - started);
    const ms = Math.min(this.prng.next() * cap, Math.max(0, left));
    if (ms > 0) await new Promise((r) => setTimeout(r, ms));
  }

  /** Round-robin over the endpoints, skipping `avoid`. */
  private pickEndpoint(avoid?: string): string {
    for (let i = 0; i < this.endpoints.length; i++) {
      const e = this.endpoints[this.rotation++ % this.endpoints.length]!;
      if (e !== avoid || this.endpoints.length === 1) return e;
    }
    return this.endpoints[0]!;
  }

  private readConsistency(c: Consistency | undefined): Consistency {
    const v = c ?? this.consistency;
    if (!CONSISTENCIES.includes(v))
      throw invalidOption("consistency", `"${String(v)}" is not lease, readIndex or stale`);
    return v;
  }

  private channel(address: string): ClientServiceClient {
    let c = this.channels.get(address);
    if (c === undefined) {
      c = new ClientServiceClient(address, this.credentials, {
        "grpc.max_receive_message_length": 64 * 1024 * 1024,
        "grpc.max_send_message_length": 64 * 1024 * 1024,
        "grpc.initial_reconnect_backoff_ms": 100,
        "grpc.max_reconnect_backoff_ms": 1000,
        "grpc.enable_retries": 0,
        "grpc.keepalive_time_ms": 30_000,
      });
      this.channels.set(address, c);
    }
    return c;
  }

  /** One attempt of `kind` at `target`, on its Session stream or as a unary call. */
  private async send<K extends OpKind>(
    target: string,
    kind: K,
    req: ReqOf<K>,
    timeoutMs: number,
    valueBytes = 0,
  ): Promise<ResOf<K>> {
    const stream =
      this.path === "stream" && valueBytes <= STREAM_MAX_VALUE_BYTES ? this.stream(target) : null;
    if (stream === null || !stream.usable)
      return this.call(UNARY[kind](this.channel(target)), req, deadlineIn(timeoutMs));
    const r = await stream.request({ $case: kind, value: req } as StreamOp, timeoutMs);
    if (r.$case === kind) return r.value as ResOf<K>;
    const refused: (h: ResponseHeader) => ResOf<K> = REFUSED[kind];
    if (r.$case === "rejected") return refused(r.value);
    throw new RaftKvClientError({
      code: "INTERNAL",
      message: `${target} answered a ${kind} request with a ${r.$case} result`,
      hint: "is this a raftkv node of a compatible version?",
      endpoint: target,
    });
  }

  private stream(address: string): SessionStream {
    let s = this.streams.get(address);
    if (s === undefined) {
      s = new SessionStream(this.channel(address), () => performance.now());
      this.streams.set(address, s);
    }
    return s;
  }

  private call<Req, Res>(fn: Unary<Req, Res>, req: Req, deadline: Date): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      fn(req, new grpc.Metadata(), { deadline }, (err, res) => (err === null ? resolve(res) : reject(err)));
    });
  }

  // ---------------------------------------------------------------- sessions

  private acquireSession(): Promise<Session> {
    const free = this.freeSessions.pop();
    if (free !== undefined) return Promise.resolve(free);
    if (this.sessionsMade < this.maxConcurrentWrites) {
      const n = this.sessionsMade++;
      return Promise.resolve({ clientId: `${this.clientIdBase}-${n}`, nextSeq: 1 });
    }
    return new Promise((resolve) => this.sessionWaiters.push(resolve));
  }

  private releaseSession(s: Session): void {
    const waiter = this.sessionWaiters.shift();
    if (waiter !== undefined) waiter(s);
    else this.freeSessions.push(s);
  }
}

/** Header codes of requests refused before they ran (so a non-idempotent one may be sent again). */
const REFUSED_BEFORE_RUNNING = new Set(["NOT_LEADER", "NO_LEADER", "OVERLOADED", "SHUTTING_DOWN"]);

/** A transport failure before the request left (no connection to the node). */
function notConnected(e: RaftKvClientError): boolean {
  const cause = e.cause as Partial<grpc.ServiceError> | undefined;
  return (
    e.code === "UNAVAILABLE" &&
    typeof cause?.details === "string" &&
    /No connection established|ECONNREFUSED|connect E/.test(cause.details)
  );
}

function maybeApplied(op: string, e: RaftKvClientError): RaftKvClientError {
  return new RaftKvClientError({
    code: e.code,
    message: `${op}: ${e.detail}; it may or may not have been applied`,
    hint: `read the keys it touches before sending it again (a ${op} is not exactly-once)`,
    cause: e,
    attempts: e.attempts,
    ...(e.endpoint === undefined ? {} : { endpoint: e.endpoint }),
  });
}

function revisionOf(h: ResponseHeader | undefined): number {
  return Number(h?.revision ?? 0n);
}

function rowId(r: NodeStatusRow): number {
  return r.ok ? r.status.nodeId : (r.nodeId ?? Number.MAX_SAFE_INTEGER);
}

function requireHeader(h: ResponseHeader | undefined, endpoint: string): ResponseHeader {
  if (h !== undefined) return h;
  throw new RaftKvClientError({
    code: "INTERNAL",
    message: `${endpoint} answered without a response header`,
    hint: "is this a raftkv node of a compatible version?",
    endpoint,
  });
}

function headerError(h: ResponseHeader, endpoint: string, attempts: number): RaftKvClientError {
  const code = codeFromWire(h.errorCode);
  return new RaftKvClientError({
    code,
    message: h.errorMessage === "" ? `node ${h.nodeId} at ${endpoint} refused the request` : h.errorMessage,
    endpoint,
    attempts,
  });
}

function toClientError(err: unknown, endpoint: string, attempts = 1): RaftKvClientError {
  if (err instanceof RaftKvClientError) return err;
  if (isServiceError(err)) return fromGrpcError(err, endpoint, attempts);
  return new RaftKvClientError({
    code: "INTERNAL",
    message: `call to ${endpoint} failed: ${err instanceof Error ? err.message : String(err)}`,
    endpoint,
    attempts,
    cause: err,
  });
}

function isServiceError(err: unknown): err is grpc.ServiceError {
  return (
    err instanceof Error && typeof (err as Partial<grpc.ServiceError>).code === "number" && "details" in err
  );
}

function pendingError(endpoint: string): RaftKvClientError {
  return new RaftKvClientError({ code: "UNAVAILABLE", message: `no answer from ${endpoint} yet`, endpoint });
}

function invalidOption(name: string, why: string): RaftKvClientError {
  return new RaftKvClientError({
    code: "INVALID_ARGUMENT",
    message: `invalid client option ${name}: ${why}`,
    hint: `fix ${name}`,
  });
}

function positive(name: string, v: number): number {
  if (!Number.isFinite(v) || v <= 0) throw invalidOption(name, `must be a positive number, got ${v}`);
  return v;
}
