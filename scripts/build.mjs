#!/usr/bin/env node
// `npm run build`: compiles src/ to dist/ (tsconfig.build.json): ES modules, .d.ts declarations and their
// maps (into the shipped src/), and stamps the build with the newest source time it saw, so launchers can
// tell whether it is up to date (bin/build-state.mjs).
// `npm ci` and `npm install` run it through `prepare` with --if-possible: there a failed build (no
// TypeScript installed, a type error in a work in progress) only warns, and nodes run through tsx.
// `--out-dir DIR` builds into DIR instead of dist/ (the package test uses it when dist/ is stale).

import { spawnSync } from "node:child_process";
import { cpSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { BUILD_STAMP, newestSourceMtimeMs } from "../bin/build-state.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const lenient = process.argv.includes("--if-possible");
const outFlag = process.argv.indexOf("--out-dir");
const out = outFlag < 0 ? join(root, "dist") : resolve(process.argv[outFlag + 1] ?? "dist");

function fail(why) {
  const text = `raftkv build: ${why}`;
  if (!lenient) {
    console.error(text);
    process.exit(1);
  }
  console.error(
    `${text}\n  (not fatal: nodes will run from src/ through tsx, with about 30 MB more memory each)`,
  );
  process.exit(0);
}

/** Declarations keep the sources' "./x.ts" specifiers (tsc rewrites them only in .js): a consumer's tsc
 *  would refuse them (TS5097) or find no file. Same length, so the declaration maps stay right. */
function rewriteDeclarationImports(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) rewriteDeclarationImports(path);
    else if (entry.name.endsWith(".d.ts")) {
      const text = readFileSync(path, "utf8");
      const fixed = text.replace(
        /((?:from|import)\s*\(?\s*["'])(\.{1,2}\/[^"']*?)\.ts(["'])/g,
        (_m, head, spec, quote) => `${head}${spec}.js${quote}`,
      );
      if (fixed !== text) writeFileSync(path, fixed);
    }
  }
}

const sourcesMtimeMs = newestSourceMtimeMs(join(root, "src"));
rmSync(out, { recursive: true, force: true });
let tsc;
try {
  tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
} catch {
  fail("TypeScript is not installed (it is a devDependency)");
}
const r = spawnSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json"), "--outDir", out], {
  stdio: "inherit",
});
if (r.status !== 0) {
  rmSync(out, { recursive: true, force: true });
  fail(`tsc failed (exit ${r.status ?? r.signal})`);
}
rewriteDeclarationImports(join(out, "src"));
// src/lib imports ../../bin/build-state.mjs, which from dist/src/lib is dist/bin/.
cpSync(join(root, "bin/build-state.mjs"), join(out, "bin/build-state.mjs"));
cpSync(join(root, "bin/build-state.d.mts"), join(out, "bin/build-state.d.mts"));
writeFileSync(
  join(out, BUILD_STAMP.replace(/^dist\//, "")),
  `${JSON.stringify({ sourcesMtimeMs, builtAt: new Date().toISOString() })}\n`,
);
