// The package as an outside user gets it: packed (npm pack), installed from the tarball into a scratch
// project offline, then used with plain node: the README's library snippet against a real 3-node cluster
// run by the installed CLI, CommonJS require(), the counters example (examples/counters.mjs) replicating
// its own state machine, and a strict `module: nodenext` TypeScript consumer. Also what the tarball holds.

import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, normalize } from "node:path";
import { after, before, test } from "node:test";
import { freePorts, waitFor } from "../e2e/harness.ts";
import { installInScratchProject, type Packed, pack, ROOT } from "./pack.ts";

let packed: Packed;
let app: string;
const running = new Set<ChildProcess>();

before(() => {
  packed = pack();
  app = installInScratchProject(packed);
});

after(() => {
  for (const p of running) p.kill("SIGKILL");
  if (packed !== undefined) rmSync(packed.dir, { recursive: true, force: true });
});

/** `node <args>` in the scratch project, to completion. */
function node(args: readonly string[], cwd = app): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, args, { cwd, encoding: "utf8", timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A long-running `node <args>` in the scratch project; its output is collected. */
function start(args: readonly string[]): { proc: ChildProcess; out: () => string; err: () => string } {
  const proc = spawn(process.execPath, args, { cwd: app, stdio: ["ignore", "pipe", "pipe"] });
  running.add(proc);
  proc.on("exit", () => running.delete(proc));
  let out = "";
  let err = "";
  proc.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  proc.stderr?.on("data", (d: Buffer) => (err += d.toString()));
  return { proc, out: () => out, err: () => err };
}

async function stopProc(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once("exit", r));
  proc.kill("SIGTERM");
  await exited;
}

/** A project file tree with things that must never ship planted in it, packed dry. */
function dryPackWithJunk(): string[] {
  const dir = join(packed.dir, "junk");
  mkdirSync(dir);
  for (const name of ["package.json", "README.md", "bin", "proto", "src"])
    cpSync(join(ROOT, name), join(dir, name), { recursive: true });
  const plant = (path: string, text = "x"): void => {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), text);
  };
  plant("tls/ca.key", "-----BEGIN PRIVATE KEY-----");
  plant("tls/node-0.key");
  plant("tls/ca.crt");
  plant("data/node-0/wal/0000000000000001-00000000000000000001.wal");
  plant("data/node-0/raftkv.log");
  plant("test/e2e/x.test.ts");
  plant("bench-out/run.json");
  plant("dist/src/sim/run.js");
  plant("dist/src/core/raft.test.js");
  const r = spawnSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], {
    cwd: dir,
    encoding: "utf8",
  });
  assert.equal(r.status, 0, r.stderr);
  const files = (JSON.parse(r.stdout) as { files: { path: string }[] }[])[0]?.files.map((f) => f.path) ?? [];
  rmSync(dir, { recursive: true, force: true });
  return files;
}

const NEVER_SHIPPED: readonly [RegExp, string][] = [
  [/\.test\.(ts|js|d\.ts)$|\.test\.d\.ts\.map$/, "a test"],
  [/^test\//, "the test folder"],
  [/(^|\/)tls\//, "a tls/ folder"],
  [/\.(key|pem|crt|csr|srl)$/, "a key or certificate"],
  [/^data\/|\.wal$|\.snap$|raftkv\.log$/, "node data"],
  [/^(dist\/)?src\/(sim|chaos|bench)\//, "the simulator, chaos harness or benchmarks"],
  [/-conformance\.|codec-arbitraries\.|test-cluster\./, "a test helper"],
  [/node_modules\/|^bench-out\/|^\.git/, "installed or generated folders"],
];

test("the tarball holds the build, declarations and their sources, and no tests, keys, data or tls/", () => {
  const files = new Set(packed.files);
  const kb = (packed.sizeBytes / 1024).toFixed(0);
  console.log(`tarball ${packed.tarball}: ${kb} KB, ${files.size} files (dist/ from the ${packed.build})`);
  for (const need of [
    "package.json",
    "README.md",
    "bin/raftkv.mjs",
    "bin/build-state.mjs",
    "dist/build-stamp.json",
    "dist/src/cli/main.js",
    "src/client/client.ts",
    "proto/raftkv/v1/client.proto",
    ...["client/index", "core/index", "server/embed"].flatMap((e) => [
      `dist/src/${e}.js`,
      `dist/src/${e}.d.ts`,
      `dist/src/${e}.d.ts.map`,
    ]),
  ])
    assert.ok(files.has(need), `the tarball lacks ${need}`);
  const wrong = (list: Iterable<string>): string[] =>
    [...list].flatMap((f) => NEVER_SHIPPED.filter(([re]) => re.test(f)).map(([, what]) => `${f} (${what})`));
  assert.deepEqual(wrong(files), []);
  assert.deepEqual(wrong(dryPackWithJunk()), [], "planted keys, data and tests stay out");
  // Every relative import of the compiled code and its declarations resolves inside the tarball.
  const missing: string[] = [];
  for (const f of files) {
    if (!/\.(js|d\.ts|mjs)$/.test(f)) continue;
    const text = readFileSync(join(app, "node_modules/raftkv", f), "utf8");
    for (const m of text.matchAll(/(?:from\s*|import\s*\(\s*)["'](\.{1,2}\/[^"']+)["']/g)) {
      const target = normalize(join(dirname(f), m[1]!));
      const asDeclared = target.replace(/\.js$/, ".d.ts").replace(/\.mjs$/, ".d.mts");
      if (!files.has(target) && !(f.endsWith(".d.ts") && files.has(asDeclared)))
        missing.push(`${f} imports ${m[1]}`);
    }
  }
  assert.deepEqual(missing, []);
  const pkg = JSON.parse(readFileSync(join(app, "node_modules/raftkv/package.json"), "utf8")) as {
    dependencies: Record<string, string>;
  };
  assert.ok(!("tsx" in pkg.dependencies), "tsx is a devDependency only");
  assert.ok(!existsSync(join(app, "node_modules/tsx")), "an install does not pull tsx");
});

/** A README library snippet: the ```js block that starts with "// <name>". */
function readmeSnippet(name = "app.mjs"): string {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const m = new RegExp(`\`\`\`js\\n(// ${name.replace(".", "\\.")}[\\s\\S]*?)\`\`\``).exec(readme);
  assert.ok(m !== null, `README.md has a \`\`\`js block starting with // ${name}`);
  return m[1]!;
}

test("installed from the tarball: the CLI runs a 3-node cluster, and plain node runs the README's snippet and require()", async () => {
  const ports = await freePorts(3);
  const peers = ports.map((p, i) => `${i}=127.0.0.1:${p}`).join(",");
  const bin = join(app, "node_modules/.bin/raftkv");
  const nodes = ports.map((port, id) =>
    start([
      bin,
      "serve",
      "--id",
      String(id),
      "--listen",
      `127.0.0.1:${port}`,
      "--peers",
      peers,
      "--data-dir",
      join(app, `data/node-${id}`),
      "--log-level",
      "warn",
    ]),
  );
  const endpoints = ports.map((p) => `127.0.0.1:${p}`);
  try {
    const version = node([bin, "--version"]);
    assert.equal(version.stdout.trim(), JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version);
    await waitFor(
      "a leader",
      () => {
        const r = node([bin, "status", "--json", "--endpoints", endpoints.join(","), "--timeout", "1s"]);
        const rows = r.code === 0 ? (JSON.parse(r.stdout) as { ok: boolean; role?: string }[]) : [];
        return rows.some((row) => row.ok && row.role === "leader") && rows.every((row) => row.ok)
          ? true
          : undefined;
      },
      30_000,
      250,
    );
    const defaults = '["127.0.0.1:60000", "127.0.0.1:60001", "127.0.0.1:60002"]';
    const snippet = readmeSnippet();
    assert.ok(snippet.includes(defaults), `the snippet names the default endpoints ${defaults}`);
    writeFileSync(join(app, "app.mjs"), snippet.replace(defaults, JSON.stringify(endpoints)));
    const run = node(["app.mjs"]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, "hello\ntrue\ngreeting\n");
    const cjs = node([
      "-e",
      `const { RaftKvClient } = require("raftkv/client");
      const kv = new RaftKvClient({ endpoints: ${JSON.stringify(endpoints)} });
      kv.getString("greeting").then((v) => { console.log(v); kv.close(); });`,
    ]);
    assert.equal(cjs.code, 0, `require(esm) needs Node >= 20.19 or 22.12: ${cjs.stderr}`);
    assert.equal(cjs.stdout, "hi\n");
    const get = node([bin, "get", "greeting", "--endpoints", endpoints.join(",")]);
    assert.equal(get.stdout, "hi\n");
    // The coordination snippet: watch, txn, lease, Mutex.
    writeFileSync(
      join(app, "app2.mjs"),
      readmeSnippet("app2.mjs").replace(defaults, JSON.stringify(endpoints)),
    );
    const run2 = node(["app2.mjs"]);
    assert.equal(run2.code, 0, run2.stderr);
    assert.match(
      run2.stdout,
      /^true (\d+)\nput jobs\/1 queued (\d+)\nput jobs\/1 running \1\nput jobs\/owner me \1\nlocked, fencing token \d+\n$/,
    );
    for (const n of nodes)
      assert.doesNotMatch(n.err(), /tsx|through tsx/, "an installed package runs its build");
  } finally {
    await Promise.all(nodes.map((n) => stopProc(n.proc)));
  }
});

interface CounterNode {
  readonly id: number;
  http: string;
  proc: ChildProcess;
}

async function call(
  http: string,
  path: string,
  method = "GET",
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://${http}${path}`, { method });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

test("examples/counters.mjs replicates its own state machine across 3 nodes, through a leader change and a snapshot", async () => {
  copyFileSync(join(ROOT, "examples/counters.mjs"), join(app, "counters.mjs"));
  const ports = await freePorts(3);
  const peers = ports.map((p, i) => `${i}=127.0.0.1:${p}`).join(",");
  const launch = async (id: number): Promise<CounterNode> => {
    const dataDir = join(app, `data/counters-${id}`);
    const s = start([
      "counters.mjs",
      "--id",
      String(id),
      "--peers",
      peers,
      "--data-dir",
      dataDir,
      "--http",
      "127.0.0.1:0",
      "--snapshot-every",
      "5",
    ]);
    const line = await waitFor(
      `counters node ${id} to start`,
      () => {
        if (s.proc.exitCode !== null) throw new Error(`node ${id} exited: ${s.err()}`);
        return /^\{.*\}$/m.exec(s.out())?.[0];
      },
      20_000,
    );
    return { id, http: (JSON.parse(line) as { http: string }).http, proc: s.proc };
  };
  const nodes = await Promise.all([0, 1, 2].map(launch));
  const leaderOf = (among: readonly CounterNode[]) =>
    waitFor(
      "a counters leader",
      async () => {
        for (const n of among) if ((await call(n.http, "/status")).body["role"] === "leader") return n;
        return undefined;
      },
      20_000,
    );
  try {
    const leader = await leaderOf(nodes);
    for (let i = 1; i <= 5; i++) {
      const r = await call(leader.http, "/counters/visits?add=1", "POST");
      assert.equal(r.status, 200);
      assert.equal(r.body["value"], i);
    }
    const follower = nodes.find((n) => n !== leader)!;
    await waitFor("the follower to know the leader", async () =>
      (await call(follower.http, "/status")).body["leaderId"] === leader.id ? true : undefined,
    );
    const refused = await call(follower.http, "/counters/visits?add=1", "POST");
    assert.equal(refused.status, 421, "a follower refuses writes, naming the leader");
    assert.equal(refused.body["leaderId"], leader.id);
    assert.deepEqual((await call(leader.http, "/counters/visits")).body, { name: "visits", value: 5 });
    // The leader stops; the others elect one that has every write.
    await stopProc(leader.proc);
    const rest = nodes.filter((n) => n !== leader);
    const next = await leaderOf(rest);
    assert.deepEqual((await call(next.http, "/counters/visits")).body, { name: "visits", value: 5 });
    for (let i = 6; i <= 40; i++)
      assert.equal((await call(next.http, "/counters/visits?add=1", "POST")).body["value"], i);
    // The old leader comes back behind a compacted log: it catches up from a snapshot of its own and
    // the leader's (snapshots every 5 entries, 10 kept behind), read back through restore().
    const back = await launch(leader.id);
    await waitFor(
      "the restarted node to catch up",
      async () => {
        const s = await call(back.http, "/counters/visits?consistency=stale");
        return s.body["value"] === 40 ? true : undefined;
      },
      20_000,
    );
    const status = await call(back.http, "/status");
    assert.ok(Number(status.body["snapshotIndex"]) > 0, "it holds a snapshot");
    assert.ok(
      (status.body["snapshots"] as { installed: number }).installed >= 1,
      "the leader's snapshot, restored through the example's restore()",
    );
    nodes[nodes.indexOf(leader)] = back;
  } finally {
    await Promise.all(nodes.map((n) => stopProc(n.proc)));
  }
});

test("a strict module: nodenext TypeScript consumer type-checks against the installed declarations", () => {
  const dir = join(app, "typed");
  mkdirSync(dir);
  writeFileSync(
    join(dir, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: {
        module: "nodenext",
        moduleResolution: "nodenext",
        target: "es2022",
        strict: true,
        exactOptionalPropertyTypes: true,
        noUncheckedIndexedAccess: true,
        noEmit: true,
        skipLibCheck: false,
        types: ["node"],
        typeRoots: [join(ROOT, "node_modules/@types")],
      },
      files: ["consumer.mts", "consumer.cts"],
    }),
  );
  writeFileSync(
    join(dir, "consumer.mts"),
    `import { RaftKvClient, RaftKvClientError, type NodeStatus } from "raftkv/client";
import { Raft, type CoreConfig } from "raftkv/core";
import {
  type RaftNode, resolveNodeConfig, type SnapshotInfo, type SnapshotReader, type SnapshotWriter,
  startRaftNode, type StateMachine,
} from "raftkv/node";

class Tally implements StateMachine<number> {
  total = 0;
  apply(command: Uint8Array, _index: number): number { return (this.total += command.length); }
  snapshot(): SnapshotReader {
    const image = new TextEncoder().encode(String(this.total));
    let sent = false;
    return { sizeBytes: image.length, next: () => (sent ? null : ((sent = true), image)), close: () => {} };
  }
  restore(_info: SnapshotInfo): SnapshotWriter {
    let text = "";
    let next = 0;
    return {
      push: (c) => { text += new TextDecoder().decode(c); },
      finish: () => { next = Number(text); },
      commit: () => { this.total = next; },
      abort: () => {},
    };
  }
}

export async function main(): Promise<number> {
  const node: RaftNode<Tally, number> = await startRaftNode({
    config: resolveNodeConfig({ id: 0, peers: "0=127.0.0.1:7000", dataDir: "data/0", snapshotEveryEntries: 100 }),
    stateMachine: new Tally(),
  });
  const stop = node.on("leader", (e) => { const id: number | null = e.leaderId; void id; });
  stop();
  const applied: number = (await node.propose(new Uint8Array(3))).result;
  const total: number = await node.read((t) => t.total, { consistency: "readIndex" });
  await node.stop();
  const kv = new RaftKvClient({ endpoints: ["127.0.0.1:60000"], timeoutMs: 1000 });
  const s: NodeStatus = await kv.status("127.0.0.1:60000");
  for await (const { key, value } of kv.rangeAll("", { pageSize: 10 })) void [key, value.length];
  kv.close();
  const cfg: CoreConfig | null = null;
  void [Raft, cfg, s.pid, RaftKvClientError];
  return applied + total;
}
`,
  );
  writeFileSync(
    join(dir, "consumer.cts"),
    `import { RaftKvClient } from "raftkv/client";
export const kv = new RaftKvClient({ endpoints: ["127.0.0.1:60000"] });
`,
  );
  const r = node([join(ROOT, "node_modules/typescript/bin/tsc"), "-p", dir], dir);
  assert.equal(r.code, 0, `tsc reported:\n${r.stdout}${r.stderr}`);
});
