#!/usr/bin/env node
// The `raftkv` executable: runs the compiled CLI in dist/ when it is up to date with src/ (npm ci builds
// it), else registers tsx's ESM loader and runs the TypeScript sources (no build step needed).
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { compiledBuild } from "./build-state.mjs";

const build = compiledBuild(join(dirname(fileURLToPath(import.meta.url)), ".."));
if (build.fresh) {
  await import(pathToFileURL(build.main).href);
} else {
  const { register } = await import("tsx/esm/api");
  register();
  await import("../src/cli/main.ts");
}
