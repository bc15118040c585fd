// `raftkv member list | add ADDR [--learner] [--id N] | promote ID | remove ID` and `raftkv leader
// transfer [--to ID]`: ClusterService calls sent to the leader (found by asking the endpoints in turn
// and following NOT_LEADER's address), printed as a table or --json.

import * as grpc from "@grpc/grpc-js";
import type { Command } from "commander";
import { clientTlsCredentials } from "../client/tls.ts";
import {
  ClusterServiceClient,
  type MemberChangeResponse,
  type MemberListResponse,
  type TransferLeadershipResponse,
} from "../gen/raftkv/v1/cluster.ts";
import { type ErrorCode, RaftKvError } from "../lib/errors.ts";
import { type ClientFlags, parseDuration, tlsFrom, withClientOptions } from "./kv-commands.ts";
import { formatTable, printJson, usageError } from "./output.ts";

export type Reply = { errorCode: string; errorMessage: string; leaderAddress: string };

/** Calls `method` at each endpoint until one answers other than NOT_LEADER/NO_LEADER, following the
 *  leader's address when one is named, and asking them all again while none leads (until the --timeout
 *  deadline); throws the last error. */
export async function clusterCall<R extends Reply>(
  f: ClientFlags,
  method: (
    c: ClusterServiceClient,
    deadline: Date,
    done: (err: grpc.ServiceError | null, r?: R) => void,
  ) => void,
): Promise<R> {
  const timeoutMs = parseDuration(f.timeout, "--timeout");
  const tls = tlsFrom(f);
  const credentials = tls === undefined ? grpc.credentials.createInsecure() : clientTlsCredentials(tls);
  const endpoints = f.endpoints.split(",").map((e) => e.trim());
  const queue = [...endpoints];
  const tried = new Set<string>();
  const deadline = new Date(Date.now() + timeoutMs);
  let last: RaftKvError | null = null;
  while (Date.now() < deadline.getTime()) {
    if (queue.length === 0) {
      // Every endpoint said NO_LEADER or NOT_LEADER (an election or a transfer under way, or a follower
      // still naming the leader before the last one): ask them all again shortly, until the deadline.
      if (last?.code !== "NO_LEADER" && last?.code !== "NOT_LEADER") break;
      await new Promise((r) => setTimeout(r, 200));
      tried.clear();
      queue.push(...endpoints);
    }
    const endpoint = queue.shift()!;
    if (tried.has(endpoint)) continue;
    tried.add(endpoint);
    const client = new ClusterServiceClient(endpoint, credentials);
    try {
      const r = await new Promise<R>((resolve, reject) =>
        method(client, deadline, (err, res) =>
          err !== null || res === undefined ? reject(err) : resolve(res),
        ),
      );
      if (r.errorCode === "") return r;
      last = new RaftKvError({
        code: r.errorCode as ErrorCode,
        message: `${r.errorMessage} (at ${endpoint})`,
      });
      if (r.errorCode !== "NOT_LEADER" && r.errorCode !== "NO_LEADER") throw last;
      if (r.leaderAddress !== "") queue.unshift(r.leaderAddress);
    } catch (err) {
      if (err instanceof RaftKvError) throw err;
      last = new RaftKvError({
        code: "UNAVAILABLE",
        message: `${endpoint}: ${(err as Error).message}`,
        hint: "check --endpoints and that the nodes are up",
      });
    } finally {
      client.close();
    }
  }
  throw last ?? new RaftKvError({ code: "DEADLINE_EXCEEDED", message: "no endpoint answered in time" });
}

function membersTable(r: MemberListResponse): string {
  const rows = r.members.map((m) => [
    String(m.id),
    m.peerAddress,
    m.role.toLowerCase(),
    Number(m.id) === Number(r.leaderId) ? "yes" : "",
    m.progressState === "" ? "" : `${m.matchIndex}/${r.lastIndex} ${m.progressState}`,
    m.incarnation,
  ]);
  const table = formatTable(["ID", "PEER ADDRESS", "ROLE", "LEADER", "PROGRESS", "INCARNATION"], rows);
  const refused = r.refused === "" ? "" : `\nREFUSED: ${r.refused}`;
  return `${table}\nconfiguration: ${r.description}${r.joint ? " (joint)" : ""}, from log index ${r.configIndex}${refused}`;
}

function membersJson(r: MemberListResponse): unknown {
  return {
    ok: true,
    leaderId: Number(r.leaderId) < 0 ? null : Number(r.leaderId),
    joint: r.joint,
    configIndex: Number(r.configIndex),
    configuration: r.description,
    members: r.members.map((m) => ({
      id: Number(m.id),
      peerAddress: m.peerAddress,
      role: m.role.toLowerCase(),
      matchIndex: Number(m.matchIndex),
      progress: m.progressState,
      incarnation: m.incarnation,
    })),
    ...(r.refused === "" ? {} : { refused: r.refused }),
  };
}

function parseId(text: string, what: string): bigint {
  if (!/^\d+$/.test(text))
    throw usageError(`${what} "${text}" is not a member id`, "raftkv member list shows the ids");
  return BigInt(text);
}

function printChange(f: ClientFlags, verb: string, r: MemberChangeResponse): void {
  const conf = r.configuration;
  if (f.json)
    printJson({
      ok: true,
      id: Number(r.id),
      ...(conf === undefined ? {} : { configuration: membersJson(conf) }),
    });
  else process.stdout.write(`${verb} member ${r.id}\n${conf === undefined ? "" : `${membersTable(conf)}\n`}`);
}

/** The leader's member list (a table, and the configuration: voters, learners, joint or not), or why it
 *  could not be had; for `raftkv status`. */
export async function configurationText(f: ClientFlags): Promise<string> {
  try {
    // As bounded as the status calls: a cluster without a leader must not hold `status` for --timeout.
    const timeoutMs = Math.min(parseDuration(f.timeout, "--timeout"), 2000);
    return membersTable(await leaderMemberList({ ...f, timeout: `${timeoutMs}ms` }));
  } catch (err) {
    return `configuration: unavailable (${err instanceof Error ? err.message : String(err)})`;
  }
}

/** MemberList from the leader (it knows every member's progress), or from any node when none leads. */
async function leaderMemberList(f: ClientFlags): Promise<MemberListResponse> {
  return clusterCall<MemberListResponse>(f, (c, deadline, done) =>
    c.memberList({}, new grpc.Metadata(), { deadline }, (err, res) => {
      if (err !== null || res === undefined) return done(err);
      const leaderElsewhere = res.leaderAddress !== "" && Number(res.leaderId) !== Number(res.nodeId);
      done(null, leaderElsewhere ? { ...res, errorCode: "NOT_LEADER" } : res);
    }),
  ).catch(async (err: unknown) => {
    if (!(err instanceof RaftKvError) || (err.code !== "NOT_LEADER" && err.code !== "NO_LEADER")) throw err;
    return clusterCall<MemberListResponse>(f, (c, deadline, done) =>
      c.memberList({}, new grpc.Metadata(), { deadline }, done),
    );
  });
}

export function addMemberCommands(program: Command): void {
  const member = program.command("member").description("list and change the cluster's members");
  withClientOptions(member.command("list").description("members, roles and progress (from the leader)"), {
    reads: false,
  }).action(async (f: ClientFlags) => {
    const r = await leaderMemberList(f);
    if (f.json) printJson(membersJson(r));
    else process.stdout.write(`${membersTable(r)}\n`);
  });
  withClientOptions(
    member
      .command("add <peerAddress>")
      .description("add a member (a voter, through a joint configuration; a learner with --learner)")
      .option("--learner", "add a non-voting learner (promote it once it has caught up)", false)
      .option("--id <n>", "the new member's id (default: one above every id the cluster ever used)"),
    { reads: false },
  ).action(async (peerAddress: string, f: ClientFlags & { learner: boolean; id?: string }) => {
    const id = f.id === undefined ? null : parseId(f.id, "--id");
    const r = await clusterCall<MemberChangeResponse>(f, (c, deadline, done) =>
      c.memberAdd(
        { peerAddress, learner: f.learner, hasId: id !== null, id: id ?? 0n },
        new grpc.Metadata(),
        { deadline },
        done,
      ),
    );
    printChange(f, f.learner ? "added learner" : "added voter", r);
  });
  withClientOptions(member.command("promote <id>").description("make a caught-up learner a voter"), {
    reads: false,
  }).action(async (idText: string, f: ClientFlags) => {
    const id = parseId(idText, "id");
    const r = await clusterCall<MemberChangeResponse>(f, (c, deadline, done) =>
      c.memberPromote({ id }, new grpc.Metadata(), { deadline }, done),
    );
    printChange(f, "promoted", r);
  });
  withClientOptions(
    member.command("remove <id>").description("remove a member; its id is never used again"),
    {
      reads: false,
    },
  ).action(async (idText: string, f: ClientFlags) => {
    const id = parseId(idText, "id");
    const r = await clusterCall<MemberChangeResponse>(f, (c, deadline, done) =>
      c.memberRemove({ id }, new grpc.Metadata(), { deadline }, done),
    );
    printChange(f, "removed", r);
  });

  const leader = program.command("leader").description("leadership");
  withClientOptions(
    leader
      .command("transfer")
      .description("hand leadership to another voter (thesis §3.10), without an election timeout")
      .option("--to <id>", "the voter to hand it to (default: the most up-to-date one)"),
    { reads: false },
  ).action(async (f: ClientFlags & { to?: string }) => {
    const to = f.to === undefined ? null : parseId(f.to, "--to");
    const r = await clusterCall<TransferLeadershipResponse>(f, (c, deadline, done) =>
      c.transferLeadership({ toAny: to === null, to: to ?? 0n }, new grpc.Metadata(), { deadline }, done),
    );
    if (f.json) printJson({ ok: true, leaderId: Number(r.newLeaderId) });
    else process.stdout.write(`leadership moved to node ${r.newLeaderId}\n`);
  });
}
