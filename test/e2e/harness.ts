// End-to-end harness: real `raftkv serve` processes on loopback ports with temp data folders, the CLI as a
// child process, and waiting on conditions with deadlines.

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type NodeStatus, RaftKvClient } from "../../src/client/index.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const MAIN = join(ROOT, "src/cli/main.ts");
const TSX = import.meta.resolve("tsx");

/** Ports nobody listens on right now (bound to 0, then released). */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<net.Server>((resolve, reject) => {
          const s = net.createServer();
          s.once("error", reject);
          s.listen(0, "127.0.0.1", () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/** Polls `probe` until it returns a value (not undefined), or fails after `timeoutMs` naming `what`. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 15_000,
  everyMs = 100,
): Promise<T> {
  const started = performance.now();
  let lastError: unknown = null;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      lastError = err;
    }
    if (performance.now() - started > timeoutMs) {
      const why =
        lastError === null ? "" : `; last error: ${(lastError as Error).message ?? String(lastError)}`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}`);
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `raftkv <args>` as a child process (through tsx, as `bin/raftkv.mjs` does when src/ changed
 *  since the build), with `input` on its stdin (none: stdin is empty). */
export function runCli(args: readonly string[], timeoutMs = 30_000, input?: Uint8Array): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ["--import", TSX, MAIN, ...args], {
      cwd: ROOT,
      stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    });
    if (input !== undefined) p.stdin?.end(input);
    let stdout = "";
    let stderr = "";
    p.stdout?.on("data", (d: Buffer) => (stdout += d.toString()));
    p.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      p.kill("SIGKILL");
      reject(new Error(`raftkv ${args.join(" ")} did not exit within ${timeoutMs} ms; stderr: ${stderr}`));
    }, timeoutMs);
    // "close", not "exit": exit can come before the last of stdout and stderr has been read.
    p.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export interface ClusterOptions {
  readonly nodes: number;
  /** Extra `raftkv serve` flags for every node. */
  readonly serveArgs?: readonly string[];
  /** Called with the cluster's folder and its --peers before any node starts (node i's data is
   *  `<root>/node-<i>`). */
  readonly prepare?: (root: string, peers: string) => void | Promise<void>;
}

interface NodeProc {
  readonly id: number;
  readonly address: string;
  readonly dataDir: string;
  proc: ChildProcess | null;
  exited: Promise<number | null> | null;
}

/** A cluster of real processes; `close()` kills what is left and removes the data. */
export class TestCluster {
  readonly root: string;
  readonly nodes: NodeProc[];
  readonly peers: string;
  private readonly serveArgs: readonly string[];

  private constructor(root: string, ports: readonly number[], serveArgs: readonly string[]) {
    this.root = root;
    this.serveArgs = serveArgs;
    this.nodes = ports.map((port, id) => ({
      id,
      address: `127.0.0.1:${port}`,
      dataDir: join(root, `node-${id}`),
      proc: null,
      exited: null,
    }));
    this.peers = this.nodes.map((n) => `${n.id}=${n.address}`).join(",");
  }

  static async start(o: ClusterOptions): Promise<TestCluster> {
    const root = mkdtempSync(join(tmpdir(), "raftkv-e2e-"));
    const c = new TestCluster(root, await freePorts(o.nodes), o.serveArgs ?? []);
    await o.prepare?.(root, c.peers);
    for (const n of c.nodes) c.startNode(n.id);
    return c;
  }

  get endpoints(): string[] {
    return this.nodes.map((n) => n.address);
  }

  node(id: number): NodeProc {
    const n = this.nodes[id];
    if (n === undefined) throw new Error(`no node ${id}`);
    return n;
  }

  startNode(id: number): void {
    const n = this.node(id);
    if (n.proc !== null) throw new Error(`node ${id} is already running`);
    const args = [
      ...["--import", TSX, MAIN, "serve", "--id", String(id), "--listen", n.address],
      ...["--peers", this.peers, "--data-dir", n.dataDir, "--cluster-id", "e2e", ...this.serveArgs],
    ];
    const proc = spawn(process.execPath, args, { cwd: ROOT, stdio: ["ignore", "ignore", "ignore"] });
    n.proc = proc;
    n.exited = new Promise((r) =>
      proc.on("exit", (code, signal) => r(code ?? (signal === null ? null : -1))),
    );
    void n.exited.then(() => {
      if (n.proc === proc) n.proc = null;
    });
  }

  /** Sends `signal` and waits for the process to exit. */
  async kill(id: number, signal: NodeJS.Signals = "SIGKILL"): Promise<number | null> {
    const n = this.node(id);
    const proc = n.proc;
    if (proc === null || n.exited === null) return null;
    proc.kill(signal);
    const code = await n.exited;
    n.proc = null;
    return code;
  }

  pause(id: number): void {
    this.node(id).proc?.kill("SIGSTOP");
  }

  resume(id: number): void {
    this.node(id).proc?.kill("SIGCONT");
  }

  client(endpoints: readonly string[] = this.endpoints, timeoutMs = 10_000): RaftKvClient {
    return new RaftKvClient({ endpoints, timeoutMs });
  }

  /** Status of every running node that answers. */
  async statuses(): Promise<NodeStatus[]> {
    const c = this.client(this.endpoints, 1000);
    try {
      const rows = await c.clusterStatus({ timeoutMs: 1000 });
      return rows.flatMap((r) => (r.ok ? [r.status] : []));
    } finally {
      c.close();
    }
  }

  /** Waits for a leader that every answering node agrees on, with a valid lease; returns its status. */
  async waitForLeader(timeoutMs = 20_000, exclude: readonly number[] = []): Promise<NodeStatus> {
    return waitFor(
      "a leader",
      async () => {
        const all = await this.statuses();
        const leader = all.find(
          (s) => s.role === "leader" && s.lease === "valid" && !exclude.includes(s.nodeId),
        );
        if (leader === undefined) return undefined;
        const agree = all.filter((s) => s.leaderId === leader.nodeId && s.term === leader.term).length;
        return agree > this.nodes.length / 2 ? leader : undefined;
      },
      timeoutMs,
    );
  }

  logOf(id: number): string {
    try {
      return readFileSync(join(this.node(id).dataDir, "raftkv.log"), "utf8");
    } catch {
      return "";
    }
  }

  /** Kills what is left and removes the data, unless RAFTKV_E2E_KEEP=1 (then it says where the logs are). */
  async close(): Promise<void> {
    await Promise.all(this.nodes.map((n) => (n.proc === null ? null : this.kill(n.id, "SIGKILL"))));
    if (process.env["RAFTKV_E2E_KEEP"] === "1")
      process.stderr.write(`e2e data and logs kept in ${this.root}\n`);
    else rmSync(this.root, { recursive: true, force: true });
  }
}
