// Client-API calls on the wire for the security tests: typed unary calls that return the response header
// (code and message) instead of throwing, raw Session streams, and hand-made protobuf bytes.

import * as grpc from "@grpc/grpc-js";
import {
  ClientRequest,
  ClientResponse,
  ClientServiceClient,
  ErrorCode,
  type ResponseHeader,
} from "../../src/gen/raftkv/v1/client.ts";

export { ErrorCode };

export interface Answer<Res> {
  readonly code: ErrorCode;
  readonly message: string;
  readonly header: ResponseHeader | undefined;
  readonly res: Res;
}

/** A raw typed client of one node (no redirects, no retries). */
export function rawClient(
  address: string,
  credentials = grpc.credentials.createInsecure(),
): ClientServiceClient {
  return new ClientServiceClient(address, credentials, {
    "grpc.max_send_message_length": 64 * 1024 * 1024,
    "grpc.max_receive_message_length": 64 * 1024 * 1024,
  });
}

type Unary<Req, Res> = (
  req: Req,
  md: grpc.Metadata,
  o: Partial<grpc.CallOptions>,
  cb: (err: grpc.ServiceError | null, res: Res) => void,
) => grpc.ClientUnaryCall;

/** One unary call; resolves with the header's code and message, rejects with a gRPC status error. */
export function ask<Req, Res extends { header?: ResponseHeader | undefined }>(
  fn: Unary<Req, Res>,
  req: Req,
  deadlineMs = 5000,
): Promise<Answer<Res>> {
  return new Promise((resolve, reject) =>
    fn(req, new grpc.Metadata(), { deadline: Date.now() + deadlineMs }, (err, res) =>
      err === null
        ? resolve({
            code: res.header?.errorCode ?? ErrorCode.ERROR_CODE_UNSPECIFIED,
            message: res.header?.errorMessage ?? "",
            header: res.header,
            res,
          })
        : reject(err),
    ),
  );
}

/** Writes `requests` (messages, or raw bytes sent as they are) on one Session stream to `address`,
 *  half-closes, and collects the answers. */
export async function session(
  address: string,
  requests: readonly (ClientRequest | Buffer)[],
  credentials = grpc.credentials.createInsecure(),
): Promise<ClientResponse[]> {
  const c = new grpc.Client(address, credentials);
  const call = c.makeBidiStreamRequest(
    "/raftkv.v1.ClientService/Session",
    (b: Buffer) => b,
    (b: Buffer) => ClientResponse.decode(b),
  );
  const answers: ClientResponse[] = [];
  const done = new Promise<void>((resolve, reject) => {
    call.on("data", (r: ClientResponse) => answers.push(r));
    call.on("end", resolve);
    call.on("error", reject);
  });
  for (const r of requests)
    call.write(Buffer.isBuffer(r) ? r : Buffer.from(ClientRequest.encode(r).finish()));
  call.end();
  try {
    await done;
  } finally {
    c.close();
  }
  return answers;
}

/** Protobuf bytes of a message with the given fields: [fieldNo, bytes] as length-delimited, [fieldNo, bigint] as varint. */
export function protobuf(fields: readonly (readonly [number, Uint8Array | string | bigint])[]): Buffer {
  const parts: Buffer[] = [];
  const varint = (n: bigint): void => {
    const out: number[] = [];
    let v = n;
    while (v >= 0x80n) {
      out.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    out.push(Number(v));
    parts.push(Buffer.from(out));
  };
  for (const [no, v] of fields) {
    if (typeof v === "bigint") {
      varint(BigInt(no << 3));
      varint(v);
    } else {
      const bytes = typeof v === "string" ? Buffer.from(v) : v;
      varint(BigInt((no << 3) | 2));
      varint(BigInt(bytes.length));
      parts.push(Buffer.from(bytes));
    }
  }
  return Buffer.concat(parts);
}
