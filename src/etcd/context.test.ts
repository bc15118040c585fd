// The etcd call frame: a call that meets "no leader" (an election, or a follower that has not heard from
// a new leader yet) waits for one within its budget and is tried again, as etcd's members hold such a
// request; without a leader in time it fails with etcd's "no leader"; a call already forwarded or one
// that only this node serves is never held.

import assert from "node:assert/strict";
import { test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { pino } from "pino";
import type { NodeId } from "../core/types.ts";
import { KVService, type PutRequest, type PutResponse } from "../gen/etcd/etcdserverpb/rpc.ts";
import { NotLeaderError } from "../server/embed.ts";
import type { MvccApi } from "../server/mvcc-api.ts";
import { EtcdCalls, type EtcdLimits } from "./context.ts";
import { FORWARDED_METADATA } from "./forward.ts";

function calls(leader: () => NodeId | null): EtcdCalls {
  return new EtcdCalls({
    mvcc: {} as MvccApi,
    nodeId: 1,
    clusterId: "t",
    limits: { maxStreams: 4 } as unknown as EtcdLimits,
    requestTimeoutMs: 5000,
    members: () => [],
    status: () => ({
      leaderId: leader(),
      term: 2,
      commitIndex: 0,
      appliedIndex: 0,
      dbSizeBytes: 0,
      version: "3.4.0",
    }),
    log: pino({ level: "silent" }),
  });
}

/** Runs one unary call through the frame; resolves with its status code (0) or error. */
function run(
  c: EtcdCalls,
  fn: (req: PutRequest, budgetMs: number) => Promise<PutResponse>,
  o: { deadlineMs?: number; forwarded?: boolean; method?: boolean } = {},
): Promise<{ code: number; details: string; ms: number }> {
  const metadata = new grpc.Metadata();
  if (o.forwarded === true) metadata.set(FORWARDED_METADATA, "2");
  const started = performance.now();
  const handler = c.unary(fn, o.method === false ? undefined : KVService.put);
  return new Promise((resolve) => {
    const call = {
      getPeer: () => "ipv4:127.0.0.1:1",
      request: {} as PutRequest,
      metadata,
      getDeadline: () => (o.deadlineMs === undefined ? Infinity : new Date(Date.now() + o.deadlineMs)),
    };
    handler(
      call as never,
      ((err: grpc.ServiceError | null) =>
        resolve({
          code: err === null ? 0 : (err.code ?? -1),
          details: err?.details ?? "",
          ms: performance.now() - started,
        })) as never,
    );
  });
}

test("a write that meets no leader waits for one and is tried again; nothing is proposed twice", async () => {
  let leader: NodeId | null = null;
  let tries = 0;
  const r = await run(
    calls(() => leader),
    async () => {
      tries++;
      if (leader !== null) return {} as PutResponse;
      // The election ends 150 ms after the first try.
      if (tries === 1)
        setTimeout(() => {
          leader = 1;
        }, 150);
      throw new NotLeaderError(1, null);
    },
  );
  assert.equal(r.code, 0, r.details);
  assert.equal(tries, 2, "tried once, then once more after the leader was known");
});

test("with no leader within the budget the call fails with etcd's no leader, inside its deadline", async () => {
  const r = await run(
    calls(() => null),
    async () => {
      throw new NotLeaderError(1, null);
    },
    { deadlineMs: 400 },
  );
  assert.equal(r.code, grpc.status.UNAVAILABLE);
  assert.match(r.details, /no leader/);
  // Not the 3 s a call with a longer budget may wait: the deadline bounds the wait.
  assert.ok(r.ms < 2500, `gave up within the deadline (${r.ms.toFixed(0)} ms)`);
});

test("a forwarded call waits too and is answered here; one that only this node serves is answered at once", async () => {
  let leader: NodeId | null = null;
  let tries = 0;
  // Fails until a leader is known, which is 150 ms after the second try: a frame that waited answers OK.
  const fn = async (): Promise<PutResponse> => {
    tries++;
    if (leader !== null) return {} as PutResponse;
    if (tries === 2)
      setTimeout(() => {
        leader = 1;
      }, 150);
    throw new NotLeaderError(1, null);
  };
  const local = await run(
    calls(() => leader),
    fn,
    { method: false },
  );
  assert.equal(local.code, grpc.status.UNAVAILABLE, "not held");
  assert.equal(tries, 1);
  const forwarded = await run(
    calls(() => leader),
    fn,
    { forwarded: true },
  );
  assert.equal(forwarded.code, 0, forwarded.details);
  assert.equal(tries, 3, "tried, then again once the leader was known");
});
