// Reads every import in src/ and fails when a dependency arrow points the wrong way (ARCHITECTURE.md),
// or when the pure layers (core, kv) reach for time, randomness, timers, promises or Node's modules.

import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { test } from "node:test";

const SRC = "src";

/** layer -> layers (top-level folders of src/) it may import. */
const ALLOWED: Record<string, readonly string[]> = {
  lib: [],
  core: ["lib"],
  kv: ["lib", "core", "store"],
  // The state store: the seam (store.ts, pure: kv uses it), its in-memory twin, and the one on LMDB.
  store: ["lib"],
  storage: ["lib", "core"],
  transport: ["lib", "core", "gen"],
  clock: ["lib"],
  replica: ["lib", "core", "kv"],
  server: ["lib", "core", "kv", "store", "storage", "transport", "clock", "replica", "gen"],
  // The etcd v3 API: an adapter over the node's MvccApi (server/mvcc-api.ts), registered by whoever
  // composes the node (cli, tests), so server never imports it.
  etcd: ["lib", "core", "kv", "store", "clock", "server", "gen"],
  client: ["lib", "gen", "clock"],
  bench: ["lib", "gen", "clock", "client"],
  cli: [
    "lib",
    "core",
    "kv",
    "store",
    "storage",
    "server",
    "client",
    "clock",
    "replica",
    "transport",
    "gen",
    "sim",
    "etcd",
    "ui",
  ],
  // The dashboard (static page, its event stream, key browser, `raftkv local`'s fault controls) sits on
  // the server; `raftkv serve` and `raftkv local` wire it in.
  ui: ["lib", "core", "kv", "replica", "server"],
  sim: ["lib", "core", "kv", "store", "replica", "storage", "transport"],
  // The fault harness sits above the server: it sets the server's test-only switches and reads what the
  // power-loss emulation keeps in a data folder.
  chaos: ["lib", "core", "client", "sim", "server", "storage", "gen"],
  gen: ["gen"],
};

/** Files outside src/ that src/ may import, and which layers may. bin/build-state.mjs is plain JavaScript
 *  so that bin/raftkv.mjs can use it before tsx is loaded. */
const OUTSIDE_SRC: Record<string, readonly string[]> = { "bin/build-state.mjs": ["lib"] };

const PURE = ["core", "kv"];
/** The Store seam and its in-memory twin (which kv uses) are pure too. */
const PURE_FILES = ["src/store/store.ts", "src/store/sorted-tree.ts", "src/store/mem-store.ts"];
const FORBIDDEN_IN_PURE: readonly [RegExp, string][] = [
  [/\bDate\b/, "Date"],
  [/\bperformance\b/, "performance"],
  [/Math\.random/, "Math.random"],
  [/\bset(Timeout|Interval|Immediate)\b/, "timers"],
  [/\bprocess\./, "process"],
  [/\basync\b/, "async"],
  [/\bPromise\b/, "Promise"],
  [/\bawait\b/, "await"],
  [/from\s+["']node:/, "Node modules"],
  [/\bBuffer\b/, "Buffer"],
  [/from\s+["'][^"']*lmdb/, "LMDB"],
];

function files(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) files(p, out);
    else if (name.endsWith(".ts")) out.push(p);
  }
  return out;
}

function layerOf(path: string): string {
  return relative(SRC, path).split("/")[0]!;
}

function stripComments(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[^:])\/\/.*$/gm, "$1");
}

const sources = files(SRC).filter((f) => !f.endsWith(".test.ts"));

test("imports follow the layer order of ARCHITECTURE.md", () => {
  const wrong: string[] = [];
  for (const f of sources) {
    const from = layerOf(f);
    const allowed = ALLOWED[from];
    assert.ok(allowed !== undefined, `${f}: folder src/${from} is not in the architecture table`);
    const text = readFileSync(f, "utf8");
    for (const m of text.matchAll(/(?:import|export)[^"';]*?from\s+["'](\.[^"']+)["']/g)) {
      const target = join(dirname(f), m[1]!);
      if (!target.startsWith(`${SRC}/`)) {
        if (!OUTSIDE_SRC[target]?.includes(from)) wrong.push(`${f} imports ${m[1]}, outside src/`);
        continue;
      }
      const to = layerOf(target);
      if (to !== from && !allowed.includes(to))
        wrong.push(`${f} imports ${m[1]} (src/${from} may not depend on src/${to})`);
    }
  }
  assert.deepEqual(wrong, []);
});

test("core and kv stay pure: no time, randomness, timers, promises or Node modules", () => {
  const wrong: string[] = [];
  for (const f of sources.filter(
    (s) => (PURE.includes(layerOf(s)) || PURE_FILES.includes(s)) && !s.endsWith("test-cluster.ts"),
  )) {
    const text = stripComments(readFileSync(f, "utf8"));
    for (const [re, what] of FORBIDDEN_IN_PURE) if (re.test(text)) wrong.push(`${f} uses ${what}`);
  }
  assert.deepEqual(wrong, []);
});

test("the checker itself notices a violation", () => {
  const text = stripComments("const t = Date.now(); // Date in a comment is fine");
  assert.ok(FORBIDDEN_IN_PURE.some(([re]) => re.test(text)));
  assert.ok(!FORBIDDEN_IN_PURE.some(([re]) => re.test(stripComments("// Date.now() only in a comment"))));
});
