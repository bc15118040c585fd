// The etcdctl 3.4 script the differential test runs against etcd and against raftkv, and how their
// outputs are normalized before they are compared (lease ids, member ids, cluster ids, terms, remaining
// TTLs, etcdctl's own log lines).

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type CtlResult, etcdctl } from "./etcd-cluster.ts";

export interface Step {
  readonly args: readonly string[];
  readonly stdin?: string;
  /** For commands that never end by themselves (watch): stop once stdout holds this. */
  readonly until?: string;
  /** Compared by shape only (the clusters differ in size, ids, addresses): one line per member. */
  readonly shapeOnly?: RegExp;
}

export const SCRIPT: readonly Step[] = [
  { args: ["put", "k1", "v1"] },
  { args: ["put", "k2", "v2"] },
  { args: ["put", "k3", "v3"] },
  { args: ["put", "k1", "v1b"] },
  { args: ["get", "k1"] },
  { args: ["get", "--prefix", "k"] },
  { args: ["get", "--prefix", "k", "--keys-only"] },
  { args: ["get", "--prefix", "k", "--limit=2"] },
  { args: ["get", "--prefix", "k", "--sort-by=MODIFY", "--order=DESCEND"] },
  { args: ["get", "--prefix", "k", "--sort-by=VERSION", "--order=ASCEND", "--print-value-only"] },
  { args: ["get", "k1", "--rev=2"] },
  { args: ["get", "k1", "--rev=3", "-w", "json"] },
  { args: ["get", "--prefix", "k", "--keys-only", "--limit=1", "-w", "json"] },
  { args: ["get", "--from-key", "k2"] },
  { args: ["del", "--prev-kv", "k2"] },
  { args: ["del", "nothing"] },
  { args: ["get", "--prefix", "k", "-w", "json"] },
  { args: ["txn"], stdin: 'value("k1") = "v1b"\nversion("k3") > "0"\n\nput k4 v4\nget k1\n\nput k5 v5\n\n' },
  { args: ["txn"], stdin: 'mod("k1") = "1"\n\nput k6 v6\n\nget k4\ndel k4\n\n' },
  { args: ["txn", "-w", "json"], stdin: 'create("k9") = "0"\n\nput k9 v9\n\n\n' },
  { args: ["lease", "grant", "100"] },
  { args: ["put", "--lease=%LEASE%", "kl", "vl"] },
  { args: ["put", "kl", "vl2", "--ignore-lease"] },
  { args: ["get", "kl", "-w", "json"] },
  { args: ["lease", "timetolive", "--keys", "%LEASE%"] },
  { args: ["lease", "keep-alive", "--once", "%LEASE%"] },
  { args: ["lease", "list"] },
  { args: ["lease", "revoke", "%LEASE%"] },
  { args: ["get", "kl"] },
  { args: ["lease", "timetolive", "%LEASE%"] },
  { args: ["lease", "revoke", "%LEASE%"] },
  { args: ["put", "kz-end", "x"] },
  { args: ["watch", "--rev=1", "--prefix", "k"], until: "kz-end\nx\n" },
  { args: ["watch", "--rev=4", "--prefix", "--prev-kv", "k1"], until: "v1b\n" },
  { args: ["compaction", "5"] },
  { args: ["get", "k1", "--rev=4"] },
  { args: ["get", "k1", "--rev=5"] },
  { args: ["get", "k1", "--rev=500"] },
  { args: ["compaction", "3"] },
  { args: ["watch", "--rev=2", "k1"] },
  {
    args: ["member", "list"],
    shapeOnly: /^[0-9a-f]+, started, [\w-]+, http:\/\/127\.0\.0\.1:\d+, http:\/\/127\.0\.0\.1:\d+, false$/,
  },
  {
    args: ["endpoint", "status"],
    shapeOnly:
      /^127\.0\.0\.1:\d+, [0-9a-f]+, 3\.\d+\.\d+, [\d.]+ [kMG]?B, (true|false), false, \d+, \d+, \d+, $/,
  },
  {
    args: ["endpoint", "health"],
    shapeOnly: /^127\.0\.0\.1:\d+ is healthy: successfully committed proposal: took = [\d.]+[µm]?s$/,
  },
  { args: ["snapshot", "save", "%DIR%/snap.db"] },
];

/** What one step printed, normalized. */
export interface Outcome {
  readonly step: string;
  readonly code: number | null;
  readonly out: string;
}

/** Runs the script against `endpoints` (etcdctl is given the first one: etcd forwards, raftkv too). */
export async function runScript(endpoints: readonly string[]): Promise<Outcome[]> {
  const dir = mkdtempSync(join(tmpdir(), "raftkv-etcdctl-"));
  const vars = new Map<string, string>([["DIR", dir]]);
  const ids = new Ids();
  const outcomes: Outcome[] = [];
  try {
    for (const step of SCRIPT) {
      const args = step.args.map((a) => a.replace(/%(\w+)%/g, (m, v: string) => vars.get(v) ?? m));
      const until = step.until;
      const r: CtlResult = await etcdctl(
        step.shapeOnly === undefined ? endpoints.slice(0, 1) : endpoints,
        args,
        {
          ...(step.stdin === undefined ? {} : { stdin: step.stdin }),
          ...(until === undefined ? {} : { until: (s: string) => s.includes(until), timeoutMs: 20_000 }),
        },
      );
      const lease = /lease ([0-9a-f]+) granted/.exec(r.stdout);
      if (lease !== null) vars.set("LEASE", lease[1]!);
      outcomes.push({ step: step.args.join(" "), code: r.code, out: normalize(step, r, ids, dir) });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return outcomes;
}

/** Numbers the ids of one run in order of appearance, so two runs compare equal. */
class Ids {
  private readonly seen = new Map<string, string>();
  name(kind: string, id: string): string {
    const k = `${kind}:${id}`;
    let n = this.seen.get(k);
    if (n === undefined) {
      n = `<${kind}${[...this.seen.keys()].filter((x) => x.startsWith(`${kind}:`)).length + 1}>`;
      this.seen.set(k, n);
    }
    return n;
  }
}

function normalize(step: Step, r: CtlResult, ids: Ids, dir: string): string {
  // etcdctl's own zap log lines (timestamps, endpoints) are not the server's answer.
  const stderr = r.stderr
    .split("\n")
    .filter((l) => l.trim() !== "" && !l.startsWith("{"))
    .join("\n");
  let out = `${r.stdout}${stderr === "" ? "" : `\n[stderr] ${stderr}`}`;
  if (step.shapeOnly !== undefined) {
    const lines = `${r.stdout}\n${stderr}`.split("\n").filter((l) => l !== "");
    const bad = lines.filter((l) => !step.shapeOnly!.test(l));
    return bad.length === 0 && lines.length > 0
      ? `${step.args[0]}: well-formed`
      : `unexpected lines:\n${r.stdout}${r.stderr}`;
  }
  out = out.replaceAll(dir, "<dir>");
  const hex = (id: string): string => BigInt(`0x${id}`).toString(16);
  out = out.replace(/lease ([0-9a-f]+)/g, (_, id: string) => `lease ${ids.name("lease", hex(id))}`);
  out = out.replace(/^([0-9a-f]{6,})$/gm, (_, id: string) => ids.name("lease", hex(id)));
  out = out.replace(
    /"lease":(\d+)/g,
    (_, id: string) => `"lease":${ids.name("lease", BigInt(id).toString(16))}`,
  );
  out = out.replace(/"cluster_id":\d+/g, '"cluster_id":<c>').replace(/"member_id":\d+/g, '"member_id":<m>');
  out = out.replace(/"raft_term":\d+/g, '"raft_term":<t>');
  out = out.replace(/remaining\(\d+s\)/g, "remaining(<s>)").replace(/TTL\((\d+)\)/g, "TTL($1)");
  return out;
}
