// Malformed fields and the request-size refusal (issue 12, finding 10): a field sent with the wrong
// protobuf wire type is INVALID_ARGUMENT naming the field (a Range whose prefix is malformed returned every
// key before), on the client API and on peer messages alike; a request over maxRequestBytes at the default
// settings gets our TOO_LARGE naming the limit (gRPC's RESOURCE_EXHAUSTED answered first before), and one
// beyond gRPC's receive limit RESOURCE_EXHAUSTED. The wire shapes are held to the .proto files.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { GetResponse as GetResponseDecoder, RangeResponse } from "../../src/gen/raftkv/v1/client.ts";
import type { MessageShape } from "../../src/lib/proto-wire.ts";
import { wireTypeProblem } from "../../src/lib/proto-wire.ts";
import { CLIENT_REQUEST_SHAPES, clientReceiveLimitBytes } from "../../src/server/client-edge.ts";
import { DEFAULT_SETTINGS } from "../../src/server/config.ts";
import { PEER_SHAPES } from "../../src/transport/peer-wire.ts";
import { rawUnary, startCluster, type TestCluster, waitFor } from "./cluster.ts";
import { ErrorCode, protobuf, session } from "./wire.ts";

const PUT = "/raftkv.v1.ClientService/Put";
const GET = "/raftkv.v1.ClientService/Get";
const RANGE = "/raftkv.v1.ClientService/Range";
const APPEND = "/raftkv.v1.PeerService/AppendEntries";

function headerOf(bytes: Buffer | null): { code: number; message: string } {
  assert.ok(bytes !== null, "an answer, not a gRPC error");
  const res = GetResponseDecoder.decode(bytes);
  return { code: res.header?.errorCode ?? -1, message: res.header?.errorMessage ?? "" };
}

/** Raw protobuf: [field, wire type, payload bytes already encoded for that wire type]. */
function raw(fields: readonly (readonly [number, number, Uint8Array])[]): Buffer {
  const parts: Buffer[] = [];
  for (const [no, wire, payload] of fields) {
    parts.push(Buffer.from([(no << 3) | wire]));
    if (wire === 2) parts.push(Buffer.from([payload.length]));
    parts.push(Buffer.from(payload));
  }
  return Buffer.concat(parts);
}

describe("wire shapes match the .proto files", () => {
  /** message name -> field number -> [name, type]; from the .proto text (comments stripped). */
  function parseProto(path: string): {
    messages: Map<string, Map<number, [string, string]>>;
    enums: Set<string>;
  } {
    const text = readFileSync(path, "utf8").replace(/\/\/.*$/gm, "");
    const messages = new Map<string, Map<number, [string, string]>>();
    const enums = new Set([...text.matchAll(/\benum\s+(\w+)\s*\{/g)].map((m) => m[1]!));
    for (const m of text.matchAll(/\bmessage\s+(\w+)\s*\{/g)) {
      let depth = 1;
      let i = m.index + m[0].length;
      const start = i;
      while (depth > 0 && i < text.length) {
        if (text[i] === "{") depth++;
        else if (text[i] === "}") depth--;
        i++;
      }
      const body = text.slice(start, i - 1);
      const fields = new Map<number, [string, string]>();
      for (const f of body.matchAll(/^\s*(?:optional\s+|repeated\s+)?([\w.]+)\s+(\w+)\s*=\s*(\d+)\s*;/gm))
        fields.set(Number(f[3]), [f[2]!, f[1]!]);
      messages.set(m[1]!, fields);
    }
    return { messages, enums };
  }

  function wireOf(type: string, enums: Set<string>): number {
    if (["string", "bytes"].includes(type)) return 2;
    if (["fixed32", "sfixed32", "float"].includes(type)) return 5;
    if (["fixed64", "sfixed64", "double"].includes(type)) return 1;
    if (["int32", "int64", "uint32", "uint64", "sint32", "sint64", "bool"].includes(type) || enums.has(type))
      return 0;
    return 2; // a message
  }

  for (const [file, shapes] of [
    ["proto/raftkv/v1/client.proto", CLIENT_REQUEST_SHAPES],
    ["proto/raftkv/v1/peer.proto", PEER_SHAPES],
  ] as const) {
    test(`${file}: every shape lists each field with its number, name and wire type`, () => {
      const { messages, enums } = parseProto(file);
      for (const shape of shapes as readonly MessageShape[]) {
        const proto = messages.get(shape.name);
        assert.ok(proto !== undefined, `${shape.name} is in ${file}`);
        const inShape = Object.entries(shape.fields).map(([no, f]) => [Number(no), f.name, f.wire]);
        const inProto = [...proto].map(([no, [name, type]]) => [no, name, wireOf(type, enums)]);
        assert.deepEqual(inShape.sort(), inProto.sort(), shape.name);
        for (const [no, f] of Object.entries(shape.fields))
          if (f.message !== undefined)
            assert.equal(f.message.name, proto.get(Number(no))?.[1], `${shape.name}.${f.name}`);
      }
    });
  }

  test("the checker: wrong types named with their path; zero tags, stray end-groups; unknown fields and groups skipped", () => {
    const range = CLIENT_REQUEST_SHAPES.find((s) => s.name === "RangeRequest")!;
    const request = CLIENT_REQUEST_SHAPES.find((s) => s.name === "ClientRequest")!;
    assert.equal(wireTypeProblem(protobuf([[1, "a/"]]), range), null);
    assert.equal(
      wireTypeProblem(protobuf([[1, 5n]]), range),
      "RangeRequest.prefix (field 1) was sent as varint, but it is length-delimited",
    );
    assert.equal(
      wireTypeProblem(protobuf([[7, protobuf([[3, "x"]])]]), request),
      "ClientRequest.range.consistency (field 3) was sent as length-delimited, but it is varint",
    );
    assert.match(
      wireTypeProblem(Buffer.from([0x0a, 0x01, 0x61, 0x00, 0x10, 0x01]), range) ?? "",
      /field number 0 at byte 3/,
    );
    assert.match(
      wireTypeProblem(Buffer.from([0x4c, 0x10, 0x01]), range) ?? "",
      /end-group \(field 9\) at byte 0 outside any group/,
    );
    // Unknown fields of any wire type, an unknown group around a wrongly typed "field 1", are skipped.
    const unknown = raw([
      [9, 0, Uint8Array.of(1)],
      [10, 5, Uint8Array.of(1, 2, 3, 4)],
      [11, 1, new Uint8Array(8)],
    ]);
    assert.equal(
      wireTypeProblem(Buffer.concat([unknown, Buffer.from([0x6b, 0x08, 0x01, 0x6c])]), range),
      null,
    );
    // Truncation is the decoder's to report.
    assert.equal(wireTypeProblem(Buffer.from([0x0a, 0x05, 0x61]), range), null);
  });
});

describe("a node refuses wrongly typed fields, INVALID_ARGUMENT naming the field", () => {
  let c: TestCluster;
  let address: string;
  before(async () => {
    c = await startCluster({ size: 1, settings: { metricsPort: 0 } });
    await c.leader();
    address = c.addresses[0]!;
    const kv = c.client();
    await kv.put("a/1", "x");
    await kv.put("b/1", "y");
  });
  after(() => c.close());

  test("a Range whose prefix is a varint does not read every key", async () => {
    const r = await rawUnary(address, RANGE, raw([[1, 0, Uint8Array.of(5)]]));
    assert.equal(r.status, grpc.status.OK);
    const res = RangeResponse.decode(r.bytes!);
    assert.equal(res.items.length, 0, "nothing read");
    assert.equal(res.header?.errorCode, ErrorCode.ERROR_CODE_INVALID_ARGUMENT);
    assert.equal(
      res.header?.errorMessage,
      "the request is not a well-formed protobuf message: RangeRequest.prefix (field 1) was sent as varint, but it is length-delimited (node 0); send raftkv.v1 messages as proto/raftkv/v1/client.proto defines them",
    );
  });

  test("Put, Get and the Session stream: each wrongly typed field is named", async () => {
    const put = headerOf(
      (
        await rawUnary(
          address,
          PUT,
          raw([
            [1, 2, Buffer.from("k")],
            [4, 2, Buffer.from("1")],
          ]),
        )
      ).bytes,
    );
    assert.equal(put.code, ErrorCode.ERROR_CODE_INVALID_ARGUMENT);
    assert.match(put.message, /PutRequest\.seq \(field 4\) was sent as length-delimited, but it is varint/);
    const get = headerOf(
      (
        await rawUnary(
          address,
          GET,
          raw([
            [1, 2, Buffer.from("a/1")],
            [2, 5, new Uint8Array(4)],
          ]),
        )
      ).bytes,
    );
    assert.equal(get.code, ErrorCode.ERROR_CODE_INVALID_ARGUMENT);
    assert.match(get.message, /GetRequest\.consistency \(field 2\) was sent as fixed32, but it is varint/);
    const request = Buffer.concat([
      raw([[1, 0, Uint8Array.of(7)]]),
      raw([[7, 2, raw([[1, 0, Uint8Array.of(5)]])]]),
    ]);
    const [answer] = await session(address, [request]);
    assert.equal(answer?.requestId, 7n);
    assert.equal(answer?.result?.$case, "rejected");
    const rejected = answer?.result?.$case === "rejected" ? answer.result.value : undefined;
    assert.equal(rejected?.errorCode, ErrorCode.ERROR_CODE_INVALID_ARGUMENT);
    assert.match(rejected?.errorMessage ?? "", /ClientRequest\.range\.prefix \(field 1\) was sent as varint/);
  });

  test("a peer AppendEntries with a wrongly typed field is refused malformed, logged and counted", async () => {
    const header = raw([
      [1, 2, Buffer.from("sec")],
      [2, 0, Uint8Array.of(1)],
      [3, 0, Uint8Array.of(0)],
      [4, 2, Buffer.from("9")],
    ]);
    const r = await rawUnary(address, APPEND, raw([[1, 2, header]]));
    assert.equal(r.status, grpc.status.INVALID_ARGUMENT);
    assert.equal(
      r.details,
      "malformed: AppendEntriesRequest.header.term (field 4) was sent as length-delimited, but it is varint",
    );
    const commit = await rawUnary(address, APPEND, raw([[5, 2, Buffer.from("7")]]));
    assert.match(commit.details, /^malformed: AppendEntriesRequest\.leader_commit \(field 5\)/);
    const text = await (await fetch(`http://127.0.0.1:${c.nodes[0]!.metricsPort}/metrics`)).text();
    assert.match(text, /raftkv_peer_messages_refused_total\{reason="malformed"\} [2-9]/);
    await waitFor("the log line", () =>
      c
        .log(0)
        .split("\n")
        .find((l) => l.includes("refused a peer message") && l.includes("AppendEntriesRequest.header.term")),
    );
  });
});

describe("request size at the default limits", () => {
  let c: TestCluster;
  before(async () => {
    c = await startCluster({ size: 1 });
    await c.leader();
  });
  after(() => c.close());

  test("over maxRequestBytes: TOO_LARGE naming the limit; beyond gRPC's receive limit: RESOURCE_EXHAUSTED", async () => {
    const limit = DEFAULT_SETTINGS.maxRequestBytes;
    const over = protobuf([
      [1, "k"],
      [2, new Uint8Array(limit)],
    ]);
    const a = headerOf((await rawUnary(c.addresses[0]!, PUT, over)).bytes);
    assert.equal(a.code, ErrorCode.ERROR_CODE_TOO_LARGE);
    assert.equal(
      a.message,
      `the request is ${over.length} bytes, over maxRequestBytes (${limit}) (node 0); send a smaller value (maxValueBytes) or key (maxKeyBytes)`,
    );
    const beyond = protobuf([
      [1, "k"],
      [2, new Uint8Array(clientReceiveLimitBytes(limit) + 1)],
    ]);
    const r = await rawUnary(c.addresses[0]!, PUT, beyond);
    assert.equal(r.status, grpc.status.RESOURCE_EXHAUSTED);
    assert.match(r.details, /Received message larger than max/);
  });
});
