#!/usr/bin/env node
// The `raftkv` executable: runs the compiled CLI in dist/ when it is up to date with src/ (npm ci builds
// it; an installed package always has it). In a development checkout whose src/ changed since the build,
// it registers tsx's ESM loader and runs the TypeScript sources instead. tsx is a devDependency: where it
// is not installed, the compiled CLI runs as it is, with a note.
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { compiledBuild } from "./build-state.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const build = compiledBuild(root);
if (build.fresh) {
  await import(pathToFileURL(build.main).href);
} else {
  let register = null;
  try {
    ({ register } = await import("tsx/esm/api"));
  } catch {
    // Not a development install.
  }
  if (register !== null) {
    register();
    await import("../src/cli/main.ts");
  } else {
    process.stderr.write(`raftkv: note: ${build.why}; tsx is not installed, running the compiled CLI as it is\n`);
    await import(pathToFileURL(join(root, "dist/src/cli/main.js")).href);
  }
}
