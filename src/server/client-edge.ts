// The client service on the wire: each request's bytes are checked against maxRequestBytes and decoded
// strictly (well-formed protobuf, every known field with its own wire type, well-formed UTF-8) before
// ClientApi sees them, so bad bytes get INVALID_ARGUMENT or TOO_LARGE in the response header, never an
// INTERNAL status, a non-UTF-8 key is never silently rewritten (U+FFFD) into another key, and a field sent
// with the wrong wire type is never silently read as its default (a Range prefix as "": every key).

import { BinaryReader } from "@bufbuild/protobuf/wire";
import type * as grpc from "@grpc/grpc-js";
import type { NodeId } from "../core/types.ts";
import {
  ClientRequest,
  type ClientServiceServer,
  ClientServiceService,
  CompareAndSwapRequest,
  CompareAndSwapResponse,
  DeleteRequest,
  DeleteResponse,
  GetRequest,
  GetResponse,
  LeaseGrantRequest,
  LeaseGrantResponse,
  LeaseKeepAliveRequest,
  LeaseListRequest,
  LeaseListResponse,
  LeaseRevokeRequest,
  LeaseRevokeResponse,
  LeaseTimeToLiveRequest,
  LeaseTimeToLiveResponse,
  PutRequest,
  PutResponse,
  RangeRequest,
  RangeResponse,
  type ResponseHeader,
  StatusRequest,
  StatusResponse,
  TxnRequest,
  TxnResponse,
  WatchRequest,
  ErrorCode as WireErrorCode,
} from "../gen/raftkv/v1/client.ts";
import { RaftKvError } from "../lib/errors.ts";
import { type MessageShape, wireTypeProblem } from "../lib/proto-wire.ts";
import type { ClientMetrics } from "./metrics.ts";

export interface ClientEdgeDeps {
  readonly nodeId: NodeId;
  /** Largest request message, in bytes (TOO_LARGE beyond it). */
  readonly maxRequestBytes: number;
  /** Term and leader for the header of a refusal. */
  readonly softState: () => { readonly term: number; readonly leaderId: NodeId | null };
  readonly metrics: ClientMetrics | null;
  /** Called with the remote address of every call (the listener marks the connection used). */
  readonly onCall?: (peerAddress: string) => void;
}

/** Why a request's bytes did not become a request. */
export type UndecodableReason = "tooLarge" | "badUtf8" | "malformed" | "wrongWireType";

const LEN = 2;
const VARINT = 0;
const PUT_REQUEST: MessageShape = {
  name: "PutRequest",
  fields: {
    1: { name: "key", wire: LEN },
    2: { name: "value", wire: LEN },
    3: { name: "client_id", wire: LEN },
    4: { name: "seq", wire: VARINT },
    5: { name: "lease", wire: VARINT },
  },
};
const GET_REQUEST: MessageShape = {
  name: "GetRequest",
  fields: { 1: { name: "key", wire: LEN }, 2: { name: "consistency", wire: VARINT } },
};
const DELETE_REQUEST: MessageShape = {
  name: "DeleteRequest",
  fields: {
    1: { name: "key", wire: LEN },
    2: { name: "client_id", wire: LEN },
    3: { name: "seq", wire: VARINT },
  },
};
const CAS_REQUEST: MessageShape = {
  name: "CompareAndSwapRequest",
  fields: {
    1: { name: "key", wire: LEN },
    2: { name: "expected_value", wire: LEN },
    3: { name: "new_value", wire: LEN },
    4: { name: "client_id", wire: LEN },
    5: { name: "seq", wire: VARINT },
  },
};
const RANGE_REQUEST: MessageShape = {
  name: "RangeRequest",
  fields: {
    1: { name: "prefix", wire: LEN },
    2: { name: "limit", wire: VARINT },
    3: { name: "consistency", wire: VARINT },
    4: { name: "start_after", wire: LEN },
  },
};
const STATUS_REQUEST: MessageShape = { name: "StatusRequest", fields: {} };
const COMPARE: MessageShape = {
  name: "Compare",
  fields: {
    1: { name: "key", wire: LEN },
    2: { name: "prefix", wire: VARINT },
    3: { name: "result", wire: VARINT },
    4: { name: "value", wire: LEN },
    5: { name: "version", wire: VARINT },
    6: { name: "create_revision", wire: VARINT },
    7: { name: "mod_revision", wire: VARINT },
    8: { name: "lease", wire: VARINT },
  },
};
const DELETE_PREFIX_REQUEST: MessageShape = {
  name: "DeletePrefixRequest",
  fields: { 1: { name: "prefix", wire: LEN } },
};
const TXN_OP: MessageShape = {
  name: "TxnOp",
  fields: {
    1: { name: "put", wire: LEN, message: PUT_REQUEST },
    2: { name: "get", wire: LEN, message: GET_REQUEST },
    3: { name: "delete", wire: LEN, message: DELETE_REQUEST },
    4: { name: "range", wire: LEN, message: RANGE_REQUEST },
    5: { name: "delete_prefix", wire: LEN, message: DELETE_PREFIX_REQUEST },
  },
};
const TXN_REQUEST: MessageShape = {
  name: "TxnRequest",
  fields: {
    1: { name: "compare", wire: LEN, message: COMPARE },
    2: { name: "success", wire: LEN, message: TXN_OP },
    3: { name: "failure", wire: LEN, message: TXN_OP },
  },
};
const WATCH_REQUEST: MessageShape = {
  name: "WatchRequest",
  fields: {
    1: { name: "key", wire: LEN },
    2: { name: "prefix", wire: VARINT },
    3: { name: "start_revision", wire: VARINT },
    4: { name: "prev_kv", wire: VARINT },
    5: { name: "no_put", wire: VARINT },
    6: { name: "no_delete", wire: VARINT },
    7: { name: "progress_notify", wire: VARINT },
  },
};
const LEASE_GRANT_REQUEST: MessageShape = {
  name: "LeaseGrantRequest",
  fields: { 1: { name: "ttl_seconds", wire: VARINT }, 2: { name: "id", wire: VARINT } },
};
const LEASE_REVOKE_REQUEST: MessageShape = {
  name: "LeaseRevokeRequest",
  fields: { 1: { name: "id", wire: VARINT } },
};
const LEASE_KEEP_ALIVE_REQUEST: MessageShape = {
  name: "LeaseKeepAliveRequest",
  fields: { 1: { name: "id", wire: VARINT } },
};
const LEASE_TIME_TO_LIVE_REQUEST: MessageShape = {
  name: "LeaseTimeToLiveRequest",
  fields: { 1: { name: "id", wire: VARINT }, 2: { name: "keys", wire: VARINT } },
};
const LEASE_LIST_REQUEST: MessageShape = { name: "LeaseListRequest", fields: {} };
const CLIENT_REQUEST: MessageShape = {
  name: "ClientRequest",
  fields: {
    1: { name: "request_id", wire: VARINT },
    2: { name: "timeout_ms", wire: VARINT },
    3: { name: "put", wire: LEN, message: PUT_REQUEST },
    4: { name: "get", wire: LEN, message: GET_REQUEST },
    5: { name: "delete", wire: LEN, message: DELETE_REQUEST },
    6: { name: "compare_and_swap", wire: LEN, message: CAS_REQUEST },
    7: { name: "range", wire: LEN, message: RANGE_REQUEST },
    8: { name: "status", wire: LEN, message: STATUS_REQUEST },
  },
};

/** The wire shapes of the client requests (proto/raftkv/v1/client.proto), checked before decoding. */
export const CLIENT_REQUEST_SHAPES: readonly MessageShape[] = [
  PUT_REQUEST,
  GET_REQUEST,
  DELETE_REQUEST,
  CAS_REQUEST,
  RANGE_REQUEST,
  STATUS_REQUEST,
  CLIENT_REQUEST,
  COMPARE,
  DELETE_PREFIX_REQUEST,
  TXN_OP,
  TXN_REQUEST,
  WATCH_REQUEST,
  LEASE_GRANT_REQUEST,
  LEASE_REVOKE_REQUEST,
  LEASE_KEEP_ALIVE_REQUEST,
  LEASE_TIME_TO_LIVE_REQUEST,
  LEASE_LIST_REQUEST,
];

/**
 * gRPC's receive limit for client requests: above maxRequestBytes, so that a request somewhat over it
 * is answered TOO_LARGE naming the setting. Beyond this gRPC refuses before any decoding
 * (RESOURCE_EXHAUSTED "Received message larger than max"); the slack is what gRPC may buffer per call.
 */
export function clientReceiveLimitBytes(maxRequestBytes: number): number {
  return maxRequestBytes + Math.max(64 * 1024, Math.floor(maxRequestBytes / 4));
}

/** A unary request whose bytes could not be decoded: answered here, never seen by ClientApi. */
class Undecodable {
  constructor(
    readonly reason: UndecodableReason,
    readonly error: RaftKvError,
  ) {}
}

const UNDECODABLE = Symbol("undecodable");

type MarkedRequest = ClientRequest & { [UNDECODABLE]?: RaftKvError };

/** For a streamed request that could not be decoded (a Session request arrives with no operation, a
 *  keepalive with id 0, a watch with its defaults): why. */
export function undecodableReason(req: object): RaftKvError | undefined {
  return (req as { [UNDECODABLE]?: RaftKvError })[UNDECODABLE];
}

interface Decoder<T> {
  decode(input: BinaryReader | Uint8Array, length?: number): T;
}

class BadUtf8 extends Error {}

/** Registers ClientService on `server`, with `handlers` (ClientApi's) behind the strict decoding. */
export function addClientService(
  server: grpc.Server,
  handlers: ClientServiceServer,
  d: ClientEdgeDeps,
): void {
  const edge = new ClientEdge(d);
  const s = ClientServiceService;
  const unary = <Req, Res>(
    method: grpc.MethodDefinition<Req, Res>,
    decoder: Decoder<Req>,
    shape: MessageShape,
    handler: grpc.handleUnaryCall<Req, Res>,
    failed: (header: ResponseHeader) => Res,
  ): [grpc.MethodDefinition<Req | Undecodable, Res>, grpc.handleUnaryCall<Req | Undecodable, Res>] => [
    {
      path: method.path,
      requestStream: false,
      responseStream: false,
      requestSerialize: (v) => (v instanceof Undecodable ? Buffer.alloc(0) : method.requestSerialize(v)),
      requestDeserialize: (b: Buffer) => edge.decode(b, decoder, shape),
      responseSerialize: method.responseSerialize,
      responseDeserialize: method.responseDeserialize,
    },
    (call, reply) => {
      d.onCall?.(call.getPeer());
      const req = call.request;
      if (req instanceof Undecodable) reply(null, failed(edge.refusal(req)));
      else handler(call as grpc.ServerUnaryCall<Req, Res>, reply);
    },
  ];
  const methods = {
    put: unary(s.put, PutRequest, PUT_REQUEST, handlers.put, (header) => PutResponse.create({ header })),
    get: unary(s.get, GetRequest, GET_REQUEST, handlers.get, (header) => GetResponse.create({ header })),
    delete: unary(s.delete, DeleteRequest, DELETE_REQUEST, handlers.delete, (header) =>
      DeleteResponse.create({ header }),
    ),
    compareAndSwap: unary(
      s.compareAndSwap,
      CompareAndSwapRequest,
      CAS_REQUEST,
      handlers.compareAndSwap,
      (header) => CompareAndSwapResponse.create({ header }),
    ),
    range: unary(s.range, RangeRequest, RANGE_REQUEST, handlers.range, (header) =>
      RangeResponse.create({ header }),
    ),
    status: unary(s.status, StatusRequest, STATUS_REQUEST, handlers.status, (header) =>
      StatusResponse.create({ header }),
    ),
    txn: unary(s.txn, TxnRequest, TXN_REQUEST, handlers.txn, (header) => TxnResponse.create({ header })),
    leaseGrant: unary(s.leaseGrant, LeaseGrantRequest, LEASE_GRANT_REQUEST, handlers.leaseGrant, (header) =>
      LeaseGrantResponse.create({ header }),
    ),
    leaseRevoke: unary(
      s.leaseRevoke,
      LeaseRevokeRequest,
      LEASE_REVOKE_REQUEST,
      handlers.leaseRevoke,
      (header) => LeaseRevokeResponse.create({ header }),
    ),
    leaseTimeToLive: unary(
      s.leaseTimeToLive,
      LeaseTimeToLiveRequest,
      LEASE_TIME_TO_LIVE_REQUEST,
      handlers.leaseTimeToLive,
      (header) => LeaseTimeToLiveResponse.create({ header }),
    ),
    leaseList: unary(s.leaseList, LeaseListRequest, LEASE_LIST_REQUEST, handlers.leaseList, (header) =>
      LeaseListResponse.create({ header }),
    ),
  };
  // Streams: a request that cannot be decoded arrives as the message's defaults, marked with why.
  const marked =
    <T extends object>(decoder: Decoder<T>, shape: MessageShape) =>
    (b: Buffer): T => {
      const r = edge.decode(b, decoder, shape);
      if (!(r instanceof Undecodable)) return r;
      const blank = decoder.decode(new Uint8Array(0)) as T & { [UNDECODABLE]?: RaftKvError };
      blank[UNDECODABLE] = r.error;
      return blank;
    };
  const definition: grpc.ServiceDefinition = {
    ...Object.fromEntries(Object.entries(methods).map(([name, [def]]) => [name, def])),
    session: { ...s.session, requestDeserialize: (b: Buffer) => edge.decodeStreamed(b) },
    watch: { ...s.watch, requestDeserialize: marked(WatchRequest, WATCH_REQUEST) },
    leaseKeepAlive: {
      ...s.leaseKeepAlive,
      requestDeserialize: marked(LeaseKeepAliveRequest, LEASE_KEEP_ALIVE_REQUEST),
    },
  };
  server.addService(definition, {
    ...Object.fromEntries(Object.entries(methods).map(([name, [, handler]]) => [name, handler])),
    session: (call: Parameters<ClientServiceServer["session"]>[0]) => {
      d.onCall?.(call.getPeer());
      handlers.session(call);
    },
    watch: (call: Parameters<ClientServiceServer["watch"]>[0]) => {
      d.onCall?.(call.getPeer());
      handlers.watch(call);
    },
    leaseKeepAlive: (call: Parameters<ClientServiceServer["leaseKeepAlive"]>[0]) => {
      d.onCall?.(call.getPeer());
      handlers.leaseKeepAlive(call);
    },
  });
}

class ClientEdge {
  private readonly d: ClientEdgeDeps;
  private readonly utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
  private readonly strictUtf8 = (bytes: Uint8Array): string => {
    try {
      return this.utf8.decode(bytes);
    } catch {
      throw new BadUtf8();
    }
  };

  constructor(d: ClientEdgeDeps) {
    this.d = d;
  }

  decode<T>(bytes: Buffer, decoder: Decoder<T>, shape: MessageShape): T | Undecodable {
    if (bytes.length > this.d.maxRequestBytes)
      return this.undecodable(
        "tooLarge",
        new RaftKvError({
          code: "TOO_LARGE",
          message: `the request is ${bytes.length} bytes, over maxRequestBytes (${this.d.maxRequestBytes})`,
          nodeId: this.d.nodeId,
          hint: "send a smaller value (maxValueBytes) or key (maxKeyBytes)",
        }),
      );
    const problem = wireTypeProblem(bytes, shape);
    if (problem !== null)
      return this.undecodable(
        "wrongWireType",
        new RaftKvError({
          code: "INVALID_ARGUMENT",
          message: `the request is not a well-formed protobuf message: ${problem}`,
          nodeId: this.d.nodeId,
          hint: "send raftkv.v1 messages as proto/raftkv/v1/client.proto defines them",
        }),
      );
    try {
      return decoder.decode(new BinaryReader(bytes, this.strictUtf8));
    } catch (err) {
      if (err instanceof BadUtf8)
        return this.undecodable(
          "badUtf8",
          new RaftKvError({
            code: "INVALID_ARGUMENT",
            message: "a string field (key, prefix, start_after or client_id) is not well-formed UTF-8",
            nodeId: this.d.nodeId,
            hint: "keys are UTF-8 text: encode binary keys, e.g. as hex or base64",
          }),
        );
      return this.undecodable(
        "malformed",
        new RaftKvError({
          code: "INVALID_ARGUMENT",
          message: `the request is not a well-formed protobuf message: ${err instanceof Error ? err.message : String(err)}`,
          nodeId: this.d.nodeId,
          hint: "send raftkv.v1 messages as proto/raftkv/v1/client.proto defines them",
        }),
      );
    }
  }

  /** A Session-stream request; one that cannot be decoded arrives with no operation and its reason. */
  decodeStreamed(bytes: Buffer): ClientRequest {
    const r = this.decode(bytes, ClientRequest, CLIENT_REQUEST);
    if (!(r instanceof Undecodable)) return r;
    const marked: MarkedRequest = { requestId: leadingRequestId(bytes), timeoutMs: 0, op: undefined };
    marked[UNDECODABLE] = r.error;
    return marked;
  }

  /** The response header answering an undecodable request. */
  refusal(u: Undecodable): ResponseHeader {
    const soft = this.d.softState();
    const code = u.error.code === "TOO_LARGE" ? "TOO_LARGE" : "INVALID_ARGUMENT";
    return {
      nodeId: BigInt(this.d.nodeId),
      leaderId: soft.leaderId === null ? undefined : BigInt(soft.leaderId),
      leaderAddress: "",
      term: BigInt(soft.term),
      errorCode:
        code === "TOO_LARGE" ? WireErrorCode.ERROR_CODE_TOO_LARGE : WireErrorCode.ERROR_CODE_INVALID_ARGUMENT,
      errorMessage: u.error.message.slice(code.length + 2),
      revision: 0n,
    };
  }

  private undecodable(reason: UndecodableReason, error: RaftKvError): Undecodable {
    this.d.metrics?.clientRefusals.inc({ reason });
    return new Undecodable(reason, error);
  }
}

/** request_id (field 1, varint) when it leads the message, so even an undecodable request on a
 *  Session stream is answered under its id; 0 otherwise. */
function leadingRequestId(bytes: Uint8Array): bigint {
  if (bytes[0] !== 0x08) return 0n;
  let v = 0n;
  for (let i = 1, shift = 0n; i < bytes.length && i <= 10; i++, shift += 7n) {
    const b = bytes[i]!;
    v |= BigInt(b & 0x7f) << shift;
    if ((b & 0x80) === 0) return BigInt.asUintN(64, v);
  }
  return 0n;
}
