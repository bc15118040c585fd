// The client commands: put, get, del, cas, range and status, over RaftKvClient.

import type { Command } from "commander";
import { CONSISTENCIES, type Consistency, type NodeStatusRow, RaftKvClient } from "../client/index.ts";
import type { ClientTlsOptions } from "../client/tls.ts";
import { utf8OrNull } from "../client/values.ts";
import { EXIT, formatTable, printJson, usageError } from "./output.ts";
import { quietIpServernameWarning } from "./tls-warning.ts";

export const DEFAULT_ENDPOINTS = "127.0.0.1:60000,127.0.0.1:60001,127.0.0.1:60002";

interface ClientFlags {
  endpoints: string;
  consistency: string;
  timeout: string;
  json: boolean;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
}

/** Adds --endpoints, --consistency, --timeout and --json to a command. */
export function withClientOptions(cmd: Command): Command {
  return cmd
    .option(
      "--endpoints <list>",
      "comma-separated host:port of any nodes (env RAFTKV_ENDPOINTS)",
      process.env["RAFTKV_ENDPOINTS"] ?? DEFAULT_ENDPOINTS,
    )
    .option("--consistency <level>", "reads: lease | readIndex | stale", "lease")
    .option("--timeout <duration>", "whole-request deadline, retries included: 5000, 5000ms, 5s", "5s")
    .option("--json", "print the result as JSON", false)
    .option("--tls-ca <file>", "TLS: PEM of the CA that signed the nodes' certificates (env RAFTKV_TLS_CA)")
    .option(
      "--tls-cert <file>",
      "TLS: this client's certificate, when nodes require one (env RAFTKV_TLS_CERT)",
    )
    .option("--tls-key <file>", "TLS: this client's private key (env RAFTKV_TLS_KEY)");
}

/** TLS options from the flags, or the RAFTKV_TLS_* environment; undefined: plaintext. */
function tlsFrom(f: ClientFlags): ClientTlsOptions | undefined {
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

function makeClient(f: ClientFlags): { client: RaftKvClient; consistency: Consistency } {
  const timeoutMs = parseDuration(f.timeout, "--timeout");
  const consistency = parseConsistency(f.consistency);
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
    ...(tls === undefined ? {} : { tls }),
  });
  return { client, consistency };
}

async function withClient<T>(
  f: ClientFlags,
  fn: (c: RaftKvClient, consistency: Consistency) => Promise<T>,
): Promise<T> {
  const { client, consistency } = makeClient(f);
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

/** Registers put/get/del/cas/range/status; each action resolves with the exit code. */
export function addKvCommands(program: Command, setExit: (code: number) => void): void {
  withClientOptions(
    program.command("put").description("set a key to a value").argument("<key>").argument("<value>"),
  ).action(async (key: string, value: string, f: ClientFlags) => {
    const r = await withClient(f, (c) => c.put(key, value));
    if (f.json) printJson({ ok: true, key, index: r.index });
    else process.stdout.write(`OK (index ${r.index})\n`);
  });

  withClientOptions(program.command("get").description("print a key's value").argument("<key>")).action(
    async (key: string, f: ClientFlags) => {
      const v = await withClient(f, (c, consistency) => c.get(key, { consistency }));
      if (f.json) printJson(v === null ? { key, found: false } : { key, found: true, ...showValue(v) });
      else if (v !== null) writeValue(v);
      else process.stderr.write(`raftkv get: key not found: ${key}\n`);
      if (v === null) setExit(EXIT.notFound);
    },
  );

  withClientOptions(
    program.command("del").alias("delete").description("delete a key").argument("<key>"),
  ).action(async (key: string, f: ClientFlags) => {
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
        "set <key> to <value> only if its current value is --expect (or it is absent: --expect-absent)",
      )
      .argument("<key>")
      .argument("<value>")
      .option("--expect <value>", "the value the key must hold now")
      .option("--expect-absent", "the key must not exist now", false),
  ).action(
    async (key: string, value: string, f: ClientFlags & { expect?: string; expectAbsent: boolean }) => {
      if ((f.expect === undefined) === !f.expectAbsent)
        throw usageError(
          "cas needs exactly one of --expect <value> and --expect-absent",
          "say what the key must hold now",
        );
      const expected = f.expectAbsent ? null : (f.expect ?? null);
      const r = await withClient(f, (c) => c.cas(key, expected, value));
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
      .description('list keys starting with <prefix> ("" for all), in ascending order')
      .argument("<prefix>")
      .option("--limit <n>", "at most this many keys (0: the server's maximum)", "0"),
  ).action(async (prefix: string, f: ClientFlags & { limit: string }) => {
    const limit = parseLimit(f.limit);
    const r = await withClient(f, (c, consistency) => c.range(prefix, { limit, consistency }));
    if (f.json) {
      printJson({
        items: r.items.map((kv) => ({ key: kv.key, ...showValue(kv.value) })),
        more: r.more,
        index: r.index,
      });
      return;
    }
    for (const kv of r.items) {
      const text = utf8OrNull(kv.value);
      process.stdout.write(`${kv.key}\t${text ?? `base64:${Buffer.from(kv.value).toString("base64")}`}\n`);
    }
    if (r.more) process.stderr.write("raftkv range: more keys match; raise --limit or narrow the prefix\n");
  });

  withClientOptions(
    program
      .command("status")
      .description("show every node's role, term, commit and applied index, leader and lease"),
  ).action(async (f: ClientFlags) => {
    const rows = await withClient(f, (c) =>
      c.clusterStatus({ timeoutMs: Math.min(parseDuration(f.timeout, "--timeout"), 2000) }),
    );
    if (f.json) printJson(rows.map(statusJson));
    else process.stdout.write(`${statusTable(rows)}\n`);
    if (!rows.some((r) => r.ok)) {
      const first = rows.find((r) => !r.ok);
      throw first !== undefined && !first.ok ? first.error : usageError("no endpoints", "give --endpoints");
    }
  });
}

function statusJson(r: NodeStatusRow): unknown {
  if (r.ok) return { ok: true, ...r.status };
  return {
    ok: false,
    endpoint: r.endpoint,
    nodeId: r.nodeId,
    error: { code: r.error.code, message: r.error.message },
  };
}

export function statusTable(rows: readonly NodeStatusRow[]): string {
  const header = ["ID", "ADDRESS", "ROLE", "TERM", "COMMIT", "APPLIED", "LEADER", "LEASE"];
  const cells = rows.map((r): string[] => {
    if (!r.ok)
      return [
        r.nodeId === null ? "?" : String(r.nodeId),
        r.endpoint,
        "unreachable",
        "-",
        "-",
        "-",
        "-",
        r.error.code,
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
    ];
  });
  return formatTable(header, cells);
}
