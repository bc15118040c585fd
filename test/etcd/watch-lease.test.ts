// etcd's Watch and Lease services over the MVCC twin, through the generated etcdserverpb clients: one
// stream with several watchers, history replay from start_revision, filters and prev_kv, progress,
// cancel, compaction; lease grant/keepalive/timetolive/revoke with attached keys; Status and MemberList.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type * as grpc from "@grpc/grpc-js";
import { prefixEnd } from "../../src/etcd/keys.ts";
import {
  CompactionRequest,
  type CompactionResponse,
  LeaseGrantRequest,
  type LeaseGrantResponse,
  type LeaseKeepAliveRequest,
  type LeaseKeepAliveResponse,
  LeaseRevokeRequest,
  type LeaseRevokeResponse,
  LeaseTimeToLiveRequest,
  type LeaseTimeToLiveResponse,
  MemberListRequest,
  type MemberListResponse,
  PutRequest,
  type PutResponse,
  RangeRequest,
  type RangeResponse,
  StatusRequest,
  type StatusResponse,
  WatchCreateRequest,
  WatchCreateRequest_FilterType,
  type WatchRequest,
  type WatchResponse,
} from "../../src/gen/etcd/etcdserverpb/rpc.ts";
import { Event_EventType } from "../../src/gen/etcd/mvccpb/kv.ts";
import { bytes, call, startTwinServer, type TwinServer, text } from "./harness.ts";

let s: TwinServer;
const put = (key: string, value: string, extra: Partial<PutRequest> = {}) =>
  call<PutRequest, PutResponse>(
    (r, cb) => s.kv.put(r, cb),
    PutRequest.create({ key: bytes(key), value: bytes(value), ...extra }),
  );

/** A watch stream whose responses queue up to be awaited one at a time. */
class Stream {
  private readonly queue: WatchResponse[] = [];
  private waiter: (() => void) | null = null;
  readonly call: grpc.ClientDuplexStream<WatchRequest, WatchResponse>;

  constructor() {
    this.call = s.watch.watch();
    this.call.on("data", (r: WatchResponse) => {
      this.queue.push(r);
      this.waiter?.();
    });
    this.call.on("error", () => {});
  }

  create(r: Partial<WatchCreateRequest>): void {
    this.call.write({ requestUnion: { $case: "createRequest", value: WatchCreateRequest.create(r) } });
  }

  async next(): Promise<WatchResponse> {
    const deadline = Date.now() + 10_000;
    while (this.queue.length === 0) {
      assert.ok(Date.now() < deadline, "no watch response within 10 s");
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
        setTimeout(resolve, 200);
      });
      this.waiter = null;
    }
    return this.queue.shift()!;
  }

  close(): void {
    this.call.end();
    this.call.cancel();
  }
}

const events = (r: WatchResponse) =>
  r.events.map(
    (e) =>
      `${e.type === Event_EventType.PUT ? "PUT" : "DELETE"} ${text(e.kv!.key)}=${text(e.kv!.value)}@${e.kv!.modRevision}${e.prevKv === undefined ? "" : ` prev=${text(e.prevKv.value)}`}`,
  );

describe("etcd Watch, Lease, Cluster and Maintenance over the MVCC twin", () => {
  before(async () => {
    s = await startTwinServer();
  });
  after(() => s.close());

  it("watchers on one stream: ids 0, 1, ...; history from start_revision; filters; prev_kv; cancel", async () => {
    await put("w/a", "1"); // revision 2
    await put("w/b", "2"); // revision 3
    const w = new Stream();
    w.create({ key: bytes("w/"), rangeEnd: prefixEnd(bytes("w/")), startRevision: 2n });
    const created = await w.next();
    assert.deepEqual([created.watchId, created.created], [0n, true]);
    assert.deepEqual(events(await w.next()), ["PUT w/a=1@2"]);
    assert.deepEqual(events(await w.next()), ["PUT w/b=2@3"]);
    w.create({ key: bytes("w/a"), prevKv: true, filters: [WatchCreateRequest_FilterType.NODELETE] });
    const second = await w.next();
    assert.deepEqual([second.watchId, second.created], [1n, true]);
    await put("w/a", "3");
    const got = [await w.next(), await w.next()].sort((x, y) => Number(x.watchId - y.watchId));
    assert.deepEqual(events(got[0]!), ["PUT w/a=3@4"]);
    assert.deepEqual(events(got[1]!), ["PUT w/a=3@4 prev=1"]);
    assert.equal(got[0]!.header?.revision, 4n);
    w.call.write({ requestUnion: { $case: "cancelRequest", value: { watchId: 0n } } });
    const canceled = await w.next();
    assert.deepEqual([canceled.watchId, canceled.canceled], [0n, true]);
    w.call.write({ requestUnion: { $case: "progressRequest", value: {} } });
    const progress = await w.next();
    assert.deepEqual([progress.watchId, progress.events.length, progress.header?.revision], [-1n, 0, 4n]);
    w.close();
  });

  it("a watch below the compacted revision is canceled with compact_revision", async () => {
    const rev = (await put("c", "x")).header!.revision;
    await call<CompactionRequest, CompactionResponse>(
      (r, cb) => s.kv.compact(r, cb),
      CompactionRequest.create({ revision: rev }),
    );
    const w = new Stream();
    w.create({ key: bytes("c"), startRevision: rev - 1n });
    assert.equal((await w.next()).created, true);
    const canceled = await w.next();
    assert.deepEqual([canceled.canceled, canceled.compactRevision], [true, rev]);
    w.close();
  });

  it("leases: grant, attach, keepalive, timetolive, revoke deletes the keys at one revision", async () => {
    const g = await call<LeaseGrantRequest, LeaseGrantResponse>(
      (r, cb) => s.lease.leaseGrant(r, cb),
      LeaseGrantRequest.create({ TTL: 30n }),
    );
    assert.equal(g.TTL, 30n);
    await put("l/1", "a", { lease: g.ID });
    await put("l/2", "b", { lease: g.ID });
    const ttl = await call<LeaseTimeToLiveRequest, LeaseTimeToLiveResponse>(
      (r, cb) => s.lease.leaseTimeToLive(r, cb),
      LeaseTimeToLiveRequest.create({ ID: g.ID, keys: true }),
    );
    assert.deepEqual([ttl.grantedTTL, ttl.keys.map(text)], [30n, ["l/1", "l/2"]]);
    const ka: grpc.ClientDuplexStream<LeaseKeepAliveRequest, LeaseKeepAliveResponse> =
      s.lease.leaseKeepAlive();
    const answer = new Promise<LeaseKeepAliveResponse>((resolve) => ka.once("data", resolve));
    ka.write({ ID: g.ID });
    assert.deepEqual([(await answer).ID, (await answer).TTL], [g.ID, 30n]);
    const gone = new Promise<LeaseKeepAliveResponse>((resolve) => ka.once("data", resolve));
    ka.write({ ID: 424242n });
    assert.equal((await gone).TTL, 0n, "etcd answers an unknown lease's keepalive with TTL 0");
    ka.end();
    const before = (await put("other", "x")).header!.revision;
    const revoked = await call<LeaseRevokeRequest, LeaseRevokeResponse>(
      (r, cb) => s.lease.leaseRevoke(r, cb),
      LeaseRevokeRequest.create({ ID: g.ID }),
    );
    assert.equal(revoked.header?.revision, before + 1n, "both keys deleted at one revision");
    const left = await call<RangeRequest, RangeResponse>(
      (r, cb) => s.kv.range(r, cb),
      RangeRequest.create({ key: bytes("l/"), rangeEnd: prefixEnd(bytes("l/")) }),
    );
    assert.equal(left.count, 0n);
    const after = await call<LeaseTimeToLiveRequest, LeaseTimeToLiveResponse>(
      (r, cb) => s.lease.leaseTimeToLive(r, cb),
      LeaseTimeToLiveRequest.create({ ID: g.ID }),
    );
    assert.equal(after.TTL, -1n);
    await assert.rejects(
      call<LeaseRevokeRequest, LeaseRevokeResponse>(
        (r, cb) => s.lease.leaseRevoke(r, cb),
        LeaseRevokeRequest.create({ ID: g.ID }),
      ),
      (e: grpc.ServiceError) => e.details === "etcdserver: requested lease not found",
    );
  });

  it("a lease that is not kept alive expires and takes its keys", async () => {
    const g = await call<LeaseGrantRequest, LeaseGrantResponse>(
      (r, cb) => s.lease.leaseGrant(r, cb),
      LeaseGrantRequest.create({ TTL: 1n }),
    );
    assert.equal(g.TTL, 2n, "raised to the minimum TTL");
    await put("short", "x", { lease: g.ID });
    const deadline = Date.now() + 15_000;
    for (;;) {
      const r = await call<RangeRequest, RangeResponse>(
        (q, cb) => s.kv.range(q, cb),
        RangeRequest.create({ key: bytes("short") }),
      );
      if (r.count === 0n) break;
      assert.ok(Date.now() < deadline, "the key outlived its lease by 13 s");
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  });

  it("member list and status", async () => {
    const m = await call<MemberListRequest, MemberListResponse>(
      (r, cb) => s.cluster.memberList(r, cb),
      MemberListRequest.create(),
    );
    assert.deepEqual(
      m.members.map((x) => [x.ID, x.name]),
      [[1n, "node0"]],
    );
    const st = await call<StatusRequest, StatusResponse>(
      (r, cb) => s.maintenance.status(r, cb),
      StatusRequest.create(),
    );
    assert.deepEqual([st.leader, st.header?.memberId, st.raftTerm], [1n, 1n, 1n]);
  });
});
