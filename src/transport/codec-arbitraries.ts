// fast-check generators of valid core Messages, for the codec and transport property tests.

import fc from "fast-check";
import { encodeMembership, votersOnly } from "../core/membership.ts";
import type { Entry, Message, NodeId, SnapshotMeta } from "../core/types.ts";
import { MAX_WIRE_INTEGER } from "./codec.ts";

const MAX = MAX_WIRE_INTEGER;

/** Mostly small, sometimes huge (up to the wire limit, 2^52), non-negative integers. */
export function arbUint(max = MAX): fc.Arbitrary<number> {
  return fc.oneof(fc.integer({ min: 0, max: Math.min(1000, max) }), fc.integer({ min: 0, max }));
}

function arbTerm(): fc.Arbitrary<number> {
  return arbUint(MAX - 1).map((n) => n + 1);
}

function arbBytes(maxLength: number): fc.Arbitrary<Uint8Array> {
  return fc.uint8Array({ maxLength });
}

interface Route {
  readonly from: NodeId;
  readonly to: NodeId;
}

/** [0, 0] or [index >= 1, term in 1..msgTerm]: a log position the codec accepts. */
function arbLogPosition(msgTerm: number, maxIndex = MAX): fc.Arbitrary<[number, number]> {
  return fc.oneof(
    fc.constant<[number, number]>([0, 0]),
    fc.tuple(fc.integer({ min: 1, max: maxIndex }), fc.integer({ min: 1, max: msgTerm })),
  );
}

function arbEntries(
  prevIndex: number,
  prevTerm: number,
  msgTerm: number,
  max: number,
): fc.Arbitrary<Entry[]> {
  const room = Math.min(max, MAX - prevIndex);
  return fc
    .array(
      fc.tuple(
        fc.integer({ min: Math.max(1, prevTerm), max: msgTerm }),
        fc.integer({ min: 0, max: 2 }),
        arbBytes(64),
      ),
      { maxLength: room },
    )
    .map((raw) => {
      const terms = raw.map(([t]) => t).sort((a, b) => a - b);
      return raw.map(([, kind, data], i): Entry => {
        const at = { index: prevIndex + 1 + i, term: terms[i]! };
        if (kind === 0) return { ...at, kind: "noop", data: new Uint8Array(0) };
        if (kind === 1) return { ...at, kind: "command", data };
        return {
          ...at,
          kind: "config",
          data: encodeMembership(votersOnly([...new Set(data.subarray(0, 5))])),
        };
      });
    });
}

function arbAppend(r: Route, maxEntries: number): fc.Arbitrary<Message> {
  return arbTerm().chain((term) =>
    arbLogPosition(term).chain(([prevLogIndex, prevLogTerm]) =>
      fc
        .record({
          entries: arbEntries(prevLogIndex, prevLogTerm, term, maxEntries),
          leaderCommit: arbUint(),
          round: arbUint(),
        })
        .map((rest): Message => ({ type: "append", ...r, term, prevLogIndex, prevLogTerm, ...rest })),
    ),
  );
}

function arbAppendResponse(r: Route): fc.Arbitrary<Message> {
  return arbTerm().chain((term) =>
    fc
      .record({
        success: fc.boolean(),
        matchIndex: arbUint(),
        conflictTerm: arbUint(term),
        conflictIndex: arbUint(),
        round: arbUint(),
      })
      .map((rest): Message => ({ type: "appendResponse", ...r, term, ...rest })),
  );
}

function arbVote(r: Route): fc.Arbitrary<Message> {
  return arbTerm().chain((term) =>
    fc
      .record({ preVote: fc.boolean(), pos: arbLogPosition(term), transfer: fc.boolean() })
      .map(({ preVote, pos, transfer }): Message => {
        const [lastLogIndex, lastLogTerm] = pos;
        return { type: "vote", ...r, term, preVote, lastLogIndex, lastLogTerm, transfer };
      }),
  );
}

function arbVoteResponse(r: Route): fc.Arbitrary<Message> {
  return fc
    .record({ preVote: fc.boolean(), granted: fc.boolean(), leaseRemainingTicks: arbUint() })
    .chain((rest) => {
      const term = rest.preVote && !rest.granted ? arbUint() : arbTerm();
      return term.map((t): Message => ({ type: "voteResponse", ...r, term: t, ...rest }));
    });
}

function arbSnapshot(r: Route, maxChunkBytes: number): fc.Arbitrary<Message> {
  return arbTerm().chain((term) =>
    fc
      .record({
        index: arbUint(MAX - 1).map((n) => n + 1),
        metaTerm: fc.integer({ min: 1, max: term }),
        crc32c: fc.integer({ min: 0, max: 0xffffffff }),
        before: arbUint(1 << 30),
        data: arbBytes(maxChunkBytes),
        after: arbUint(1 << 30),
        round: arbUint(),
        voters: fc.option(fc.uniqueArray(fc.nat(100), { minLength: 1, maxLength: 5 })),
      })
      .map((x): Message => {
        const done = x.after === 0;
        const meta: SnapshotMeta = {
          index: x.index,
          term: x.metaTerm,
          sizeBytes: x.before + x.data.length + x.after,
          crc32c: x.crc32c,
          ...(x.voters === null ? {} : { membership: votersOnly(x.voters) }),
        };
        const base = { data: x.data, length: x.data.length, done, round: x.round };
        return { type: "snapshot", ...r, term, meta, offset: x.before, ...base };
      }),
  );
}

function arbSnapshotResponse(r: Route): fc.Arbitrary<Message> {
  return fc
    .record({
      term: arbTerm(),
      snapshotIndex: arbUint(),
      nextOffset: fc.oneof(fc.constant(-1), arbUint()),
      installed: fc.boolean(),
      round: arbUint(),
    })
    .map((x): Message => ({ type: "snapshotResponse", ...r, ...x }));
}

function arbTimeoutNow(r: Route): fc.Arbitrary<Message> {
  return arbTerm().map((term): Message => ({ type: "timeoutNow", ...r, term }));
}

export interface ArbMessageOptions {
  readonly from: readonly NodeId[];
  readonly to: NodeId;
  readonly maxEntries?: number;
  readonly maxChunkBytes?: number;
}

/** Valid messages of one type, from one of `from` to `to`. */
export function arbMessageOfType(type: Message["type"], o: ArbMessageOptions): fc.Arbitrary<Message> {
  const maxEntries = o.maxEntries ?? 8;
  const maxChunk = o.maxChunkBytes ?? 256;
  return fc.constantFrom(...o.from).chain((from) => {
    const r: Route = { from, to: o.to };
    switch (type) {
      case "append":
        return arbAppend(r, maxEntries);
      case "appendResponse":
        return arbAppendResponse(r);
      case "vote":
        return arbVote(r);
      case "voteResponse":
        return arbVoteResponse(r);
      case "snapshot":
        return arbSnapshot(r, maxChunk);
      case "snapshotResponse":
        return arbSnapshotResponse(r);
      case "timeoutNow":
        return arbTimeoutNow(r);
    }
  });
}

export const MESSAGE_TYPES: readonly Message["type"][] = [
  "append",
  "appendResponse",
  "vote",
  "voteResponse",
  "snapshot",
  "snapshotResponse",
  "timeoutNow",
];

/** Valid messages of any type. */
export function arbMessage(o: ArbMessageOptions): fc.Arbitrary<Message> {
  return fc.oneof(...MESSAGE_TYPES.map((t) => arbMessageOfType(t, o)));
}
