// A server that does nothing: raftkv's ClientService (unary and Session stream) and etcd's KV Put/Range
// answered at once with canned responses, so the load generator's own ceiling can be measured in the
// same run. Runs as its own process: `tsx src/bench/noop-server.ts`; prints {"port":N} and serves until
// stdin closes or SIGTERM.

import * as grpc from "@grpc/grpc-js";
import {
  type ClientRequest,
  type ClientResponse,
  ClientServiceService,
  GetResponse,
  PutResponse,
  type ResponseHeader,
} from "../gen/raftkv/v1/client.ts";
import { ETCD_PUT_PATH, ETCD_RANGE_PATH, encodePutResponse, encodeRangeResponse } from "./etcd-codec.ts";

const HEADER: ResponseHeader = {
  nodeId: 0n,
  leaderId: 0n,
  leaderAddress: "",
  term: 1n,
  errorCode: 0,
  errorMessage: "",
  revision: 0n,
};
const VALUE = Buffer.alloc(256, 7);
const PUT = PutResponse.create({ header: HEADER, index: 1n });
const GET = GetResponse.create({ header: HEADER, found: true, value: VALUE, index: 1n });

const ETCD_PUT = encodePutResponse(1n, 1n);
const ETCD_RANGE = encodeRangeResponse(1n, 1n, Buffer.from("key-000000"), VALUE);

const identity = (b: Buffer): Buffer => b;
const raw = (path: string): grpc.MethodDefinition<Buffer, Buffer> => ({
  path,
  requestStream: false,
  responseStream: false,
  requestSerialize: identity,
  requestDeserialize: identity,
  responseSerialize: identity,
  responseDeserialize: identity,
});

function answer(req: ClientRequest): ClientResponse {
  const op = req.op;
  if (op?.$case === "put") return { requestId: req.requestId, result: { $case: "put", value: PUT } };
  return { requestId: req.requestId, result: { $case: "get", value: GET } };
}

const server = new grpc.Server();
server.addService(ClientServiceService, {
  put: (_call: unknown, cb: grpc.sendUnaryData<PutResponse>) => cb(null, PUT),
  get: (_call: unknown, cb: grpc.sendUnaryData<GetResponse>) => cb(null, GET),
  delete: (_call: unknown, cb: grpc.sendUnaryData<never>) => cb({ code: grpc.status.UNIMPLEMENTED }),
  compareAndSwap: (_call: unknown, cb: grpc.sendUnaryData<never>) => cb({ code: grpc.status.UNIMPLEMENTED }),
  range: (_call: unknown, cb: grpc.sendUnaryData<never>) => cb({ code: grpc.status.UNIMPLEMENTED }),
  status: (_call: unknown, cb: grpc.sendUnaryData<never>) => cb({ code: grpc.status.UNIMPLEMENTED }),
  session: (call: grpc.ServerDuplexStream<ClientRequest, ClientResponse>) => {
    call.on("data", (req: ClientRequest) => call.write(answer(req)));
    call.on("end", () => call.end());
  },
});
server.addService(
  { put: raw(ETCD_PUT_PATH), range: raw(ETCD_RANGE_PATH) },
  {
    put: (_call: unknown, cb: grpc.sendUnaryData<Buffer>) => cb(null, ETCD_PUT),
    range: (_call: unknown, cb: grpc.sendUnaryData<Buffer>) => cb(null, ETCD_RANGE),
  },
);
const port = await new Promise<number>((resolve, reject) =>
  server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) =>
    e === null ? resolve(p) : reject(e),
  ),
);
process.stdout.on("error", () => undefined); // the parent may be gone already
process.stdout.write(`${JSON.stringify({ port })}\n`);
const stop = (): void => server.tryShutdown(() => process.exit(0));
process.on("SIGTERM", stop);
process.stdin.on("end", stop);
process.stdin.resume();
