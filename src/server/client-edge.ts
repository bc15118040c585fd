// The client service on the wire: each request's bytes are checked against maxRequestBytes and decoded
// strictly (well-formed protobuf, well-formed UTF-8) before ClientApi sees them, so bad bytes get
// INVALID_ARGUMENT or TOO_LARGE in the response header, never an INTERNAL status, and a non-UTF-8 key is
// never silently rewritten (U+FFFD) into another key.

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
  PutRequest,
  PutResponse,
  RangeRequest,
  RangeResponse,
  type ResponseHeader,
  StatusRequest,
  StatusResponse,
  ErrorCode as WireErrorCode,
} from "../gen/raftkv/v1/client.ts";
import { RaftKvError } from "../lib/errors.ts";
import type { NodeMetrics } from "./metrics.ts";

export interface ClientEdgeDeps {
  readonly nodeId: NodeId;
  /** Largest request message, in bytes (TOO_LARGE beyond it). */
  readonly maxRequestBytes: number;
  /** Term and leader for the header of a refusal. */
  readonly softState: () => { readonly term: number; readonly leaderId: NodeId | null };
  readonly metrics: NodeMetrics | null;
  /** Called with the remote address of every call (the listener marks the connection used). */
  readonly onCall?: (peerAddress: string) => void;
}

/** Why a request's bytes did not become a request. */
export type UndecodableReason = "tooLarge" | "badUtf8" | "malformed";

/** A unary request whose bytes could not be decoded: answered here, never seen by ClientApi. */
class Undecodable {
  constructor(
    readonly reason: UndecodableReason,
    readonly error: RaftKvError,
  ) {}
}

const UNDECODABLE = Symbol("undecodable");

type MarkedRequest = ClientRequest & { [UNDECODABLE]?: RaftKvError };

/** For a Session-stream request that could not be decoded (it arrives with no operation): why. */
export function undecodableReason(req: ClientRequest): RaftKvError | undefined {
  return (req as MarkedRequest)[UNDECODABLE];
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
    handler: grpc.handleUnaryCall<Req, Res>,
    failed: (header: ResponseHeader) => Res,
  ): [grpc.MethodDefinition<Req | Undecodable, Res>, grpc.handleUnaryCall<Req | Undecodable, Res>] => [
    {
      path: method.path,
      requestStream: false,
      responseStream: false,
      requestSerialize: (v) => (v instanceof Undecodable ? Buffer.alloc(0) : method.requestSerialize(v)),
      requestDeserialize: (b: Buffer) => edge.decode(b, decoder),
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
    put: unary(s.put, PutRequest, handlers.put, (header) => PutResponse.create({ header })),
    get: unary(s.get, GetRequest, handlers.get, (header) => GetResponse.create({ header })),
    delete: unary(s.delete, DeleteRequest, handlers.delete, (header) => DeleteResponse.create({ header })),
    compareAndSwap: unary(s.compareAndSwap, CompareAndSwapRequest, handlers.compareAndSwap, (header) =>
      CompareAndSwapResponse.create({ header }),
    ),
    range: unary(s.range, RangeRequest, handlers.range, (header) => RangeResponse.create({ header })),
    status: unary(s.status, StatusRequest, handlers.status, (header) => StatusResponse.create({ header })),
  };
  const definition: grpc.ServiceDefinition = {
    ...Object.fromEntries(Object.entries(methods).map(([name, [def]]) => [name, def])),
    session: { ...s.session, requestDeserialize: (b: Buffer) => edge.decodeStreamed(b) },
  };
  server.addService(definition, {
    ...Object.fromEntries(Object.entries(methods).map(([name, [, handler]]) => [name, handler])),
    session: (call: Parameters<ClientServiceServer["session"]>[0]) => {
      d.onCall?.(call.getPeer());
      handlers.session(call);
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

  decode<T>(bytes: Buffer, decoder: Decoder<T>): T | Undecodable {
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
    const r = this.decode(bytes, ClientRequest);
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
