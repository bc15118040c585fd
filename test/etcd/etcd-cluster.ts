// A real 3-node etcd cluster on free loopback ports in a temp folder (the reference the differential
// test compares raftkv with), and etcdctl runs against any endpoint.

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const ETCD = "/usr/bin/etcd";
export const ETCDCTL = "/usr/bin/etcdctl";

/** Why the etcd tests cannot run here, or null when they can. */
export function etcdMissing(): string | null {
  for (const bin of [ETCD, ETCDCTL])
    if (!existsSync(bin)) return `${bin} is not installed (apt-get install etcd-server etcd-client)`;
  return null;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      const port = typeof a === "object" && a !== null ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export interface EtcdCluster {
  /** Client endpoints ("127.0.0.1:port"). */
  readonly endpoints: readonly string[];
  stop(): Promise<void>;
}

export async function startEtcdCluster(size = 3): Promise<EtcdCluster> {
  const dir = mkdtempSync(join(tmpdir(), "raftkv-etcd-ref-"));
  const nodes: { name: string; client: number; peer: number }[] = [];
  for (let i = 0; i < size; i++)
    nodes.push({ name: `etcd${i}`, client: await freePort(), peer: await freePort() });
  const initial = nodes.map((n) => `${n.name}=http://127.0.0.1:${n.peer}`).join(",");
  const children: ChildProcess[] = nodes.map((n) =>
    spawn(
      ETCD,
      [
        `--name=${n.name}`,
        `--data-dir=${join(dir, n.name)}`,
        `--listen-client-urls=http://127.0.0.1:${n.client}`,
        `--advertise-client-urls=http://127.0.0.1:${n.client}`,
        `--listen-peer-urls=http://127.0.0.1:${n.peer}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${n.peer}`,
        `--initial-cluster=${initial}`,
        "--initial-cluster-state=new",
        "--initial-cluster-token=raftkv-diff",
        "--log-level=error",
        "--logger=zap",
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    ),
  );
  let stderr = "";
  for (const c of children)
    c.stderr?.on("data", (b: Buffer) => (stderr = (stderr + b.toString()).slice(-4000)));
  const endpoints = nodes.map((n) => `127.0.0.1:${n.client}`);
  const stop = async (): Promise<void> => {
    await Promise.all(
      children.map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.exitCode !== null || c.signalCode !== null) return resolve();
            c.once("close", () => resolve());
            c.kill("SIGTERM");
          }),
      ),
    );
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 60_000;
  for (;;) {
    const r = await etcdctl(endpoints, ["endpoint", "health"]);
    if (r.code === 0) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`etcd did not become healthy in 60 s: ${r.stderr}\n${stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
  return { endpoints, stop };
}

export interface CtlResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs etcdctl (API v3) against `endpoints`; `stdin` is written and closed. */
export function etcdctl(
  endpoints: readonly string[],
  args: readonly string[],
  o: { stdin?: string; until?: (stdout: string) => boolean; timeoutMs?: number } = {},
): Promise<CtlResult> {
  return new Promise((resolve) => {
    const child = spawn(ETCDCTL, [`--endpoints=${endpoints.join(",")}`, "--command-timeout=10s", ...args], {
      env: { ...process.env, ETCDCTL_API: "3" },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    const timer = setTimeout(() => child.kill("SIGKILL"), o.timeoutMs ?? 30_000);
    child.stdout.on("data", (b: Buffer) => {
      stdout += b.toString();
      if (o.until?.(stdout)) child.kill("SIGTERM");
    });
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code: o.until === undefined ? code : 0, stdout, stderr });
    });
    child.stdin.end(o.stdin ?? "");
  });
}
