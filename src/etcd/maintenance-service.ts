// etcd's Cluster and Maintenance services: MemberList from the node's membership, Status and HashKV
// from its Raft and MVCC state, Alarm (raftkv raises none), Defragment as a no-op, and Snapshot as a
// stream of the keys at one revision. MemberAdd, MemberRemove and MemberPromote are the node's
// joint-consensus changes (on the leader; forwarded there from a follower); MemberUpdate is refused.

import { createHash } from "node:crypto";
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import type * as grpc from "@grpc/grpc-js";
import type {
  AlarmResponse,
  DefragmentResponse,
  HashKVRequest,
  HashKVResponse,
  HashResponse,
  Member,
  MemberAddRequest,
  MemberAddResponse,
  MemberListResponse,
  MemberPromoteRequest,
  MemberPromoteResponse,
  MemberRemoveRequest,
  MemberRemoveResponse,
  MoveLeaderRequest,
  MoveLeaderResponse,
  SnapshotRequest,
  SnapshotResponse,
  StatusResponse,
} from "../gen/etcd/etcdserverpb/rpc.ts";
import { ClusterService, MaintenanceService } from "../gen/etcd/etcdserverpb/rpc.ts";
import { KeyValue as WireKeyValue } from "../gen/etcd/mvccpb/kv.ts";
import type { RangeRequest } from "../kv/mvcc-types.ts";
import { waitForDrain } from "../server/grpc-drain.ts";
import { type EtcdCalls, type EtcdMembership, memberIdOf, Refused, wireKv } from "./context.ts";
import { EtcdError, grpcStatus, mvccError, toEtcdError } from "./errors.ts";

/** The first bytes of a snapshot stream (raftkv's format, not etcd's bbolt file). */
export const SNAPSHOT_MAGIC = "raftkv etcd-api snapshot v1\n";

/** Keys read per page while streaming a snapshot. */
const SNAPSHOT_PAGE_KEYS = 500;

export class EtcdMaintenance {
  private readonly c: EtcdCalls;

  constructor(calls: EtcdCalls) {
    this.c = calls;
  }

  memberList(): MemberListResponse {
    return { header: this.header(), members: this.members() };
  }

  status(): StatusResponse {
    const s = this.c.d.status();
    return {
      header: this.header(),
      version: s.version,
      dbSize: BigInt(s.dbSizeBytes),
      leader: s.leaderId === null ? 0n : memberIdOf(s.leaderId),
      raftIndex: BigInt(s.commitIndex),
      raftTerm: BigInt(s.term),
      raftAppliedIndex: BigInt(s.appliedIndex),
      errors: [],
      dbSizeInUse: BigInt(s.dbSizeBytes),
      isLearner: s.isLearner ?? false,
    };
  }

  async hashKv(r: HashKVRequest): Promise<HashKVResponse> {
    const revision = r.revision <= 0n ? 0 : Number(r.revision);
    const { current, compacted } = this.c.d.mvcc.revisions();
    if (revision > current) throw mvccError("futureRevision", "");
    if (revision !== 0 && revision < compacted) throw mvccError("compacted", "");
    const out = await this.c.d.mvcc.hashKv(revision);
    return {
      header: this.c.header(out.header),
      hash: out.hash >>> 0,
      compactRevision: BigInt(out.compactRevision),
    };
  }

  async hash(): Promise<HashResponse> {
    const out = await this.c.d.mvcc.hashKv(0);
    return { header: this.c.header(out.header), hash: out.hash >>> 0 };
  }

  handlers(): Record<string, grpc.UntypedHandleCall> {
    const u = this.c;
    const m = this.c.d.membership;
    const unimplemented = (what: string) =>
      u.unary(async () => {
        throw new EtcdError(
          grpcStatus.UNIMPLEMENTED,
          `etcdserver: ${what} is not served by raftkv's etcd API (node ${this.c.d.nodeId}); change membership with raftkv's own tools`,
        );
      });
    return {
      // Cluster
      memberList: u.unary(async () => this.memberList()),
      memberAdd:
        m === undefined
          ? unimplemented("MemberAdd")
          : u.unary((r: MemberAddRequest, b) => this.memberAdd(m, r, b), ClusterService.memberAdd),
      memberRemove:
        m === undefined
          ? unimplemented("MemberRemove")
          : u.unary(async (r: MemberRemoveRequest, b): Promise<MemberRemoveResponse> => {
              await m.remove(this.nodeIdOf(r.ID), b);
              return { header: this.header(), members: this.members() };
            }, ClusterService.memberRemove),
      memberUpdate: unimplemented("MemberUpdate"),
      memberPromote:
        m === undefined
          ? unimplemented("MemberPromote")
          : u.unary(async (r: MemberPromoteRequest, b): Promise<MemberPromoteResponse> => {
              await m.promote(this.nodeIdOf(r.ID), b);
              return { header: this.header(), members: this.members() };
            }, ClusterService.memberPromote),
      // Maintenance
      status: u.unary(async () => this.status()),
      hashKv: u.unary((r: HashKVRequest) => this.hashKv(r)),
      hash: u.unary(() => this.hash()),
      alarm: u.unary(async (): Promise<AlarmResponse> => ({ header: this.header(), alarms: [] })),
      defragment: u.unary(async (): Promise<DefragmentResponse> => ({ header: this.header() })),
      moveLeader:
        m === undefined
          ? unimplemented("MoveLeader")
          : u.unary(async (r: MoveLeaderRequest, b): Promise<MoveLeaderResponse> => {
              await m.moveLeader(this.nodeIdOf(r.targetID), b);
              return { header: this.header() };
            }, MaintenanceService.moveLeader),
      snapshot: (call: grpc.ServerWritableStream<SnapshotRequest | Refused, SnapshotResponse>) =>
        this.snapshot(call),
    };
  }

  /**
   * The keys as of the current revision, streamed page by page: SNAPSHOT_MAGIC, then each key as a
   * length-delimited mvccpb.KeyValue, then zeros (a zero length ends the records) up to a multiple of
   * 512 bytes, then the SHA-256 of all that (etcdctl checks for 512-byte pages and the hash, as etcd
   * ends its own snapshot with one). etcdctl's `snapshot save` stores it; `snapshot restore` expects etcd's bbolt file and cannot
   * read it. remaining_bytes is 0 on the last message only (the total is not known in advance).
   */
  private snapshot(call: grpc.ServerWritableStream<SnapshotRequest | Refused, SnapshotResponse>): void {
    this.c.d.onCall?.(call.getPeer());
    if (call.request instanceof Refused) {
      call.emit("error", call.request.error.toStatus());
      return;
    }
    const close = this.c.openStream();
    if (close instanceof EtcdError) {
      call.emit("error", close.toStatus());
      return;
    }
    const sha = createHash("sha256");
    let sentBytes = 0;
    const send = (blob: Uint8Array, last: boolean): void => {
      if (!last) sha.update(blob);
      sentBytes += blob.length;
      call.write({ header: this.header(), remainingBytes: last ? 0n : 1n, blob });
    };
    const revision = this.c.d.mvcc.revisions().current;
    const run = async (): Promise<void> => {
      send(new TextEncoder().encode(SNAPSHOT_MAGIC), false);
      let from = Uint8Array.of(0);
      for (;;) {
        if (call.cancelled) return;
        const page = await this.c.d.mvcc.range(
          pageRequest(from, revision),
          "serializable",
          this.c.d.requestTimeoutMs,
        );
        if ("error" in page) throw mvccError(page.error.code, page.error.message);
        const w = new BinaryWriter();
        for (const kv of page.result.kvs) w.bytes(WireKeyValue.encode(wireKv(kv)).finish());
        if (page.result.kvs.length > 0) send(w.finish(), false);
        const last = page.result.kvs.at(-1);
        if (!page.result.more || last === undefined) break;
        from = Uint8Array.of(...last.key, 0);
        await waitForDrain(call);
      }
      send(new Uint8Array(512 - (sentBytes % 512)), false);
      send(sha.digest(), true);
      call.end();
    };
    run()
      .catch((err: unknown) => call.emit("error", toEtcdError(err, this.c.d.nodeId).toStatus()))
      .finally(close);
  }

  private async memberAdd(
    m: EtcdMembership,
    r: MemberAddRequest,
    budgetMs: number,
  ): Promise<MemberAddResponse> {
    if (r.peerURLs.length !== 1)
      throw new EtcdError(
        grpcStatus.INVALID_ARGUMENT,
        `etcdserver: a raftkv member has exactly one peer URL (got ${r.peerURLs.length}): give --peer-urls=http://host:port`,
      );
    const url = r.peerURLs[0]!;
    const match = /^(?:https?:\/\/)?([^/]+:\d+)\/?$/.exec(url);
    if (match === null)
      throw new EtcdError(
        grpcStatus.INVALID_ARGUMENT,
        `etcdserver: peer URL "${url}" is not http(s)://host:port (raftkv node ${this.c.d.nodeId})`,
      );
    const id = await m.add(match[1]!, r.isLearner, budgetMs);
    const members = this.members();
    return { header: this.header(), member: members.find((x) => x.ID === memberIdOf(id)), members };
  }

  /** raftkv's node id of etcd's member id (node id + 1); etcd's "member not found" for 0. */
  private nodeIdOf(memberId: bigint): number {
    if (memberId <= 0n || memberId > 2n ** 52n)
      throw new EtcdError(grpcStatus.NOT_FOUND, "etcdserver: member not found");
    return Number(memberId - 1n);
  }

  private members(): Member[] {
    return this.c.d.members().map((m) => ({
      ID: memberIdOf(m.id),
      name: m.name,
      peerURLs: [...m.peerUrls],
      clientURLs: [...m.clientUrls],
      isLearner: m.isLearner ?? false,
    }));
  }

  private header() {
    const { current } = this.c.d.mvcc.revisions();
    return this.c.header({ revision: current, raftTerm: this.c.d.status().term });
  }
}

function pageRequest(from: Uint8Array, revision: number): RangeRequest {
  return {
    key: from,
    rangeEnd: Uint8Array.of(0),
    limit: SNAPSHOT_PAGE_KEYS,
    revision,
    sortOrder: "none",
    sortTarget: "key",
    keysOnly: false,
    countOnly: false,
    minModRevision: 0,
    maxModRevision: 0,
    minCreateRevision: 0,
    maxCreateRevision: 0,
  };
}
