// The embedding API (raftkv/node) with a state machine of the test's own, three nodes in this process:
// proposals and their results, reads at each consistency, NOT_LEADER with the leader's id, events,
// /health on leader and follower, and a restart that restores the node's own snapshot.

import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { RaftKvError } from "../lib/errors.ts";
import {
  NotLeaderError,
  type RaftNode,
  type RaftNodeEvent,
  resolveNodeConfig,
  type SnapshotInfo,
  type SnapshotReader,
  type SnapshotWriter,
  type StateMachine,
  startRaftNode,
} from "./embed.ts";
import { AppliedStateMachine } from "./state-machine.ts";

/** A list of strings: apply appends one and returns the new length. */
class Journal implements StateMachine<number> {
  lines: string[] = [];
  restores = 0;
  closed = false;

  /** Lines are unique, so a proposal retried after a leader change (outcome unknown) applies once, as a
   *  real state machine makes its commands idempotent with request ids. */
  apply(command: Uint8Array, _index: number): number {
    const line = new TextDecoder().decode(command);
    const at = this.lines.indexOf(line);
    return at >= 0 ? at + 1 : this.lines.push(line);
  }

  snapshot(): SnapshotReader {
    const image = new TextEncoder().encode(JSON.stringify(this.lines));
    let sent = false;
    const next = (): Uint8Array | null => {
      if (sent) return null;
      sent = true;
      return image;
    };
    return { sizeBytes: image.length, next, close: () => {} };
  }

  restore(_info: SnapshotInfo): SnapshotWriter {
    let text = "";
    let next: string[] = [];
    return {
      push: (c) => {
        text += new TextDecoder().decode(c);
      },
      finish: () => {
        next = JSON.parse(text) as string[];
      },
      commit: () => {
        this.lines = next;
        this.restores++;
      },
      abort: () => {},
    };
  }

  close(): void {
    this.closed = true;
  }
}

async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: n }, async () => {
      const s = net.createServer();
      await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
      return s;
    }),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

async function until<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  ms = 15_000,
): Promise<T> {
  const started = performance.now();
  for (;;) {
    const v = await Promise.resolve(probe()).catch(() => undefined);
    if (v !== undefined) return v;
    if (performance.now() - started > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
let root: string;
let peers: string;
const nodes: (RaftNode<Journal, number> | null)[] = [null, null, null];
const events: RaftNodeEvent[] = [];

async function launch(id: number): Promise<RaftNode<Journal, number>> {
  const node = await startRaftNode({
    config: resolveNodeConfig({
      id,
      peers,
      dataDir: join(root, `node-${id}`),
      clusterId: "embed-test",
      metricsPort: 0,
      logLevel: "warn",
      snapshotEveryEntries: 4,
      keepEntriesAfterSnapshot: 2,
    }),
    stateMachine: new Journal(),
    maxCommandBytes: 1024,
    logToStderr: false,
    seed: id + 1,
  });
  nodes[id] = node;
  return node;
}

async function leader(): Promise<RaftNode<Journal, number>> {
  return until(
    "a leader with a lease",
    () =>
      nodes.find((n) => n !== null && n.status().role === "leader" && n.status().lease === "valid") ??
      undefined,
  );
}

/** Runs `fn` on the leader, again on the next one when leadership changed under it (on a loaded machine
 *  an election can come between finding the leader and the call's end). */
async function onLeader<T>(fn: (l: RaftNode<Journal, number>) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const l = await leader();
    try {
      return await fn(l);
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (attempt >= 20 || !["NOT_LEADER", "NO_LEADER", "UNAVAILABLE"].includes(code ?? "")) throw e;
    }
  }
}

before(async () => {
  root = mkdtempSync(join(tmpdir(), "raftkv-embed-"));
  const ports = await freePorts(3);
  peers = ports.map((p, i) => `${i}=127.0.0.1:${p}`).join(",");
  const started = await Promise.all([0, 1, 2].map(launch));
  started[0]!.on("leader", (e) => events.push(e));
  started[0]!.on("role", (e) => events.push(e));
});

after(async () => {
  await Promise.all(nodes.map((n) => n?.stop("test over")));
  rmSync(root, { recursive: true, force: true });
});

test("proposals resolve with apply()'s result on the leader; followers refuse with the leader's id", async () => {
  const l = await leader();
  const first = await l.propose(enc("one"));
  const second = await l.propose(enc("two"));
  assert.equal(first.result, 1);
  assert.equal(second.result, 2);
  assert.ok(second.index > first.index);
  const follower = nodes.find((n) => n !== null && n !== l)!;
  await until("the follower to know the leader", () =>
    follower.softState().leaderId === l.id ? true : undefined,
  );
  await assert.rejects(follower.propose(enc("x")), (e: unknown) => {
    assert.ok(e instanceof NotLeaderError && e instanceof RaftKvError);
    assert.equal(e.code, "NOT_LEADER");
    assert.equal(e.leaderId, l.id);
    return true;
  });
  await assert.rejects(
    follower.read((j) => j.lines.length),
    { code: "NOT_LEADER" },
  );
  assert.equal(follower.softState().leaderId, l.id);
  assert.ok(
    events.some((e) => e.type === "leader" && e.leaderId === l.id),
    "node 0 reported the leader",
  );
});

test("reads: lease and readIndex on the leader see every acknowledged write; stale reads any node's state", async () => {
  await onLeader((l) => l.propose(enc("three")));
  assert.deepEqual(await onLeader((l) => l.read((j) => [...j.lines])), ["one", "two", "three"]);
  assert.equal(await onLeader((l) => l.read((j) => j.lines.length, { consistency: "readIndex" })), 3);
  for (const n of nodes)
    assert.equal(
      await until("a follower to apply", async () => {
        const v = await n!.read((j) => j.lines.length, { consistency: "stale" });
        return v === 3 ? v : undefined;
      }),
      3,
    );
});

test("status and /health: the leader can serve linearizable reads, a follower is connected to it", async () => {
  const l = await leader();
  const s = l.status();
  assert.equal(s.role, "leader");
  assert.equal(s.pid, process.pid);
  assert.ok(s.appliedIndex === l.appliedIndex && s.appliedIndex >= 4);
  const follower = nodes.find((n) => n !== null && n !== l)!;
  for (const [n, detail] of [
    [l, /lease read possible|ReadIndex confirmed/],
    // The leader may have changed since (a loaded machine): connected to whichever leads now.
    [follower, /connected to leader \d/],
  ] as const) {
    // Healthy once it has heard from the leader (on a busy machine a follower's timer may have run out
    // and it is between leaders for a moment).
    const body = await until(`node ${n.id} healthy`, async () => {
      const res = await fetch(`http://127.0.0.1:${n.metricsPort}/health`);
      const b = (await res.json()) as { health: boolean; checks: { read: { detail: string } } };
      return res.status === 200 ? b : undefined;
    });
    assert.equal(body.health, true);
    assert.match(body.checks.read.detail, detail);
  }
  const metrics = await (await fetch(`http://127.0.0.1:${l.metricsPort}/metrics`)).text();
  assert.match(metrics, /raftkv_peer_sent_bytes_total\{peer="\d"\} [1-9]/);
  assert.match(metrics, /raftkv_peer_received_bytes_total\{peer="\d"\} [1-9]/);
  assert.doesNotMatch(metrics, /raftkv_request_duration_seconds/, "no KV client metrics on a bare node");
});

test("a restarted node restores its own snapshot through restore(), then replays the log after it", async () => {
  for (let i = 4; i <= 10; i++) await onLeader((l) => l.propose(enc(`line-${i}`)));
  const l = await leader();
  const follower = nodes.find((n) => n !== null && n !== l)!;
  await until("the follower to snapshot", () => (follower.status().snapshotIndex > 0 ? true : undefined));
  const machine = follower.stateMachine;
  await follower.stop("restart");
  assert.equal(await follower.done, 0);
  assert.ok(machine.closed, "close() ran at stop");
  const again = await launch(follower.id);
  assert.equal(again.stateMachine.restores, 1, "restored from the snapshot at start");
  const want = await onLeader((leaderNow) => leaderNow.read((j) => [...j.lines]));
  assert.deepEqual(
    await until("the restarted node to catch up", async () => {
      const v = await again.read((j) => [...j.lines], { consistency: "stale" });
      return v.length === want.length ? v : undefined;
    }),
    want,
  );
});

test("the replica seam's adapter: applied index, and an image the state machine refuses is CORRUPT", () => {
  const journal = new Journal();
  const applied = new AppliedStateMachine<number>(journal);
  applied.apply(1, enc("a"));
  applied.applyNoop(2);
  assert.equal(applied.appliedIndex, 2);
  const meta = { index: 9, term: 2, sizeBytes: 3, crc32c: 0 };
  const restore = applied.restore(meta);
  restore.push(enc("[1"));
  assert.throws(
    () => restore.finish(),
    (e: unknown) => e instanceof RaftKvError && e.code === "CORRUPT",
  );
  assert.deepEqual(journal.lines, ["a"], "nothing changed");
  const good = applied.restore(meta);
  good.push(enc('["x"]'));
  const next = good.finish();
  assert.equal(next.appliedIndex, 9);
  assert.deepEqual(journal.lines, ["a"], "finish() changes nothing yet");
  good.commit();
  assert.deepEqual(journal.lines, ["x"]);
});

test("/health and /ready answer 503 with the reason once no majority is left", async () => {
  const survivor = nodes[0]!;
  await Promise.all([nodes[1]!.stop("majority gone"), nodes[2]!.stop("majority gone")]);
  const h = await until("an unhealthy verdict", async () => {
    const res = await fetch(`http://127.0.0.1:${survivor.metricsPort}/health`);
    const body = (await res.json()) as { health: boolean; reason: string | null };
    return res.status === 503 ? body : undefined;
  });
  assert.equal(h.health, false);
  assert.match(h.reason ?? "", /no leader known|cannot serve a linearizable read|not connected to leader/);
  const ready = await until("not ready", async () => {
    const res = await fetch(`http://127.0.0.1:${survivor.metricsPort}/ready`);
    return res.status === 503 ? ((await res.json()) as { reason: string }) : undefined;
  });
  assert.match(ready.reason, /no leader known/);
});

test("the KV server uses the embedding API through its public entry only (no private shortcuts)", () => {
  const read = (f: string) => readFileSync(new URL(f, import.meta.url), "utf8");
  for (const f of ["./node.ts", "./kv-ops.ts", "./kv-state.ts"]) {
    const imports = [...read(f).matchAll(/from\s+"(\.[^"]+)"/g)].map((m) => m[1]!);
    const private_ = imports.filter((i) =>
      /^\.\/(raft-node|state-machine|node-view|observer|health|operator-http|timed-file-system)\.ts$|^\.\.\/(replica|transport|core\/raft|clock\/ticker)/.test(
        i,
      ),
    );
    assert.deepEqual(private_, [], `${f} reaches past raftkv/node (embed.ts)`);
  }
});
