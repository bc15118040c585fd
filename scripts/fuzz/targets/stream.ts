// Fuzz target "stream": whole PeerBatch messages of a PeerService stream, with forged senders and terms,
// through the server's peer edge (PeerInbox: identity, codec, delivery) into a real Raft core that is
// leader, follower or fresh in a 3-node cluster, then ticked. Nothing may throw past the boundary: the
// edge never throws, the core never throws (an assertion there is a remote crash), a message whose sender
// is not the connection's certified member never reaches the core, a connection without a member
// identity delivers nothing, and the node keeps ticking afterwards.

import fc from "fast-check";
import { TestCluster } from "../../../src/core/test-cluster.ts";
import type { Message, NodeId } from "../../../src/core/types.ts";
import type { Prng } from "../../../src/lib/prng.ts";
import {
  type CodecContext,
  encodeBatch,
  encodeMessage,
  REFUSAL_REASONS,
} from "../../../src/transport/codec.ts";
import { arbMessage } from "../../../src/transport/codec-arbitraries.ts";
import { type PeerAuthentication, PeerInbox } from "../../../src/transport/peer-inbox.ts";
import { silentLogger, TransportCounters } from "../../../src/transport/transport.ts";
import { mutateBytes } from "../mutate.ts";
import { mutateProto } from "../proto-mutate.ts";
import { errorText, type FuzzTarget, finding, hex, type Outcome } from "../target.ts";

const CLUSTER = "fuzz-cluster";
const ADDR = "10.0.0.9:40000";
/** The node under test; 0 and 2 are its peers. */
const SELF = 1;
const LIMITS = { maxBytesPerMessage: 4096, maxEntriesPerMessage: 16 };

/** Input byte 0: the core's state. */
const STATES = ["leader", "follower", "fresh"] as const;
type State = (typeof STATES)[number];

/** Input byte 1: who the connection is (plaintext: nothing proven) and what its metadata claims. */
const IDENTITIES = [
  { name: "plaintext", auth: null, claims: "0" },
  { name: "member0", auth: { ok: true, member: 0 }, claims: "0" },
  { name: "member2", auth: { ok: true, member: 2 }, claims: "2" },
  { name: "member2-claims-0", auth: { ok: true, member: 2 }, claims: "0" },
  { name: "client-cert", auth: { ok: false, detail: "names no member identity" }, claims: "0" },
  { name: "own-cert", auth: { ok: true, member: SELF }, claims: "1" },
  { name: "non-member", auth: { ok: true, member: 7 }, claims: "7" },
] as const satisfies readonly { name: string; auth: PeerAuthentication | null; claims: string }[];

/** Ticks after the batch: enough for election timers (60 ticks) and heartbeats to act on what arrived. */
const TICKS_AFTER = 70;

/**
 * Delivers what the cores send until they are quiet (bounded). Unlike TestCluster.deliverAll, a node
 * that installed a snapshot holds an image for it (zeros of its size, as a real node holds the file it
 * received), so it can send that snapshot on.
 */
function settle(c: TestCluster): void {
  for (let round = 0; round < 200; round++) {
    for (const n of c.nodes.values())
      if (n.snapshot !== null && n.image?.length !== n.snapshot.sizeBytes)
        n.image = new Uint8Array(n.snapshot.sizeBytes);
    c.flush();
    const batch = c.inbox;
    if (batch.length === 0) return;
    c.inbox = [];
    for (const m of batch) c.raft(m.to).step(m);
  }
}

function stateOf(input: Uint8Array): State {
  return STATES[(input[0] ?? 0) % STATES.length]!;
}

function identityOf(input: Uint8Array): (typeof IDENTITIES)[number] {
  return IDENTITIES[(input[1] ?? 0) % IDENTITIES.length]!;
}

/** A 3-node cluster of bare cores with node 1 in `state`, and two committed entries when it has a leader. */
function cluster(state: State): TestCluster {
  const c = new TestCluster(3);
  if (state === "fresh") return c;
  const leader = state === "leader" ? SELF : 0;
  c.elect(leader);
  c.deliverAll();
  for (const data of [Uint8Array.of(1), Uint8Array.of(2)]) c.raft(leader).propose(data);
  c.deliverAll();
  return c;
}

/** Messages aimed at a node in `state`: another leader in its term, terms around it, huge terms. */
function pointed(prng: Prng, term: number, lastIndex: number): Message[] {
  const from = prng.pick<NodeId>([0, 2]);
  const terms = [term, term + 1, Math.max(1, term - 1), 2 ** 52, 2 ** 52 - 1, 2 ** 40];
  const t = prng.pick(terms);
  const base = { from, to: SELF, term: t };
  return [
    {
      type: "append",
      ...base,
      prevLogIndex: lastIndex,
      prevLogTerm: Math.min(term, t),
      entries: [{ index: lastIndex + 1, term: t, kind: "command", data: Uint8Array.of(7) }],
      leaderCommit: lastIndex + prng.int(0, 3),
      round: prng.int(0, 9),
    },
    { type: "append", ...base, prevLogIndex: 0, prevLogTerm: 0, entries: [], leaderCommit: 0, round: 1 },
    {
      type: "vote",
      ...base,
      preVote: prng.chance(0.5),
      lastLogIndex: lastIndex + 5,
      lastLogTerm: t,
      transfer: prng.chance(0.3),
    },
    {
      type: "voteResponse",
      ...base,
      preVote: prng.chance(0.5),
      granted: true,
      leaseRemainingTicks: prng.int(0, 30),
    },
    {
      type: "appendResponse",
      ...base,
      success: prng.chance(0.5),
      matchIndex: lastIndex + prng.int(0, 10),
      conflictTerm: 0,
      conflictIndex: prng.int(0, lastIndex + 2),
      round: prng.int(0, 9),
    },
    { type: "timeoutNow", ...base },
    {
      type: "snapshot",
      ...base,
      meta: { index: lastIndex + 10, term: Math.min(term, t), sizeBytes: 4, crc32c: prng.int(0, 0xffffffff) },
      offset: 0,
      data: Uint8Array.of(1, 2, 3, 4),
      length: 4,
      done: true,
      round: 1,
    },
    {
      type: "snapshotResponse",
      ...base,
      snapshotIndex: lastIndex,
      nextOffset: -1,
      installed: true,
      round: 1,
    },
  ];
}

function input(state: State, identity: number, batch: Uint8Array): Uint8Array {
  const out = new Uint8Array(batch.length + 2);
  out[0] = STATES.indexOf(state);
  out[1] = identity;
  out.set(batch, 2);
  return out;
}

function seeds(prng: Prng): Uint8Array[] {
  const out: Uint8Array[] = [];
  const probes = new Map(STATES.map((s) => [s, cluster(s).raft(SELF)]));
  for (let i = 0; i < 120; i++) {
    const state = STATES[i % STATES.length]!;
    const core = probes.get(state)!;
    const messages = pointed(prng, Math.max(1, core.softState().term), core.log.lastIndex());
    const picked = messages.filter(() => prng.chance(0.4));
    const frames = (picked.length > 0 ? picked : [messages[0]!]).map((m) => encodeMessage(m, CLUSTER));
    out.push(input(state, prng.int(0, IDENTITIES.length - 1), encodeBatch(frames)));
  }
  const random = fc.sample(arbMessage({ from: [0, 2], to: SELF, maxEntries: 8, maxChunkBytes: 64 }), {
    seed: prng.nextU32() | 0,
    numRuns: 60,
  });
  for (let i = 0; i + 3 <= random.length; i += 3)
    out.push(
      input(
        prng.pick(STATES),
        prng.int(0, IDENTITIES.length - 1),
        encodeBatch(random.slice(i, i + 3).map((m) => encodeMessage(m, CLUSTER))),
      ),
    );
  return out;
}

function mutate(inp: Uint8Array, other: Uint8Array, prng: Prng): Uint8Array {
  const state = prng.chance(0.05) ? prng.pick(STATES) : stateOf(inp);
  const identity = prng.chance(0.1) ? prng.int(0, IDENTITIES.length - 1) : (inp[1] ?? 0);
  const batch = inp.subarray(2);
  const next = prng.chance(0.85)
    ? mutateProto(batch, other.subarray(2), prng)
    : mutateBytes(batch, other.subarray(2), prng);
  return input(state, identity, next);
}

function run(inp: Uint8Array): Outcome {
  const state = stateOf(inp);
  const who = identityOf(inp);
  const c = cluster(state);
  const core = c.raft(SELF);
  const ctx: CodecContext = { clusterId: CLUSTER, self: SELF, peers: new Set([0, 1, 2]), limits: LIMITS };
  const errors: unknown[] = [];
  const inbox = new PeerInbox(ctx, new TransportCounters(silentLogger, undefined), (e) => errors.push(e));
  const seen: { forged: Message | null; delivered: number } = { forged: null, delivered: 0 };
  inbox.onMessage((m) => {
    seen.delivered++;
    if (who.auth !== null && (!who.auth.ok || m.from !== who.auth.member)) seen.forged = m;
    core.step(m);
    settle(c);
  });
  let label: string;
  try {
    const opened = inbox.openStream(ADDR, who.auth, { clusterId: CLUSTER, from: who.claims });
    if (!opened.ok) {
      if (!REFUSAL_REASONS.includes(opened.reason)) return finding("stream-unknown-reason", opened.reason);
      label = `${who.name}/stream-refused/${opened.reason}`;
    } else {
      const r = inbox.receiveBatch(opened, inp.subarray(2));
      label = `${state}/${who.name}/${r.end !== null ? `ended-${r.end.reason}` : r.accepted > 0 ? "accepted" : "refused"}`;
    }
  } catch (e) {
    return finding("stream-edge-threw", `the peer edge threw ${errorText(e)}`, e);
  }
  const thrown = errors[0];
  if (thrown !== undefined)
    return finding(
      "stream-core-threw",
      `the core threw on a message the edge accepted: ${errorText(thrown)}`,
      thrown,
    );
  const { forged, delivered } = seen;
  if (forged !== null)
    return finding(
      "stream-forged-sender",
      `${who.name} delivered ${forged.type} claiming node ${forged.from}`,
    );
  if (who.auth !== null && !who.auth.ok && delivered > 0)
    return finding("stream-unauthenticated-delivery", `${who.name} delivered ${delivered} messages`);
  try {
    for (let i = 0; i < TICKS_AFTER; i++) {
      core.tick();
      settle(c);
    }
  } catch (e) {
    return finding(
      "stream-core-threw-later",
      `the core threw while ticking after the batch: ${errorText(e)}`,
      e,
    );
  }
  return delivered > 0 ? { kind: "accepted", label } : { kind: "refused", label };
}

export const streamTarget: FuzzTarget = {
  name: "stream",
  seeds,
  mutate,
  run,
  describe: (inp) =>
    `state ${stateOf(inp)}, connection ${identityOf(inp).name}, PeerBatch hex ${hex(inp.subarray(2))}`,
};
