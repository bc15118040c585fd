// The package as a user gets it: `npm pack` of this checkout (its fresh dist/, or a build of src/ in a
// staging copy when dist/ is stale), installed into a scratch project with no network: npm ci --offline
// against a lockfile made from this checkout's own, so every dependency comes from npm's cache, where
// this checkout's `npm ci` put it.

import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { compiledBuild } from "../../bin/build-state.mjs";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const NPM = process.platform === "win32" ? "npm.cmd" : "npm";

export interface Packed {
  /** Scratch folder holding the tarball and the project. */
  readonly dir: string;
  readonly tarball: string;
  readonly sizeBytes: number;
  /** Paths inside the package (package.json, dist/src/..., ...). */
  readonly files: readonly string[];
  /** How dist/ was had: this checkout's, or built for the test. */
  readonly build: "checkout" | "staged";
}

interface PackJson {
  readonly filename: string;
  readonly size: number;
  readonly files: readonly { readonly path: string }[];
}

function npm(args: readonly string[], cwd: string): string {
  const r = spawnSync(NPM, args, {
    cwd,
    encoding: "utf8",
    env: { ...process.env, npm_config_fund: "false" },
  });
  if (r.status !== 0)
    throw new Error(`npm ${args.join(" ")} in ${cwd} failed (exit ${r.status}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** A copy of what packing reads, with a fresh build of src/ (this checkout's dist/ is left alone: other
 *  tests may be running nodes from it). */
function stage(into: string): string {
  const dir = join(into, "staging");
  mkdirSync(dir);
  for (const name of ["package.json", "README.md", "bin", "proto", "src"])
    cpSync(join(ROOT, name), join(dir, name), { recursive: true });
  execFileSync(process.execPath, [join(ROOT, "scripts/build.mjs"), "--out-dir", join(dir, "dist")], {
    stdio: "inherit",
  });
  return dir;
}

/** Packs the package into a new scratch folder. */
export function pack(): Packed {
  const dir = mkdtempSync(join(tmpdir(), "raftkv-pack-"));
  const fresh = compiledBuild(ROOT).fresh;
  const from = fresh ? ROOT : stage(dir);
  // --ignore-scripts: no `prepare` rebuild; the build is fresh (checked above, or just made).
  const out = npm(["pack", "--ignore-scripts", "--json", "--pack-destination", dir], from);
  const info = (JSON.parse(out) as PackJson[])[0];
  if (info === undefined) throw new Error(`npm pack printed no result: ${out}`);
  if (!fresh) rmSync(from, { recursive: true, force: true });
  const tarball = join(dir, info.filename);
  return {
    dir,
    tarball,
    sizeBytes: statSync(tarball).size,
    files: info.files.map((f) => f.path),
    build: fresh ? "checkout" : "staged",
  };
}

interface LockEntry {
  readonly version?: string;
  readonly dev?: boolean;
  readonly link?: boolean;
  readonly dependencies?: Record<string, string>;
  readonly [k: string]: unknown;
}

/** A project in `<packed.dir>/app` with the tarball installed; returns its folder. */
export function installInScratchProject(packed: Packed): string {
  const app = join(packed.dir, "app");
  mkdirSync(app);
  const tarball = `file:../${packed.tarball.slice(packed.dir.length + 1)}`;
  const lock = JSON.parse(readFileSync(join(ROOT, "package-lock.json"), "utf8")) as {
    packages: Record<string, LockEntry>;
  };
  const root = lock.packages[""];
  if (root === undefined) throw new Error("package-lock.json has no root package");
  const packages: Record<string, unknown> = {
    "": { name: "app", dependencies: { raftkv: tarball } },
    "node_modules/raftkv": {
      version: root.version,
      resolved: tarball,
      dependencies: root.dependencies,
      bin: root["bin"],
      engines: root["engines"],
    },
  };
  // raftkv's runtime dependencies, exactly as this checkout locked them (npm ci finds them in its cache).
  for (const [path, entry] of Object.entries(lock.packages))
    if (path !== "" && entry.dev !== true && entry.link !== true) packages[path] = entry;
  writeFileSync(
    join(app, "package.json"),
    `${JSON.stringify({ name: "app", private: true, type: "module", dependencies: { raftkv: tarball } }, null, 2)}\n`,
  );
  writeFileSync(
    join(app, "package-lock.json"),
    `${JSON.stringify({ name: "app", lockfileVersion: 3, requires: true, packages }, null, 2)}\n`,
  );
  try {
    npm(["ci", "--offline", "--no-audit", "--no-fund"], app);
  } catch (err) {
    throw new Error(
      `${(err as Error).message}\n(the test installs offline from npm's cache, which \`npm ci\` in this checkout fills; ` +
        "if it was installed another way, run `npm ci` here once)",
    );
  }
  return app;
}
