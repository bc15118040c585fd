// Cluster membership as replicated data (thesis §4.3, joint consensus; etcd-io/raft's ConfChangeV2):
// the configuration type, the changes an operator asks for, how a change turns into the next
// configuration (entering a joint configuration whenever the voters change, leaving it automatically),
// each member's incarnation binding (which data folder the cluster knows it by), and the byte encoding
// carried by config entries and snapshot metadata.

import type { NodeId } from "./types.ts";

/** One member's peer address, opaque to the core (the transport dials it), and its incarnation. */
export interface MemberAddress {
  readonly id: NodeId;
  readonly address: string;
  /** The incarnation (a random id made with the member's data folder, INCARNATION_HEX_DIGITS lowercase hex
   *  digits) the cluster bound this member to with a `bind` change; absent while not bound yet. A peer
   *  speaking for the member from another folder (wiped, restored) is refused: its vote and log are gone. */
  readonly incarnation?: string;
}

/** A configuration. Outside a joint configuration `outgoing` is empty; while joint, every quorum needs a
 *  majority of `voters` (the incoming configuration) and one of `outgoing` (thesis §4.3). */
export interface Membership {
  /** Voters, sorted (the incoming configuration while joint). */
  readonly voters: readonly NodeId[];
  /** While joint: the outgoing configuration's voters, sorted; empty otherwise. */
  readonly outgoing: readonly NodeId[];
  /** Members that receive the log but are counted in no quorum, sorted. */
  readonly learners: readonly NodeId[];
  /** The peer address of every member (voters, outgoing voters and learners), sorted by id. */
  readonly addresses: readonly MemberAddress[];
  /** Ids removed from the cluster, sorted: never reused, and their messages are refused. */
  readonly removed: readonly NodeId[];
}

/** A change an operator asks for. Several in one proposal are applied together (one joint step). */
export type ConfChange =
  | { readonly type: "addVoter"; readonly id: NodeId; readonly address: string }
  | { readonly type: "addLearner"; readonly id: NodeId; readonly address: string }
  | { readonly type: "promote"; readonly id: NodeId }
  | { readonly type: "remove"; readonly id: NodeId }
  /** Binds a member not bound yet to the incarnation of its data folder; voters and learners stay. */
  | { readonly type: "bind"; readonly id: NodeId; readonly incarnation: string };

/** Most members a configuration may hold (every member gets a progress, a link and a queue). */
export const MAX_MEMBERS = 64;
/** Most removed ids remembered; beyond it the oldest are forgotten (ids are not reused by `nextId`). */
export const MAX_REMOVED_IDS = 1024;
export const MAX_ADDRESS_BYTES = 255;
/** A learner is caught up, and may be promoted, once within this many entries of the leader's log. */
export const PROMOTE_WITHIN_ENTRIES = 512;

/** Hex digits of an incarnation: 64 random bits. */
export const INCARNATION_HEX_DIGITS = 16;
const INCARNATION_RE = /^[0-9a-f]{16}$/;

/** An incarnation as data folders, configurations and the wire carry it: 16 lowercase hex digits. */
export function isIncarnation(s: unknown): s is string {
  return typeof s === "string" && INCARNATION_RE.test(s);
}

export const EMPTY_MEMBERSHIP: Membership = {
  voters: [],
  outgoing: [],
  learners: [],
  addresses: [],
  removed: [],
};

const sorted = (ids: Iterable<NodeId>): NodeId[] => [...new Set(ids)].sort((a, b) => a - b);

/** A configuration of voters only, with their addresses (a new cluster's bootstrap). */
export function bootstrapMembership(members: readonly MemberAddress[]): Membership {
  return normalize({
    voters: members.map((m) => m.id),
    outgoing: [],
    learners: [],
    addresses: members,
    removed: [],
  });
}

/** Voters only, no addresses: the core's tests and the simulator name members by id alone. */
export function votersOnly(ids: readonly NodeId[]): Membership {
  return bootstrapMembership(ids.map((id) => ({ id, address: "" })));
}

export function normalize(m: Membership): Membership {
  const byId = new Map<NodeId, MemberAddress>();
  for (const a of m.addresses) byId.set(a.id, a);
  return {
    voters: sorted(m.voters),
    outgoing: sorted(m.outgoing),
    learners: sorted(m.learners),
    addresses: [...byId.values()].sort((a, b) => a.id - b.id).map(memberAddress),
    removed: sorted(m.removed),
  };
}

/** A MemberAddress in its canonical shape: no incarnation property while unbound. */
function memberAddress(a: MemberAddress): MemberAddress {
  return a.incarnation === undefined || a.incarnation === ""
    ? { id: a.id, address: a.address }
    : { id: a.id, address: a.address, incarnation: a.incarnation };
}

export function isJoint(m: Membership): boolean {
  return m.outgoing.length > 0;
}

/** Every member: voters of either configuration and learners. */
export function members(m: Membership): NodeId[] {
  return sorted([...m.voters, ...m.outgoing, ...m.learners]);
}

/** Counted in some quorum: a voter of the incoming or the outgoing configuration. */
export function isVoter(m: Membership, id: NodeId): boolean {
  return m.voters.includes(id) || m.outgoing.includes(id);
}

export function isMember(m: Membership, id: NodeId): boolean {
  return isVoter(m, id) || m.learners.includes(id);
}

export function addressOf(m: Membership, id: NodeId): string | undefined {
  return m.addresses.find((a) => a.id === id)?.address;
}

/** The incarnation member `id` is bound to, or undefined while it is not bound (or not a member). */
export function incarnationOf(m: Membership, id: NodeId): string | undefined {
  return m.addresses.find((a) => a.id === id)?.incarnation;
}

/** Members not bound to an incarnation yet, sorted. */
export function unboundMembers(m: Membership): NodeId[] {
  return members(m).filter((id) => incarnationOf(m, id) === undefined);
}

/** Every bound member's incarnation, by id. */
export function bindingsOf(m: Membership): Map<NodeId, string> {
  const out = new Map<NodeId, string>();
  for (const a of m.addresses) if (a.incarnation !== undefined) out.set(a.id, a.incarnation);
  return out;
}

/**
 * The `bind` changes a leader (`self`, of incarnation `selfIncarnation`) proposes for the members of `m`
 * not bound yet: its own incarnation, the others' from their messages (`seen`). None until every member
 * has shown one: a member that gives none may run a version before incarnations, which refuses a
 * configuration carrying them, and a rolling upgrade must not stall replication to it.
 */
export function bindChanges(
  m: Membership,
  self: NodeId,
  selfIncarnation: string,
  seen: ReadonlyMap<NodeId, string>,
): ConfChange[] {
  for (const id of members(m)) if (id !== self && !isIncarnation(seen.get(id))) return [];
  const out: ConfChange[] = [];
  for (const id of unboundMembers(m)) {
    const incarnation = id === self ? selfIncarnation : seen.get(id);
    if (incarnation !== undefined && isIncarnation(incarnation)) out.push({ type: "bind", id, incarnation });
  }
  return out;
}

/** The id a new member should get: above every id this cluster ever knew, so none is reused. */
export function nextId(m: Membership): NodeId {
  let max = -1;
  for (const id of [...members(m), ...m.removed]) max = Math.max(max, id);
  return max + 1;
}

export function describeMembership(m: Membership): string {
  const list = (ids: readonly NodeId[]): string => `{${ids.join(",")}}`;
  const voters = isJoint(m) ? `joint ${list(m.outgoing)} -> ${list(m.voters)}` : `voters ${list(m.voters)}`;
  return m.learners.length > 0 ? `${voters} learners ${list(m.learners)}` : voters;
}

export function sameMembership(a: Membership, b: Membership): boolean {
  return describeMembership(a) === describeMembership(b) && sameAddresses(a, b) && same(a.removed, b.removed);
}

function sameAddresses(a: Membership, b: Membership): boolean {
  return (
    a.addresses.length === b.addresses.length &&
    a.addresses.every((x, i) => {
      const y = b.addresses[i]!;
      return x.id === y.id && x.address === y.address && x.incarnation === y.incarnation;
    })
  );
}

function same(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * The configuration that `changes` lead to from `m` (which must not be joint), or why they cannot.
 * Changing only learners is applied directly (learners are in no quorum); changing the voters enters
 * the joint configuration (outgoing = today's voters), which the leader leaves on its own once it commits.
 */
export function applyChanges(m: Membership, changes: readonly ConfChange[]): Membership | string {
  if (isJoint(m)) return "the cluster is still in a joint configuration; retry once it has left it";
  if (changes.length === 0) return "no change given";
  const voters = new Set(m.voters);
  const learners = new Set(m.learners);
  const addresses = new Map(m.addresses.map((a) => [a.id, a] as const));
  const removed = new Set(m.removed);
  const touched = new Set<NodeId>();
  for (const c of changes) {
    if (!Number.isSafeInteger(c.id) || c.id < 0) return `member id ${c.id} is not a non-negative integer`;
    if (touched.has(c.id)) return `member ${c.id} appears twice in one change`;
    touched.add(c.id);
    const known = voters.has(c.id) || learners.has(c.id);
    switch (c.type) {
      case "addVoter":
      case "addLearner": {
        if (known) return `node ${c.id} is already a member`;
        if (removed.has(c.id))
          return `id ${c.id} belonged to a removed member and is never reused; add the node under a new id`;
        const bad = addressProblem(c.address);
        if (bad !== null) return `address of node ${c.id} ${bad}`;
        for (const [id, a] of addresses)
          if (a.address === c.address && a.address !== "")
            return `node ${id} already has address ${a.address}`;
        (c.type === "addVoter" ? voters : learners).add(c.id);
        addresses.set(c.id, { id: c.id, address: c.address });
        break;
      }
      case "promote":
        if (!learners.has(c.id))
          return voters.has(c.id) ? `node ${c.id} is already a voter` : `node ${c.id} is not a learner`;
        learners.delete(c.id);
        voters.add(c.id);
        break;
      case "remove":
        if (!known) return `node ${c.id} is not a member`;
        voters.delete(c.id);
        learners.delete(c.id);
        break;
      case "bind": {
        if (!known) return `node ${c.id} is not a member`;
        if (!isIncarnation(c.incarnation))
          return `incarnation ${JSON.stringify(String(c.incarnation).slice(0, 32))} of node ${c.id} is not ${INCARNATION_HEX_DIGITS} lowercase hex digits`;
        const a = addresses.get(c.id) ?? { id: c.id, address: "" };
        if (a.incarnation !== undefined)
          return a.incarnation === c.incarnation
            ? `node ${c.id} is bound to incarnation ${a.incarnation} already`
            : `node ${c.id} is bound to incarnation ${a.incarnation}; a data folder of another incarnation cannot take its place: remove the member and add it as a new one`;
        addresses.set(c.id, { ...a, incarnation: c.incarnation });
        break;
      }
    }
  }
  if (voters.size === 0) return "the change would leave no voter";
  if (voters.size + learners.size + m.voters.filter((v) => !voters.has(v)).length > MAX_MEMBERS)
    return `a configuration holds at most ${MAX_MEMBERS} members`;
  const votersChange = !same(sorted(voters), m.voters);
  if (!votersChange) {
    // Learners only: no quorum changes, so no joint step. A removed learner is gone at once.
    for (const id of m.learners)
      if (!learners.has(id)) {
        removed.add(id);
        addresses.delete(id);
      }
    return finish(voters, [], learners, addresses, removed);
  }
  // Removed voters stay in the outgoing configuration (with their addresses) until the leave step.
  for (const id of m.learners)
    if (!learners.has(id) && !voters.has(id)) {
      removed.add(id);
      addresses.delete(id);
    }
  return finish(voters, m.voters, learners, addresses, removed);
}

/** The configuration that leaves a joint one: the incoming voters alone; outgoing-only voters are removed. */
export function leaveJoint(m: Membership): Membership {
  const voters = new Set(m.voters);
  const learners = new Set(m.learners);
  const addresses = new Map(m.addresses.map((a) => [a.id, a] as const));
  const removed = new Set(m.removed);
  for (const id of m.outgoing)
    if (!voters.has(id) && !learners.has(id)) {
      removed.add(id);
      addresses.delete(id);
    }
  return finish(voters, [], learners, addresses, removed);
}

function finish(
  voters: Set<NodeId>,
  outgoing: readonly NodeId[],
  learners: Set<NodeId>,
  addresses: Map<NodeId, MemberAddress>,
  removed: Set<NodeId>,
): Membership {
  const keptRemoved = sorted(removed);
  return normalize({
    voters: [...voters],
    outgoing,
    learners: [...learners],
    addresses: [...addresses.values()],
    removed: keptRemoved.slice(Math.max(0, keptRemoved.length - MAX_REMOVED_IDS)),
  });
}

function addressProblem(address: string): string | null {
  if (typeof address !== "string") return "is not a string";
  if (new TextEncoder().encode(address).length > MAX_ADDRESS_BYTES)
    return `is over ${MAX_ADDRESS_BYTES} bytes`;
  return null;
}

// ---------------------------------------------------------------- encoding (config entries, snapshots)

const FORMAT = 1;

/** Canonical bytes of a configuration: equal configurations encode to equal bytes. An address is
 *  [id, address] while the member is unbound, [id, address, incarnation] once bound (older entries, all
 *  of the first shape, still decode: their members are unbound). */
export function encodeMembership(m: Membership): Uint8Array {
  const n = normalize(m);
  const body = {
    v: FORMAT,
    voters: n.voters,
    outgoing: n.outgoing,
    learners: n.learners,
    addresses: n.addresses.map((a) =>
      a.incarnation === undefined ? [a.id, a.address] : [a.id, a.address, a.incarnation],
    ),
    removed: n.removed,
  };
  return new TextEncoder().encode(JSON.stringify(body));
}

/** Decodes a configuration from untrusted bytes (the codec and the WAL reader call it), or says why not. */
export function decodeMembership(bytes: Uint8Array): Membership | string {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    return "configuration is not valid JSON";
  }
  if (typeof value !== "object" || value === null) return "configuration is not an object";
  const o = value as Record<string, unknown>;
  if (o["v"] !== FORMAT) return `configuration format ${String(o["v"])} is not ${FORMAT}`;
  const ids = (name: string, max: number): NodeId[] | string => {
    const a = o[name];
    if (!Array.isArray(a) || a.length > max)
      return `configuration ${name} is not a list of at most ${max} ids`;
    for (const x of a)
      if (!Number.isSafeInteger(x) || (x as number) < 0) return `configuration ${name} holds ${String(x)}`;
    return a as NodeId[];
  };
  const voters = ids("voters", MAX_MEMBERS);
  const outgoing = ids("outgoing", MAX_MEMBERS);
  const learners = ids("learners", MAX_MEMBERS);
  const removed = ids("removed", MAX_REMOVED_IDS);
  for (const r of [voters, outgoing, learners, removed]) if (typeof r === "string") return r;
  const rawAddresses = o["addresses"];
  if (!Array.isArray(rawAddresses) || rawAddresses.length > 3 * MAX_MEMBERS)
    return "configuration addresses is not a list";
  const addresses: MemberAddress[] = [];
  for (const a of rawAddresses) {
    if (
      !Array.isArray(a) ||
      (a.length !== 2 && a.length !== 3) ||
      !Number.isSafeInteger(a[0]) ||
      typeof a[1] !== "string"
    )
      return "configuration address is not [id, address] or [id, address, incarnation]";
    if (addressProblem(a[1]) !== null) return `configuration address of ${a[0]} ${addressProblem(a[1])}`;
    if (a.length === 3 && !isIncarnation(a[2]))
      return `configuration incarnation of ${a[0]} is not ${INCARNATION_HEX_DIGITS} lowercase hex digits`;
    addresses.push(
      a.length === 3 ? { id: a[0], address: a[1], incarnation: a[2] } : { id: a[0], address: a[1] },
    );
  }
  const m = normalize({
    voters: voters as NodeId[],
    outgoing: outgoing as NodeId[],
    learners: learners as NodeId[],
    addresses,
    removed: removed as NodeId[],
  });
  for (const id of m.learners) if (isVoter(m, id)) return `configuration has ${id} both as voter and learner`;
  for (const id of members(m))
    if (m.removed.includes(id)) return `configuration has removed ${id} as a member`;
  if (members(m).length > MAX_MEMBERS) return `configuration holds over ${MAX_MEMBERS} members`;
  return m;
}
