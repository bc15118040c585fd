// Fuzz target "proto": the generated client-API decoders (ts-proto), which throw on bad bytes by
// design. It records which exceptions they throw, for the server to map to INVALID_ARGUMENT, and what
// they accept silently (replacement characters, enum values outside the enum).

import { BinaryReader } from "@bufbuild/protobuf/wire";
import {
  ClientRequest,
  ClientResponse,
  CompareAndSwapRequest,
  Consistency,
  DeleteRequest,
  GetRequest,
  PutRequest,
  RangeRequest,
  StatusRequest,
} from "../../../src/gen/raftkv/v1/client.ts";
import type { Prng } from "../../../src/lib/prng.ts";
import { mutateBytes, pickBoundary } from "../mutate.ts";
import { mutateProto } from "../proto-mutate.ts";
import { type FuzzTarget, finding, hex, type Outcome } from "../target.ts";

interface Decoder {
  readonly name: string;
  decode(bytes: Uint8Array): unknown;
}

const fatalUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Input byte 0 picks the decoder. The server decodes the requests; the client ClientResponse.
 *  "ClientRequest(strict)" reads strings with a fatal UTF-8 decoder, as a server that refuses
 *  non-UTF-8 keys must (the generated decoders substitute U+FFFD). */
export const PROTO_DECODERS: readonly Decoder[] = [
  { name: "ClientRequest", decode: (b) => ClientRequest.decode(b) },
  {
    name: "ClientRequest(strict)",
    decode: (b) => ClientRequest.decode(new BinaryReader(b, (u) => fatalUtf8.decode(u))),
  },
  { name: "PutRequest", decode: (b) => PutRequest.decode(b) },
  { name: "GetRequest", decode: (b) => GetRequest.decode(b) },
  { name: "DeleteRequest", decode: (b) => DeleteRequest.decode(b) },
  { name: "CompareAndSwapRequest", decode: (b) => CompareAndSwapRequest.decode(b) },
  { name: "RangeRequest", decode: (b) => RangeRequest.decode(b) },
  { name: "StatusRequest", decode: (b) => StatusRequest.decode(b) },
  { name: "ClientResponse", decode: (b) => ClientResponse.decode(b) },
];

const KEYS = ["k", "user/1", "ключ", "🔑", "\ufeffk", "", "x".repeat(300)];

function key(prng: Prng): string {
  return prng.pick(KEYS);
}

function bytes(prng: Prng): Uint8Array {
  return Uint8Array.from({ length: prng.int(0, 40) }, () => prng.int(0, 255));
}

function u64(prng: Prng): bigint {
  return BigInt.asUintN(64, prng.chance(0.5) ? BigInt(prng.int(0, 1000)) : pickBoundary(prng));
}

function requestBytes(prng: Prng, decoder: number): Uint8Array {
  const which = decoder === 0 ? 0 : decoder - 1;
  const consistency = prng.pick([
    Consistency.CONSISTENCY_LEASE,
    Consistency.CONSISTENCY_READ_INDEX,
    Consistency.CONSISTENCY_STALE,
  ]);
  const put = {
    key: key(prng),
    value: bytes(prng),
    clientId: prng.chance(0.5) ? "c1" : "",
    seq: u64(prng),
    lease: 0n,
  };
  const get = { key: key(prng), consistency };
  const del = { key: key(prng), clientId: "c2", seq: u64(prng) };
  const cas = {
    key: key(prng),
    expectedValue: bytes(prng),
    newValue: bytes(prng),
    clientId: "c3",
    seq: u64(prng),
  };
  const range = { prefix: key(prng), limit: prng.int(0, 1000), consistency, startAfter: key(prng) };
  switch (which) {
    case 0: {
      const op = prng.pick([
        { $case: "put" as const, value: put },
        { $case: "get" as const, value: get },
        { $case: "delete" as const, value: del },
        { $case: "compareAndSwap" as const, value: cas },
        { $case: "range" as const, value: range },
        { $case: "status" as const, value: {} },
      ]);
      return ClientRequest.encode({ requestId: u64(prng), timeoutMs: prng.int(0, 60000), op }).finish();
    }
    case 1:
      return PutRequest.encode(put).finish();
    case 2:
      return GetRequest.encode(get).finish();
    case 3:
      return DeleteRequest.encode(del).finish();
    case 4:
      return CompareAndSwapRequest.encode(cas).finish();
    case 5:
      return RangeRequest.encode(range).finish();
    case 6:
      return StatusRequest.encode({}).finish();
    default: {
      const header = {
        nodeId: 1n,
        leaderAddress: "127.0.0.1:1",
        term: 3n,
        errorCode: 0,
        errorMessage: "",
        revision: 0n,
      };
      const items = [
        { key: key(prng), value: bytes(prng), createRevision: 2n, modRevision: 3n, version: 2n, lease: 0n },
      ];
      return ClientResponse.encode({
        requestId: u64(prng),
        result: { $case: "range", value: { header, items, more: false, index: 9n } },
      }).finish();
    }
  }
}

function seeds(prng: Prng): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < 200; i++) {
    const which = i % PROTO_DECODERS.length;
    const body = requestBytes(prng, which);
    const input = new Uint8Array(body.length + 1);
    input[0] = which;
    input.set(body, 1);
    out.push(input);
  }
  return out;
}

function mutate(input: Uint8Array, other: Uint8Array, prng: Prng): Uint8Array {
  const payload = input.subarray(1);
  const next = prng.chance(0.8)
    ? mutateProto(payload, other.subarray(1), prng)
    : mutateBytes(payload, other, prng);
  const out = new Uint8Array(next.length + 1);
  out[0] = prng.chance(0.05) ? prng.int(0, PROTO_DECODERS.length - 1) : (input[0] ?? 0);
  out.set(next, 1);
  return out;
}

/** Labels for what a decoder accepted that the server must check itself. */
function acceptedLabel(name: string, value: unknown): string {
  const text = JSON.stringify(value, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v));
  if (text.includes("\ufffd")) return `${name}/accepted-replacement-char`;
  if (/"consistency":(-?\d+)/.exec(text)?.[1] !== undefined) {
    const c = Number(/"consistency":(-?\d+)/.exec(text)?.[1]);
    if (c < 0 || c > 3) return `${name}/accepted-unknown-consistency`;
  }
  return `${name}/accepted`;
}

function run(input: Uint8Array): Outcome {
  const decoder = PROTO_DECODERS[(input[0] ?? 0) % PROTO_DECODERS.length]!;
  try {
    return { kind: "accepted", label: acceptedLabel(decoder.name, decoder.decode(input.subarray(1))) };
  } catch (e) {
    if (!(e instanceof Error)) return finding("proto-non-error-thrown", `${decoder.name} threw ${String(e)}`);
    const message = e.message.replace(/\d+/g, "N");
    return { kind: "refused", label: `${decoder.name}/${e.constructor.name}: ${message}` };
  }
}

export const protoTarget: FuzzTarget = {
  name: "proto",
  seeds,
  mutate,
  run,
  describe: (input) =>
    `decoder ${PROTO_DECODERS[(input[0] ?? 0) % PROTO_DECODERS.length]!.name}, payload hex ${hex(input.subarray(1))}`,
};
