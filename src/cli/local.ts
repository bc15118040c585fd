// `raftkv local`: a cluster of `raftkv serve` child processes on loopback, until Ctrl-C; restarts continue
// from the same data folders. Each node serves the dashboard at /ui on its metrics port; unless
// --no-faults, peer traffic goes through a link proxy in front of each node and the dashboard's fault buttons
// (kill, restart, pause, resume, cut and heal a link: src/ui/local-control.ts) act on the children.

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { createInterface } from "node:readline";
import type { Command } from "commander";
import type { RaftKvClient } from "../client/index.ts";
import { checkoutRoot, serveEntry, serverProcessEnv } from "../lib/server-env.ts";
import { CONTROL_TOKEN_ENV, CONTROL_URL_ENV } from "../ui/control-switch.ts";
import { LinkProxy } from "../ui/link-proxy.ts";
import { type LocalControl, LocalControlError, startLocalControl } from "../ui/local-control.ts";
import { ownerOf, socketInode } from "../ui/socket-owner.ts";
import { statusTable } from "./kv-commands.ts";
import { EXIT, usageError } from "./output.ts";

interface LocalFlags {
  nodes: string;
  basePort: string;
  dataDir: string;
  clusterId: string;
  metricsBasePort: string;
  waitTimeout: string;
  restart: boolean;
  faults: boolean;
}

/** With --restart: how long after an unexpected exit a node is started again. */
const RESTART_DELAY_MS = 1000;
/** With --restart: exits within RESTART_WINDOW_MS after which a node is left down (it keeps failing). */
const MAX_RESTARTS_IN_WINDOW = 5;
const RESTART_WINDOW_MS = 60_000;

interface Child {
  readonly id: number;
  readonly address: string;
  readonly dataDir: string;
  process: ChildProcess;
  /** Resolves when the current process exits. */
  exited: Promise<void>;
  running: boolean;
  /** Stopped with SIGSTOP from the dashboard. */
  paused: boolean;
  /** Killed from the dashboard: not an unexpected exit, not restarted by --restart. */
  killedOnPurpose: boolean;
  /** Times (performance.now()) of its unexpected exits. */
  readonly exits: number[];
}

/** "was killed by SIGKILL" or "exited with code 1". */
export function describeExit(code: number | null, signal: NodeJS.Signals | null): string {
  if (signal !== null) return `was killed by ${signal}`;
  return code === null ? "exited" : `exited with code ${code}`;
}

export function addLocalCommand(program: Command): void {
  program
    .command("local")
    .description("run a local cluster on loopback as child processes until Ctrl-C (what `npm start` runs)")
    .option("--nodes <n>", "number of nodes", "3")
    .option("--base-port <port>", "node i listens on base-port + i", "60000")
    .option("--data-dir <dir>", "node i keeps its data in <dir>/node-i", "./data")
    .option("--cluster-id <id>", "cluster name written into each data folder", "local")
    .option("--metrics-base-port <port>", "node i serves /metrics on this + i (0: no metrics)", "60100")
    .option("--wait-timeout <ms>", "how long to wait for a leader", "30000")
    .option(
      "--restart",
      `start a node again ${RESTART_DELAY_MS / 1000} s after it exits unexpectedly (a crash, a kill; not after ${MAX_RESTARTS_IN_WINDOW} exits in a minute)`,
      false,
    )
    .option("--no-faults", "no fault buttons on the dashboard, and peers connect directly (no link proxies)")
    .action(async (f: LocalFlags) => {
      process.exitCode = await runLocal(f);
    });
}

function intFlag(name: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max)
    throw usageError(`${name} "${text}" must be an integer in ${min}..${max}`, `fix ${name}`);
  return n;
}

async function runLocal(f: LocalFlags): Promise<number> {
  const n = intFlag("--nodes", f.nodes, 1, 9);
  const basePort = intFlag("--base-port", f.basePort, 1, 65535 - n);
  const metricsBase = intFlag("--metrics-base-port", f.metricsBasePort, 0, 65535 - n);
  const waitMs = intFlag("--wait-timeout", f.waitTimeout, 1, 600_000);
  const root = resolve(f.dataDir);
  const ids = Array.from({ length: n }, (_, i) => i);
  const address = (i: number): string => `127.0.0.1:${basePort + i}`;
  // The fault buttons live on the dashboard: without metrics ports there is neither.
  const faults = f.faults && metricsBase !== 0 ? await startFaults(ids, basePort, metricsBase) : null;
  // With the link proxies every node reaches node j at its proxy (and listens at its own address).
  const peers = ids.map((j) => `${j}=${faults === null ? address(j) : faults.proxyAddress(j)}`).join(",");
  const uiMembers = ids.map((i) => `${i}=http://127.0.0.1:${metricsBase + i}`).join(",");
  const entry = serveEntry();
  if (!entry.compiled) process.stderr.write(`note: nodes run from src/ through tsx: ${entry.why}\n`);
  const command = process.execPath;
  const prefix = entry.args;
  let stopping = false;

  const spawnNode = (child: Child): void => {
    const args = [
      ...prefix,
      ...["--id", String(child.id), "--listen", child.address, "--peers", peers],
      ...["--data-dir", child.dataDir, "--cluster-id", f.clusterId, "--stop-on-stdin-close"],
      ...(metricsBase === 0
        ? []
        : ["--metrics-port", String(metricsBase + child.id), "--ui-members", uiMembers]),
    ];
    const control = faults === null || metricsBase === 0 ? {} : faults.env();
    const proc = spawn(command, args, {
      stdio: ["pipe", "ignore", "pipe"],
      detached: true,
      env: serverProcessEnv({ ...process.env, ...control }),
    });
    child.process = proc;
    child.running = true;
    child.paused = false;
    child.killedOnPurpose = false;
    child.exited = new Promise((r) =>
      proc.on("exit", (code, signal) => {
        child.running = false;
        if (!stopping && !child.killedOnPurpose) onUnexpectedExit(child, describeExit(code, signal));
        r();
      }),
    );
    relayLog(child.id, proc);
  };
  const onUnexpectedExit = (child: Child, how: string): void => {
    const log = resolve(child.dataDir, "raftkv.log");
    const now = performance.now();
    child.exits.push(now);
    while (child.exits.length > 0 && now - child.exits[0]! > RESTART_WINDOW_MS) child.exits.shift();
    if (!f.restart) {
      process.stderr.write(
        `node ${child.id} ${how} unexpectedly; see ${log} (start \`raftkv local\` with --restart to restart nodes that exit)\n`,
      );
      return;
    }
    if (child.exits.length > MAX_RESTARTS_IN_WINDOW) {
      process.stderr.write(
        `node ${child.id} ${how} again: ${child.exits.length} exits within a minute, leaving it down; see ${log}\n`,
      );
      return;
    }
    process.stderr.write(
      `node ${child.id} ${how} unexpectedly; restarting it in ${RESTART_DELAY_MS / 1000} s (see ${log})\n`,
    );
    const timer = setTimeout(() => {
      if (stopping) return;
      spawnNode(child);
      process.stderr.write(`node ${child.id} restarted (pid ${child.process.pid ?? "?"})\n`);
    }, RESTART_DELAY_MS);
    restarts.add(timer);
  };
  const restarts = new Set<NodeJS.Timeout>();
  const children: Child[] = ids.map((id) => {
    const child = {
      id,
      address: address(id),
      dataDir: resolve(root, `node-${id}`),
      running: false,
      paused: false,
      killedOnPurpose: false,
      exits: [],
    } as unknown as Child;
    spawnNode(child);
    return child;
  });

  let stopped: Promise<void> = Promise.resolve();
  const stopAll = (): Promise<void> => {
    if (stopping) return stopped;
    stopping = true;
    stopped = stopEvery();
    return stopped;
  };
  const stopEvery = async (): Promise<void> => {
    for (const t of restarts) clearTimeout(t);
    process.stderr.write("\nstopping all nodes...\n");
    for (const c of children) if (c.running && c.paused) c.process.kill("SIGCONT");
    for (const c of children) if (c.running) c.process.kill("SIGTERM");
    const killer = setTimeout(() => {
      for (const c of children) if (c.running) c.process.kill("SIGKILL");
    }, 10_000);
    await Promise.all(children.map((c) => c.exited));
    clearTimeout(killer);
    await faults?.close();
    process.stderr.write("all nodes stopped; start again to continue from the same data\n");
  };
  faults?.attach(children, spawnNode, () => stopping);
  process.on("SIGINT", () => void stopAll());
  process.on("SIGTERM", () => void stopAll());

  const { RaftKvClient } = await import("../client/client.ts");
  const client = new RaftKvClient({ endpoints: ids.map(address), timeoutMs: 1000 });
  try {
    const leader = await waitForLeader(client, children, waitMs, () => stopping);
    if (leader === null) {
      if (!stopping) {
        process.stderr.write(`no leader within ${waitMs} ms; stopping (see the logs under ${root})\n`);
        await stopAll();
      }
      return EXIT.failed;
    }
    const rows = await client.clusterStatus();
    const endpoints = ids.map(address).join(",");
    const cli = cliHint();
    process.stdout.write(
      [
        `raftkv local cluster is up: ${n} nodes, leader is node ${leader.id} at ${leader.address}`,
        "",
        statusTable(rows),
        "",
        `data and logs: ${root}/node-N (raftkv.log in each)`,
        metricsBase === 0
          ? ""
          : `metrics:       http://127.0.0.1:${metricsBase}/metrics (node N on port ${metricsBase}+N)`,
        metricsBase === 0
          ? ""
          : `dashboard:     http://127.0.0.1:${metricsBase}/ui/ (any node's /ui/${faults === null ? "" : "; with fault buttons"})`,
        "",
        `try${cli.here ? ", from this folder" : ""}:`,
        `  ${cli.command} put hello world`,
        `  ${cli.command} get hello`,
        `  ${cli.command} status`,
        `  (${cli.here ? "elsewhere" : "from other folders"}: raftkv ... --endpoints ${endpoints}, with raftkv on your PATH: npm link)`,
        "",
        "press Ctrl-C to stop every node",
        "",
      ]
        .filter((l, i, all) => l !== "" || all[i - 1] !== "")
        .join("\n"),
    );
  } finally {
    client.close();
  }
  // Until Ctrl-C, or every node is down for good (none running, no restart pending).
  for (;;) {
    await Promise.all(children.map((c) => c.exited));
    // A node restarted since this wait began has an `exited` of its own: wait for stopAll, which
    // waits for the processes running now, or a restarted node would be left behind.
    if (stopping) {
      await stopped;
      return EXIT.ok;
    }
    await new Promise((r) => setTimeout(r, RESTART_DELAY_MS + 100));
    // Nodes killed from the dashboard wait for its restart button.
    if (children.every((c) => !c.running) && !stopping && !children.some((c) => c.killedOnPurpose)) {
      process.stderr.write("every node has exited\n");
      return EXIT.failed;
    }
  }
}

/** How a user runs the CLI from here: ./raftkv in this checkout's root (no install, no PATH), else
 *  npx (a project that installed raftkv has it in node_modules/.bin). */
function cliHint(): { command: string; here: boolean } {
  const launcher = resolve(checkoutRoot(), "raftkv");
  return existsSync(launcher) && resolve(process.cwd()) === checkoutRoot()
    ? { command: "./raftkv", here: true }
    : { command: "npx raftkv", here: false };
}

/** Waits until a leader is elected and every node answers (or, past the deadline, settles for a leader). */
async function waitForLeader(
  client: RaftKvClient,
  children: readonly Child[],
  waitMs: number,
  cancelled: () => boolean,
): Promise<Child | null> {
  const started = performance.now();
  let leader: Child | null = null;
  while (performance.now() - started < waitMs && !cancelled()) {
    if (children.every((c) => !c.running)) return null;
    const rows = await client.clusterStatus({ timeoutMs: 500 });
    for (const r of rows)
      if (r.ok && r.status.role === "leader") leader = children.find((c) => c.id === r.status.nodeId) ?? null;
    if (leader !== null && rows.length === children.length && rows.every((r) => r.ok)) return leader;
    await new Promise((r) => setTimeout(r, 200));
  }
  return leader;
}

const SHOWN_EVENTS = new Set(["leader", "stepDown"]);

/** Shows a child's warnings, errors and leader changes as one short line each; the rest is in its log. */
function relayLog(id: number, proc: ChildProcess): void {
  if (proc.stderr === null) return;
  createInterface({ input: proc.stderr }).on("line", (line) => {
    let rec: unknown;
    try {
      rec = JSON.parse(line);
    } catch {
      process.stderr.write(`[node ${id}] ${line}\n`);
      return;
    }
    if (typeof rec !== "object" || rec === null) return;
    const r = rec as { level?: unknown; msg?: unknown; event?: unknown; err?: { message?: unknown } };
    const level = typeof r.level === "number" ? r.level : 30;
    if (
      level < 40 &&
      !(
        typeof r.event === "string" &&
        SHOWN_EVENTS.has(r.event) &&
        r.msg !== undefined &&
        String(r.msg).startsWith("became")
      )
    )
      return;
    const tag = level >= 50 ? "ERROR " : level >= 40 ? "WARN " : "";
    const detail = typeof r.err?.message === "string" ? `: ${r.err.message}` : "";
    process.stderr.write(`[node ${id}] ${tag}${String(r.msg)}${detail}\n`);
  });
}

/** The link proxies and the dashboard's control server of one `raftkv local` run. */
interface Faults {
  /** Where every node reaches node `to` (the same for all: the configuration names one address). */
  proxyAddress(to: number): string;
  /** The control switch for the nodes' environment (control-switch.ts). */
  env(): Record<string, string>;
  attach(children: readonly Child[], spawnNode: (c: Child) => void, stopping: () => boolean): void;
  close(): Promise<void>;
}

async function startFaults(ids: readonly number[], basePort: number, metricsBase: number): Promise<Faults> {
  let children: readonly Child[] = [];
  const sourceOf = (dialerPort: number, proxyPort: number): number | null => {
    const inode = socketInode(dialerPort, proxyPort);
    if (inode === null) return null;
    const pids = new Map<number, number>();
    for (const c of children) if (c.running && c.process.pid !== undefined) pids.set(c.process.pid, c.id);
    return ownerOf(inode, pids);
  };
  const proxies = new Map<number, LinkProxy>();
  for (const to of ids) proxies.set(to, await LinkProxy.start(to, basePort + to, sourceOf));
  const proxy = (to: number): LinkProxy => proxies.get(to)!;
  let spawn: (c: Child) => void = () => {};
  let stopping = (): boolean => false;
  const child = (id: number): Child => children.find((c) => c.id === id)!;
  const fail = (why: string): never => {
    throw new LocalControlError(why);
  };
  const origins = new Set(ids.map((i) => `http://127.0.0.1:${metricsBase + i}`));
  const control: LocalControl = await startLocalControl(
    {
      state: () => ({
        nodes: children.map((c) => ({
          id: c.id,
          running: c.running,
          paused: c.paused,
          pid: c.process.pid ?? null,
        })),
        cuts: ids.flatMap((a) => ids.filter((b) => a < b && proxy(b).isCut(a)).map((b) => [a, b] as const)),
      }),
      kill: (id) => {
        const c = child(id);
        if (!c.running) return fail(`node ${id} is not running`);
        c.killedOnPurpose = true;
        c.process.kill("SIGKILL");
        process.stderr.write(`node ${id} killed from the dashboard (SIGKILL)\n`);
        return `node ${id} killed (SIGKILL, pid ${c.process.pid ?? "?"})`;
      },
      restart: (id) => {
        const c = child(id);
        if (c.running) return fail(`node ${id} is running: kill it first`);
        if (stopping()) return fail("raftkv local is stopping");
        spawn(c);
        process.stderr.write(`node ${id} restarted from the dashboard (pid ${c.process.pid ?? "?"})\n`);
        return `node ${id} restarted (pid ${c.process.pid ?? "?"})`;
      },
      pause: (id) => {
        const c = child(id);
        if (!c.running || c.paused)
          return fail(`node ${id} is ${c.running ? "paused already" : "not running"}`);
        c.process.kill("SIGSTOP");
        c.paused = true;
        return `node ${id} paused (SIGSTOP)`;
      },
      resume: (id) => {
        const c = child(id);
        if (!c.running || !c.paused) return fail(`node ${id} is not paused`);
        c.process.kill("SIGCONT");
        c.paused = false;
        return `node ${id} resumed (SIGCONT)`;
      },
      cut: (a, b) => {
        proxy(b).setCut(a, true);
        proxy(a).setCut(b, true);
        return `link ${a} - ${b} cut (connections reset both ways)`;
      },
      heal: (a, b) => {
        proxy(b).setCut(a, false);
        proxy(a).setCut(b, false);
        return `link ${a} - ${b} healed`;
      },
    },
    () => origins,
  );
  return {
    proxyAddress: (to) => `127.0.0.1:${proxy(to).port}`,
    env: () => ({ [CONTROL_URL_ENV]: control.url, [CONTROL_TOKEN_ENV]: control.token }),
    attach: (c, s, st) => {
      children = c;
      spawn = s;
      stopping = st;
    },
    close: async () => {
      await control.close();
      await Promise.all([...proxies.values()].map((p) => p.close()));
    },
  };
}
