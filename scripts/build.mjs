#!/usr/bin/env node
// `npm run build`: compiles src/ to dist/ (tsconfig.build.json) and stamps the build with the newest
// source time it saw, so launchers can tell whether it is up to date (bin/build-state.mjs).
// `npm ci` and `npm install` run it through `prepare` with --if-possible: there a failed build (no
// TypeScript installed, a type error in a work in progress) only warns, and nodes run through tsx.

import { spawnSync } from "node:child_process";
import { cpSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { BUILD_STAMP, newestSourceMtimeMs } from "../bin/build-state.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const lenient = process.argv.includes("--if-possible");

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

const sourcesMtimeMs = newestSourceMtimeMs(join(root, "src"));
rmSync(join(root, "dist"), { recursive: true, force: true });
let tsc;
try {
  tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
} catch {
  fail("TypeScript is not installed (it is a devDependency)");
}
const r = spawnSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json")], { stdio: "inherit" });
if (r.status !== 0) {
  rmSync(join(root, "dist"), { recursive: true, force: true });
  fail(`tsc failed (exit ${r.status ?? r.signal})`);
}
// src/lib imports ../../bin/build-state.mjs, which from dist/src/lib is dist/bin/.
cpSync(join(root, "bin/build-state.mjs"), join(root, "dist/bin/build-state.mjs"));
writeFileSync(
  join(root, BUILD_STAMP),
  `${JSON.stringify({ sourcesMtimeMs, builtAt: new Date().toISOString() })}\n`,
);
