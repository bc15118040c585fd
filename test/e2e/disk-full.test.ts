// A node whose disk fills up exits (issue 12, finding 4): it used to report ENOSPC and then hang for
// good at exit (ports open, main thread in a futex wait, SIGTERM ignored) because its log stream
// retried a failed flush forever. Real processes; node 2's data folder is a small tmpfs (needs root
// to mount one: skipped with a reason otherwise). Nothing acknowledged is lost.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { TestCluster, waitFor } from "./harness.ts";

function canMount(dir: string): boolean {
  try {
    mkdirSync(dir, { recursive: true });
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=100m", "tmpfs", dir], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** Fills the file system holding `dir` to the last byte. */
function fill(dir: string): void {
  const block = Buffer.alloc(1 << 20);
  for (let i = 0; ; i++) {
    try {
      writeFileSync(join(dir, `filler-${i}`), block);
    } catch {
      break;
    }
  }
  for (const size of [65536, 4096, 512, 1]) {
    for (let i = 0; ; i++) {
      try {
        writeFileSync(join(dir, `filler-${size}-${i}`), Buffer.alloc(size));
      } catch {
        break;
      }
    }
  }
}

test("a node whose disk is full stops and exits with 1 within a bound; the others keep every acknowledged write", async (t) => {
  let mounted: string | null = null;
  const c = await TestCluster.start({
    nodes: 3,
    // trace: the node keeps writing its log file, which fails too once the disk is full.
    serveArgs: [
      "--log-level",
      "trace",
      "--election-timeout-min-ms",
      "1000",
      "--election-timeout-max-ms",
      "2000",
    ],
    prepare: (root) => {
      const dir = join(root, "node-2");
      if (canMount(dir)) mounted = dir;
    },
  });
  try {
    if (mounted === null) {
      t.skip("cannot mount a tmpfs here (needs root): the disk-full exit is not tested");
      return;
    }
    await c.waitForLeader();
    fill(mounted);
    const kv = c.client(c.endpoints, 10_000);
    const acked: string[] = [];
    const value = "v".repeat(64 * 1024);
    try {
      for (let i = 0; i < 400 && c.node(2).proc !== null; i++) {
        try {
          await kv.put(`k${i}`, value);
          acked.push(`k${i}`);
        } catch {
          // Elections while node 2 fails: the write may or may not have applied.
        }
      }
      const exited = c.node(2).exited!;
      const code = await waitFor(
        "node 2 to exit",
        async () => {
          const r = await Promise.race([exited, new Promise((res) => setTimeout(() => res("running"), 200))]);
          return r === "running" ? undefined : r;
        },
        60_000,
      );
      assert.equal(code, 1, "it exits with 1, so that a supervisor restarts it");
      assert.ok(acked.length > 0);
      for (const k of acked) assert.equal(await kv.getString(k), value, `acknowledged ${k} is there`);
    } finally {
      kv.close();
    }
  } finally {
    for (const n of c.nodes) await c.kill(n.id);
    if (mounted !== null) execFileSync("umount", ["-l", mounted], { stdio: "ignore" });
    await c.close();
  }
});
