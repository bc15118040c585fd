// ClusterService (proto/raftkv/v1/cluster.proto): member list/add/promote/remove and leadership transfer
// over gRPC, on the node's port. Requests are checked here; the core decides and refuses with reasons.

import type * as grpc from "@grpc/grpc-js";
import { describeMembership, isJoint, MAX_ADDRESS_BYTES, type Membership } from "../core/membership.ts";
import type { Raft } from "../core/raft.ts";
import type { NodeId } from "../core/types.ts";
import {
  ClusterServiceService,
  type Member,
  type MemberChangeResponse,
  type MemberListResponse,
  type TransferLeadershipResponse,
} from "../gen/raftkv/v1/cluster.ts";
import { RaftKvError } from "../lib/errors.ts";
import { type BackupDeps, backupHandler } from "./backup.ts";
import { awaitOtherLeader, type MembershipFollower } from "./membership.ts";

export interface ClusterServiceDeps {
  readonly nodeId: NodeId;
  readonly core: Raft;
  readonly follower: MembershipFollower;
  readonly livePeers: ReadonlyMap<NodeId, string>;
  /** Runs the core's transfer inside the replica's loop. */
  readonly transferLeadership: (to: NodeId) => boolean;
  /** How long a change or a transfer may take before its outcome is reported unknown. */
  readonly changeTimeoutMs: number;
  readonly transferTimeoutMs: number;
  readonly onCall?: (peerAddress: string) => void;
  /** Why peers refuse this node's data folder and the remedy; "" when none does. */
  readonly refused: () => string;
  /** The backup stream (Snapshot): the state machine's image after a linearizable read barrier. */
  readonly backup: Pick<BackupDeps, "clusterId" | "take">;
}

const MAX_NODE_ID = 2 ** 52;

export function addClusterService(server: grpc.Server, d: ClusterServiceDeps): void {
  const s = ClusterServiceService;
  const wrap =
    <Req, Res>(run: (req: Req) => Promise<Res>, failed: (e: RaftKvError) => Res) =>
    (call: grpc.ServerUnaryCall<Req, Res>, reply: grpc.sendUnaryData<Res>): void => {
      d.onCall?.(call.getPeer());
      run(call.request).then(
        (res) => reply(null, res),
        (err: unknown) => reply(null, failed(asError(d.nodeId, err))),
      );
    };
  const changeFailed = (e: RaftKvError): MemberChangeResponse => ({
    errorCode: e.code,
    errorMessage: e.message,
    leaderAddress: leaderAddress(d),
    id: 0n,
    configuration: undefined,
  });
  const change = async (id: NodeId, run: () => Promise<Membership>): Promise<MemberChangeResponse> => {
    await run();
    return { errorCode: "", errorMessage: "", leaderAddress: "", id: BigInt(id), configuration: list(d) };
  };
  server.addService(s, {
    memberList: wrap(
      async () => list(d),
      (e) => ({ ...list(d), errorCode: e.code, errorMessage: e.message }),
    ),
    memberAdd: wrap(async (req: { peerAddress: string; learner: boolean; hasId: boolean; id: bigint }) => {
      const address = checkAddress(d.nodeId, req.peerAddress);
      const id = req.hasId ? checkId(d.nodeId, req.id) : d.follower.newMemberId();
      const type = req.learner ? "addLearner" : "addVoter";
      return change(id, () => d.follower.change([{ type, id, address }], d.changeTimeoutMs));
    }, changeFailed),
    memberPromote: wrap(async (req: { id: bigint }) => {
      const id = checkId(d.nodeId, req.id);
      return change(id, () => d.follower.change([{ type: "promote", id }], d.changeTimeoutMs));
    }, changeFailed),
    memberRemove: wrap(async (req: { id: bigint }) => {
      const id = checkId(d.nodeId, req.id);
      return change(id, () => d.follower.change([{ type: "remove", id }], d.changeTimeoutMs));
    }, changeFailed),
    snapshot: backupHandler({ nodeId: d.nodeId, ...d.backup, leaderAddress: () => leaderAddress(d) }),
    transferLeadership: wrap(
      (req: { toAny: boolean; to: bigint }) => transfer(d, req),
      (e): TransferLeadershipResponse => ({
        errorCode: e.code,
        errorMessage: e.message,
        leaderAddress: leaderAddress(d),
        newLeaderId: -1n,
      }),
    ),
  });
}

function list(d: ClusterServiceDeps): MemberListResponse {
  const { membership: m, index } = d.follower.configuration();
  const progress = new Map(d.core.followers().map((f) => [f.id, f] as const));
  const role = (id: NodeId): string =>
    m.voters.includes(id) ? "VOTER" : m.learners.includes(id) ? "LEARNER" : "OUTGOING";
  const ids = [...new Set([...m.voters, ...m.outgoing, ...m.learners])].sort((a, b) => a - b);
  const members: Member[] = ids.map((id) => {
    const p = progress.get(id);
    const self = id === d.nodeId && d.core.softState().role === "leader";
    return {
      id: BigInt(id),
      peerAddress: m.addresses.find((a) => a.id === id)?.address || (d.livePeers.get(id) ?? ""),
      role: role(id),
      matchIndex: BigInt(self ? d.core.log.lastIndex() : (p?.match ?? 0)),
      progressState: self ? "leader" : (p?.state ?? ""),
      incarnation: m.addresses.find((a) => a.id === id)?.incarnation ?? "",
    };
  });
  const leader = d.core.softState().leaderId;
  return {
    nodeId: BigInt(d.nodeId),
    leaderId: BigInt(leader ?? -1),
    leaderAddress: leaderAddress(d),
    members,
    joint: isJoint(m),
    configIndex: BigInt(index),
    description: describeMembership(m),
    lastIndex: BigInt(d.core.log.lastIndex()),
    errorCode: "",
    errorMessage: "",
    refused: d.refused(),
  };
}

function leaderAddress(d: ClusterServiceDeps): string {
  const leader = d.core.softState().leaderId;
  return leader === null ? "" : (d.livePeers.get(leader) ?? "");
}

async function transfer(
  d: ClusterServiceDeps,
  req: { toAny: boolean; to: bigint },
): Promise<TransferLeadershipResponse> {
  const soft = d.core.softState();
  if (soft.role !== "leader")
    throw new RaftKvError({
      code: soft.leaderId === null ? "NO_LEADER" : "NOT_LEADER",
      message: `node ${d.nodeId} is not the leader`,
      nodeId: d.nodeId,
      hint: soft.leaderId === null ? "retry shortly" : `send it to the leader, node ${soft.leaderId}`,
    });
  const to = req.toAny ? d.follower.bestTransferee() : checkId(d.nodeId, req.to);
  if (to === null || !d.transferLeadership(to))
    throw new RaftKvError({
      code: "INVALID_ARGUMENT",
      message:
        to === null
          ? "no other voter to hand leadership to"
          : `cannot hand leadership to node ${to}: it must be another voter of the current configuration`,
      nodeId: d.nodeId,
      hint: "raftkv member list shows the voters",
    });
  const now = (): number => performance.now();
  const leader = await awaitOtherLeader(d.core, d.nodeId, now, now() + d.transferTimeoutMs, 10);
  if (leader === null)
    throw new RaftKvError({
      code: "DEADLINE_EXCEEDED",
      message: `leadership did not move to node ${to} within ${d.transferTimeoutMs} ms`,
      nodeId: d.nodeId,
      hint: "check that the target is up and caught up (raftkv member list), then retry",
    });
  return { errorCode: "", errorMessage: "", leaderAddress: leaderAddress(d), newLeaderId: BigInt(leader) };
}

function checkId(nodeId: NodeId, id: bigint): NodeId {
  if (id < 0n || id > BigInt(MAX_NODE_ID))
    throw new RaftKvError({ code: "INVALID_ARGUMENT", message: `member id ${id} is out of range`, nodeId });
  return Number(id);
}

function checkAddress(nodeId: NodeId, address: string): string {
  const colon = address.lastIndexOf(":");
  const port = Number(address.slice(colon + 1));
  if (
    colon <= 0 ||
    !Number.isInteger(port) ||
    port < 1 ||
    port > 65535 ||
    Buffer.byteLength(address) > MAX_ADDRESS_BYTES
  )
    throw new RaftKvError({
      code: "INVALID_ARGUMENT",
      message: `peer address "${address}" is not host:port`,
      nodeId,
      hint: "give the new member's peer address, e.g. 127.0.0.1:7004",
    });
  return address;
}

function asError(nodeId: NodeId, err: unknown): RaftKvError {
  if (err instanceof RaftKvError) return err;
  return new RaftKvError({
    code: "INTERNAL",
    message: err instanceof Error ? err.message : String(err),
    nodeId,
  });
}
