// The coordination commands: watch, txn (etcdctl's stdin format) and lease grant|keepalive|revoke|list|
// timetolive, over the client library. Output follows etcdctl's simple format; --json prints objects.

import type { Command } from "commander";
import type { KeyValueRecord, TxnCompare, TxnOperation, TxnResult, WatchEvent } from "../client/index.ts";
import { utf8OrNull } from "../client/values.ts";
import type { RaftKvError } from "../lib/errors.ts";
import { type ClientFlags, withClient, withClientOptions } from "./kv-commands.ts";
import { EXIT, printJson, usageError } from "./output.ts";

/** A lease id as etcdctl takes and prints it: hexadecimal (0x optional). */
export function parseLeaseId(text: string, what = "lease id"): bigint {
  const t = text.trim().replace(/^0x/i, "");
  if (!/^[0-9a-f]{1,16}$/i.test(t))
    throw usageError(
      `${what} "${text}" is not a hexadecimal lease id`,
      "use the id `raftkv lease grant` printed",
    );
  const id = BigInt(`0x${t}`);
  if (id === 0n) throw usageError(`${what} is 0`, "use the id `raftkv lease grant` printed");
  return id;
}

export const leaseHex = (id: bigint): string => id.toString(16);

function text(v: Uint8Array): string {
  return utf8OrNull(v) ?? `base64:${Buffer.from(v).toString("base64")}`;
}

function kvJson(kv: KeyValueRecord): Record<string, unknown> {
  const t = utf8OrNull(kv.value);
  return {
    key: kv.key,
    ...(t === null ? { valueBase64: Buffer.from(kv.value).toString("base64") } : { value: t }),
    createRevision: kv.createRevision,
    modRevision: kv.modRevision,
    version: kv.version,
    ...(kv.lease === 0n ? {} : { lease: leaseHex(kv.lease) }),
  };
}

function positiveInt(textValue: string, flag: string): number {
  const n = Number(textValue);
  if (!/^\d+$/.test(textValue) || !Number.isSafeInteger(n) || n < 1)
    throw usageError(`${flag} "${textValue}" is not a positive integer`, `e.g. ${flag} 10`);
  return n;
}

// ------------------------------------------------------------------ txn from stdin

/** Splits a request line into words, honouring "double" and 'single' quotes (etcdctl's argify). */
export function words(line: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S+)/g;
  for (const m of line.matchAll(re)) {
    if (m[1] !== undefined) out.push(JSON.parse(`"${m[1]}"`) as string);
    else if (m[2] !== undefined) out.push(m[2]);
    else out.push(m[3]!);
  }
  return out;
}

const COMPARE_RE = /^\s*(\w+)\(\s*"((?:[^"\\]|\\.)*)"\s*\)\s*(=|!=|<|>)\s*"((?:[^"\\]|\\.)*)"\s*$/;

type CompareModule = typeof import("../client/txn.ts");

/** One compare line as etcdctl writes it: `mod("key") > "0"`, `val("key") = "v"`, `version("k") = "2"`. */
export function parseCompare(line: string, t: CompareModule): TxnCompare {
  const m = COMPARE_RE.exec(line);
  if (m === null)
    throw usageError(
      `txn: bad compare ${JSON.stringify(line)}`,
      'write e.g. mod("key") > "0", val("key") = "v", version("key") = "1", create("key") < "5", lease("key") = "694d..."',
    );
  const [, target, rawKey, op, rawValue] = m as unknown as [
    string,
    string,
    string,
    "=" | "!=" | "<" | ">",
    string,
  ];
  const key = JSON.parse(`"${rawKey}"`) as string;
  const value = JSON.parse(`"${rawValue}"`) as string;
  const num = (): number => {
    if (!/^\d+$/.test(value))
      throw usageError(
        `txn: ${target}("${key}") compares with "${value}", not a number`,
        "use a whole number",
      );
    return Number(value);
  };
  switch (target.toLowerCase()) {
    case "value":
    case "val":
      return t.Compare.value(key, op, value);
    case "version":
    case "ver":
      return t.Compare.version(key, op, num());
    case "create":
    case "c":
      return t.Compare.createRevision(key, op, num());
    case "mod":
    case "m":
      return t.Compare.modRevision(key, op, num());
    case "lease":
      return t.Compare.lease(key, op, value === "0" ? 0n : parseLeaseId(value, "compare lease"));
    default:
      throw usageError(`txn: unknown compare target ${target}`, "use value, version, create, mod or lease");
  }
}

/** One request line: `put KEY VALUE [--lease=ID]`, `get KEY [--prefix]`, `del KEY [--prefix]`. */
export function parseRequest(line: string, t: CompareModule): TxnOperation {
  const [cmd, ...rest] = words(line);
  const flags = rest.filter((w) => w.startsWith("--"));
  const args = rest.filter((w) => !w.startsWith("--"));
  const prefix = flags.includes("--prefix");
  const leaseFlag = flags.find((f) => f.startsWith("--lease="));
  const unknown = flags.filter((f) => f !== "--prefix" && !f.startsWith("--lease="));
  const bad = (hint: string): RaftKvError => usageError(`txn: bad request ${JSON.stringify(line)}`, hint);
  if (unknown.length > 0)
    throw bad(`unknown flag ${unknown[0]}; put takes --lease=ID, get and del take --prefix`);
  switch (cmd) {
    case "put":
      if (args.length !== 2 || prefix) throw bad("write put KEY VALUE [--lease=ID]");
      return t.Op.put(
        args[0]!,
        args[1]!,
        leaseFlag === undefined ? {} : { lease: parseLeaseId(leaseFlag.slice(8)) },
      );
    case "get":
      if (args.length !== 1 || leaseFlag !== undefined) throw bad("write get KEY [--prefix]");
      return prefix ? t.Op.range(args[0]!) : t.Op.get(args[0]!);
    case "del":
    case "delete":
      if (args.length !== 1 || leaseFlag !== undefined) throw bad("write del KEY [--prefix]");
      return prefix ? t.Op.deletePrefix(args[0]!) : t.Op.delete(args[0]!);
    default:
      throw bad("requests are put, get or del");
  }
}

/** etcdctl's txn input: compares, a blank line, success requests, a blank line, failure requests. */
export function parseTxn(
  input: string,
  t: CompareModule,
): { compares: TxnCompare[]; success: TxnOperation[]; failure: TxnOperation[] } {
  const sections: string[][] = [[], [], []];
  let at = 0;
  for (const raw of input.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === "") {
      at++;
      continue;
    }
    if (at > 2)
      throw usageError(
        "txn: more than three sections on stdin",
        "compares, blank line, success, blank line, failure",
      );
    sections[at]!.push(line);
  }
  return {
    compares: sections[0]!.map((l) => parseCompare(l, t)),
    success: sections[1]!.map((l) => parseRequest(l, t)),
    failure: sections[2]!.map((l) => parseRequest(l, t)),
  };
}

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY)
    process.stderr.write(
      "compares, blank line, success requests, blank line, failure requests; end with Ctrl-D\n",
    );
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    bytes += chunk.length;
    if (bytes > 16 * 1024 * 1024) throw usageError("txn: more than 16 MiB on stdin", "send a smaller txn");
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** etcdctl's simple txn output. */
export function txnText(r: TxnResult): string {
  let out = r.succeeded ? "SUCCESS\n" : "FAILURE\n";
  for (const res of r.results) {
    out += "\n";
    switch (res.type) {
      case "put":
        out += "OK\n";
        break;
      case "delete":
        out += `${res.deleted}\n`;
        break;
      case "get":
        if (res.kv !== null) out += `${res.kv.key}\n${text(res.kv.value)}\n`;
        break;
      case "range":
        for (const kv of res.items) out += `${kv.key}\n${text(kv.value)}\n`;
        break;
    }
  }
  return out;
}

function txnJson(r: TxnResult): unknown {
  return {
    succeeded: r.succeeded,
    revision: r.revision,
    results: r.results.map((res) => {
      switch (res.type) {
        case "put":
          return { type: "put" };
        case "delete":
          return { type: "delete", deleted: res.deleted };
        case "get":
          return { type: "get", found: res.kv !== null, ...(res.kv === null ? {} : { kv: kvJson(res.kv) }) };
        case "range":
          return { type: "range", items: res.items.map(kvJson), more: res.more };
        default: {
          const never: never = res;
          return never;
        }
      }
    }),
  };
}

// ------------------------------------------------------------------ watch

/** etcdctl's simple watch output: the type, [the previous key and value], the key and value. */
export function eventText(e: WatchEvent): string {
  let out = `${e.type.toUpperCase()}\n`;
  if (e.prevKv !== null) out += `${e.prevKv.key}\n${text(e.prevKv.value)}\n`;
  return `${out}${e.kv.key}\n${text(e.kv.value)}\n`;
}

function eventJson(e: WatchEvent): unknown {
  return {
    type: e.type,
    revision: e.revision,
    kv: kvJson(e.kv),
    ...(e.prevKv === null ? {} : { prevKv: kvJson(e.prevKv) }),
  };
}

// ------------------------------------------------------------------ commands

export function addCoordCommands(program: Command, setExit: (code: number) => void): void {
  withClientOptions(
    program
      .command("watch")
      .description(
        "print the changes of a key (or of every key with a prefix) as they commit, until interrupted",
      )
      .argument("<key>")
      .option("--prefix", "watch every key starting with <key>", false)
      .option("--rev <n>", "start at this revision (default: changes after now)")
      .option("--prev-kv", "print each key's previous value too", false)
      .option("--max-events <n>", "exit after this many events"),
    { reads: false },
  ).action(
    async (
      key: string,
      f: ClientFlags & { prefix: boolean; rev?: string; prevKv: boolean; maxEvents?: string },
    ) => {
      const startRevision = f.rev === undefined ? 0 : positiveInt(f.rev, "--rev");
      const max =
        f.maxEvents === undefined ? Number.POSITIVE_INFINITY : positiveInt(f.maxEvents, "--max-events");
      await withClient(f, async (c) => {
        const watcher = c.watch(key, { prefix: f.prefix, startRevision, prevKv: f.prevKv });
        const stop = (): void => watcher.close();
        process.once("SIGINT", stop);
        process.once("SIGTERM", stop);
        try {
          let n = 0;
          for await (const e of watcher) {
            if (f.json) printJson(eventJson(e));
            else process.stdout.write(eventText(e));
            if (++n >= max) break;
          }
        } finally {
          process.off("SIGINT", stop);
          process.off("SIGTERM", stop);
        }
      });
    },
  );

  withClientOptions(
    program
      .command("txn")
      .description(
        'a transaction read from stdin in etcdctl\'s format: compares (e.g. mod("k") > "0"), a blank line, requests if they hold (put K V [--lease=ID], get K [--prefix], del K [--prefix]), a blank line, requests otherwise; exit 3 when the compares failed',
      ),
    { reads: false },
  ).action(async (f: ClientFlags) => {
    const t = await import("../client/txn.ts");
    const parsed = parseTxn(await readStdin(), t);
    const r = await withClient(f, (c) =>
      c
        .txn()
        .if(...parsed.compares)
        .then(...parsed.success)
        .else(...parsed.failure)
        .commit(),
    );
    if (f.json) printJson(txnJson(r));
    else process.stdout.write(txnText(r));
    if (!r.succeeded) setExit(EXIT.notFound);
  });

  const lease = program
    .command("lease")
    .description("grant, keep alive, revoke and inspect leases (TTL keys: put --lease ID)");
  withClientOptions(
    lease.command("grant").description("grant a lease of <ttl> seconds; prints its id").argument("<ttl>"),
    {
      reads: false,
    },
  ).action(async (ttl: string, f: ClientFlags) => {
    const r = await withClient(f, (c) => c.leaseGrant(positiveInt(ttl, "TTL")));
    if (f.json) printJson({ id: leaseHex(r.id), ttlSeconds: r.ttlSeconds });
    else process.stdout.write(`lease ${leaseHex(r.id)} granted with TTL(${r.ttlSeconds}s)\n`);
  });
  withClientOptions(
    lease.command("revoke").description("revoke a lease, deleting its keys").argument("<id>"),
    {
      reads: false,
    },
  ).action(async (id: string, f: ClientFlags) => {
    const lid = parseLeaseId(id);
    const r = await withClient(f, (c) => c.leaseRevoke(lid));
    if (f.json) printJson({ id: leaseHex(lid), revoked: true, revision: r.revision });
    else process.stdout.write(`lease ${leaseHex(lid)} revoked\n`);
  });
  withClientOptions(lease.command("list").description("the ids of the leases that exist"), {
    reads: false,
  }).action(async (f: ClientFlags) => {
    const ids = await withClient(f, (c) => c.leases());
    if (f.json) printJson({ leases: ids.map(leaseHex) });
    else process.stdout.write(`found ${ids.length} leases\n${ids.map((i) => `${leaseHex(i)}\n`).join("")}`);
  });
  withClientOptions(
    lease
      .command("timetolive")
      .description("a lease's granted TTL and the seconds it has left")
      .argument("<id>")
      .option("--keys", "list the keys attached", false),
    { reads: false },
  ).action(async (id: string, f: ClientFlags & { keys: boolean }) => {
    const lid = parseLeaseId(id);
    const r = await withClient(f, (c) => c.leaseTimeToLive(lid, { keys: f.keys }));
    if (f.json) {
      printJson({
        id: leaseHex(lid),
        found: r.ttlSeconds >= 0,
        ttlSeconds: r.ttlSeconds,
        grantedTtlSeconds: r.grantedTtlSeconds,
        ...(f.keys ? { keys: r.keys } : {}),
      });
    } else if (r.ttlSeconds < 0) process.stdout.write(`lease ${leaseHex(lid)} already expired\n`);
    else
      process.stdout.write(
        `lease ${leaseHex(lid)} granted with TTL(${r.grantedTtlSeconds}s), remaining(${r.ttlSeconds}s)${f.keys ? `, attached keys([${r.keys.join(" ")}])` : ""}\n`,
      );
    if (r.ttlSeconds < 0) setExit(EXIT.notFound);
  });
  withClientOptions(
    lease
      .command("keepalive")
      .alias("keep-alive")
      .description("keep a lease alive until interrupted (or once, with --once)")
      .argument("<id>")
      .option("--once", "renew once and exit", false),
    { reads: false },
  ).action(async (id: string, f: ClientFlags & { once: boolean }) => {
    const lid = parseLeaseId(id);
    await withClient(f, async (c) => {
      const l = await c.keepAlive(lid);
      const print = (ttl: number): void => {
        if (f.json) printJson({ id: leaseHex(lid), ttlSeconds: ttl });
        else process.stdout.write(`lease ${leaseHex(lid)} keepalived with TTL(${ttl})\n`);
      };
      const stopped = new Promise<void>((resolve) => {
        const stop = (): void => {
          l.close();
          resolve();
        };
        process.once("SIGINT", stop);
        process.once("SIGTERM", stop);
        l.on("keepalive", (ttl) => {
          print(ttl);
          if (f.once) stop();
        });
      });
      const lost = await Promise.race([stopped.then(() => null), l.lost]);
      if (lost !== null) throw lost;
    });
  });
}
