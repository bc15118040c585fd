// A server that does nothing: raftkv's ClientService (unary and Session stream) and etcd's KV Put/Range
// answered at once with canned responses, so the load generator's own ceiling can be measured in the
// same run. Twice: through grpc-js's server, and (unary only) through a bare `node:http2` server that
// speaks just enough of gRPC's framing (issue 17: what the library's own unary path costs). Runs as its
// own process: `tsx src/bench/noop-server.ts`; prints {"port":N,"http2Port":M} and serves until stdin
// closes or SIGTERM.

import * as http2 from "node:http2";
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

/** A gRPC message on the wire: uncompressed flag, u32 big-endian length, the bytes. */
function grpcFrame(message: Uint8Array): Buffer {
  const f = Buffer.allocUnsafe(5 + message.length);
  f[0] = 0;
  f.writeUInt32BE(message.length, 1);
  f.set(message, 5);
  return f;
}
const H2_ANSWERS = new Map<string, Buffer>([
  [ClientServiceService.put.path, grpcFrame(PutResponse.encode(PUT).finish())],
  [ClientServiceService.get.path, grpcFrame(GetResponse.encode(GET).finish())],
  [ETCD_PUT_PATH, grpcFrame(ETCD_PUT)],
  [ETCD_RANGE_PATH, grpcFrame(ETCD_RANGE)],
]);
const h2 = http2.createServer();
h2.on("stream", (stream, headers) => {
  const answer = H2_ANSWERS.get(String(headers[":path"]));
  stream.on("error", () => undefined);
  stream.on("data", () => undefined); // the request is not read: a canned answer needs none
  stream.on("end", () => {
    if (answer === undefined) {
      stream.respond(
        {
          ":status": 200,
          "content-type": "application/grpc",
          "grpc-status": String(grpc.status.UNIMPLEMENTED),
        },
        { endStream: true },
      );
      return;
    }
    stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
    stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
    stream.end(answer);
  });
});
const http2Port = await new Promise<number>((resolve) =>
  h2.listen(0, "127.0.0.1", () => resolve((h2.address() as { port: number }).port)),
);

process.stdout.on("error", () => undefined); // the parent may be gone already
process.stdout.write(`${JSON.stringify({ port, http2Port })}\n`);
const stop = (): void => {
  h2.close();
  server.tryShutdown(() => process.exit(0));
};
process.on("SIGTERM", stop);
process.stdin.on("end", stop);
process.stdin.resume();
