// The real-process cluster under test: `raftkv serve` children on loopback, one link proxy per directed
// peer link (each node's peer connections reach it through the node's CONNECT router, src/chaos/router.ts),
// and the process faults (SIGKILL and restart, SIGSTOP/SIGCONT, a torn WAL tail, a power loss through the
// server's test-only emulation, a node restarted with its clock at another rate, a node wiped and added
// back as a new member).
//
// Nodes are numbered by slot (0..n-1: a machine with its port, data folder, log file and links); the
// member id of a slot's node starts equal to the slot and changes when the node is replaced.

import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, mkdirSync, openSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { type NodeStatus, RaftKvClient } from "../client/index.ts";
import type { Prng } from "../lib/prng.ts";
import { serveEntry, serverProcessEnv } from "../lib/server-env.ts";
import { CLOCK_RATE_ENV } from "../server/test-switches.ts";
import { POWER_LOSS_ENV, powerLossShadowDir } from "../storage/power-loss-file-system.ts";
import { CLEAN_LINK, type LinkConditions, LinkProxy } from "./proxy.ts";
import { PeerRouter } from "./router.ts";
import { type TornWrite, tearWalTail } from "./torn.ts";

export const HOST = "127.0.0.1";

export interface ClusterOptions {
  readonly nodes: number;
  /** Repository root: where src/cli/main.ts is run from. */
  readonly repoRoot: string;
  /** Node data folders are made under it (node-<id>). */
  readonly dataRoot: string;
  /** Each node's stdout and stderr, appended across restarts, go to <logDir>/node-<id>.log. */
  readonly logDir: string;
  readonly clusterId: string;
  /** Extra `raftkv serve` flags for every node. */
  readonly serveArgs: readonly string[];
  readonly prng: Prng;
  /** How long a started node has to answer Status. */
  readonly startTimeoutMs: number;
  /** Run every node with the test-only power-loss emulation (RAFTKV_TEST_POWER_LOSS=1): then a kill is a
   *  process crash (the emulation's shadow is removed, so nothing is lost) unless it is a power loss. */
  readonly powerLoss: boolean;
  readonly note: (line: string) => void;
}

export type NodeState = "down" | "running" | "paused";

export interface UnplannedExit {
  readonly node: number;
  readonly code: number | null;
  readonly signal: string | null;
  readonly atMs: number;
}

interface ChaosNode {
  readonly id: number;
  /** The Raft member id of the node in this slot (the slot number until it is replaced). */
  memberId: number;
  /** Start with --join: a replacement, added by `member add` rather than bootstrapped from --peers. */
  join: boolean;
  port: number;
  readonly dataDir: string;
  readonly logFile: string;
  proc: ChildProcess | null;
  exited: Promise<void> | null;
  state: NodeState;
  /** Set before a signal meant to end the process, so its exit is not reported as a crash. */
  expectExit: boolean;
  starts: number;
  /** Rate of the node's clock from its next start (RAFTKV_TEST_CLOCK_RATE); 1 is the real clock. */
  clockRate: number;
  /** Rate of the clock of the process running now. */
  runningRate: number;
}

const KILL_WAIT_MS = 10_000;
/** A value for no_grpc_proxy that matches no host: so that a no_proxy of the environment cannot exempt
 *  127.0.0.1 from the router. */
const NO_PROXY_NONE = "raftkv-chaos-no-host.invalid";
const STATUS_TIMEOUT_MS = 500;

export class ChaosCluster {
  readonly size: number;
  readonly unplannedExits: UnplannedExit[] = [];
  private readonly o: ClusterOptions;
  private readonly nodes: ChaosNode[];
  private readonly links = new Map<string, LinkProxy>();
  private readonly routers: PeerRouter[] = [];
  private readonly admin: RaftKvClient[] = [];
  private readonly startedAt = performance.now();
  private readonly killAllSync = (): void => {
    for (const n of this.nodes) if (n.proc?.pid !== undefined && n.proc.exitCode === null) safeKill(n.proc);
  };
  private destroyed = false;

  private constructor(o: ClusterOptions, ports: readonly number[]) {
    this.o = o;
    this.size = o.nodes;
    this.nodes = ports.map((port, id) => ({
      id,
      memberId: id,
      join: false,
      port,
      dataDir: join(o.dataRoot, `node-${id}`),
      logFile: join(o.logDir, `node-${id}.log`),
      proc: null,
      exited: null,
      state: "down",
      expectExit: false,
      starts: 0,
      clockRate: 1,
      runningRate: 1,
    }));
    process.on("exit", this.killAllSync);
  }

  /** Proxies up, then every node started and answering Status. Destroys what it made if it fails. */
  static async start(o: ClusterOptions): Promise<ChaosCluster> {
    mkdirSync(o.dataRoot, { recursive: true });
    mkdirSync(o.logDir, { recursive: true });
    const c = new ChaosCluster(o, new Array<number>(o.nodes).fill(0));
    try {
      for (const from of c.ids)
        for (const to of c.ids) {
          if (from === to) continue;
          const link = await LinkProxy.start({ from, to, targetPort: 0, prng: o.prng.fork() });
          c.links.set(linkKey(from, to), link);
        }
      for (const from of c.ids)
        c.routers.push(await PeerRouter.start({ from, route: (port) => c.route(from, port) }));
      // Proxies hold their ports now, so the free ports picked next cannot be theirs.
      const ports = await freePorts(o.nodes);
      for (const n of c.nodes) c.setPort(n.id, ports[n.id]!);
      for (const n of c.nodes)
        c.admin.push(new RaftKvClient({ endpoints: [c.address(n.id)], maxAttempts: 1 }));
      await Promise.all(c.ids.map((id) => c.startNode(id)));
      return c;
    } catch (err) {
      await c.destroy();
      throw err;
    }
  }

  get ids(): number[] {
    return this.nodes.map((n) => n.id);
  }

  /** The real client address of every node (what clients are given). */
  get endpoints(): string[] {
    return this.ids.map((id) => this.address(id));
  }

  address(id: number): string {
    return `${HOST}:${this.node(id).port}`;
  }

  state(id: number): NodeState {
    return this.node(id).state;
  }

  logFile(id: number): string {
    return this.node(id).logFile;
  }

  clockRate(id: number): number {
    return this.node(id).clockRate;
  }

  /** The rate of the clock of node `id`'s running process (what its Status times are in). */
  runningClockRate(id: number): number {
    return this.node(id).runningRate;
  }

  /** The rate node `id`'s clock runs at from its next start (test-only switch of the server). */
  setClockRate(id: number, rate: number): void {
    this.node(id).clockRate = rate;
  }

  link(from: number, to: number): LinkProxy {
    const l = this.links.get(linkKey(from, to));
    if (l === undefined) throw new Error(`no link ${from}->${to}`);
    return l;
  }

  allLinks(): LinkProxy[] {
    return [...this.links.values()];
  }

  /** Sets the conditions of the directed link from -> to. */
  setLink(from: number, to: number, c: LinkConditions): void {
    this.link(from, to).set(c);
  }

  healLinks(): void {
    for (const l of this.links.values()) l.set(CLEAN_LINK);
  }

  /** Starts a stopped node and waits until it answers Status. */
  async startNode(id: number): Promise<void> {
    if (this.destroyed) throw new Error(`cannot start node ${id}: the cluster was destroyed`);
    const n = this.node(id);
    if (n.state !== "down") throw new Error(`node ${id} is ${n.state}, not down`);
    const args = [
      ...serveEntry(this.o.repoRoot).args,
      ...["--id", String(n.memberId), "--listen", this.address(id), "--peers", this.peersFlag()],
      ...["--data-dir", n.dataDir, "--cluster-id", this.o.clusterId, ...this.o.serveArgs],
      ...(n.join ? ["--join"] : []),
    ];
    const fd = openSync(n.logFile, "a");
    let proc: ChildProcess;
    try {
      const env = serverProcessEnv(process.env);
      delete env[POWER_LOSS_ENV];
      delete env[CLOCK_RATE_ENV];
      if (this.o.powerLoss) env[POWER_LOSS_ENV] = "1";
      if (n.clockRate !== 1) env[CLOCK_RATE_ENV] = String(n.clockRate);
      env.grpc_proxy = this.routers[id]!.url;
      env.no_grpc_proxy = NO_PROXY_NONE;
      proc = spawn(process.execPath, args, { cwd: this.o.repoRoot, stdio: ["ignore", fd, fd], env });
    } finally {
      closeSync(fd);
    }
    n.proc = proc;
    n.runningRate = n.clockRate;
    n.state = "running";
    n.expectExit = false;
    n.starts++;
    n.exited = new Promise<void>((resolve) => {
      proc.once("exit", (code, signal) => {
        if (n.proc === proc) {
          if (!n.expectExit) {
            const e = { node: id, code, signal, atMs: performance.now() - this.startedAt };
            this.unplannedExits.push(e);
            this.o.note(`node ${id} exited on its own (code ${code}, signal ${signal})`);
          }
          n.proc = null;
          n.state = "down";
        }
        resolve();
      });
      proc.once("error", () => resolve());
    });
    await this.waitUntilServing(id, proc);
  }

  /**
   * SIGKILL; resolves once the process is gone. A process crash keeps what the page cache holds; with
   * `powerLoss` (and the cluster's emulation on) the node's next start also loses what it had not synced.
   */
  async kill(id: number, powerLoss = false): Promise<void> {
    const n = this.node(id);
    const proc = n.proc;
    if (proc === null) return;
    if (powerLoss && !this.o.powerLoss) throw new Error("a power loss needs the cluster's powerLoss option");
    n.expectExit = true;
    safeKill(proc);
    await withTimeout(n.exited ?? Promise.resolve(), KILL_WAIT_MS, `node ${id} to exit after SIGKILL`);
    // Without its shadow the emulation takes the folder as it is as durable: a plain process crash.
    if (this.o.powerLoss && !powerLoss)
      rmSync(powerLossShadowDir(n.dataDir), { recursive: true, force: true });
  }

  /** SIGKILL, then a torn record after the newest WAL record. */
  async killTorn(id: number): Promise<TornWrite | null> {
    await this.kill(id);
    return tearWalTail(this.node(id).dataDir, this.o.prng);
  }

  pause(id: number): void {
    const n = this.node(id);
    if (n.state !== "running" || n.proc === null) return;
    n.proc.kill("SIGSTOP");
    n.state = "paused";
  }

  resume(id: number): void {
    const n = this.node(id);
    if (n.state !== "paused" || n.proc === null) return;
    n.proc.kill("SIGCONT");
    n.state = "running";
  }

  /** Every link clean, every paused node resumed, every stopped node started. */
  async healAll(): Promise<void> {
    this.healLinks();
    for (const id of this.ids) this.resume(id);
    await Promise.all(this.ids.filter((id) => this.state(id) === "down").map((id) => this.startNode(id)));
  }

  /** Status of node `id` straight from it (no redirect), or null if it does not answer in time. */
  async status(id: number, timeoutMs = STATUS_TIMEOUT_MS): Promise<NodeStatus | null> {
    if (this.node(id).state !== "running") return null;
    try {
      return await this.admin[id]!.status(this.address(id), { timeoutMs });
    } catch {
      return null;
    }
  }

  /** The slot of the node that says it leads in the highest term, among those answering now. */
  async leader(timeoutMs = STATUS_TIMEOUT_MS): Promise<number | null> {
    const all = await Promise.all(this.ids.map((id) => this.status(id, timeoutMs)));
    let best: number | null = null;
    for (const [slot, s] of all.entries())
      if (s !== null && s.role === "leader" && (best === null || s.term > all[best]!.term)) best = slot;
    return best;
  }

  /** The member id of the node in slot `id`. */
  memberId(id: number): number {
    return this.node(id).memberId;
  }

  /** The slot whose node has member id `memberId`, or null. */
  slotOf(memberId: number): number | null {
    return this.nodes.find((n) => n.memberId === memberId)?.id ?? null;
  }

  /**
   * Empties the data folder of slot `id` (which must be down) and gives the slot the member id of the
   * node that will start there next, as a replacement (--join): what a machine whose disk was replaced
   * looks like.
   */
  wipe(id: number, newMemberId: number): void {
    const n = this.node(id);
    if (n.state !== "down") throw new Error(`cannot wipe node ${id}: it is ${n.state}`);
    rmSync(n.dataDir, { recursive: true, force: true });
    rmSync(powerLossShadowDir(n.dataDir), { recursive: true, force: true });
    n.memberId = newMemberId;
    n.join = true;
  }

  /** A client with one endpoint: node `id` (for reads from that node alone). */
  clientFor(id: number): RaftKvClient {
    return new RaftKvClient({ endpoints: [this.address(id)], maxAttempts: 3, timeoutMs: 3000 });
  }

  /** Kills every node (SIGKILL, paused ones included), closes the proxies. Safe to call twice. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    await Promise.all(
      this.nodes.map(async (n) => {
        if (n.proc === null) return;
        await this.kill(n.id).catch(() => undefined);
      }),
    );
    for (const c of this.admin) c.close();
    await Promise.all([
      ...this.routers.map((r) => r.close()),
      ...[...this.links.values()].map((l) => l.close()),
    ]);
    process.removeListener("exit", this.killAllSync);
  }

  /** Lines of node `id`'s log (all its runs) that report a snapshot installed from the leader. */
  snapshotInstalls(id: number): number {
    let text = "";
    try {
      text = readFileSync(this.node(id).logFile, "utf8");
    } catch {
      return 0;
    }
    return text.split("installed from the leader").length - 1;
  }

  /** The last `maxBytes` of node `id`'s log, for error messages. */
  logTail(id: number, maxBytes = 2000): string {
    try {
      const text = readFileSync(this.node(id).logFile, "utf8");
      return text.slice(-maxBytes);
    } catch {
      return "";
    }
  }

  private node(id: number): ChaosNode {
    const n = this.nodes[id];
    if (n === undefined) throw new Error(`no node ${id}`);
    return n;
  }

  private setPort(id: number, port: number): void {
    this.node(id).port = port;
    for (const from of this.ids) if (from !== id) this.link(from, id).targetPort = port;
  }

  /** Every node's --peers: every slot's member at its real address (the routers pick the links). Once a
   *  node has a configuration in its log it follows that (a node that joins reaches the cluster by it). */
  private peersFlag(): string {
    return this.nodes.map((n) => `${n.memberId}=${this.address(n.id)}`).join(",");
  }

  /** The link for a tunnel from node `from` to the node listening at `port`. */
  private route(from: number, port: number): LinkProxy | null {
    const to = this.nodes.find((n) => n.port === port && n.id !== from);
    return to === undefined ? null : this.link(from, to.id);
  }

  private async waitUntilServing(id: number, proc: ChildProcess): Promise<void> {
    const deadline = performance.now() + this.o.startTimeoutMs;
    for (let i = 0; performance.now() < deadline; i++) {
      if (proc.exitCode !== null || proc.signalCode !== null)
        throw new Error(`node ${id} exited during start-up; its log ends:\n${this.logTail(id)}`);
      if ((await this.status(id, 300)) !== null) return;
      await sleep(Math.min(50 * (i + 1), 250));
    }
    throw new Error(
      `node ${id} did not answer Status within ${this.o.startTimeoutMs} ms; its log ends:\n${this.logTail(id)}`,
    );
  }
}

function linkKey(from: number, to: number): string {
  return `${from}>${to}`;
}

function safeKill(proc: ChildProcess): void {
  try {
    proc.kill("SIGKILL");
  } catch {
    // Already gone.
  }
}

/** Ports free right now on 127.0.0.1 (bound to 0 together, then released). */
export async function freePorts(n: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const s = net.createServer();
      servers.push(s);
      await new Promise<void>((resolve, reject) => {
        s.once("error", reject);
        s.listen(0, HOST, () => resolve());
      });
    }
    return servers.map((s) => (s.address() as net.AddressInfo).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, Math.max(0, ms)));
}

export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | null = null;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
      }),
    ]);
  } finally {
    if (timer !== null) clearTimeout(timer);
  }
}
