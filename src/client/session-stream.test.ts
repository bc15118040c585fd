// Tests of the client's Session-stream path against a scripted ClientService: answers matched by id out of
// order, deadlines, a broken stream failing only what it carried, and the fall back to unary calls.

import assert from "node:assert/strict";
import { performance } from "node:perf_hooks";
import { after, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import {
  type ClientRequest,
  type ClientResponse,
  ClientServiceClient,
  ClientServiceService,
  GetResponse,
  type ResponseHeader,
} from "../gen/raftkv/v1/client.ts";
import { RaftKvClient } from "./client.ts";
import { SessionStream } from "./session-stream.ts";

const OK: ResponseHeader = {
  nodeId: 0n,
  leaderId: 0n,
  leaderAddress: "",
  term: 1n,
  errorCode: 0,
  errorMessage: "",
  revision: 0n,
};

type SessionHandler = (call: grpc.ServerDuplexStream<ClientRequest, ClientResponse>) => void;

const servers: grpc.Server[] = [];
after(() => {
  for (const s of servers) s.forceShutdown();
});

/** A ClientService whose unary get answers "unary:<key>" and whose Session is `session`. */
async function serve(session: SessionHandler): Promise<string> {
  const server = new grpc.Server();
  const unimplemented = (_c: unknown, cb: grpc.sendUnaryData<never>): void =>
    cb({ code: grpc.status.UNIMPLEMENTED });
  server.addService(ClientServiceService, {
    put: unimplemented,
    delete: unimplemented,
    compareAndSwap: unimplemented,
    range: unimplemented,
    status: unimplemented,
    get: (call: grpc.ServerUnaryCall<{ key: string }, GetResponse>, cb: grpc.sendUnaryData<GetResponse>) =>
      cb(
        null,
        GetResponse.create({ header: OK, found: true, value: Buffer.from(`unary:${call.request.key}`) }),
      ),
    session,
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) =>
      e === null ? resolve(p) : reject(e),
    ),
  );
  servers.push(server);
  return `127.0.0.1:${port}`;
}

function answer(req: ClientRequest, text: string): ClientResponse {
  return {
    requestId: req.requestId,
    result: {
      $case: "get",
      value: GetResponse.create({ header: OK, found: true, value: Buffer.from(text) }),
    },
  };
}

function keyOf(req: ClientRequest): string {
  return req.op?.$case === "get" ? req.op.value.key : "";
}

function getOp(key: string) {
  return { $case: "get" as const, value: { key, consistency: 1 } };
}

test("answers are matched to requests by id, in any order", async () => {
  const held: ClientRequest[] = [];
  const address = await serve((call) => {
    call.on("data", (req: ClientRequest) => {
      held.push(req);
      if (held.length === 3) for (const r of held.reverse()) call.write(answer(r, `stream:${keyOf(r)}`));
    });
  });
  const s = new SessionStream(new ClientServiceClient(address, grpc.credentials.createInsecure()), () =>
    performance.now(),
  );
  const results = await Promise.all(["a", "b", "c"].map((k) => s.request(getOp(k), 2000)));
  const texts = results.map((r) => (r.$case === "get" ? Buffer.from(r.value.value).toString() : r.$case));
  assert.deepEqual(texts, ["stream:a", "stream:b", "stream:c"]);
  s.close();
});

test("a request past its deadline fails alone with DEADLINE_EXCEEDED", async () => {
  const address = await serve((call) => {
    call.on("data", (req: ClientRequest) => {
      if (keyOf(req) !== "slow") call.write(answer(req, "fast"));
    });
  });
  const s = new SessionStream(new ClientServiceClient(address, grpc.credentials.createInsecure()), () =>
    performance.now(),
  );
  // The slow request may expire before the fast one answers (a loaded machine): handle it at once.
  const slow = assert.rejects(
    s.request(getOp("slow"), 60),
    (e: grpc.ServiceError) => e.code === grpc.status.DEADLINE_EXCEEDED,
  );
  const fast = await s.request(getOp("fast"), 2000);
  assert.equal(fast.$case, "get");
  await slow;
  s.close();
});

test("a broken stream fails what it carried; the next request opens a new stream", async () => {
  let streams = 0;
  const address = await serve((call) => {
    streams++;
    call.on("data", (req: ClientRequest) => {
      if (keyOf(req) === "break") call.emit("error", { code: grpc.status.INTERNAL, details: "boom" });
      else call.write(answer(req, "ok"));
    });
  });
  const s = new SessionStream(new ClientServiceClient(address, grpc.credentials.createInsecure()), () =>
    performance.now(),
  );
  await assert.rejects(
    s.request(getOp("break"), 2000),
    (e: grpc.ServiceError) => e.code === grpc.status.INTERNAL,
  );
  const r = await s.request(getOp("again"), 2000);
  assert.equal(r.$case, "get");
  assert.equal(streams, 2);
  s.close();
});

test("a node refusing sessions is served by unary calls instead", async () => {
  const address = await serve((call) => {
    call.emit("error", { code: grpc.status.RESOURCE_EXHAUSTED, details: "too many sessions" });
  });
  const kv = new RaftKvClient({ endpoints: [address], timeoutMs: 3000, seed: 1 });
  assert.equal(kv.requestPath, "stream");
  assert.equal(await kv.getString("k"), "unary:k");
  assert.equal(await kv.getString("k2"), "unary:k2");
  kv.close();
});

test("the stream path and the unary path return the same answers", async () => {
  const address = await serve((call) => {
    call.on("data", (req: ClientRequest) => call.write(answer(req, `unary:${keyOf(req)}`)));
  });
  const viaStream = new RaftKvClient({ endpoints: [address], seed: 1 });
  const viaUnary = new RaftKvClient({ endpoints: [address], seed: 1, path: "unary" });
  assert.equal(await viaStream.getString("x"), await viaUnary.getString("x"));
  viaStream.close();
  viaUnary.close();
});
