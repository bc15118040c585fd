// Peer codec: untrusted wire bytes to validated core Messages (or a refusal with its reason), and back.

import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { decodeMembership, encodeMembership, isIncarnation } from "../core/membership.ts";
import type { Entry, Message, NodeId, SnapshotMeta } from "../core/types.ts";
import {
  AppendEntriesRequest,
  AppendEntriesResponse,
  EntryKind,
  InstallSnapshotRequest,
  InstallSnapshotResponse,
  PeerMessage,
  RequestVoteRequest,
  RequestVoteResponse,
  TimeoutNowRequest,
  type Entry as WireEntry,
  type PeerHeader as WireHeader,
  type SnapshotMeta as WireSnapshotMeta,
} from "../gen/raftkv/v1/peer.ts";
import { wireTypeProblem } from "../lib/proto-wire.ts";
import { PEER_BATCH, PEER_MESSAGE, UNARY_REQUEST_SHAPES } from "./peer-wire.ts";

/** Bounds on what one peer message may carry (STYLE rule 6). Beyond them a message is refused. */
export interface CodecLimits {
  /** Max payload bytes of one message: the entries' data summed, or one snapshot chunk. Must be at
   *  least the core's maxBytesPerMessage, maxEntryBytes and snapshotChunkBytes. */
  readonly maxBytesPerMessage: number;
  /** Max entries in one AppendEntries. */
  readonly maxEntriesPerMessage: number;
}

/** Who we are, for validating what arrives. */
export interface CodecContext {
  readonly clusterId: string;
  readonly self: NodeId;
  /** Members we accept messages from (ourselves may be included; we refuse our own id anyway). */
  readonly peers: ReadonlySet<NodeId>;
  readonly limits: CodecLimits;
  /** The member the connection is authenticated as (its TLS certificate): a message claiming another
   *  sender is refused (senderMismatch). Absent in plaintext, where the claimed sender is all there is. */
  readonly sender?: NodeId;
  /** This node's data folder's incarnation: a message addressed to another one is refused
   *  (recipientIncarnation). Absent or "": not checked. */
  readonly incarnation?: string;
  /** The incarnation the latest configuration binds each member to (unbound members absent): a message
   *  from a bound member sent from another incarnation is refused (senderIncarnation). */
  readonly bindings?: ReadonlyMap<NodeId, string>;
}

/** The incarnations a message's header carries: its sender's data folder, and the one the sender's
 *  configuration binds the receiver to ("" for unknown or unbound). */
export interface WireIncarnations {
  readonly from: string;
  readonly to: string;
}

export const NO_INCARNATIONS: WireIncarnations = { from: "", to: "" };

export const REFUSAL_REASONS = [
  "malformed",
  "tooLarge",
  "missingBody",
  "missingField",
  "clusterMismatch",
  "unknownSender",
  "fromSelf",
  "wrongRecipient",
  "unsafeInteger",
  "zeroTerm",
  "badField",
  "badEntryKind",
  "tooManyEntries",
  "entriesNotContiguous",
  "entryTermBackwards",
  "entryTermAboveMessage",
  "badSnapshotChunk",
  /** Peer identity (TLS): the connection's certificate names no member of this cluster (a client's). */
  "noPeerIdentity",
  /** Peer identity (TLS): the message claims a sender other than the member the certificate names. */
  "senderMismatch",
  /** Addressed to an incarnation of this node other than its data folder's: this folder was created
   *  empty or restored under an id the cluster knows by another folder (its vote and log are gone). */
  "recipientIncarnation",
  /** From a member the configuration binds to another incarnation: the sender's folder was wiped. */
  "senderIncarnation",
] as const;

/** Why an inbound message was refused; a closed set, usable as a metrics label. */
export type RefusalReason = (typeof REFUSAL_REASONS)[number];

export interface Refusal {
  readonly ok: false;
  readonly reason: RefusalReason;
  /** What was wrong, for a log line. Peer-supplied strings in it are quoted and truncated. */
  readonly detail: string;
  /** The remote address as the transport saw it (e.g. "127.0.0.1:51234"). */
  readonly peerAddress: string;
  /** The sender the message claimed, when its header could be read that far. */
  readonly from: NodeId | null;
}

export type Decoded =
  | {
      readonly ok: true;
      readonly message: Message;
      /** The sender's incarnation as its header gives it ("" when it gives none). */
      readonly fromIncarnation: string;
    }
  | Refusal;

export type BatchDecoded = { readonly ok: true; readonly results: readonly Decoded[] } | Refusal;

/** Fixed bytes of a message around its payload: header with a cluster id of up to
 *  MAX_CLUSTER_ID_BYTES, the other fields, and framing. */
const MESSAGE_OVERHEAD_BYTES = 1024;
/** Bytes an entry takes on the wire beyond its data: framing, index, term, kind. */
const ENTRY_OVERHEAD_BYTES = 48;
/** Longest cluster id a node may be configured with. */
export const MAX_CLUSTER_ID_BYTES = 256;

/** Largest encoded peer message the limits allow: payload plus per-entry and fixed overhead. */
export function maxWireBytes(limits: CodecLimits): number {
  return (
    limits.maxBytesPerMessage + limits.maxEntriesPerMessage * ENTRY_OVERHEAD_BYTES + MESSAGE_OVERHEAD_BYTES
  );
}

// ---------------------------------------------------------------- encoding (trusted core output)

/** Core message to its protobuf form. The message must come from the core: terms, indexes and
 *  sizes are non-negative safe integers (BigInt() throws on a fraction, which is our bug). */
export function toWire(
  m: Message,
  clusterId: string,
  incarnations: WireIncarnations = NO_INCARNATIONS,
): PeerMessage {
  const header: WireHeader = {
    clusterId,
    from: BigInt(m.from),
    to: BigInt(m.to),
    term: BigInt(m.term),
    fromIncarnation: incarnations.from,
    toIncarnation: incarnations.to,
  };
  switch (m.type) {
    case "append":
      return {
        body: {
          $case: "appendEntries",
          value: {
            header,
            prevLogIndex: BigInt(m.prevLogIndex),
            prevLogTerm: BigInt(m.prevLogTerm),
            entries: m.entries.map(entryToWire),
            leaderCommit: BigInt(m.leaderCommit),
            round: BigInt(m.round),
          },
        },
      };
    case "appendResponse":
      return {
        body: {
          $case: "appendEntriesResponse",
          value: {
            header,
            success: m.success,
            matchIndex: BigInt(m.matchIndex),
            conflictTerm: BigInt(m.conflictTerm),
            conflictIndex: BigInt(m.conflictIndex),
            round: BigInt(m.round),
          },
        },
      };
    case "vote":
      return {
        body: {
          $case: "requestVote",
          value: {
            header,
            preVote: m.preVote,
            lastLogIndex: BigInt(m.lastLogIndex),
            lastLogTerm: BigInt(m.lastLogTerm),
            transfer: m.transfer,
          },
        },
      };
    case "voteResponse":
      return {
        body: {
          $case: "requestVoteResponse",
          value: {
            header,
            preVote: m.preVote,
            granted: m.granted,
            leaseRemainingTicks: BigInt(m.leaseRemainingTicks),
          },
        },
      };
    case "snapshot":
      return {
        body: {
          $case: "installSnapshot",
          value: {
            header,
            meta: metaToWire(m.meta),
            offset: BigInt(m.offset),
            data: m.data,
            length: BigInt(m.length),
            done: m.done,
            round: BigInt(m.round),
          },
        },
      };
    case "snapshotResponse":
      return {
        body: {
          $case: "installSnapshotResponse",
          value: {
            header,
            snapshotIndex: BigInt(m.snapshotIndex),
            nextOffset: BigInt(m.nextOffset),
            installed: m.installed,
            round: BigInt(m.round),
          },
        },
      };
    case "timeoutNow":
      return { body: { $case: "timeoutNow", value: { header } } };
  }
}

const WIRE_KINDS: Record<Entry["kind"], EntryKind> = {
  noop: EntryKind.ENTRY_KIND_NOOP,
  command: EntryKind.ENTRY_KIND_COMMAND,
  config: EntryKind.ENTRY_KIND_CONFIG,
};

function entryToWire(e: Entry): WireEntry {
  const kind = WIRE_KINDS[e.kind];
  return { index: BigInt(e.index), term: BigInt(e.term), kind, data: e.data };
}

function metaToWire(m: SnapshotMeta): WireSnapshotMeta {
  return {
    index: BigInt(m.index),
    term: BigInt(m.term),
    sizeBytes: BigInt(m.sizeBytes),
    crc32c: m.crc32c,
    membership: m.membership === undefined ? new Uint8Array(0) : encodeMembership(m.membership),
  };
}

/** Core message to the bytes of one PeerMessage. */
export function encodeMessage(
  m: Message,
  clusterId: string,
  incarnations: WireIncarnations = NO_INCARNATIONS,
): Uint8Array {
  return PeerMessage.encode(toWire(m, clusterId, incarnations)).finish();
}

/** Bytes that `frame` (one encoded PeerMessage) takes inside a PeerBatch. */
export function batchFrameBytes(frame: Uint8Array): number {
  return 1 + varintBytes(frame.length) + frame.length;
}

/** A PeerBatch from encoded PeerMessages, without re-encoding them (field 1, length-delimited). */
export function encodeBatch(frames: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const f of frames) total += batchFrameBytes(f);
  const out = new Uint8Array(total);
  let pos = 0;
  for (const f of frames) {
    out[pos++] = (1 << 3) | WireType.LengthDelimited;
    let n = f.length;
    while (n > 0x7f) {
      out[pos++] = (n & 0x7f) | 0x80;
      n >>>= 7;
    }
    out[pos++] = n;
    out.set(f, pos);
    pos += f.length;
  }
  return out;
}

function varintBytes(n: number): number {
  let bytes = 1;
  while (n > 0x7f) {
    n >>>= 7;
    bytes++;
  }
  return bytes;
}

// ---------------------------------------------------------------- decoding (untrusted input)

/** Bytes of one PeerMessage to a validated core message, or a refusal. Never throws. */
export function decodeMessage(bytes: Uint8Array, ctx: CodecContext, peerAddress: string): Decoded {
  if (bytes.length > maxWireBytes(ctx.limits)) {
    const detail = `message of ${bytes.length} bytes exceeds ${maxWireBytes(ctx.limits)}`;
    return refusal("tooLarge", detail, peerAddress, null);
  }
  const wrongWire = wireTypeProblem(bytes, PEER_MESSAGE);
  if (wrongWire !== null) return refusal("malformed", wrongWire, peerAddress, null);
  let wire: PeerMessage;
  try {
    wire = PeerMessage.decode(bytes);
  } catch (e) {
    return refusal("malformed", `undecodable PeerMessage: ${errorText(e)}`, peerAddress, null);
  }
  return fromWire(wire, ctx, peerAddress);
}

/** Bytes of one PeerBatch to one result per message, or a refusal of the whole batch when its
 *  framing is broken. Never throws. */
export function decodeBatch(bytes: Uint8Array, ctx: CodecContext, peerAddress: string): BatchDecoded {
  const wrongWire = wireTypeProblem(bytes, PEER_BATCH);
  if (wrongWire !== null) return refusal("malformed", wrongWire, peerAddress, null);
  const frames: Uint8Array[] = [];
  try {
    const reader = new BinaryReader(bytes);
    while (reader.pos < reader.len) {
      const [fieldNo, wireType] = reader.tag();
      if (fieldNo === 1 && wireType === WireType.LengthDelimited) frames.push(reader.bytes());
      else reader.skip(wireType, fieldNo);
    }
  } catch (e) {
    return refusal("malformed", `undecodable PeerBatch: ${errorText(e)}`, peerAddress, null);
  }
  return { ok: true, results: frames.map((f) => decodeMessage(f, ctx, peerAddress)) };
}

/** The unary RPCs of PeerService, by the oneof case their request corresponds to. */
export type UnaryKind = "appendEntries" | "requestVote" | "installSnapshot" | "timeoutNow";

/** Bytes of a unary request (AppendEntriesRequest, ...) to a validated core message. Never throws. */
export function decodeUnaryRequest(
  kind: UnaryKind,
  bytes: Uint8Array,
  ctx: CodecContext,
  peerAddress: string,
): Decoded {
  if (bytes.length > maxWireBytes(ctx.limits)) {
    const detail = `${kind} request of ${bytes.length} bytes exceeds ${maxWireBytes(ctx.limits)}`;
    return refusal("tooLarge", detail, peerAddress, null);
  }
  const wrongWire = wireTypeProblem(bytes, UNARY_REQUEST_SHAPES[kind]);
  if (wrongWire !== null) return refusal("malformed", wrongWire, peerAddress, null);
  let wire: PeerMessage;
  try {
    wire = { body: decodeUnaryBody(kind, bytes) };
  } catch (e) {
    return refusal("malformed", `undecodable ${kind} request: ${errorText(e)}`, peerAddress, null);
  }
  return fromWire(wire, ctx, peerAddress);
}

function decodeUnaryBody(kind: UnaryKind, bytes: Uint8Array): PeerMessage["body"] {
  switch (kind) {
    case "appendEntries":
      return { $case: kind, value: AppendEntriesRequest.decode(bytes) };
    case "requestVote":
      return { $case: kind, value: RequestVoteRequest.decode(bytes) };
    case "installSnapshot":
      return { $case: kind, value: InstallSnapshotRequest.decode(bytes) };
    case "timeoutNow":
      return { $case: kind, value: TimeoutNowRequest.decode(bytes) };
  }
}

/** A core response to the bytes of the unary RPC reply it answers. */
export function encodeUnaryResponse(
  m: Extract<Message, { type: "appendResponse" | "voteResponse" | "snapshotResponse" }>,
  clusterId: string,
  incarnations: WireIncarnations = NO_INCARNATIONS,
): Uint8Array {
  const body = toWire(m, clusterId, incarnations).body;
  switch (body?.$case) {
    case "appendEntriesResponse":
      return AppendEntriesResponse.encode(body.value).finish();
    case "requestVoteResponse":
      return RequestVoteResponse.encode(body.value).finish();
    case "installSnapshotResponse":
      return InstallSnapshotResponse.encode(body.value).finish();
    default:
      throw new Error(`encodeUnaryResponse: ${m.type} is not a unary response`);
  }
}

/** A decoded protobuf message (untrusted content) to a validated core message, or a refusal.
 *  Throws only on our own bugs, never on the content. */
export function fromWire(wire: PeerMessage, ctx: CodecContext, peerAddress: string): Decoded {
  const v = new Validator(ctx);
  try {
    const message = v.message(wire);
    return { ok: true, message, fromIncarnation: v.fromIncarnation };
  } catch (e) {
    if (e instanceof Refused) return refusal(e.reason, e.detail, peerAddress, v.from);
    throw e;
  }
}

/** The largest integer a peer message may carry: terms and indexes stop at 2^52 (142 years at a million
 *  entries a second), leaving room for index + 1 and segment names above them to stay safe integers. */
export const MAX_WIRE_INTEGER = 2 ** 52;
const MAX_WIRE = BigInt(MAX_WIRE_INTEGER);

/** Thrown inside the validator only; fromWire turns it into a Refusal. */
class Refused {
  constructor(
    readonly reason: RefusalReason,
    readonly detail: string,
  ) {}
}

function refuse(reason: RefusalReason, detail: string): never {
  throw new Refused(reason, detail);
}

function refusal(reason: RefusalReason, detail: string, peerAddress: string, from: NodeId | null): Refusal {
  return { ok: false, reason, detail, peerAddress, from };
}

interface Header {
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: number;
}

/** Validates one message; remembers the claimed sender for the refusal. */
class Validator {
  from: NodeId | null = null;
  fromIncarnation = "";

  constructor(private readonly ctx: CodecContext) {}

  message(wire: PeerMessage): Message {
    const body = wire.body;
    if (body === undefined) return refuse("missingBody", "PeerMessage has no body");
    switch (body.$case) {
      case "appendEntries":
        return this.append(body.value);
      case "appendEntriesResponse":
        return this.appendResponse(body.value);
      case "requestVote":
        return this.vote(body.value);
      case "requestVoteResponse":
        return this.voteResponse(body.value);
      case "installSnapshot":
        return this.snapshot(body.value);
      case "installSnapshotResponse":
        return this.snapshotResponse(body.value);
      case "timeoutNow":
        return { type: "timeoutNow", ...this.header(body.value.header, true) };
    }
  }

  private header(h: WireHeader | undefined, termRequired: boolean): Header {
    if (h === undefined) return refuse("missingField", "header is missing");
    if (h.clusterId !== this.ctx.clusterId)
      refuse("clusterMismatch", `cluster id ${quote(h.clusterId)}, ours is ${quote(this.ctx.clusterId)}`);
    const from = uint("header.from", h.from);
    this.from = from;
    const sender = this.ctx.sender;
    if (sender !== undefined && from !== sender)
      refuse(
        "senderMismatch",
        `message claims to come from node ${from}, the connection is member ${sender}'s`,
      );
    if (from === this.ctx.self) refuse("fromSelf", `message claims to come from this node (${from})`);
    if (!this.ctx.peers.has(from))
      refuse(
        "unknownSender",
        `node ${from} is not a member of this node's configuration (if it was removed: stop it; to bring the machine back, wipe its data folder and add it as a new member with raftkv member add)`,
      );
    const to = uint("header.to", h.to);
    if (to !== this.ctx.self) refuse("wrongRecipient", `addressed to node ${to}, this is ${this.ctx.self}`);
    this.incarnations(from, h);
    const term = termRequired ? positive("header.term", h.term, "zeroTerm") : uint("header.term", h.term);
    return { from, to, term };
  }

  /** The header's incarnations against ours and the configuration's bindings (see CodecContext). */
  private incarnations(from: NodeId, h: WireHeader): void {
    const fromInc = incarnation("header.from_incarnation", h.fromIncarnation);
    const toInc = incarnation("header.to_incarnation", h.toIncarnation);
    const r = incarnationRefusal(this.ctx, from, fromInc, toInc);
    if (r !== null) refuse(r.reason, r.detail);
    this.fromIncarnation = fromInc;
  }

  private append(w: AppendEntriesRequest): Message {
    const h = this.header(w.header, true);
    const prevLogIndex = uint("prevLogIndex", w.prevLogIndex);
    const prevLogTerm = uint("prevLogTerm", w.prevLogTerm);
    indexTermPair("prevLog", prevLogIndex, prevLogTerm, h.term);
    const limits = this.ctx.limits;
    if (w.entries.length > limits.maxEntriesPerMessage)
      refuse("tooManyEntries", `${w.entries.length} entries, limit ${limits.maxEntriesPerMessage}`);
    const entries: Entry[] = [];
    let dataBytes = 0;
    let lastTerm = prevLogTerm;
    for (const [i, e] of w.entries.entries()) {
      const entry = this.entry(i, e, prevLogIndex + 1 + i, lastTerm, h.term);
      dataBytes += entry.data.length;
      if (dataBytes > limits.maxBytesPerMessage)
        refuse("tooLarge", `entries carry over ${limits.maxBytesPerMessage} bytes of data`);
      lastTerm = entry.term;
      entries.push(entry);
    }
    detachData(entries, dataBytes);
    return {
      type: "append",
      ...h,
      prevLogIndex,
      prevLogTerm,
      entries,
      leaderCommit: uint("leaderCommit", w.leaderCommit),
      round: uint("round", w.round),
    };
  }

  private entry(i: number, e: WireEntry, expectIndex: number, lastTerm: number, msgTerm: number): Entry {
    const index = uint(`entries[${i}].index`, e.index);
    if (index !== expectIndex)
      refuse("entriesNotContiguous", `entries[${i}].index is ${index}, expected ${expectIndex}`);
    const term = positive(`entries[${i}].term`, e.term, "zeroTerm");
    if (term < lastTerm)
      refuse("entryTermBackwards", `entries[${i}].term ${term} is below the previous term ${lastTerm}`);
    if (term > msgTerm)
      refuse("entryTermAboveMessage", `entries[${i}].term ${term} is above the message term ${msgTerm}`);
    const kind = entryKind(i, e.kind);
    if (kind === "noop" && e.data.length > 0)
      refuse("badField", `entries[${i}] is a NO-OP with ${e.data.length} bytes of data`);
    if (kind === "config") {
      const m = decodeMembership(e.data);
      if (typeof m === "string")
        refuse("badField", `entries[${i}] is a configuration that does not decode: ${m}`);
    }
    return { index, term, kind, data: e.data };
  }

  private appendResponse(w: AppendEntriesResponse): Message {
    const h = this.header(w.header, true);
    const conflictTerm = uint("conflictTerm", w.conflictTerm);
    if (conflictTerm > h.term) refuse("badField", `conflictTerm ${conflictTerm} is above term ${h.term}`);
    return {
      type: "appendResponse",
      ...h,
      success: w.success,
      matchIndex: uint("matchIndex", w.matchIndex),
      conflictTerm,
      conflictIndex: uint("conflictIndex", w.conflictIndex),
      round: uint("round", w.round),
    };
  }

  private vote(w: RequestVoteRequest): Message {
    const h = this.header(w.header, true);
    const lastLogIndex = uint("lastLogIndex", w.lastLogIndex);
    const lastLogTerm = uint("lastLogTerm", w.lastLogTerm);
    indexTermPair("lastLog", lastLogIndex, lastLogTerm, h.term);
    return { type: "vote", ...h, preVote: w.preVote, lastLogIndex, lastLogTerm, transfer: w.transfer };
  }

  private voteResponse(w: RequestVoteResponse): Message {
    // A refused pre-vote answer carries the voter's own term, which is 0 on a node that has never
    // seen one (a pre-vote changes no state, thesis §9.6). Every other message has a term >= 1.
    const h = this.header(w.header, !(w.preVote && !w.granted));
    return {
      type: "voteResponse",
      ...h,
      preVote: w.preVote,
      granted: w.granted,
      leaseRemainingTicks: uint("leaseRemainingTicks", w.leaseRemainingTicks),
    };
  }

  private snapshot(w: InstallSnapshotRequest): Message {
    const h = this.header(w.header, true);
    if (w.meta === undefined) return refuse("missingField", "snapshot meta is missing");
    const meta = snapshotMeta(w.meta, h.term);
    const offset = uint("offset", w.offset);
    const length = uint("length", w.length);
    if (length > this.ctx.limits.maxBytesPerMessage)
      refuse("tooLarge", `chunk of ${length} bytes, limit ${this.ctx.limits.maxBytesPerMessage}`);
    if (w.data.length !== length)
      refuse("badSnapshotChunk", `chunk carries ${w.data.length} bytes but says length ${length}`);
    if (offset + length > meta.sizeBytes)
      refuse("badSnapshotChunk", `chunk [${offset}, +${length}) overruns a ${meta.sizeBytes}-byte snapshot`);
    if (w.done && offset + length !== meta.sizeBytes)
      refuse(
        "badSnapshotChunk",
        `last chunk ends at ${offset + length}, snapshot is ${meta.sizeBytes} bytes`,
      );
    return {
      type: "snapshot",
      ...h,
      meta,
      offset,
      data: copy(w.data),
      length,
      done: w.done,
      round: uint("round", w.round),
    };
  }

  private snapshotResponse(w: InstallSnapshotResponse): Message {
    const h = this.header(w.header, true);
    if (w.nextOffset < -1n || w.nextOffset > MAX_WIRE)
      refuse("unsafeInteger", `nextOffset ${w.nextOffset} is neither -1 nor a safe non-negative integer`);
    return {
      type: "snapshotResponse",
      ...h,
      snapshotIndex: uint("snapshotIndex", w.snapshotIndex),
      nextOffset: Number(w.nextOffset),
      installed: w.installed,
      round: uint("round", w.round),
    };
  }
}

function snapshotMeta(w: WireSnapshotMeta, msgTerm: number): SnapshotMeta {
  const index = positive("meta.index", w.index, "badField");
  const term = positive("meta.term", w.term, "zeroTerm");
  if (term > msgTerm) refuse("badField", `meta.term ${term} is above the message term ${msgTerm}`);
  if (!Number.isInteger(w.crc32c) || w.crc32c < 0 || w.crc32c > 0xffffffff)
    refuse("badField", `meta.crc32c ${w.crc32c} is not a uint32`);
  const meta = { index, term, sizeBytes: uint("meta.sizeBytes", w.sizeBytes), crc32c: w.crc32c };
  if (w.membership.length === 0) return meta;
  const membership = decodeMembership(w.membership);
  if (typeof membership === "string") return refuse("badField", `meta.membership: ${membership}`);
  return { ...meta, membership };
}

/** A log position: index 0 has term 0 and only it does; no term is above the message's. */
function indexTermPair(name: string, index: number, term: number, msgTerm: number): void {
  if ((index === 0) !== (term === 0))
    refuse("badField", `${name}Index ${index} with ${name}Term ${term}: term 0 belongs to index 0 only`);
  if (term > msgTerm) refuse("badField", `${name}Term ${term} is above the message term ${msgTerm}`);
}

function entryKind(i: number, kind: EntryKind): Entry["kind"] {
  switch (kind) {
    case EntryKind.ENTRY_KIND_NOOP:
      return "noop";
    case EntryKind.ENTRY_KIND_COMMAND:
      return "command";
    case EntryKind.ENTRY_KIND_CONFIG:
      return "config";
    default:
      return refuse("badEntryKind", `entries[${i}].kind ${kind} is not NOOP, COMMAND or CONFIG`);
  }
}

function uint(field: string, v: bigint): number {
  if (v < 0n || v > MAX_WIRE) refuse("unsafeInteger", `${field} ${v} is outside 0..2^52`);
  return Number(v);
}

/**
 * Why a message from `from` whose header gives `fromInc` and `toInc` (both valid or "") is refused by a
 * node (`self`, of incarnation `incarnation`, whose latest configuration binds members as `bindings`),
 * or null: addressed to another incarnation of this node, or from a bound member's other incarnation.
 * The codec checks every message with it; the simulator's network, which carries no bytes, too.
 */
export function incarnationRefusal(
  ctx: Pick<CodecContext, "self" | "incarnation" | "bindings">,
  from: NodeId,
  fromInc: string,
  toInc: string,
): { reason: "recipientIncarnation" | "senderIncarnation"; detail: string } | null {
  const own = ctx.incarnation ?? "";
  if (toInc !== "" && own !== "" && toInc !== own)
    return {
      reason: "recipientIncarnation",
      detail: `node ${from} knows node ${ctx.self} as incarnation ${toInc}, this data folder is incarnation ${own}`,
    };
  const bound = ctx.bindings?.get(from);
  if (bound !== undefined && fromInc !== bound)
    return {
      reason: "senderIncarnation",
      detail: `the configuration binds node ${from} to incarnation ${bound}, the message comes from incarnation ${fromInc === "" ? "(none)" : fromInc}: its data folder was created empty or restored`,
    };
  return null;
}

/**
 * The incarnations a recipientIncarnation or senderIncarnation refusal's detail names (as Validator
 * writes them; a peer ending our stream sends it back in its status): the one the cluster knows the
 * node by, then the folder's other one ("" for none). Null when the detail names no incarnation.
 */
export function incarnationsOfRefusal(detail: string): { known: string; other: string } | null {
  const m = /incarnation ([0-9a-f]{16})\b.*?incarnation ([0-9a-f]{16}|\(none\))/.exec(detail);
  if (m === null) return null;
  return { known: m[1]!, other: m[2] === "(none)" ? "" : m[2]! };
}

/** An incarnation field: empty (unknown) or INCARNATION_HEX_DIGITS lowercase hex digits. */
function incarnation(field: string, v: string): string {
  if (v !== "" && !isIncarnation(v))
    refuse("badField", `${field} ${quote(v)} is not 16 lowercase hex digits`);
  return v;
}

function positive(field: string, v: bigint, reasonIfZero: RefusalReason): number {
  const n = uint(field, v);
  if (n === 0) refuse(reasonIfZero, `${field} is 0`);
  return n;
}

/** Detaches bytes from the (possibly large, possibly pooled) receive buffer. */
function copy(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(bytes);
}

/** Detaches the entries' data from the receive buffer with one allocation for all of them (one
 *  buffer per entry costs more than the rest of decoding). Entries are fresh objects of ours. */
function detachData(entries: Entry[], totalBytes: number): void {
  if (totalBytes === 0) return;
  const store = new Uint8Array(totalBytes);
  let pos = 0;
  for (const [i, e] of entries.entries()) {
    if (e.data.length === 0) continue;
    store.set(e.data, pos);
    entries[i] = { ...e, data: store.subarray(pos, pos + e.data.length) };
    pos += e.data.length;
  }
}

/** Quoted and truncated, so a peer cannot flood or forge our log lines. */
function quote(s: string): string {
  return JSON.stringify(s.length > 64 ? `${s.slice(0, 64)}…` : s);
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
