// Whether the compiled build in dist/ (`npm run build`; `npm ci` runs it) is up to date with src/.
//
// A node started from dist/ runs plain JavaScript: no tsx loader thread, no transpiling at start, about
// 30-35 MB less resident memory per node than through tsx (issue 6). Launchers use it only when no
// source under src/ changed since it was built, so an edited checkout never runs stale code: they fall
// back to tsx and say why. Plain JavaScript, so that bin/raftkv.mjs can decide before loading tsx.

import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, sep } from "node:path";

/** Written by scripts/build.mjs after a successful build. */
export const BUILD_STAMP = "dist/build-stamp.json";

/** Newest modification time (ms) of the compiled sources under `dir`: .ts files other than tests. */
export function newestSourceMtimeMs(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSourceMtimeMs(path));
    else if (entry.name.endsWith(".ts") && !entry.name.endsWith(".test.ts"))
      newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

/**
 * The compiled CLI entry of the checkout at `root` if it is up to date, else why not.
 * @param {string} root
 * @returns {{ fresh: true, main: string } | { fresh: false, why: string }}
 */
export function compiledBuild(root) {
  let stamp;
  try {
    stamp = JSON.parse(readFileSync(join(root, BUILD_STAMP), "utf8"));
  } catch {
    return { fresh: false, why: "there is no compiled build in dist/ (npm run build)" };
  }
  // An installed package (under node_modules/) runs its build: its sources are there for the
  // declaration maps, and their modification times are the install's, not the build's.
  const src = join(root, "src");
  const installed = root.split(sep).includes("node_modules");
  if (
    typeof stamp?.sourcesMtimeMs !== "number" ||
    (!installed && existsSync(src) && newestSourceMtimeMs(src) > stamp.sourcesMtimeMs)
  )
    return { fresh: false, why: "src/ changed since dist/ was built (npm run build)" };
  return { fresh: true, main: join(root, "dist/src/cli/main.js") };
}
