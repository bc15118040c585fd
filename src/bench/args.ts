// Command-line options shared by scripts/bench.ts and scripts/bench-etcd.ts, parsed strictly (a wrong or
// unknown flag stops the run with a one-line reason).

import type { ClientPath } from "../client/index.ts";
import { RAFTKV_WORKLOADS, type RaftkvWorkload } from "./workloads.ts";

export interface BenchArgs {
  readonly reps: number;
  readonly warmupMs: number;
  readonly durationMs: number;
  readonly threads: number;
  readonly concurrencies: readonly number[];
  readonly workloads: readonly RaftkvWorkload[];
  readonly paths: readonly ClientPath[];
  readonly keySpace: number;
  readonly valueBytes: number;
  readonly ceiling: boolean;
  /** bench:etcd: also drive raftkv through the etcd client (its etcd v3 API), the same client as etcd's. */
  readonly etcdApi: boolean;
  readonly outDir: string;
  readonly endpoints: readonly string[] | null;
  /** Another checkout of raftkv to run beside this one, row by row ("base" rows, ratios against it). */
  readonly compareWith: string | null;
  /** Extra modes of scripts/bench.ts. */
  readonly profileSeconds: number;
  readonly memoryKeys: number;
  readonly soakSeconds: number;
  /** --idle: seconds of no load over which each member's CPU share and RSS are taken. */
  readonly idleSeconds: number;
  /** --idle-profile: run the idle cluster's raftkv nodes with --cpu-prof. */
  readonly idleProfile: boolean;
  /** `raftkv serve --set` settings for the clusters the run starts, e.g. snapshotEveryEntries=100000. */
  readonly serverSettings: readonly string[];
}

export const USAGE = `options:
  --reps N                repetitions of every row (default 3); the tables show medians
  --warmup-ms MS          per row, not measured (default 1000)
  --duration-ms MS        per row, measured (default 3000)
  --threads N             load-generator worker threads (default 2)
  --concurrency LIST      concurrent requests, e.g. 1,8,64,256 (default)
  --workloads LIST        of ${RAFTKV_WORKLOADS.join(",")} (default all)
  --path stream|unary|both  raftkv client path (default stream)
  --keys N                key space (default 10000); --value-bytes N (default 256)
  --no-ceiling            skip the generator-ceiling rows against the no-op server
  --etcd-api              bench:etcd: also drive raftkv through the etcd client and its etcd v3 API
                          (raftkv/etcd-api rows: the very same client path as etcd's)
  --out DIR               where JSON results go (default bench-out)
  --endpoints LIST        drive a running raftkv cluster instead of starting one (no CPU/RSS then)
  --compare-with DIR      also run raftkv from another checkout (e.g. a git worktree of the commit before
                          a change), alternating row by row, and print this checkout / that one
bench only:
  --profile SECONDS       run c=64 puts (or the one --workloads given) that long with --cpu-prof on every
                          node; summarize the leader's profile
  --memory-keys N         write N keys of --value-bytes, then report each node's RSS
  --soak SECONDS          constant mix load at c=64 that long; RSS of each node every 10 s
  --idle SECONDS          no load that long: each node's share of a core and RSS (and etcd's, if on the PATH)
  --idle-profile          with --idle: --cpu-prof on every raftkv node (profiles under --out/idle-profiles)
  --set NAME=VALUE        a raftkv server setting for the clusters started (repeatable)`;

export function parseArgs(argv: readonly string[]): BenchArgs {
  const flags = new Map<string, string>();
  const settings: string[] = [];
  const bare = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith("--")) throw new Error(`unexpected argument ${a}\n${USAGE}`);
    if (a === "--no-ceiling" || a === "--help" || a === "--idle-profile" || a === "--etcd-api") bare.add(a);
    else {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value\n${USAGE}`);
      if (a === "--set") {
        if (!/^[A-Za-z]+=./.test(v)) throw new Error(`--set takes NAME=VALUE, got ${v}`);
        settings.push(v);
      } else flags.set(a, v);
    }
  }
  if (bare.has("--help")) throw new Error(USAGE);
  const known = [
    "--reps",
    "--warmup-ms",
    "--duration-ms",
    "--threads",
    "--concurrency",
    "--workloads",
    "--path",
    "--keys",
    "--value-bytes",
    "--out",
    "--endpoints",
    "--compare-with",
    "--profile",
    "--memory-keys",
    "--soak",
    "--idle",
  ];
  for (const k of flags.keys()) if (!known.includes(k)) throw new Error(`unknown option ${k}\n${USAGE}`);
  const int = (name: string, dflt: number, min = 1): number => {
    const v = flags.get(name);
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < min)
      throw new Error(`${name} must be an integer >= ${min}, got ${v}`);
    return n;
  };
  const list = (name: string): string[] | null =>
    flags
      .get(name)
      ?.split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "") ?? null;
  const concurrencies = (list("--concurrency") ?? ["1", "8", "64", "256"]).map(Number);
  if (!concurrencies.every((c) => Number.isSafeInteger(c) && c > 0))
    throw new Error("--concurrency takes positive integers");
  const workloads = list("--workloads") ?? [...RAFTKV_WORKLOADS];
  for (const w of workloads)
    if (!(RAFTKV_WORKLOADS as readonly string[]).includes(w)) throw new Error(`unknown workload ${w}`);
  const path = flags.get("--path") ?? "stream";
  if (path !== "stream" && path !== "unary" && path !== "both")
    throw new Error("--path is stream, unary or both");
  return {
    reps: int("--reps", 3),
    warmupMs: int("--warmup-ms", 1000, 0),
    durationMs: int("--duration-ms", 3000),
    threads: int("--threads", 2),
    concurrencies,
    workloads: workloads as RaftkvWorkload[],
    paths: path === "both" ? ["stream", "unary"] : [path],
    keySpace: int("--keys", 10_000),
    valueBytes: int("--value-bytes", 256),
    ceiling: !bare.has("--no-ceiling"),
    etcdApi: bare.has("--etcd-api"),
    outDir: flags.get("--out") ?? "bench-out",
    endpoints: list("--endpoints"),
    compareWith: flags.get("--compare-with") ?? null,
    profileSeconds: int("--profile", 0, 0),
    memoryKeys: int("--memory-keys", 0, 0),
    soakSeconds: int("--soak", 0, 0),
    idleSeconds: int("--idle", 0, 0),
    idleProfile: bare.has("--idle-profile"),
    serverSettings: settings,
  };
}
