// `raftkv local`: a node killed by a signal is reported by the signal's name, and with --restart it is
// started again and rejoins; Ctrl-C (SIGINT) stops every node.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { runCli, waitFor } from "./harness.ts";

const BIN = fileURLToPath(new URL("../../bin/raftkv.mjs", import.meta.url));

async function bindable(port: number): Promise<boolean> {
  const s = net.createServer();
  const ok = await new Promise<boolean>((resolve) => {
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => resolve(true));
  });
  if (ok) await new Promise((r) => s.close(r));
  return ok;
}

/** The first of `n` consecutive ports nobody listens on (raftkv local takes base-port + i). */
async function consecutiveFreePorts(n: number): Promise<number> {
  for (let base = 41_000 + (process.pid % 500) * 20; base < 65_000; base += 7) {
    let all = true;
    for (let i = 0; i < n && all; i++) all = await bindable(base + i);
    if (all) return base;
  }
  throw new Error(`no ${n} consecutive free ports`);
}

test("raftkv local --restart: a node killed by SIGKILL is named so, restarted, and rejoins; SIGINT stops all", async () => {
  const dir = mkdtempSync(join(tmpdir(), "raftkv-local-"));
  const base = await consecutiveFreePorts(3);
  const endpoints = [0, 1, 2].map((i) => `127.0.0.1:${base + i}`).join(",");
  const local = spawn(
    process.execPath,
    [BIN, "local", "--base-port", String(base), "--data-dir", dir, "--metrics-base-port", "0", "--restart"],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  let err = "";
  local.stdout.on("data", (d: Buffer) => (out += d.toString()));
  local.stderr.on("data", (d: Buffer) => (err += d.toString()));
  // "close", not "exit": exit can come before the last of stderr has been read.
  const exited = new Promise<number | null>((r) => local.on("close", (code) => r(code)));
  try {
    await waitFor("the local cluster", () => (out.includes("cluster is up") ? true : undefined), 60_000);
    const rows = JSON.parse((await runCli(["status", "--json", "--endpoints", endpoints])).stdout) as {
      nodeId: number;
      pid: number;
      role: string;
    }[];
    const victim = rows.find((r) => r.role !== "leader")!;
    process.kill(victim.pid, "SIGKILL");
    await waitFor(
      "the restart",
      () => (err.includes(`node ${victim.nodeId} restarted`) ? true : undefined),
      20_000,
    );
    assert.match(err, new RegExp(`node ${victim.nodeId} was killed by SIGKILL unexpectedly; restarting it`));
    const back = await waitFor(
      "the node to answer again",
      async () => {
        const r = await runCli(["status", "--json", "--endpoints", endpoints]);
        const now = (JSON.parse(r.stdout) as { ok: boolean; nodeId: number; pid: number }[]).find(
          (x) => x.nodeId === victim.nodeId,
        );
        return now?.ok === true ? now : undefined;
      },
      30_000,
    );
    assert.notEqual(back.pid, victim.pid, "a new process");
    local.kill("SIGINT");
    assert.equal(await exited, 0);
    assert.match(err, /all nodes stopped/);
  } finally {
    if (local.exitCode === null) local.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
});
