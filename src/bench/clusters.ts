// The systems under test as local processes on loopback: a raftkv cluster of `raftkv serve` processes and
// an etcd cluster of `etcd` processes; each can name its members' pids (for /proc) and find its leader.

import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, openSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { RaftKvClient } from "../client/index.ts";
import { checkoutRoot, serveEntry, serverProcessEnv } from "../lib/server-env.ts";

export interface Member {
  readonly id: number;
  /** Client address, host:port. */
  readonly endpoint: string;
  readonly pid: number;
}

export interface Cluster {
  readonly system: "raftkv" | "etcd";
  /** What the members run, e.g. "compiled dist/" or "src/ through tsx (why)". */
  readonly runs: string;
  readonly members: readonly Member[];
  /** The current leader (waits up to `waitMs` for one). */
  leader(waitMs?: number): Promise<Member>;
  /** SIGTERM to every member (profiles get written), SIGKILL after 10 s. */
  stop(): Promise<void>;
}

interface Proc {
  readonly member: Member;
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
}

function launch(
  id: number,
  endpoint: string,
  command: string,
  args: string[],
  logFile: string,
  env: NodeJS.ProcessEnv = process.env,
): Proc {
  const log = openSync(logFile, "a");
  const child = spawn(command, args, { stdio: ["pipe", log, log], env });
  if (child.pid === undefined) throw new Error(`could not start ${command}`);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return { member: { id, endpoint, pid: child.pid }, child, exited };
}

async function stopAll(procs: readonly Proc[]): Promise<void> {
  for (const p of procs) if (p.child.exitCode === null) p.child.kill("SIGTERM");
  const killer = setTimeout(() => {
    for (const p of procs) if (p.child.exitCode === null) p.child.kill("SIGKILL");
  }, 10_000);
  await Promise.all(procs.map((p) => p.exited));
  clearTimeout(killer);
}

async function poll<T>(what: string, waitMs: number, probe: () => Promise<T | null>): Promise<T> {
  const until = performance.now() + waitMs;
  for (;;) {
    const v = await probe().catch(() => null);
    if (v !== null) return v;
    if (performance.now() > until) throw new Error(`${what}: none within ${waitMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export interface RaftkvClusterOptions {
  readonly dir: string;
  readonly basePort: number;
  readonly nodes?: number;
  /** Node.js flags for every member, e.g. --cpu-prof. */
  readonly nodeFlags?: readonly string[];
  /** Extra `raftkv serve` arguments, e.g. ["--set", "maxValueBytes=65536"]. */
  readonly serveArgs?: readonly string[];
  /** Node i serves /metrics on this port + i (default: no metrics). */
  readonly metricsBasePort?: number;
  /** Run `raftkv serve` from another checkout's src/cli/main.ts (before/after comparisons). */
  readonly checkout?: string;
}

export async function startRaftkvCluster(o: RaftkvClusterOptions): Promise<Cluster> {
  const n = o.nodes ?? 3;
  const ids = Array.from({ length: n }, (_, i) => i);
  const address = (i: number): string => `127.0.0.1:${o.basePort + i}`;
  const peers = ids.map((i) => `${i}=${address(i)}`).join(",");
  const entry = serveEntry(o.checkout ?? checkoutRoot());
  const procs = ids.map((id) => {
    const dataDir = join(o.dir, `raftkv-${id}`);
    mkdirSync(dataDir, { recursive: true });
    const args = [
      ...(o.nodeFlags ?? []),
      ...entry.args,
      ...["--id", String(id), "--listen", address(id), "--peers", peers, "--data-dir", dataDir],
      ...["--cluster-id", "bench", "--stop-on-stdin-close", ...(o.serveArgs ?? [])],
      ...(o.metricsBasePort === undefined ? [] : ["--metrics-port", String(o.metricsBasePort + id)]),
    ];
    return launch(
      id,
      address(id),
      process.execPath,
      args,
      join(o.dir, `raftkv-${id}.stderr`),
      serverProcessEnv(process.env),
    );
  });
  const members = procs.map((p) => p.member);
  const client = new RaftKvClient({
    endpoints: members.map((m) => m.endpoint),
    timeoutMs: 1000,
    path: "unary",
  });
  const leader = (waitMs = 30_000): Promise<Member> =>
    poll("raftkv leader", waitMs, async () => {
      const rows = await client.clusterStatus({ timeoutMs: 500 });
      if (!rows.every((r) => r.ok)) return null;
      const id = rows.find((r) => r.ok && r.status.role === "leader" && r.status.lease === "valid");
      return id?.ok === true ? (members.find((m) => m.id === id.status.nodeId) ?? null) : null;
    });
  try {
    await leader();
  } catch (err) {
    client.close();
    await stopAll(procs);
    throw err;
  }
  return {
    system: "raftkv",
    runs: entry.compiled ? "compiled dist/" : `src/ through tsx (${entry.why})`,
    members,
    leader,
    stop: async () => {
      client.close();
      await stopAll(procs);
    },
  };
}

export interface EtcdClusterOptions {
  readonly dir: string;
  readonly baseClientPort: number;
  readonly basePeerPort: number;
  readonly nodes?: number;
  /** The etcd executable (default "etcd" from the PATH). */
  readonly command?: string;
}

interface EtcdStatus {
  readonly header?: { readonly member_id?: string };
  readonly leader?: string;
}

export async function startEtcdCluster(o: EtcdClusterOptions): Promise<Cluster> {
  const n = o.nodes ?? 3;
  const ids = Array.from({ length: n }, (_, i) => i);
  const client = (i: number): string => `127.0.0.1:${o.baseClientPort + i}`;
  const peer = (i: number): string => `http://127.0.0.1:${o.basePeerPort + i}`;
  const initial = ids.map((i) => `etcd-${i}=${peer(i)}`).join(",");
  const procs = ids.map((id) => {
    const args = [
      ...["--name", `etcd-${id}`, "--data-dir", join(o.dir, `etcd-${id}`)],
      ...["--listen-client-urls", `http://${client(id)}`, "--advertise-client-urls", `http://${client(id)}`],
      ...["--listen-peer-urls", peer(id), "--initial-advertise-peer-urls", peer(id)],
      ...["--initial-cluster", initial, "--initial-cluster-token", "bench", "--initial-cluster-state", "new"],
      ...["--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn"],
    ];
    return launch(id, client(id), o.command ?? "etcd", args, join(o.dir, `etcd-${id}.stderr`));
  });
  const members = procs.map((p) => p.member);
  const status = async (m: Member): Promise<EtcdStatus> => {
    const res = await fetch(`http://${m.endpoint}/v3/maintenance/status`, {
      method: "POST",
      body: "{}",
      signal: AbortSignal.timeout(1000),
    });
    return (await res.json()) as EtcdStatus;
  };
  const leader = (waitMs = 30_000): Promise<Member> =>
    poll("etcd leader", waitMs, async () => {
      const all = await Promise.all(members.map(status));
      const id = all[0]?.leader;
      if (id === undefined || id === "0" || !all.every((s) => s.leader === id)) return null;
      const i = all.findIndex((s) => s.header?.member_id === id);
      return members[i] ?? null;
    });
  try {
    await leader();
  } catch (err) {
    await stopAll(procs);
    throw err;
  }
  return { system: "etcd", runs: "etcd", members, leader, stop: () => stopAll(procs) };
}

/** The no-op server (noop-server.ts) as a child process; resolves with its address and pid. */
export async function startNoopServer(): Promise<{
  endpoint: string;
  /** The same answers from a bare node:http2 server (unary only). */
  http2Endpoint: string;
  pid: number;
  stop: () => Promise<void>;
}> {
  const entry = fileURLToPath(new URL("./noop-server.ts", import.meta.url));
  const child = spawn(process.execPath, ["--import", import.meta.resolve("tsx"), entry], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const { port, http2Port } = await new Promise<{ port: number; http2Port: number }>((resolve, reject) => {
    let text = "";
    child.stdout?.on("data", (b: Buffer) => {
      text += b.toString();
      const line = text.split("\n")[0];
      if (text.includes("\n") && line !== undefined)
        resolve(JSON.parse(line) as { port: number; http2Port: number });
    });
    child.once("exit", (code) => reject(new Error(`no-op server exited with ${code}`)));
  });
  if (child.pid === undefined) throw new Error("no-op server has no pid");
  return {
    endpoint: `127.0.0.1:${port}`,
    http2Endpoint: `127.0.0.1:${http2Port}`,
    pid: child.pid,
    stop: async () => {
      child.kill("SIGTERM");
      await exited;
    },
  };
}
