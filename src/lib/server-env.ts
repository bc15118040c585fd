// How the launchers in this repository (`raftkv local`, the benchmarks, the fault harness) start server
// processes: from the compiled build when it is up to date (serveEntry), and with glibc malloc settings
// (set them yourself where you run `raftkv serve`).
//
// A node allocates many short-lived buffers (gRPC frames, entries, snapshot chunks). With glibc's
// defaults the main heap fragments, and freed memory stays resident: at a million 256-byte values a
// node's RSS was 318–332 MB with the defaults and 252–294 MB with these, the JS heap the same
// (npm run bench -- --memory-keys 1000000, issue 6). ARENA_MAX bounds the per-thread arenas, a fixed
// MMAP_THRESHOLD (which also turns off glibc's adaptive threshold) gives every block of 128 KiB or
// more its own mapping, returned on free, and TRIM_THRESHOLD returns the heap's free top sooner.
// They are read by glibc when the process starts: setting them from inside Node is too late.

import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { compiledBuild } from "../../bin/build-state.mjs";

export const SERVER_MALLOC_ENV: Readonly<Record<string, string>> = {
  MALLOC_ARENA_MAX: "2",
  MALLOC_MMAP_THRESHOLD_: "131072",
  MALLOC_TRIM_THRESHOLD_: "262144",
};

/** `env` with SERVER_MALLOC_ENV added where `env` does not set a variable itself. */
export function serverProcessEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return { ...SERVER_MALLOC_ENV, ...env };
}

/** The root of this raftkv checkout (the folder with its package.json), from src/lib or dist/src/lib. */
export function checkoutRoot(): string {
  const here = fileURLToPath(new URL(".", import.meta.url));
  const candidates = [resolve(here, "../.."), resolve(here, "../../..")];
  return (
    candidates.find((dir) => existsSync(join(dir, "package.json")) && existsSync(join(dir, "src"))) ??
    candidates[0]!
  );
}

export interface ServeEntry {
  /** Node's arguments up to and including "serve". */
  readonly args: string[];
  /** True when they run the compiled build in dist/; false: the sources through tsx. */
  readonly compiled: boolean;
  /** Why the compiled build is not used, when it is not. */
  readonly why: string | null;
}

/** How to run `raftkv serve` from the checkout at `root`: the compiled build when it is up to date with
 *  src/ (about 30 MB less memory per node, bin/build-state.mjs), else src/ through tsx. */
export function serveEntry(root: string = checkoutRoot()): ServeEntry {
  const build = compiledBuild(root);
  if (build.fresh) return { args: [build.main, "serve"], compiled: true, why: null };
  return {
    args: ["--import", import.meta.resolve("tsx"), join(root, "src/cli/main.ts"), "serve"],
    compiled: false,
    why: build.why,
  };
}
