// The client commands: put, get, del, cas, range and status, over RaftKvClient.

import type { Command } from "commander";
import type { Consistency, KeyValue, NodeStatusRow, RaftKvClient } from "../client/index.ts";
import type { ClientTlsOptions } from "../client/tls.ts";
import { utf8OrNull } from "../client/values.ts";
import { RaftKvError } from "../lib/errors.ts";
import { configurationText } from "./member.ts";
import { EXIT, formatTable, printJson, usageError } from "./output.ts";
import { quietIpServernameWarning } from "./tls-warning.ts";

export const DEFAULT_ENDPOINTS = "127.0.0.1:60000,127.0.0.1:60001,127.0.0.1:60002";

const CONSISTENCIES: readonly Consistency[] = ["lease", "readIndex", "stale"];

/** The largest value read from stdin: the most any node accepts (maxValueBytes is at most 64 MiB). */
export const MAX_STDIN_VALUE_BYTES = 64 * 1024 * 1024;

export interface ClientFlags {
  endpoints: string;
  consistency?: string;
  timeout: string;
  json: boolean;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
}

/** Adds --endpoints, --timeout, --json and the TLS flags to a command, and --consistency to reads. */
export function withClientOptions(cmd: Command, o: { readonly reads: boolean }): Command {
  cmd.option(
    "--endpoints <list>",
    "comma-separated host:port of any nodes (env RAFTKV_ENDPOINTS)",
    process.env["RAFTKV_ENDPOINTS"] ?? DEFAULT_ENDPOINTS,
  );
  if (o.reads) cmd.option("--consistency <level>", "lease | readIndex | stale", "lease");
  return cmd
    .option("--timeout <duration>", "whole-request deadline, retries included: 5000, 5000ms, 5s", "5s")
    .option("--json", "print the result (or the error) as JSON on stdout", false)
    .option("--tls-ca <file>", "TLS: PEM of the CA that signed the nodes' certificates (env RAFTKV_TLS_CA)")
    .option(
      "--tls-cert <file>",
      "TLS: this client's certificate, when nodes require one (env RAFTKV_TLS_CERT)",
    )
    .option("--tls-key <file>", "TLS: this client's private key (env RAFTKV_TLS_KEY)");
}

/** TLS options from the flags, or the RAFTKV_TLS_* environment; undefined: plaintext. */
export function tlsFrom(f: ClientFlags): ClientTlsOptions | undefined {
  const env = process.env;
  const caFile = f.tlsCa ?? env["RAFTKV_TLS_CA"];
  const certFile = f.tlsCert ?? env["RAFTKV_TLS_CERT"];
  const keyFile = f.tlsKey ?? env["RAFTKV_TLS_KEY"];
  if (caFile === undefined && certFile === undefined && keyFile === undefined) return undefined;
  if (caFile === undefined)
    throw usageError(
      "--tls-cert and --tls-key need --tls-ca",
      "name the CA that signed the nodes' certificates",
    );
  quietIpServernameWarning();
  return {
    caFile,
    ...(certFile === undefined ? {} : { certFile }),
    ...(keyFile === undefined ? {} : { keyFile }),
  };
}

/** Milliseconds from "250", "250ms" or "5s". */
export function parseDuration(text: string, flag: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s)?\s*$/.exec(text);
  const n = m === null ? Number.NaN : Number(m[1]) * (m[2] === "s" ? 1000 : 1);
  if (!Number.isFinite(n) || n <= 0)
    throw usageError(
      `${flag} "${text}" is not a positive duration`,
      `use milliseconds (${flag} 500) or seconds (${flag} 2s)`,
    );
  return n;
}

function parseConsistency(text: string): Consistency {
  const found = CONSISTENCIES.find((c) => c.toLowerCase() === text.toLowerCase());
  if (found === undefined)
    throw usageError(
      `--consistency "${text}" is not a consistency level`,
      `use one of ${CONSISTENCIES.join(", ")}`,
    );
  return found;
}

function parseLimit(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n > 0xffffffff)
    throw usageError(
      `--limit "${text}" is not a non-negative integer`,
      "use e.g. --limit 100 (0: the server's maximum)",
    );
  return n;
}

/** The client library (gRPC and the generated protobuf code are most of a command's start-up), loaded
 *  only by the commands that talk to nodes: --help and --version start without it. */
async function makeClient(f: ClientFlags): Promise<{ client: RaftKvClient; consistency: Consistency }> {
  const { RaftKvClient } = await import("../client/client.ts");
  const timeoutMs = parseDuration(f.timeout, "--timeout");
  const consistency = parseConsistency(f.consistency ?? "lease");
  const endpoints = f.endpoints.split(",").map((e) => e.trim());
  for (const e of endpoints)
    if (!/^.+:\d{1,5}$/.test(e))
      throw usageError(
        `--endpoints: "${e}" is not host:port`,
        "use e.g. --endpoints 127.0.0.1:60000,127.0.0.1:60001",
      );
  const tls = tlsFrom(f);
  const client = new RaftKvClient({
    endpoints,
    timeoutMs,
    consistency,
    maxConcurrentWrites: 1,
    // One request per process: a unary call saves opening a Session stream first.
    path: "unary",
    ...(tls === undefined ? {} : { tls }),
  });
  return { client, consistency };
}

export async function withClient<T>(
  f: ClientFlags,
  fn: (c: RaftKvClient, consistency: Consistency) => Promise<T>,
): Promise<T> {
  const { client, consistency } = await makeClient(f);
  try {
    return await fn(client, consistency);
  } finally {
    client.close();
  }
}

function showValue(v: Uint8Array): { value: string } | { valueBase64: string } {
  const text = utf8OrNull(v);
  return text === null ? { valueBase64: Buffer.from(v).toString("base64") } : { value: text };
}

function writeValue(v: Uint8Array): void {
  process.stdout.write(v);
  process.stdout.write("\n");
}

/** The value argument, or (when it is left out) all of stdin, as etcdctl does: `raftkv put k < file`. */
async function valueArg(value: string | undefined, command: string): Promise<Uint8Array | string> {
  if (value !== undefined) return value;
  if (process.stdin.isTTY)
    throw usageError(
      `${command} needs a value`,
      `give it after the key, or pipe it in: raftkv ${command} KEY < file`,
    );
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    bytes += chunk.length;
    if (bytes > MAX_STDIN_VALUE_BYTES)
      throw new RaftKvError({
        code: "TOO_LARGE",
        message: `the value on stdin is over ${MAX_STDIN_VALUE_BYTES} bytes, more than any node accepts`,
        hint: "store smaller values (a node's limit is its maxValueBytes, 1 MiB by default)",
      });
    chunks.push(chunk);
  }
  const all = Buffer.concat(chunks);
  return new Uint8Array(all.buffer, all.byteOffset, all.byteLength);
}

function rangeLine(kv: KeyValue): string {
  const text = utf8OrNull(kv.value);
  return `${kv.key}\t${text ?? `base64:${Buffer.from(kv.value).toString("base64")}`}\n`;
}

/** Registers put/get/del/cas/range/status; each action resolves with the exit code. */
export function addKvCommands(program: Command, setExit: (code: number) => void): void {
  withClientOptions(
    program
      .command("put")
      .description("set a key to a value (the value from stdin when left out: raftkv put KEY < file)")
      .argument("<key>")
      .argument("[value]")
      .option("--lease <id>", "attach the key to this lease (hex id from `raftkv lease grant`)"),
    { reads: false },
  ).action(async (key: string, value: string | undefined, f: ClientFlags & { lease?: string }) => {
    const { parseLeaseId } = await import("./coord-commands.ts");
    const lease = f.lease === undefined ? {} : { lease: parseLeaseId(f.lease) };
    const v = await valueArg(value, "put");
    const r = await withClient(f, (c) => c.put(key, v, lease));
    if (f.json) printJson({ ok: true, key, index: r.index, revision: r.revision });
    else process.stdout.write(r.index > 0 ? `OK (index ${r.index})\n` : `OK (revision ${r.revision})\n`);
  });

  withClientOptions(program.command("get").description("print a key's value").argument("<key>"), {
    reads: true,
  }).action(async (key: string, f: ClientFlags) => {
    const v = await withClient(f, (c, consistency) => c.get(key, { consistency }));
    if (f.json) printJson(v === null ? { key, found: false } : { key, found: true, ...showValue(v) });
    else if (v !== null) writeValue(v);
    else process.stderr.write(`raftkv get: key not found: ${key}\n`);
    if (v === null) setExit(EXIT.notFound);
  });

  withClientOptions(program.command("del").alias("delete").description("delete a key").argument("<key>"), {
    reads: false,
  }).action(async (key: string, f: ClientFlags) => {
    const r = await withClient(f, (c) => c.delete(key));
    if (f.json) printJson({ key, deleted: r.deleted, index: r.index });
    else
      process.stdout.write(
        r.deleted ? `deleted (index ${r.index})\n` : `not found, nothing deleted (index ${r.index})\n`,
      );
  });

  withClientOptions(
    program
      .command("cas")
      .description(
        "set <key> to <value> (from stdin when left out) only if its current value is --expect (or it is absent: --expect-absent)",
      )
      .argument("<key>")
      .argument("[value]")
      .option("--expect <value>", "the value the key must hold now")
      .option("--expect-absent", "the key must not exist now", false),
    { reads: false },
  ).action(
    async (
      key: string,
      value: string | undefined,
      f: ClientFlags & { expect?: string; expectAbsent: boolean },
    ) => {
      if ((f.expect === undefined) === !f.expectAbsent)
        throw usageError(
          "cas needs exactly one of --expect <value> and --expect-absent",
          "say what the key must hold now",
        );
      const expected = f.expectAbsent ? null : (f.expect ?? null);
      const v = await valueArg(value, "cas");
      const r = await withClient(f, (c) => c.cas(key, expected, v));
      const current = r.current === null ? null : showValue(r.current);
      if (f.json) printJson({ key, swapped: r.swapped, index: r.index, current });
      else if (r.swapped) process.stdout.write(`swapped (index ${r.index})\n`);
      else
        process.stdout.write(
          r.current === null
            ? "not swapped: the key does not exist\n"
            : `not swapped: current value is ${utf8OrNull(r.current) ?? `base64:${Buffer.from(r.current).toString("base64")}`}\n`,
        );
      if (!r.swapped) setExit(EXIT.notFound);
    },
  );

  withClientOptions(
    program
      .command("range")
      .description('list keys starting with <prefix> ("" for all), in ascending order, a page at a time')
      .argument("<prefix>")
      .option("--limit <n>", "at most this many keys (with --all: per page; 0: the server's maximum)", "0")
      .option("--after <key>", "start after this key: the last one of the previous page")
      .option("--all", "every matching key, page after page, to the end", false),
    { reads: true },
  ).action(async (prefix: string, f: ClientFlags & { limit: string; after?: string; all: boolean }) => {
    const limit = parseLimit(f.limit);
    const after = f.after === undefined ? {} : { startAfter: f.after };
    if (f.all) {
      await withClient(f, async (c, consistency) => {
        if (f.json) process.stdout.write('{"items":[');
        let n = 0;
        for await (const kv of c.rangeAll(prefix, { pageSize: limit, consistency, ...after })) {
          if (f.json)
            process.stdout.write(
              `${n > 0 ? "," : ""}${JSON.stringify({ key: kv.key, ...showValue(kv.value) })}`,
            );
          else process.stdout.write(rangeLine(kv));
          n++;
        }
        if (f.json) process.stdout.write('],"more":false}\n');
      });
      return;
    }
    const r = await withClient(f, (c, consistency) => c.range(prefix, { limit, consistency, ...after }));
    if (f.json) {
      printJson({
        items: r.items.map((kv) => ({ key: kv.key, ...showValue(kv.value) })),
        more: r.more,
        index: r.index,
      });
      return;
    }
    for (const kv of r.items) process.stdout.write(rangeLine(kv));
    const last = r.items[r.items.length - 1];
    if (r.more && last !== undefined)
      process.stderr.write(
        `raftkv range: more keys match: next page with --after ${JSON.stringify(last.key)}, or every key with --all\n`,
      );
  });

  withClientOptions(
    program
      .command("status")
      .description(
        "show every node's role, term, commit and applied index, leader, lease, process, version, uptime and data folder",
      ),
    { reads: false },
  ).action(async (f: ClientFlags) => {
    const rows = await withClient(f, (c) =>
      c.clusterStatus({ timeoutMs: Math.min(parseDuration(f.timeout, "--timeout"), 2000) }),
    );
    if (!rows.some((r) => r.ok)) {
      const first = rows.find((r) => !r.ok);
      throw first !== undefined && !first.ok ? first.error : usageError("no endpoints", "give --endpoints");
    }
    if (f.json) printJson(rows.map(statusJson));
    else process.stdout.write(`${statusTable(rows)}\n\n${await configurationText(f)}\n`);
  });
}

function statusJson(r: NodeStatusRow): unknown {
  if (r.ok) return { ok: true, ...r.status };
  return {
    ok: false,
    endpoint: r.endpoint,
    nodeId: r.nodeId,
    error: { code: r.error.code, message: r.error.detail },
  };
}

/** "3d 4h", "2h 5m", "4m 10s", "12s". */
export function formatUptime(ms: number): string {
  const s = Math.floor(ms / 1000);
  const [d, h, m] = [Math.floor(s / 86400), Math.floor((s % 86400) / 3600), Math.floor((s % 3600) / 60)];
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  if (m > 0) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

export function statusTable(rows: readonly NodeStatusRow[]): string {
  const header = [
    "ID",
    "ADDRESS",
    "ROLE",
    "TERM",
    "COMMIT",
    "APPLIED",
    "LEADER",
    "LEASE",
    "PID",
    "VERSION",
    "UPTIME",
    "DATA",
  ];
  const cells = rows.map((r): string[] => {
    if (!r.ok)
      return [
        r.nodeId === null ? "?" : String(r.nodeId),
        r.endpoint,
        "unreachable",
        ...["-", "-", "-", "-", r.error.code, "-", "-", "-", "-"],
      ];
    const s = r.status;
    const lease =
      s.role !== "leader" ? "-" : s.lease === "valid" ? `valid (${s.leaseRemainingMs} ms left)` : s.lease;
    return [
      String(s.nodeId),
      s.endpoint,
      s.role,
      String(s.term),
      String(s.commitIndex),
      String(s.appliedIndex),
      s.leaderId === null ? "none" : String(s.leaderId),
      lease,
      s.pid === null ? "?" : String(s.pid),
      s.version === "" ? "?" : s.version,
      s.uptimeMs === null ? "?" : formatUptime(s.uptimeMs),
      s.dataDir ?? "?",
    ];
  });
  return formatTable(header, cells);
}
