// The client gRPC service: validates every request at the edge, runs it through KvOps, answers with
// a ResponseHeader (not-leader redirects carry the leader's id and address), unary and Session stream.

import { performance } from "node:perf_hooks";
import * as grpc from "@grpc/grpc-js";
import { remainingMs } from "../clock/deadline.ts";
import type { NodeId } from "../core/types.ts";
import {
  type ClientRequest,
  type ClientResponse,
  type ClientServiceServer,
  type CompareAndSwapRequest,
  CompareAndSwapResponse,
  type DeleteRequest,
  DeleteResponse,
  type GetRequest,
  GetResponse,
  type LeaseGrantRequest,
  LeaseGrantResponse,
  type LeaseKeepAliveRequest,
  LeaseKeepAliveResponse,
  LeaseListResponse,
  type LeaseRevokeRequest,
  LeaseRevokeResponse,
  LeaseState,
  type LeaseTimeToLiveRequest,
  LeaseTimeToLiveResponse,
  type PutRequest,
  PutResponse,
  type RangeRequest,
  RangeResponse,
  type ResponseHeader,
  StatusResponse,
  type TxnRequest,
  TxnResponse,
  Consistency as WireConsistency,
  ErrorCode as WireErrorCode,
  Role as WireRole,
} from "../gen/raftkv/v1/client.ts";
import type { ClientSession } from "../kv/command.ts";
import { type KvLimits, validateClientId, validateKey, validateSeq, validateValue } from "../kv/limits.ts";
import type { MvccResult, PutOp, TxnOp } from "../kv/mvcc-types.ts";
import { type ErrorCode, RaftKvError } from "../lib/errors.ts";
import { type Consistency, NotLeaderError } from "../replica/replica.ts";
import { undecodableReason } from "./client-edge.ts";
import {
  DEFAULT_MAX_TXN_OPS,
  leasedPut,
  leaseIdOf,
  mvccFailure,
  ttlOf,
  txnOf,
  txnResults,
} from "./client-mvcc.ts";
import { ClientStreams } from "./client-streams.ts";
import type { ServerSettings } from "./config.ts";
import type { KvOps, WriteOutcome } from "./kv-ops.ts";
import type { Logger } from "./logging.ts";
import type { ClientMetrics, OpName } from "./metrics.ts";
import type { MvccApi } from "./mvcc-api.ts";
import type { LeaseView, NodeView } from "./node-view.ts";
import { RequestDeadlines } from "./request-deadlines.ts";
import { TurnSlicer } from "./turn-slicer.ts";

export interface ClientApiDeps {
  readonly nodeId: NodeId;
  readonly clusterId: string;
  readonly version: string;
  readonly kv: KvOps;
  /** Term and leader, for every response header (cheap). */
  readonly softState: () => { readonly term: number; readonly leaderId: NodeId | null };
  /** Client address of every member ("host:port"), for redirects. */
  readonly peers: ReadonlyMap<NodeId, string>;
  readonly settings: ServerSettings;
  readonly view: () => NodeView;
  readonly appliedIndex: () => number;
  readonly nowMs: () => number;
  readonly log: Logger;
  readonly metrics: ClientMetrics | null;
  /** The node's MVCC service (shared with the etcd API): Txn, Watch, leases, puts with a lease.
   *  Absent: those answer UNAVAILABLE. */
  readonly mvcc?: MvccApi | undefined;
}

const WIRE_ERROR: Record<ErrorCode, WireErrorCode> = {
  NOT_LEADER: WireErrorCode.ERROR_CODE_NOT_LEADER,
  NO_LEADER: WireErrorCode.ERROR_CODE_NO_LEADER,
  DEADLINE_EXCEEDED: WireErrorCode.ERROR_CODE_DEADLINE_EXCEEDED,
  INVALID_ARGUMENT: WireErrorCode.ERROR_CODE_INVALID_ARGUMENT,
  TOO_LARGE: WireErrorCode.ERROR_CODE_TOO_LARGE,
  OVERLOADED: WireErrorCode.ERROR_CODE_OVERLOADED,
  UNAVAILABLE: WireErrorCode.ERROR_CODE_UNAVAILABLE,
  CLUSTER_MISMATCH: WireErrorCode.ERROR_CODE_CLUSTER_MISMATCH,
  CORRUPT: WireErrorCode.ERROR_CODE_CORRUPT,
  STORAGE: WireErrorCode.ERROR_CODE_STORAGE,
  CONFIG: WireErrorCode.ERROR_CODE_CONFIG,
  SHUTTING_DOWN: WireErrorCode.ERROR_CODE_SHUTTING_DOWN,
  INTERNAL: WireErrorCode.ERROR_CODE_INTERNAL,
};

const WIRE_ROLE = {
  follower: WireRole.ROLE_FOLLOWER,
  preCandidate: WireRole.ROLE_PRE_CANDIDATE,
  candidate: WireRole.ROLE_CANDIDATE,
  leader: WireRole.ROLE_LEADER,
} as const;

const WIRE_LEASE: Record<LeaseView, LeaseState> = {
  valid: LeaseState.LEASE_STATE_VALID,
  notLeader: LeaseState.LEASE_STATE_NOT_LEADER,
  noLease: LeaseState.LEASE_STATE_NO_LEASE,
  waitingOldLease: LeaseState.LEASE_STATE_WAITING_OLD_LEASE,
  noopNotApplied: LeaseState.LEASE_STATE_NOOP_NOT_APPLIED,
};

/** Longest a client may ask the server to work on one request. */
const MAX_REQUEST_TIMEOUT_MS = 60_000;

const EMPTY = new Uint8Array(0);

export class ClientApi {
  private readonly d: ClientApiDeps;
  private readonly limits: KvLimits;
  private draining = false;
  private inflight = 0;
  private streams = 0;
  private idleWaiters: (() => void)[] = [];
  private readonly deadlines: RequestDeadlines;

  constructor(d: ClientApiDeps) {
    this.d = d;
    this.deadlines = new RequestDeadlines(() => performance.now()); // budgets are real time
    this.limits = { maxKeyBytes: d.settings.maxKeyBytes, maxValueBytes: d.settings.maxValueBytes };
  }

  /** Requests being worked on (unary and on streams). */
  get inflightRequests(): number {
    return this.inflight;
  }

  // ---------------------------------------------------------------- operations (never throw)

  put(req: PutRequest, budgetMs: number): Promise<PutResponse> {
    return this.execute(
      "put",
      budgetMs,
      async () => {
        if (req.lease !== 0n) return this.leasedPut(req, budgetMs);
        const session = this.session(req.clientId, req.seq);
        this.checkValue(req.value);
        const out = await this.propose(() => this.d.kv.put(req.key, req.value, session));
        return PutResponse.create({
          header: this.header(null, out.storeRevision),
          index: BigInt(revisionOf(out)),
        });
      },
      (header) => PutResponse.create({ header }),
    );
  }

  delete(req: DeleteRequest, budgetMs: number): Promise<DeleteResponse> {
    return this.execute(
      "delete",
      budgetMs,
      async () => {
        const session = this.session(req.clientId, req.seq);
        const out = await this.propose(() => this.d.kv.delete(req.key, session));
        const deleted = out.result.type === "delete" && out.result.existed;
        return DeleteResponse.create({
          header: this.header(null, out.storeRevision),
          deleted,
          index: BigInt(revisionOf(out)),
        });
      },
      (header) => DeleteResponse.create({ header }),
    );
  }

  cas(req: CompareAndSwapRequest, budgetMs: number): Promise<CompareAndSwapResponse> {
    return this.execute(
      "cas",
      budgetMs,
      async () => {
        const session = this.session(req.clientId, req.seq);
        const expected = req.expectedValue ?? null;
        if (expected !== null) this.checkValue(expected);
        this.checkValue(req.newValue);
        const out = await this.propose(() => this.d.kv.cas(req.key, expected, req.newValue, session));
        const r = out.result;
        if (r.type !== "cas") throw internal(`cas applied as ${r.type}`, this.d.nodeId);
        return CompareAndSwapResponse.create({
          header: this.header(null, out.storeRevision),
          swapped: r.succeeded,
          found: r.current !== null,
          currentValue: r.current ?? EMPTY,
          index: BigInt(revisionOf(out)),
        });
      },
      (header) => CompareAndSwapResponse.create({ header }),
    );
  }

  get(req: GetRequest, budgetMs: number): Promise<GetResponse> {
    return this.execute(
      "get",
      budgetMs,
      async () => {
        const consistency = this.consistency(req.consistency);
        const { record, revision } = await this.d.kv.getRecord(req.key, consistency);
        return GetResponse.create({
          header: this.header(null, revision),
          found: record !== null,
          value: record?.value ?? EMPTY,
          index: BigInt(this.d.appliedIndex()),
          ...(record === null
            ? {}
            : {
                createRevision: BigInt(record.createRevision),
                modRevision: BigInt(record.modRevision),
                version: BigInt(record.version),
                lease: record.lease,
              }),
        });
      },
      (header) => GetResponse.create({ header }),
    );
  }

  range(req: RangeRequest, budgetMs: number): Promise<RangeResponse> {
    return this.execute(
      "range",
      budgetMs,
      async () => {
        const consistency = this.consistency(req.consistency);
        if (req.prefix !== "") throwIf(validateKey(req.prefix, this.limits));
        if (req.startAfter !== "") throwIf(validateKey(req.startAfter, this.limits));
        const max = this.d.settings.maxRangeItems;
        const limit = req.limit === 0 ? max : Math.min(req.limit, max);
        const after = req.startAfter === "" ? undefined : req.startAfter;
        // Bounded while it reads: the state machine stops before maxRangeBytes (at least one item goes),
        // so a range over large values reads no more of them than the answer carries.
        const r = await this.d.kv.rangeRecords(
          req.prefix,
          limit,
          consistency,
          after,
          this.d.settings.maxRangeBytes,
        );
        const items = r.entries.map(({ key, record: k }) => ({
          key,
          value: k.value,
          createRevision: BigInt(k.createRevision),
          modRevision: BigInt(k.modRevision),
          version: BigInt(k.version),
          lease: k.lease,
        }));
        const more = r.more || (req.limit > max && r.entries.length === max);
        return RangeResponse.create({
          header: this.header(null, r.revision),
          items,
          more,
          index: BigInt(this.d.appliedIndex()),
        });
      },
      (header) => RangeResponse.create({ header }),
    );
  }

  status(budgetMs: number): Promise<StatusResponse> {
    return this.execute(
      "status",
      budgetMs,
      async () => {
        const v = this.d.view();
        return StatusResponse.create({
          header: this.header(null),
          clusterId: this.d.clusterId,
          role: WIRE_ROLE[v.role],
          commitIndex: BigInt(v.commitIndex),
          appliedIndex: BigInt(v.appliedIndex),
          lastLogIndex: BigInt(v.lastLogIndex),
          snapshotIndex: BigInt(v.snapshotIndex),
          leaseState: WIRE_LEASE[v.lease],
          leaseRemainingMs: BigInt(Math.floor(v.leaseRemainingMs)),
          peers: v.peers.map((p) => ({
            nodeId: BigInt(p.id),
            address: p.address,
            matchIndex: BigInt(p.matchIndex ?? 0),
            connected: p.connected,
          })),
          version: this.d.version,
          pid: v.pid,
          uptimeMs: BigInt(Math.floor(v.uptimeMs)),
          dataDir: v.dataDir,
        });
      },
      (header) => StatusResponse.create({ header }),
    );
  }

  // ---------------------------------------------------------------- MVCC operations (client-mvcc.ts)

  private leasedPut(req: PutRequest, budgetMs: number): Promise<PutResponse> {
    const op = leasedPut(req, this.limits);
    return this.mvccWrite(op, budgetMs, (header) => PutResponse.create({ header }));
  }

  txn(req: TxnRequest, budgetMs: number): Promise<TxnResponse> {
    return this.execute(
      "txn",
      budgetMs,
      async () => {
        const cmd = txnOf(req, {
          ...this.limits,
          maxTxnOps: DEFAULT_MAX_TXN_OPS,
          maxRangeItems: this.d.settings.maxRangeItems,
        });
        return this.mvccWrite(cmd, budgetMs, (header, r) => {
          if (r.op !== "txn") throw internal(`txn applied as ${r.op}`, this.d.nodeId);
          return TxnResponse.create({ header, succeeded: r.succeeded, results: txnResults(req, r) });
        });
      },
      (header) => TxnResponse.create({ header }),
    );
  }

  /** A write through the MVCC service, its MVCC error as INVALID_ARGUMENT. */
  private async mvccWrite<R>(
    cmd: PutOp | TxnOp,
    budgetMs: number,
    answer: (header: ResponseHeader, r: MvccResult) => R,
  ): Promise<R> {
    const { header, result } = await this.propose(() => this.mvcc().write(cmd, budgetMs));
    throwIf(mvccFailure(result));
    return answer(this.header(null, header.revision), result);
  }

  leaseGrant(req: LeaseGrantRequest, budgetMs: number): Promise<LeaseGrantResponse> {
    return this.execute(
      "lease",
      budgetMs,
      async () => {
        const ttl = ttlOf(req.ttlSeconds);
        const id = leaseIdOf(req.id, "id");
        const { header, result } = await this.propose(() => this.mvcc().leaseGrant(id, ttl, budgetMs));
        throwIf(mvccFailure(result));
        if (result.op !== "leaseGrant") throw internal(`lease grant applied as ${result.op}`, this.d.nodeId);
        return LeaseGrantResponse.create({
          header: this.header(null, header.revision),
          id: result.id,
          ttlSeconds: BigInt(result.ttlSeconds),
        });
      },
      (header) => LeaseGrantResponse.create({ header }),
    );
  }

  leaseRevoke(req: LeaseRevokeRequest, budgetMs: number): Promise<LeaseRevokeResponse> {
    return this.execute(
      "lease",
      budgetMs,
      async () => {
        const id = leaseIdOf(req.id, "id");
        const { header, result } = await this.propose(() => this.mvcc().leaseRevoke(id, budgetMs));
        throwIf(mvccFailure(result));
        return LeaseRevokeResponse.create({ header: this.header(null, header.revision) });
      },
      (header) => LeaseRevokeResponse.create({ header }),
    );
  }

  leaseTimeToLive(req: LeaseTimeToLiveRequest, budgetMs: number): Promise<LeaseTimeToLiveResponse> {
    return this.execute(
      "lease",
      budgetMs,
      async () => {
        const id = leaseIdOf(req.id, "id");
        const { header, info } = await this.mvcc().leaseTimeToLive(id, req.keys);
        return LeaseTimeToLiveResponse.create({
          header: this.header(null, header.revision),
          id,
          ttlSeconds: BigInt(info?.ttlSeconds ?? -1),
          grantedTtlSeconds: BigInt(info?.grantedTtlSeconds ?? 0),
          keys: (info?.keys ?? []).map((k) => new TextDecoder().decode(k)),
        });
      },
      (header) => LeaseTimeToLiveResponse.create({ header }),
    );
  }

  leaseList(budgetMs: number): Promise<LeaseListResponse> {
    return this.execute(
      "lease",
      budgetMs,
      async () => {
        const { header, ids } = await this.mvcc().leases();
        return LeaseListResponse.create({ header: this.header(null, header.revision), ids: [...ids] });
      },
      (header) => LeaseListResponse.create({ header }),
    );
  }

  /** One keepalive on a LeaseKeepAlive stream (the leader's lease keeper renews it). */
  keepAliveOnce(req: LeaseKeepAliveRequest, budgetMs: number): Promise<LeaseKeepAliveResponse> {
    return this.execute(
      "lease",
      budgetMs,
      async () => {
        const id = leaseIdOf(req.id, "id");
        const { header, ttlSeconds } = await this.mvcc().leaseKeepAlive(id);
        return LeaseKeepAliveResponse.create({
          header: this.header(null, header.revision),
          id,
          ttlSeconds: BigInt(ttlSeconds ?? 0),
        });
      },
      (header) => LeaseKeepAliveResponse.create({ header, id: req.id }),
    );
  }

  /** The answer to a request refused before it ran (not served here, undecodable, ...). */
  refusal(err: unknown): ResponseHeader {
    return this.header(err);
  }

  /** Whether new streams are refused (shutting down). */
  get isDraining(): boolean {
    return this.draining;
  }

  private mvcc(): MvccApi {
    if (this.d.mvcc === undefined)
      throw new RaftKvError({
        code: "UNAVAILABLE",
        message: "this node does not serve Txn, Watch or leases",
        nodeId: this.d.nodeId,
        hint: "run a raftkv version that does",
      });
    return this.d.mvcc;
  }

  private streamsOf: ClientStreams | null = null;

  private mvccStreams(): ClientStreams {
    this.streamsOf ??= new ClientStreams(this, {
      nodeId: this.d.nodeId,
      limits: this.limits,
      maxStreams: this.d.settings.maxConcurrentStreams,
      budgetMs: this.d.settings.requestTimeoutMs,
      mvcc: () => this.mvcc(),
      term: () => this.d.softState().term,
    });
    return this.streamsOf;
  }

  /** One Session-stream request. */
  async dispatch(req: ClientRequest): Promise<ClientResponse> {
    const budget = this.budget(req.timeoutMs === 0 ? Number.POSITIVE_INFINITY : req.timeoutMs);
    const id = req.requestId;
    const op = req.op;
    switch (op?.$case) {
      case "put":
        return { requestId: id, result: { $case: "put", value: await this.put(op.value, budget) } };
      case "get":
        return { requestId: id, result: { $case: "get", value: await this.get(op.value, budget) } };
      case "delete":
        return { requestId: id, result: { $case: "delete", value: await this.delete(op.value, budget) } };
      case "compareAndSwap":
        return {
          requestId: id,
          result: { $case: "compareAndSwap", value: await this.cas(op.value, budget) },
        };
      case "range":
        return { requestId: id, result: { $case: "range", value: await this.range(op.value, budget) } };
      case "status":
        return { requestId: id, result: { $case: "status", value: await this.status(budget) } };
      case undefined: {
        const undecodable = undecodableReason(req); // counted by the edge already
        if (undecodable !== undefined) return this.rejected(id, undecodable);
        this.d.metrics?.clientRefusals.inc({ reason: "noOperation" });
        return this.rejected(id, invalid("the request carries no operation", "set one of put, get, ..."));
      }
      default: {
        const never: never = op;
        return never;
      }
    }
  }

  // ---------------------------------------------------------------- gRPC handlers

  handlers(): ClientServiceServer {
    const unary =
      <Req, Res>(fn: (req: Req, budgetMs: number) => Promise<Res>) =>
      (call: grpc.ServerUnaryCall<Req, Res>, reply: grpc.sendUnaryData<Res>): void => {
        fn(call.request, this.budget(remainingMs(call.getDeadline()))).then(
          (res) => reply(null, res),
          (err: unknown) => reply({ code: grpc.status.INTERNAL, details: String(err) }),
        );
      };
    return {
      put: unary((r: PutRequest, b) => this.put(r, b)),
      get: unary((r: GetRequest, b) => this.get(r, b)),
      delete: unary((r: DeleteRequest, b) => this.delete(r, b)),
      compareAndSwap: unary((r: CompareAndSwapRequest, b) => this.cas(r, b)),
      range: unary((r: RangeRequest, b) => this.range(r, b)),
      status: unary((_r: unknown, b) => this.status(b)),
      session: (call) => this.serveSession(call),
      txn: unary((r: TxnRequest, b) => this.txn(r, b)),
      leaseGrant: unary((r: LeaseGrantRequest, b) => this.leaseGrant(r, b)),
      leaseRevoke: unary((r: LeaseRevokeRequest, b) => this.leaseRevoke(r, b)),
      leaseTimeToLive: unary((r: LeaseTimeToLiveRequest, b) => this.leaseTimeToLive(r, b)),
      leaseList: unary((_r: unknown, b) => this.leaseList(b)),
      watch: (call) => this.mvccStreams().watch(call),
      leaseKeepAlive: (call) => this.mvccStreams().keepAlive(call),
    };
  }

  private serveSession(call: grpc.ServerDuplexStream<ClientRequest, ClientResponse>): void {
    const max = this.d.settings.maxConcurrentStreams;
    if (this.draining || this.streams >= max) {
      this.d.metrics?.clientRefusals.inc({ reason: "tooManyStreams" });
      call.emit("error", {
        code: this.draining ? grpc.status.UNAVAILABLE : grpc.status.RESOURCE_EXHAUSTED,
        details: this.draining
          ? `node ${this.d.nodeId} is shutting down`
          : `node ${this.d.nodeId} already serves ${max} sessions (maxConcurrentStreams); use unary calls or retry later`,
      });
      return;
    }
    this.streams++;
    let inflight = 0;
    let open = true;
    let halfClosed = false;
    const finish = (): void => {
      if (!open) return;
      open = false;
      this.streams--;
    };
    const maybeEnd = (): void => {
      if (halfClosed && inflight === 0 && slicer.queued === 0 && open) {
        finish();
        call.end();
      }
    };
    // A burst arriving together is started SESSION_SLICE_REQUESTS per turn of the event loop
    // (turn-slicer.ts), so ticks, heartbeats and peer messages are not held up behind it.
    const slicer = new TurnSlicer<ClientRequest>(SESSION_SLICE_REQUESTS, (req) => start(req));
    const start = (req: ClientRequest): void => {
      if (!open) return;
      inflight++;
      void this.dispatch(req).then((res) => {
        inflight--;
        if (open && !call.cancelled) call.write(res);
        maybeEnd();
      });
    };
    call.on("data", (req: ClientRequest) => {
      if (inflight + slicer.queued >= this.d.settings.maxInflightPerStream) {
        this.d.metrics?.clientRefusals.inc({ reason: "streamInflight" });
        const err = new RaftKvError({
          code: "OVERLOADED",
          message: `more than ${this.d.settings.maxInflightPerStream} requests in flight on one session (maxInflightPerStream)`,
          nodeId: this.d.nodeId,
          hint: "wait for answers before sending more, or open another session",
        });
        if (open) call.write(this.rejected(req.requestId, err));
        return;
      }
      slicer.push(req);
    });
    call.on("end", () => {
      halfClosed = true;
      maybeEnd();
    });
    call.on("cancelled", finish);
    call.on("error", finish);
    call.on("close", finish);
  }

  // ---------------------------------------------------------------- shutdown

  /** Refuse new requests; resolve when in-flight ones finished or after graceMs. */
  async drain(graceMs: number): Promise<void> {
    this.draining = true;
    if (this.inflight === 0) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, graceMs);
      this.idleWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  // ---------------------------------------------------------------- helpers

  /** How long to work on a request: the client's deadline less a margin (so it reads our reason rather
   *  than its own timeout), or requestTimeoutMs when it set none. */
  private budget(clientMs: number): number {
    if (!Number.isFinite(clientMs)) return this.d.settings.requestTimeoutMs;
    const margin = Math.min(50, clientMs * 0.1);
    return Math.min(Math.max(1, clientMs - margin), MAX_REQUEST_TIMEOUT_MS);
  }

  private async execute<R>(
    op: OpName,
    budgetMs: number,
    body: () => Promise<R>,
    failed: (header: ResponseHeader) => R,
  ): Promise<R> {
    const started = this.d.nowMs();
    let code = "OK";
    this.inflight++;
    try {
      if (this.draining)
        throw new RaftKvError({
          code: "SHUTTING_DOWN",
          message: "node is shutting down",
          nodeId: this.d.nodeId,
          hint: "send the request to another node",
        });
      return await this.deadlines.race(body(), budgetMs, () => this.timeoutError(op, budgetMs));
    } catch (caught) {
      const err =
        caught instanceof RaftKvError && caught.code === "OVERLOADED" ? this.overloaded(op) : caught;
      if (!(err instanceof RaftKvError)) this.d.log.error({ err, op }, `client ${op} failed unexpectedly`);
      const header = this.header(err);
      code = codeName(header.errorCode);
      if (
        header.errorCode === WireErrorCode.ERROR_CODE_INVALID_ARGUMENT ||
        header.errorCode === WireErrorCode.ERROR_CODE_TOO_LARGE
      )
        this.d.metrics?.clientRefusals.inc({ reason: code });
      return failed(header);
    } finally {
      this.inflight--;
      this.d.metrics?.requestDuration.observe(op, code, (this.d.nowMs() - started) / 1000);
      if (this.inflight === 0 && this.idleWaiters.length > 0) {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const w of waiters) w();
      }
    }
  }

  private async propose<T>(fn: () => Promise<T>): Promise<T> {
    try {
      const r = await fn();
      this.d.metrics?.proposalsOk.inc();
      return r;
    } catch (err) {
      this.d.metrics?.proposals.inc({ result: err instanceof RaftKvError ? err.code : "INTERNAL" });
      throw err;
    }
  }

  /** The core's "overloaded", naming the limit that was hit. */
  private overloaded(op: OpName): RaftKvError {
    const write = op === "put" || op === "delete" || op === "cas" || op === "txn" || op === "lease";
    const { maxPendingProposals, maxPendingReads } = this.d.settings;
    return new RaftKvError({
      code: "OVERLOADED",
      message: write
        ? `${maxPendingProposals} writes already wait to commit on this leader (maxPendingProposals)`
        : `${maxPendingReads} linearizable reads already wait for a heartbeat round (maxPendingReads)`,
      nodeId: this.d.nodeId,
      hint: "retry after a short backoff (the client library does); if it persists, check that a majority of nodes is up and keeping up",
    });
  }

  private timeoutError(op: OpName, budgetMs: number): RaftKvError {
    const sessioned = op === "put" || op === "delete" || op === "cas";
    const write = sessioned || op === "txn" || op === "lease";
    return new RaftKvError({
      code: "DEADLINE_EXCEEDED",
      message: write
        ? `the ${op} did not complete within ${Math.round(budgetMs)} ms; it may still be applied`
        : `the ${op} did not complete within ${Math.round(budgetMs)} ms`,
      nodeId: this.d.nodeId,
      hint: sessioned
        ? "retry with the same client id and seq (it applies at most once), or with a longer deadline"
        : write
          ? `read what the ${op} changes before sending it again (it carries no session), or use a longer deadline`
          : "retry, or use a longer deadline; check that a majority of nodes is up",
    });
  }

  private header(err: unknown, revision = 0): ResponseHeader {
    const soft = this.d.softState();
    let leaderId = soft.leaderId;
    if (err instanceof NotLeaderError && err.leaderId !== null) leaderId = err.leaderId;
    let errorCode = WireErrorCode.ERROR_CODE_UNSPECIFIED;
    let errorMessage = "";
    if (err !== null && err !== undefined) {
      if (err instanceof RaftKvError) {
        // The message without its "CODE: " prefix (the code travels separately), naming the node.
        errorCode = WIRE_ERROR[err.code];
        const text = err.message.startsWith(`${err.code}: `)
          ? err.message.slice(err.code.length + 2)
          : err.message;
        errorMessage = err.nodeId === undefined ? `${text} (node ${this.d.nodeId})` : text;
      } else {
        errorCode = WireErrorCode.ERROR_CODE_INTERNAL;
        errorMessage = `${err instanceof Error ? err.message : String(err)} (node ${this.d.nodeId}); see the node's log`;
      }
    }
    return {
      nodeId: BigInt(this.d.nodeId),
      leaderId: leaderId === null ? undefined : BigInt(leaderId),
      leaderAddress:
        leaderId !== null && leaderId !== this.d.nodeId ? (this.d.peers.get(leaderId) ?? "") : "",
      term: BigInt(soft.term),
      errorCode,
      errorMessage,
      revision: BigInt(errorCode === WireErrorCode.ERROR_CODE_UNSPECIFIED ? revision : 0),
    };
  }

  private rejected(requestId: bigint, err: RaftKvError): ClientResponse {
    return { requestId, result: { $case: "rejected", value: this.header(err) } };
  }

  private consistency(c: WireConsistency): Consistency {
    switch (c) {
      case WireConsistency.CONSISTENCY_UNSPECIFIED:
      case WireConsistency.CONSISTENCY_LEASE:
        return "lease";
      case WireConsistency.CONSISTENCY_READ_INDEX:
        return "readIndex";
      case WireConsistency.CONSISTENCY_STALE:
        return "stale";
      default:
        throw invalid(`unknown consistency ${String(c)}`, "use LEASE, READ_INDEX or STALE");
    }
  }

  /** The write's exactly-once session: none when client_id is empty (the write may then apply twice if retried). */
  private session(clientId: string, seq: bigint): ClientSession | undefined {
    if (clientId === "") {
      if (seq !== 0n)
        throw invalid("seq is set but client_id is empty", "send both client_id and seq, or neither");
      return undefined;
    }
    throwIf(validateClientId(clientId));
    if (seq > BigInt(Number.MAX_SAFE_INTEGER))
      throw invalid(`seq ${seq} is too large`, "seq must be a safe integer");
    const n = Number(seq);
    throwIf(validateSeq(n));
    return { clientId, seq: n };
  }

  private checkValue(v: Uint8Array): void {
    throwIf(validateValue(v, this.limits));
  }
}

/** The log index that applied the write: for a deduplicated retry, the original one (the cached result's),
 *  not the index of the retry's own entry. */
function revisionOf(out: WriteOutcome): number {
  return out.result.type === "error" ? out.revision : out.result.revision;
}

function codeName(code: WireErrorCode): string {
  for (const [name, wire] of Object.entries(WIRE_ERROR)) if (wire === code) return name;
  return "OK";
}

function invalid(message: string, hint: string): RaftKvError {
  return new RaftKvError({ code: "INVALID_ARGUMENT", message, hint });
}

function internal(message: string, nodeId: NodeId): RaftKvError {
  return new RaftKvError({ code: "INTERNAL", message, nodeId, hint: "report this as a bug" });
}

function throwIf(err: RaftKvError | null): void {
  if (err !== null) throw err;
}

/** Session-stream requests started in one turn of the event loop (see serveSession). */
const SESSION_SLICE_REQUESTS = 32;
