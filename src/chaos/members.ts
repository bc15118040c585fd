// Membership changes and leadership transfer on the chaos cluster, through the nodes' ClusterService (the
// RPCs `raftkv member` and `raftkv leader transfer` send), always asked of the node that leads now.

import * as grpc from "@grpc/grpc-js";
import {
  ClusterServiceClient,
  type MemberChangeResponse,
  type MemberListResponse,
  type TransferLeadershipResponse,
} from "../gen/raftkv/v1/cluster.ts";
import type { ChaosCluster } from "./cluster.ts";

const CALL_TIMEOUT_MS = 5000;

export interface LeaderView {
  /** The slot of the leader that answered. */
  readonly slot: number;
  readonly list: MemberListResponse;
}

/** What a change or transfer call returned: null on success, else the reason. */
export type CallOutcome = string | null;

export class ClusterOps {
  private readonly clients = new Map<number, ClusterServiceClient>();

  constructor(private readonly cluster: ChaosCluster) {}

  /** The configuration as the leader knows it (it answers as the leader), or null if none does now. */
  async leaderView(): Promise<LeaderView | null> {
    const slot = await this.cluster.leader();
    if (slot === null) return null;
    const list = await this.unary<MemberListResponse>(slot, (c, o, done) =>
      c.memberList({}, new grpc.Metadata(), o, done),
    );
    if (typeof list === "string" || list.errorCode !== "" || list.leaderId !== list.nodeId) return null;
    return { slot, list };
  }

  async remove(slot: number, memberId: number): Promise<CallOutcome> {
    return change(
      await this.unary<MemberChangeResponse>(slot, (c, o, done) =>
        c.memberRemove({ id: BigInt(memberId) }, new grpc.Metadata(), o, done),
      ),
    );
  }

  /** Adds a learner at `peerAddress` (the leader picks its id, never used before): its id, or the reason. */
  async addLearner(slot: number, peerAddress: string): Promise<{ id: number } | string> {
    const r = await this.unary<MemberChangeResponse>(slot, (c, o, done) =>
      c.memberAdd({ peerAddress, learner: true, hasId: false, id: 0n }, new grpc.Metadata(), o, done),
    );
    const failed = change(r);
    return failed ?? { id: Number((r as MemberChangeResponse).id) };
  }

  async promote(slot: number, memberId: number): Promise<CallOutcome> {
    return change(
      await this.unary<MemberChangeResponse>(slot, (c, o, done) =>
        c.memberPromote({ id: BigInt(memberId) }, new grpc.Metadata(), o, done),
      ),
    );
  }

  async transfer(slot: number, toMemberId: number): Promise<CallOutcome> {
    const r = await this.unary<TransferLeadershipResponse>(slot, (c, o, done) =>
      c.transferLeadership({ toAny: false, to: BigInt(toMemberId) }, new grpc.Metadata(), o, done),
    );
    return typeof r === "string" ? r : r.errorCode === "" ? null : `${r.errorCode}: ${r.errorMessage}`;
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }

  private unary<R>(
    slot: number,
    call: (
      c: ClusterServiceClient,
      options: Partial<grpc.CallOptions>,
      done: (err: grpc.ServiceError | null, r: R) => void,
    ) => void,
  ): Promise<R | string> {
    let c = this.clients.get(slot);
    if (c === undefined) {
      c = new ClusterServiceClient(this.cluster.address(slot), grpc.credentials.createInsecure());
      this.clients.set(slot, c);
    }
    const client = c;
    return new Promise((resolve) =>
      call(client, { deadline: new Date(Date.now() + CALL_TIMEOUT_MS) }, (err, r) =>
        resolve(err !== null ? `node ${slot}: ${err.message}` : r),
      ),
    );
  }
}

function change(r: MemberChangeResponse | string): CallOutcome {
  return typeof r === "string" ? r : r.errorCode === "" ? null : `${r.errorCode}: ${r.errorMessage}`;
}

/** The member with `id` in a member list, if any. */
export function memberOf(
  list: MemberListResponse,
  id: number,
): MemberListResponse["members"][number] | undefined {
  return list.members.find((m) => Number(m.id) === id);
}
