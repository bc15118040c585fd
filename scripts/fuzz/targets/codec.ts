// Fuzz target "codec": the peer codec's decodeMessage, decodeBatch and decodeUnaryRequest never throw,
// refuse with a listed reason and a bounded detail, and accept only messages the core may trust.

import { isDeepStrictEqual } from "node:util";
import fc from "fast-check";
import { decodeMembership } from "../../../src/core/membership.ts";
import type { Message } from "../../../src/core/types.ts";
import {
  AppendEntriesRequest,
  InstallSnapshotRequest,
  RequestVoteRequest,
  TimeoutNowRequest,
} from "../../../src/gen/raftkv/v1/peer.ts";
import type { Prng } from "../../../src/lib/prng.ts";
import {
  type CodecContext,
  type Decoded,
  decodeBatch,
  decodeMessage,
  decodeUnaryRequest,
  encodeBatch,
  encodeMessage,
  REFUSAL_REASONS,
  toWire,
  type UnaryKind,
} from "../../../src/transport/codec.ts";
import { arbMessage } from "../../../src/transport/codec-arbitraries.ts";
import { mutateBytes } from "../mutate.ts";
import { mutateProto } from "../proto-mutate.ts";
import { errorText, type FuzzTarget, finding, hex, type Outcome } from "../target.ts";

export const CODEC_CLUSTER = "fuzz-cluster";
const ADDR = "10.0.0.9:40000";
export const CODEC_CONTEXT: CodecContext = {
  clusterId: CODEC_CLUSTER,
  self: 1,
  peers: new Set([0, 1, 2]),
  limits: { maxBytesPerMessage: 4096, maxEntriesPerMessage: 16 },
};
/** A refusal's detail goes into a log line: a peer must not be able to make it long. */
const MAX_DETAIL_CHARS = 600;

/** Input byte 0 picks the entry point; the rest is what the peer sent. */
const ENTRY_POINTS = [
  "message",
  "batch",
  "appendEntries",
  "requestVote",
  "installSnapshot",
  "timeoutNow",
] as const;
type EntryPoint = (typeof ENTRY_POINTS)[number];

function entryPointOf(input: Uint8Array): EntryPoint {
  return ENTRY_POINTS[(input[0] ?? 0) % ENTRY_POINTS.length]!;
}

function withEntry(entry: EntryPoint, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(payload.length + 1);
  out[0] = ENTRY_POINTS.indexOf(entry);
  out.set(payload, 1);
  return out;
}

/** The unary request encoding of a message, or null when it is not a request. */
function unaryBytes(m: Message): [UnaryKind, Uint8Array] | null {
  const body = toWire(m, CODEC_CLUSTER).body;
  switch (body?.$case) {
    case "appendEntries":
      return [body.$case, AppendEntriesRequest.encode(body.value).finish()];
    case "requestVote":
      return [body.$case, RequestVoteRequest.encode(body.value).finish()];
    case "installSnapshot":
      return [body.$case, InstallSnapshotRequest.encode(body.value).finish()];
    case "timeoutNow":
      return [body.$case, TimeoutNowRequest.encode(body.value).finish()];
    default:
      return null;
  }
}

function seeds(prng: Prng): Uint8Array[] {
  const messages = fc.sample(arbMessage({ from: [0, 2], to: 1, maxEntries: 16, maxChunkBytes: 512 }), {
    seed: prng.nextU32() | 0,
    numRuns: 300,
  });
  const out: Uint8Array[] = [];
  const frames = messages.map((m) => encodeMessage(m, CODEC_CLUSTER));
  for (const f of frames) out.push(withEntry("message", f));
  for (let i = 0; i + 4 <= frames.length; i += 4)
    out.push(withEntry("batch", encodeBatch(frames.slice(i, i + 4))));
  for (const m of messages) {
    const unary = unaryBytes(m);
    if (unary !== null) out.push(withEntry(unary[0], unary[1]));
  }
  // A valid message of the wrong type: each unary body under another RPC.
  for (const m of messages.slice(0, 40)) {
    const unary = unaryBytes(m);
    if (unary !== null)
      out.push(withEntry(prng.pick(["appendEntries", "requestVote", "installSnapshot"]), unary[1]));
  }
  out.push(withEntry("message", new Uint8Array(0)), withEntry("batch", new Uint8Array(0)));
  return out;
}

function mutate(input: Uint8Array, other: Uint8Array, prng: Prng): Uint8Array {
  if (input.length === 0) return withEntry("message", mutateBytes(input, other, prng));
  const entry = prng.chance(0.05) ? prng.pick(ENTRY_POINTS) : entryPointOf(input);
  const payload = input.subarray(1);
  const next = prng.chance(0.85)
    ? mutateProto(payload, other.subarray(1), prng)
    : mutateBytes(payload, other.subarray(1), prng);
  return withEntry(entry, next);
}

function run(input: Uint8Array): Outcome {
  const entry = entryPointOf(input);
  const payload = input.subarray(1);
  let results: readonly Decoded[];
  try {
    if (entry === "message") results = [decodeMessage(payload, CODEC_CONTEXT, ADDR)];
    else if (entry === "batch") {
      const b = decodeBatch(payload, CODEC_CONTEXT, ADDR);
      if (!b.ok) return checkRefusal(b, "batch");
      results = b.results;
    } else results = [decodeUnaryRequest(entry, payload, CODEC_CONTEXT, ADDR)];
  } catch (e) {
    return finding("codec-threw", `${entry} decode threw ${errorText(e)}`, e);
  }
  let label = `${entry}/empty`;
  for (const r of results) {
    const out = r.ok ? checkAccepted(r.message, payload, entry) : checkRefusal(r, entry);
    if (out.kind === "finding") return out;
    label = out.label;
  }
  return results.some((r) => r.ok) ? { kind: "accepted", label } : { kind: "refused", label };
}

function checkRefusal(r: Extract<Decoded, { ok: false }>, entry: EntryPoint): Outcome {
  if (!REFUSAL_REASONS.includes(r.reason))
    return finding("codec-unknown-reason", `reason ${String(r.reason)}`);
  if (typeof r.detail !== "string" || r.detail.length > MAX_DETAIL_CHARS)
    return finding("codec-detail-too-long", `refusal ${r.reason} has a ${r.detail.length}-char detail`);
  if (r.peerAddress !== ADDR) return finding("codec-refusal-address", `peerAddress ${r.peerAddress}`);
  if (r.from !== null && !Number.isSafeInteger(r.from))
    return finding("codec-refusal-from", `from ${r.from}`);
  return { kind: "refused", label: `${entry}/${r.reason}` };
}

function checkAccepted(m: Message, payload: Uint8Array, entry: EntryPoint): Outcome {
  const wrong = invalidMessage(m, payload);
  if (wrong !== null) return finding("codec-accepted-invalid", `${entry} accepted ${m.type}: ${wrong}`);
  // What the codec accepts it must encode, and decode again to the same message.
  let again: Decoded;
  try {
    again = decodeMessage(encodeMessage(m, CODEC_CLUSTER), CODEC_CONTEXT, ADDR);
  } catch (e) {
    return finding("codec-reencode-threw", `${m.type}: ${errorText(e)}`, e);
  }
  if (!again.ok || !isDeepStrictEqual(again.message, m))
    return finding(
      "codec-roundtrip",
      `${m.type} does not survive encode/decode: ${again.ok ? "changed" : again.reason}`,
    );
  return { kind: "accepted", label: `${entry}/${m.type}` };
}

const isUint = (n: number): boolean => Number.isSafeInteger(n) && n >= 0;

/** What is wrong with an accepted message, or null. */
function invalidMessage(m: Message, payload: Uint8Array): string | null {
  const ctx = CODEC_CONTEXT;
  if (!ctx.peers.has(m.from) || m.from === ctx.self) return `from ${m.from}`;
  if (m.to !== ctx.self) return `to ${m.to}`;
  const zeroTermOk = m.type === "voteResponse" && m.preVote && !m.granted;
  if (!isUint(m.term) || (m.term === 0 && !zeroTermOk)) return `term ${m.term}`;
  switch (m.type) {
    case "append": {
      const { limits } = ctx;
      if (!isUint(m.prevLogIndex) || !isUint(m.prevLogTerm) || !isUint(m.leaderCommit) || !isUint(m.round))
        return "an integer field is not a safe uint";
      if ((m.prevLogIndex === 0) !== (m.prevLogTerm === 0) || m.prevLogTerm > m.term) return "prevLog pair";
      if (m.entries.length > limits.maxEntriesPerMessage) return `${m.entries.length} entries`;
      let bytes = 0;
      let lastTerm = m.prevLogTerm;
      for (const [i, e] of m.entries.entries()) {
        if (e.index !== m.prevLogIndex + 1 + i || !Number.isSafeInteger(e.index))
          return `entry ${i} index ${e.index}`;
        if (!isUint(e.term) || e.term < 1 || e.term < lastTerm || e.term > m.term)
          return `entry ${i} term ${e.term}`;
        if (e.kind !== "noop" && e.kind !== "command" && e.kind !== "config") return `entry ${i} kind`;
        if (e.kind === "config" && typeof decodeMembership(e.data) === "string")
          return `config ${i} undecodable`;
        if (e.kind === "noop" && e.data.length > 0) return `noop ${i} with data`;
        if (e.data.length > 0 && e.data.buffer === payload.buffer) return `entry ${i} data aliases the input`;
        bytes += e.data.length;
        lastTerm = e.term;
      }
      return bytes > limits.maxBytesPerMessage ? `${bytes} data bytes` : null;
    }
    case "appendResponse":
      if (![m.matchIndex, m.conflictTerm, m.conflictIndex, m.round].every(isUint)) return "an integer field";
      return m.conflictTerm > m.term ? "conflictTerm above term" : null;
    case "vote":
      if (!isUint(m.lastLogIndex) || !isUint(m.lastLogTerm)) return "an integer field";
      return (m.lastLogIndex === 0) !== (m.lastLogTerm === 0) || m.lastLogTerm > m.term
        ? "lastLog pair"
        : null;
    case "voteResponse":
      return isUint(m.leaseRemainingTicks) ? null : "leaseRemainingTicks";
    case "snapshot": {
      const { meta } = m;
      if (!isUint(meta.index) || meta.index < 1 || !isUint(meta.term) || meta.term < 1 || meta.term > m.term)
        return "meta index/term";
      if (
        !isUint(meta.sizeBytes) ||
        !Number.isInteger(meta.crc32c) ||
        meta.crc32c < 0 ||
        meta.crc32c > 0xffffffff
      )
        return "meta size/crc";
      if (!isUint(m.offset) || !isUint(m.length) || !isUint(m.round)) return "an integer field";
      if (m.data.length !== m.length || m.length > ctx.limits.maxBytesPerMessage) return "chunk length";
      if (m.offset + m.length > meta.sizeBytes || (m.done && m.offset + m.length !== meta.sizeBytes))
        return "chunk outside the image";
      return m.data.length > 0 && m.data.buffer === payload.buffer ? "chunk aliases the input" : null;
    }
    case "snapshotResponse":
      if (!isUint(m.snapshotIndex) || !isUint(m.round)) return "an integer field";
      return m.nextOffset === -1 || isUint(m.nextOffset) ? null : `nextOffset ${m.nextOffset}`;
    case "timeoutNow":
      return null;
  }
}

export const codecTarget: FuzzTarget = {
  name: "codec",
  seeds,
  mutate,
  run,
  describe: (input) => `entry point ${entryPointOf(input)}, payload hex ${hex(input.subarray(1))}`,
};
